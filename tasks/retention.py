"""``tenant.apply_retention``: delete what is past the tenant's retention, in batches.

- ``auditLogs`` older than the tenant's ``settings.retentionDays``;
- finished ledger ``jobs`` older than ``MWAP_JOB_RETENTION_DAYS`` (a TTL index on ``finishedAt``
  does the same on its own schedule; this pass makes it deterministic and audited);

(Virtual files need no pass: the sync removes a file's document when the file goes.)

One audit document records what was removed (or, with ``dryRun``, what would be).
"""

from datetime import timedelta
from typing import Any

from bson import ObjectId
from pydantic import Field, StrictBool

from mwap import audit, webhooks
from mwap.ids import oid
from mwap.jobtypes import JobType, Params, Queue, Schedule, Scope
from mwap.ledger import FINAL, now
from mwap.models import Tenant
from mwap.services import Services
from mwap.store import TenantCollection
from tasks.dispatch import live_tenants
from tasks.integrations import Skip, ensure_tenant_live
from worker.base import Job, JobTask, job_task

BATCH = 1000


def _purge(collection: TenantCollection, query: dict[str, Any], *, dry_run: bool) -> int:
    """Delete matching documents in batches of ids; with ``dry_run``, only count them."""
    if dry_run:
        return collection.count_documents(query)
    removed = 0
    while True:
        ids = [doc["_id"] for doc in collection.find(query, {"_id": 1}).limit(BATCH)]
        if not ids:
            return removed
        removed += collection.delete_many({"_id": {"$in": ids}}).deleted_count
        if len(ids) < BATCH:
            return removed


def apply(services: Services, tenant_id: ObjectId | str, *, dry_run: bool) -> dict[str, Any]:
    tenant_id = oid(tenant_id)
    ensure_tenant_live(services, tenant_id)
    tenant_doc = services.store.global_collection("tenants").find_one({"_id": tenant_id})
    if tenant_doc is None:
        raise Skip("tenant no longer exists")
    tenant = Tenant.model_validate(tenant_doc)
    settings = services.settings
    moment = now()
    scope = services.store.tenant(tenant_id)
    cutoffs = {
        "auditLogs": moment - timedelta(days=tenant.settings.retention_days),
        "jobs": moment - timedelta(days=settings.job_retention_days),
    }
    removed = {
        "auditLogs": _purge(
            scope["auditLogs"], {"createdAt": {"$type": "date", "$lt": cutoffs["auditLogs"]}}, dry_run=dry_run
        ),
        "jobs": _purge(
            scope["jobs"],
            {
                "status": {"$in": [s.value for s in FINAL]},
                "finishedAt": {"$type": "date", "$lt": cutoffs["jobs"]},
            },
            dry_run=dry_run,
        ),
    }
    result = {
        "dryRun": dry_run,
        "removed" if not dry_run else "wouldRemove": removed,
        "cutoffs": {name: cutoff.isoformat() for name, cutoff in cutoffs.items()},
    }
    audit.record(
        services.db,
        tenant_id=tenant_id,
        action="retention.dry_run" if dry_run else "retention.applied",
        target_type="tenant",
        target_id=tenant_id,
        details=result,
    )
    return result


def emitted(result: dict[str, Any]) -> list[webhooks.Payload]:
    """retention.applied for a run that removed (a dry run emits nothing)."""
    if result.get("dryRun") or "removed" not in result:
        return []
    return [webhooks.RetentionApplied(deleted=result["removed"])]


class RetentionParams(Params):
    dry_run: StrictBool = Field(default=False, alias="dryRun")


APPLY_RETENTION = JobType(
    "tenant.apply_retention",
    Scope.TENANT,
    Queue.MAINTENANCE,
    RetentionParams,
    "Deletes what is past the tenant's retention.",
    schedule=Schedule(interval="retention_interval", due=live_tenants),
    emits=emitted,
    skip_on=(Skip,),
)


@job_task(APPLY_RETENTION)
def apply_retention(self: JobTask, job: Job) -> dict[str, Any]:
    return apply(self.services(), job.tenant, dry_run=bool(job.params.get("dryRun")))
