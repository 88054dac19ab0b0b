"""tenant.aggregate_usage (idempotent rollups) and tenant.apply_retention (by tenant setting, dry run)."""

from datetime import timedelta

import factories
import pytest
from bson import ObjectId
from pymongo.database import Database

from mwap import ledger, usage
from mwap.ledger import now
from mwap.services import Services
from tasks import analytics

pytestmark = pytest.mark.usefixtures("worker")


def add_jobs(db: Database, tenant_id: ObjectId, specs: list[tuple[str, str, int]], *, at) -> None:
    docs = []
    for job_type, status, written in specs:
        doc = ledger.new_job(job_type, tenant_id=tenant_id, queue="default")
        doc.update(
            status=status, createdAt=at, finishedAt=at, result={"written": written} if written else None
        )
        docs.append(doc)
    db["jobs"].insert_many(docs)


def test_aggregation_is_idempotent_and_counts_the_day(
    services: Services, db: Database, ring, tenant_id: ObjectId
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
    assert job["tenantId"] == tenant_id
    today = db["usageDaily"].find_one({"tenantId": tenant_id, "day": analytics.day_start(moment.date())})
    assert isinstance(today["_id"], ObjectId)
    assert today["jobs"]["integration_sync_files"] == {"succeeded": 2, "failed": 1}
    assert today["filesSynced"] == 12
    assert today["apiRequests"] == 3
    assert today["providerRequests"] == 11
    assert today["integrationsByHealth"] == {"healthy": 1}
    days = analytics.window({}, moment.date())
    # The aggregation job itself is in the window: re-run once it is final, then twice more.
    analytics.aggregate(services, tenant_id, days)
    before = list(db["usageDaily"].find({"tenantId": tenant_id}, {"updatedAt": 0}).sort("day"))
    assert len(before) == 2
    assert before[0]["jobs"] == {"integration_health_check": {"failed": 1}}
    analytics.aggregate(services, tenant_id, days)
    after = list(db["usageDaily"].find({"tenantId": tenant_id}, {"updatedAt": 0}).sort("day"))
    assert after == before  # same documents, same ids: one per (tenant, day)


def member(user_id: str, role: str = "MEMBER") -> dict:
    return {"userId": user_id, "role": role, "addedAt": now(), "addedBy": "auth0|owner"}


def test_usage_job_updates_tenant_and_project_counters(
    services: Services, db: Database, ring, tenant_id: ObjectId
) -> None:
    moment = now()
    long_ago = moment - timedelta(days=10)
    db["tenants"].update_one({"_id": tenant_id}, {"$set": {"metadata.lastActivity": long_ago}})
    alpha = factories.project(
        db,
        tenant_id,
        folderPath="/Alpha",
        members=[member("auth0|owner", "OWNER"), member("auth0|ann"), member("auth0|bob", "DEPUTY")],
        metadata={"fileCount": 99, "totalSize": 99, "lastSync": long_ago},
    )
    beta = factories.project(
        db,
        tenant_id,
        folderPath="/Beta",
        members=[member("auth0|owner", "OWNER"), member("auth0|cy")],
        metadata={"fileCount": 0, "totalSize": 0, "lastSync": moment - timedelta(days=5)},
    )
    archived = factories.project(
        db,
        tenant_id,
        folderPath="/Old",
        archived=True,
        members=[member("auth0|gone")],
        metadata={"fileCount": 7, "totalSize": 700, "lastSync": long_ago},
    )
    last_request = moment - timedelta(hours=1)
    integration = factories.integration(
        db, ring, tenant_id, usage={"totalRequests": 4, "lastRequest": last_request}
    )
    for path, size in (("/Alpha/a.txt", 100), ("/Alpha/b.txt", 250)):
        factories.virtual_file(db, integration, path, projectId=alpha["_id"], size=size)
    factories.virtual_file(
        db, integration, "/Alpha/folder", projectId=alpha["_id"], size=4096, mwapTasks={"isFolder": True}
    )
    factories.virtual_file(db, integration, "/Beta/c.txt", projectId=beta["_id"], size=30)
    factories.virtual_file(db, integration, "/Old/d.txt", projectId=archived["_id"], size=5000)

    job = factories.run_tenant_job(services, "tenant.aggregate_usage", tenant_id)
    assert job["status"] == "succeeded", job["error"]

    projects = {p["_id"]: p["metadata"] for p in db["projects"].find({"tenantId": tenant_id})}
    assert (projects[alpha["_id"]]["fileCount"], projects[alpha["_id"]]["totalSize"]) == (
        2,
        350,
    )  # no folders
    assert (projects[beta["_id"]]["fileCount"], projects[beta["_id"]]["totalSize"]) == (1, 30)
    # An archived project is not counted (nor recounted).
    assert (projects[archived["_id"]]["fileCount"], projects[archived["_id"]]["totalSize"]) == (7, 700)

    tenant = db["tenants"].find_one({"_id": tenant_id})["metadata"]
    assert tenant["totalProjects"] == 2
    assert tenant["totalMembers"] == 4  # owner, ann, bob, cy: distinct users of live projects
    assert tenant["storageUsed"] == 380
    stored_request = db["cloudIntegrations"].find_one({"_id": integration["_id"]})["usage"]["lastRequest"]
    assert tenant["lastActivity"] == stored_request  # the latest of syncs and provider requests
    assert job["result"]["tenant"]["totalProjects"] == 2
    assert job["result"]["tenant"]["storageUsed"] == 380


def test_retention_by_tenant_setting_with_dry_run(services: Services, db: Database, ring) -> None:
    strict = factories.tenant(db, retentionDays=7)["_id"]
    lenient = factories.tenant(db, retentionDays=365)["_id"]
    moment = now()
    ages = {"30d": 30, "8d": 8, "6d": 6, "1d": 1}  # strict keeps 6d and 1d; lenient keeps all
    for tenant_id in (strict, lenient):
        db["auditLogs"].insert_many(
            [
                {
                    "_id": ObjectId(),
                    "tenantId": tenant_id,
                    "action": "x",
                    "details": {"age": name},
                    "createdAt": moment - timedelta(days=days),
                }
                for name, days in ages.items()
            ]
        )
        integration = factories.integration(db, ring, tenant_id)
        for n in range(3):
            factories.virtual_file(db, integration, f"/f{n}.txt", modifiedTime=moment - timedelta(days=400))
        add_jobs(db, tenant_id, [("system.echo", "succeeded", 0)], at=moment - timedelta(days=60))
        add_jobs(db, tenant_id, [("system.echo", "succeeded", 0)], at=moment - timedelta(days=1))

    dry = factories.run_tenant_job(services, "tenant.apply_retention", strict, dryRun=True)
    assert dry["status"] == "succeeded", dry["error"]
    # Old ledger jobs may already be gone: the TTL index on finishedAt removes them on its own.
    assert dry["result"]["wouldRemove"] | {"jobs": 0} == {"auditLogs": 2, "jobs": 0}
    assert db["auditLogs"].count_documents({"tenantId": strict, "action": "x"}) == 4  # nothing deleted

    real = factories.run_tenant_job(services, "tenant.apply_retention", strict)
    assert real["status"] == "succeeded", real["error"]
    assert real["result"]["removed"] | {"jobs": 0} == {"auditLogs": 2, "jobs": 0}
    old_finished = {
        "tenantId": strict,
        "type": "system.echo",
        "finishedAt": {"$lt": moment - timedelta(days=31)},
    }
    assert db["jobs"].count_documents(old_finished) == 0
    assert db["jobs"].count_documents({"tenantId": strict, "type": "system.echo"}) == 1
    kept = {d["details"]["age"] for d in db["auditLogs"].find({"tenantId": strict, "action": "x"})}
    assert kept == {"6d", "1d"}  # older than settings.retentionDays (7) removed
    assert db["virtualFiles"].count_documents({"tenantId": strict}) == 3  # files are the sync's to remove
    assert db["auditLogs"].count_documents({"tenantId": strict, "action": "retention.applied"}) == 1
    # The other tenant keeps everything its longer retention allows.
    assert db["auditLogs"].count_documents({"tenantId": lenient, "action": "x"}) == 4
    lenient_run = factories.run_tenant_job(services, "tenant.apply_retention", lenient)
    assert lenient_run["result"]["removed"] | {"jobs": 0} == {"auditLogs": 0, "jobs": 0}
    assert db["auditLogs"].count_documents({"tenantId": lenient, "action": "x"}) == 4


def test_retention_and_usage_skip_an_archived_tenant(services: Services, db: Database) -> None:
    archived = factories.tenant(db, archived=True, retentionDays=7)["_id"]
    db["auditLogs"].insert_one(
        {"_id": ObjectId(), "tenantId": archived, "action": "x", "createdAt": now() - timedelta(days=30)}
    )
    for job_type in ("tenant.apply_retention", "tenant.aggregate_usage"):
        job = factories.run_tenant_job(services, job_type, archived)
        assert job["status"] == "succeeded", job["error"]
        assert job["result"] == {"skipped": "tenant is archived"}
    assert db["auditLogs"].count_documents({"tenantId": archived, "action": "x"}) == 1
    assert db["usageDaily"].count_documents({"tenantId": archived}) == 0
