"""The dispatchers beat runs: each finds its due items with one indexed query and enqueues jobs.

The query streams (pymongo fetches it in batches); each chunk of due items becomes one Redis
pipeline of lease claims, one ``insert_many`` of ledger documents and one message per new job.
An item whose job is still queued or running holds its lease and is skipped, so the cost of a
dispatch grows with the due items, not with all items.
"""

import logging
from collections.abc import Iterable
from datetime import timedelta
from itertools import batched
from typing import Any, Literal, TypedDict

from bson import ObjectId
from celery import shared_task

from mwap import metrics
from mwap.enqueue import JobRequest, enqueue
from mwap.ledger import now
from mwap.store import Store
from worker.app import publisher
from worker.base import Services, services_of

logger = logging.getLogger(__name__)


def _due_or_never(field: str, cutoff: object) -> list[dict[str, Any]]:
    return [{field: None}, {field: {"$lt": cutoff}}]


ARCHIVED = {"archived": True}


def archived_tenants(services: Services) -> list[ObjectId]:
    """Ids of archived tenants (seed ``archived: true``): their integrations get no jobs."""
    tenants = Store(services.db).global_collection("tenants")
    return [doc["_id"] for doc in tenants.find(ARCHIVED, {"_id": 1})]


def due_integrations(services: Services, job_type: str) -> dict[str, Any]:
    """The indexed query of integrations due for ``job_type`` now (seed status ``active`` only).

    Health: never checked by the platform (``mwapTasks.healthCheckedAt`` unset, so a new
    integration is checked on the next tick) or ``health.lastCheck`` older than the interval.
    Refresh: a refresh token, and expiring within the look-ahead, or not refreshed (since it was
    created) for the idle maximum; a failing refresh waits out its cooldown.
    """
    settings = services.settings
    moment = now()
    if job_type == "integration.health_check":
        cutoff = moment - timedelta(seconds=settings.health_check_interval)
        return {
            "status": "active",
            "$or": [{"mwapTasks.healthCheckedAt": None}, *_due_or_never("health.lastCheck", cutoff)],
        }
    if job_type == "integration.sync_files":
        cutoff = moment - timedelta(seconds=settings.sync_interval)
        return {"status": "active", "$or": _due_or_never("mwapTasks.lastSyncAt", cutoff)}
    if job_type == "integration.refresh_token":
        expiring = moment + timedelta(seconds=settings.token_refresh_lookahead)
        idle = moment - timedelta(seconds=settings.token_refresh_max_age)
        return {
            "status": "active",
            "authData.refreshToken": {"$type": "string"},
            "$or": [
                {"authData.expiresAt": {"$lt": expiring}},
                {"mwapTasks.lastRefreshAt": {"$lt": idle}},
                {"mwapTasks.lastRefreshAt": None, "createdAt": {"$lt": idle}},
            ],
            # Residual filter on the few due ones: a failing refresh waits out its cooldown.
            "mwapTasks.refreshCooldownUntil": {"$not": {"$gt": moment}},
        }
    raise ValueError(f"no due query for {job_type}")


def dispatch(
    services: Services, app: Any, job_type: str, items: Iterable[dict[str, Any]], subject: str
) -> dict[str, int]:
    """Enqueue ``job_type`` for each item (``_id`` and ``tenantId``), chunk by chunk."""
    settings = services.settings
    publish = publisher(app)
    due = created = 0
    for chunk in batched(items, settings.dispatch_chunk_size, strict=False):
        requests = []
        for item in chunk:
            tenant_id = item["tenantId"] if subject == "integrationId" else item["_id"]
            if not isinstance(tenant_id, ObjectId):
                logger.warning("skipping %s with no ObjectId tenant id: _id=%s", job_type, item.get("_id"))
                continue
            requests.append(JobRequest(job_type, tenant_id, {subject: str(item["_id"])}))
        due += len(requests)
        results = enqueue(
            services.db, services.redis, publish, requests, lease_ttl=settings.broker_visibility_timeout
        )
        created += sum(1 for result in results if result.created)
    metrics.scheduler_dispatch(job_type, created)
    logger.info(
        "dispatched %s: %d due, %d enqueued, %d already queued or running",
        job_type,
        due,
        created,
        due - created,
    )
    return {"due": due, "enqueued": created}


def dispatch_integrations(services: Services, app: Any, job_type: str) -> dict[str, int]:
    integrations = Store(services.db).unscoped("cloudIntegrations")
    query = due_integrations(services, job_type)
    archived = archived_tenants(services)
    if archived:
        query["tenantId"] = {"$nin": archived}
    cursor = integrations.find(
        query, {"_id": 1, "tenantId": 1}, batch_size=services.settings.dispatch_chunk_size
    )
    return dispatch(services, app, job_type, cursor, "integrationId")


def dispatch_tenants(services: Services, app: Any, job_type: str) -> dict[str, int]:
    tenants = Store(services.db).global_collection("tenants")
    cursor = tenants.find(
        {"archived": {"$ne": True}}, {"_id": 1}, batch_size=services.settings.dispatch_chunk_size
    )
    return dispatch(services, app, job_type, cursor, "tenantId")


# Dispatcher task names: "dispatch.<job type>". They are scheduler plumbing, not jobs: no ledger
# documents of their own (each job they create has one), and an expired tick is simply dropped.
class _DispatchOptions(TypedDict):
    bind: Literal[True]
    acks_late: bool
    ignore_result: bool


_DISPATCH_OPTIONS: _DispatchOptions = {"bind": True, "acks_late": True, "ignore_result": True}


@shared_task(name="dispatch.integration.health_check", **_DISPATCH_OPTIONS)
def dispatch_health_checks(self: Any) -> dict[str, int]:
    return dispatch_integrations(services_of(self.app), self.app, "integration.health_check")


@shared_task(name="dispatch.integration.refresh_token", **_DISPATCH_OPTIONS)
def dispatch_token_refreshes(self: Any) -> dict[str, int]:
    return dispatch_integrations(services_of(self.app), self.app, "integration.refresh_token")


@shared_task(name="dispatch.integration.sync_files", **_DISPATCH_OPTIONS)
def dispatch_syncs(self: Any) -> dict[str, int]:
    return dispatch_integrations(services_of(self.app), self.app, "integration.sync_files")


@shared_task(name="dispatch.tenant.aggregate_usage", **_DISPATCH_OPTIONS)
def dispatch_aggregations(self: Any) -> dict[str, int]:
    return dispatch_tenants(services_of(self.app), self.app, "tenant.aggregate_usage")


@shared_task(name="dispatch.tenant.apply_retention", **_DISPATCH_OPTIONS)
def dispatch_retention(self: Any) -> dict[str, int]:
    return dispatch_tenants(services_of(self.app), self.app, "tenant.apply_retention")
