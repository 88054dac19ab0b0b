"""``tenant.aggregate_usage``: per tenant per day rollups into ``usageDaily``.

Each day's document is computed whole and written with one upsert keyed by (tenant, day), so
re-running a window gives the same documents. Snapshot figures (storage used, integrations by
health) describe "now" and are written only into today's document; past days keep theirs.
"""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from celery import shared_task

from mwap import usage
from mwap.ledger import now
from mwap.store import Store
from worker.base import Job, JobTask, Services


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def window(params: dict[str, Any], today: date) -> list[date]:
    start = date.fromisoformat(params["from"]) if params.get("from") else today - timedelta(days=1)
    end = date.fromisoformat(params["to"]) if params.get("to") else today
    end = min(end, today)
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def aggregate(services: Services, tenant_id: str, days: list[date]) -> list[dict[str, Any]]:
    """Compute and upsert the ``usageDaily`` documents of ``days``; returns them."""
    if not days:
        return []
    scope = Store(services.db).tenant(tenant_id)
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
                    {"$match": {"deletedAt": None, "isFolder": False}},
                    {"$group": {"_id": None, "size": {"$sum": "$size"}}},
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
        doc_id = f"{tenant_id}:{day.isoformat()}"
        operations.append(({"_id": doc_id}, update, True))
        documents.append({"_id": doc_id, "tenantId": tenant_id, **fields})
    scope["usageDaily"].bulk_update(operations)
    return documents


@shared_task(bind=True, base=JobTask, name="tenant.aggregate_usage")
def aggregate_usage(self: JobTask, job: Job) -> dict[str, Any]:
    days = window(job.params, now().date())
    documents = aggregate(self.services(), job.tenant_id, days)
    return {"days": [d["_id"].split(":")[-1] for d in documents]}
