"""tenant.aggregate_usage (idempotent rollups) and tenant.apply_retention (by tenant setting, dry run)."""

from datetime import timedelta

import factories
import pytest
from pymongo.database import Database

from mwap import ledger, usage
from mwap.ledger import now
from tasks import analytics
from worker.base import Services

pytestmark = pytest.mark.usefixtures("worker")


def add_jobs(db: Database, tenant_id: str, specs: list[tuple[str, str, int]], *, at) -> None:
    docs = []
    for job_type, status, written in specs:
        doc = ledger.new_job(job_type, tenant_id=tenant_id, queue="default")
        doc.update(
            status=status, createdAt=at, finishedAt=at, result={"written": written} if written else None
        )
        docs.append(doc)
    db["jobs"].insert_many(docs)


def test_aggregation_is_idempotent_and_counts_the_day(
    services: Services, db: Database, ring, tenant_id: str
) -> None:
    moment = now()
    yesterday = moment - timedelta(days=1)
    add_jobs(
        db,
        tenant_id,
        [
            ("integration.sync_files", "succeeded", 5),
            ("integration.sync_files", "succeeded", 7),
            ("integration.sync_files", "failed", 0),
            ("integration.health_check", "succeeded", 0),
        ],
        at=moment,
    )
    add_jobs(db, tenant_id, [("integration.health_check", "failed", 0)], at=yesterday)
    usage.bump(services.redis, usage.API_REQUESTS, tenant_id, 3)
    usage.bump(services.redis, usage.PROVIDER_REQUESTS, tenant_id, 11)
    factories.integration(db, ring, tenant_id)

    job = factories.run_tenant_job(services, "tenant.aggregate_usage", tenant_id)
    assert job["status"] == "succeeded", job["error"]
    today_id = f"{tenant_id}:{moment.date().isoformat()}"
    today = db["usageDaily"].find_one({"_id": today_id})
    assert today["jobs"]["integration_sync_files"] == {"succeeded": 2, "failed": 1}
    assert today["filesSynced"] == 12
    assert today["apiRequests"] == 3
    assert today["providerRequests"] == 11
    assert today["integrationsByHealth"] == {"unknown": 1}
    days = analytics.window({}, moment.date())
    # The aggregation job itself is in the window: re-run once it is final, then twice more.
    analytics.aggregate(services, tenant_id, days)
    before = list(db["usageDaily"].find({"tenantId": tenant_id}, {"updatedAt": 0}).sort("_id"))
    assert len(before) == 2
    assert before[0]["jobs"] == {"integration_health_check": {"failed": 1}}
    analytics.aggregate(services, tenant_id, days)
    after = list(db["usageDaily"].find({"tenantId": tenant_id}, {"updatedAt": 0}).sort("_id"))
    assert after == before


def test_retention_by_tenant_setting_with_dry_run(services: Services, db: Database, ring) -> None:
    strict = factories.tenant(db, retentionDays=7)["_id"]
    lenient = factories.tenant(db, retentionDays=365)["_id"]
    moment = now()
    old, recent = moment - timedelta(days=30), moment - timedelta(days=1)
    for tenant_id in (strict, lenient):
        db["auditLogs"].insert_many(
            [
                {"_id": factories.uid("a"), "tenantId": tenant_id, "action": "x", "createdAt": old},
                {"_id": factories.uid("a"), "tenantId": tenant_id, "action": "x", "createdAt": recent},
            ]
        )
        db["virtualFiles"].insert_many(
            [
                {
                    "_id": factories.uid("f"),
                    "tenantId": tenant_id,
                    "integrationId": "i",
                    "providerFileId": factories.uid("p"),
                    "deletedAt": moment - timedelta(days=90),
                },
                {
                    "_id": factories.uid("f"),
                    "tenantId": tenant_id,
                    "integrationId": "i",
                    "providerFileId": factories.uid("p"),
                    "deletedAt": moment - timedelta(days=2),
                },
                {
                    "_id": factories.uid("f"),
                    "tenantId": tenant_id,
                    "integrationId": "i",
                    "providerFileId": factories.uid("p"),
                    "deletedAt": None,
                },
            ]
        )
        add_jobs(db, tenant_id, [("system.echo", "succeeded", 0)], at=moment - timedelta(days=60))
        add_jobs(db, tenant_id, [("system.echo", "succeeded", 0)], at=recent)

    dry = factories.run_tenant_job(services, "tenant.apply_retention", strict, dryRun=True)
    assert dry["status"] == "succeeded", dry["error"]
    # Old ledger jobs may already be gone: the TTL index on finishedAt removes them on its own.
    assert dry["result"]["wouldRemove"] | {"jobs": 0} == {"auditLogs": 1, "jobs": 0, "virtualFiles": 1}
    assert db["auditLogs"].count_documents({"tenantId": strict, "action": "x"}) == 2  # nothing deleted

    real = factories.run_tenant_job(services, "tenant.apply_retention", strict)
    assert real["result"]["removed"] | {"jobs": 0} == {"auditLogs": 1, "jobs": 0, "virtualFiles": 1}
    old_finished = {
        "tenantId": strict,
        "type": "system.echo",
        "finishedAt": {"$lt": moment - timedelta(days=31)},
    }
    assert db["jobs"].count_documents(old_finished) == 0
    assert db["jobs"].count_documents({"tenantId": strict, "type": "system.echo"}) == 1
    assert db["auditLogs"].count_documents({"tenantId": strict, "action": "x"}) == 1
    assert db["virtualFiles"].count_documents({"tenantId": strict}) == 2
    assert db["auditLogs"].count_documents({"tenantId": strict, "action": "retention.applied"}) == 1
    # The other tenant keeps everything its longer retention allows.
    assert db["auditLogs"].count_documents({"tenantId": lenient, "action": "x"}) == 2
    lenient_run = factories.run_tenant_job(services, "tenant.apply_retention", lenient)
    assert lenient_run["result"]["removed"] | {"jobs": 0} == {"auditLogs": 0, "jobs": 0, "virtualFiles": 1}
