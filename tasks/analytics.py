"""``tenant.aggregate_usage``: per tenant per day rollups into ``usageDaily``.

Each day's document is computed whole and written with one upsert keyed by (tenant, day), so
re-running a window gives the same documents. Snapshot figures (storage used, integrations by
health) describe "now" and are written only into today's document; past days keep theirs.
"""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Self

from bson import ObjectId
from pydantic import Field, model_validator

from mwap import usage
from mwap.bson_dates import BsonDate
from mwap.ids import aware, oid
from mwap.jobtypes import JobType, Params, Queue, Schedule, Scope
from mwap.ledger import now
from mwap.services import Services
from tasks.dispatch import live_tenants
from tasks.integrations import Skip, ensure_tenant_live
from worker.base import Job, JobTask, job_task


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def window(params: dict[str, Any], today: date) -> list[date]:
    start = date.fromisoformat(params["from"]) if params.get("from") else today - timedelta(days=1)
    end = date.fromisoformat(params["to"]) if params.get("to") else today
    end = min(end, today)
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def aggregate(services: Services, tenant_id: ObjectId | str, days: list[date]) -> list[dict[str, Any]]:
    """Compute and upsert the ``usageDaily`` documents of ``days``; returns them."""
    if not days:
        return []
    scope = services.store.tenant(tenant_id)
    first, last = day_start(days[0]), day_start(days[-1]) + timedelta(days=1)
    jobs: dict[date, dict[str, dict[str, int]]] = {day: {} for day in days}
    files_synced: dict[date, int] = dict.fromkeys(days, 0)
    for row in scope["jobs"].aggregate(
        [
            {"$match": {"createdAt": {"$gte": first, "$lt": last}}},
            {
                "$group": {
                    "_id": {
                        "day": {"$dateTrunc": {"date": "$createdAt", "unit": "day"}},
                        "type": "$type",
                        "status": "$status",
                    },
                    "count": {"$sum": 1},
                    "written": {"$sum": {"$ifNull": ["$result.written", 0]}},
                }
            },
        ]
    ):
        key = row["_id"]
        day = key["day"].date()
        if day not in jobs:
            continue
        jobs[day].setdefault(key["type"].replace(".", "_"), {})[key["status"]] = row["count"]
        if key["type"] == "integration.sync_files" and key["status"] == "succeeded":
            files_synced[day] += int(row["written"])

    api = usage.read(services.redis, usage.API_REQUESTS, tenant_id, days)
    provider = usage.read(services.redis, usage.PROVIDER_REQUESTS, tenant_id, days)
    today = now().date()
    snapshot: dict[str, Any] = {}
    if today in days:
        storage = list(
            scope["virtualFiles"].aggregate(
                [
                    {"$match": {"mwapTasks.isFolder": {"$ne": True}}},
                    {"$group": {"_id": None, "size": {"$sum": {"$ifNull": ["$size", 0]}}}},
                ]
            )
        )
        by_health = {
            row["_id"] or "unknown": row["count"]
            for row in scope["cloudIntegrations"].aggregate(
                [{"$group": {"_id": "$health.status", "count": {"$sum": 1}}}]
            )
        }
        snapshot = {"storageBytes": storage[0]["size"] if storage else 0, "integrationsByHealth": by_health}

    operations, documents = [], []
    for day in days:
        fields = {
            "day": day_start(day),
            # Job type names hold dots, which MongoDB field names must not: stored with underscores.
            "jobs": jobs[day],
            "apiRequests": api[day],
            "providerRequests": provider[day],
            "filesSynced": files_synced[day],
            "updatedAt": now(),
        }
        update: dict[str, Any] = {"$set": fields}
        if day == today:
            fields.update(snapshot)
        else:
            update["$setOnInsert"] = {"storageBytes": 0, "integrationsByHealth": {}}
        operations.append(({"day": day_start(day)}, update, True))
        documents.append({"tenantId": scope.tenant_id, **fields})
    scope["usageDaily"].bulk_update(operations)
    return documents


def update_seed_counters(services: Services, tenant_id: ObjectId | str) -> dict[str, Any]:
    """Seed 000's counters: every live project's ``metadata.fileCount/totalSize``, and the tenant's
    ``metadata.totalProjects/totalMembers/storageUsed/lastActivity``. (Integrations'
    ``usage.totalRequests/lastRequest`` are counted by every job as it calls the provider.)"""
    scope = services.store.tenant(tenant_id)
    projects = list(scope["projects"].find({"archived": {"$ne": True}}, {"members.userId": 1, "metadata": 1}))
    totals = {
        row["_id"]: row
        for row in scope["virtualFiles"].aggregate(
            [
                {"$match": {"mwapTasks.isFolder": {"$ne": True}}},
                {
                    "$group": {
                        "_id": "$projectId",
                        "count": {"$sum": 1},
                        "size": {"$sum": {"$ifNull": ["$size", 0]}},
                    }
                },
            ]
        )
    }
    updates = []
    for project in projects:
        row = totals.get(project["_id"]) or {"count": 0, "size": 0}
        known = project.get("metadata") or {}
        if known.get("fileCount") != row["count"] or known.get("totalSize") != row["size"]:
            updates.append(
                (
                    {"_id": project["_id"]},
                    {"$set": {"metadata.fileCount": row["count"], "metadata.totalSize": row["size"]}},
                    False,
                )
            )
    scope["projects"].bulk_update(updates)
    activity = [
        moment
        for moment in (
            *((p.get("metadata") or {}).get("lastSync") for p in projects),
            *(
                (doc.get("usage") or {}).get("lastRequest")
                for doc in scope["cloudIntegrations"].find({}, {"usage.lastRequest": 1})
            ),
        )
        if isinstance(moment, datetime)
    ]
    tenant = (
        services.store.global_collection("tenants").find_one(
            {"_id": scope.tenant_id}, {"metadata.lastActivity": 1}
        )
        or {}
    )
    previous = (tenant.get("metadata") or {}).get("lastActivity")
    if isinstance(previous, datetime):
        activity.append(previous)
    counters: dict[str, Any] = {
        "totalProjects": len(projects),
        "totalMembers": len(
            {m.get("userId") for p in projects for m in p.get("members") or [] if m.get("userId")}
        ),
        "storageUsed": sum(
            row["size"] for pid, row in totals.items() if any(p["_id"] == pid for p in projects)
        ),
    }
    if activity:
        counters["lastActivity"] = max(aware(moment) for moment in activity)
    services.store.global_collection("tenants").update_one(
        {"_id": scope.tenant_id}, {"$set": {f"metadata.{name}": value for name, value in counters.items()}}
    )
    return {**counters, "projectsUpdated": len(updates)}


MAX_AGGREGATE_DAYS = 366


class AggregateParams(Params):
    """Days to roll up (UTC dates); default: yesterday and today."""

    start: BsonDate | None = Field(default=None, alias="from")
    end: BsonDate | None = Field(default=None, alias="to")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        # The window the job will roll up: "to" defaults to today, so "from" alone is bounded too.
        end = self.end or datetime.now(UTC).date()
        if self.start and self.start > end:
            raise ValueError("from must not be after to (or today)")
        if self.start and (end - self.start).days > MAX_AGGREGATE_DAYS:
            raise ValueError(f"at most {MAX_AGGREGATE_DAYS} days per job")
        return self


AGGREGATE_USAGE = JobType(
    "tenant.aggregate_usage",
    Scope.TENANT,
    Queue.MAINTENANCE,
    AggregateParams,
    "Daily usage rollups into usageDaily.",
    schedule=Schedule(interval="usage_aggregation_interval", due=live_tenants),
    skip_on=(Skip,),
)


@job_task(AGGREGATE_USAGE)
def aggregate_usage(self: JobTask, job: Job) -> dict[str, Any]:
    services = self.services()
    ensure_tenant_live(services, oid(job.tenant_id))
    days = window(job.params, now().date())
    documents = aggregate(services, job.tenant, days)
    counters = update_seed_counters(services, job.tenant)
    if isinstance(counters.get("lastActivity"), datetime):
        counters["lastActivity"] = counters["lastActivity"].isoformat()
    return {"days": [d["day"].date().isoformat() for d in documents], "tenant": counters}
