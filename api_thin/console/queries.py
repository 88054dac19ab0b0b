"""What the console's pages read: every list a keyset page from an indexed query, never a scan.

Jobs are listed newest first on (createdAt, _id), which the ledger's indexes serve for each filter
the pages offer: ``created_id`` (all), ``tenant_created`` (a tenant), ``status_created_id`` (a
status: dead letters, stuck jobs), ``type_created_id`` (a type), ``tenant_status_created`` and
``type_status_created`` (two filters), ``subject_integration_status`` (an integration's jobs).
Integrations are listed by ``_id`` within a tenant (``tenantId_1``) or a status (``status_1``).
The counts on the overview are bounded by a time window on an indexed field.
"""

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.collection import Collection
from redbeat.decoder import RedBeatJSONDecoder
from redis import Redis

from api_thin import pagination
from mwap import broker, ledger, liveness
from mwap.ids import oid
from mwap.ledger import now
from mwap.store import Document

PAGE_SIZE = 50
REDBEAT_PREFIX = "mwap:redbeat:"


@dataclass(frozen=True, slots=True)
class JobFilter:
    """The job lists' filters, each optional; ids are 24-hex strings checked by the caller."""

    tenant_id: str | None = None
    type: str | None = None
    statuses: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    integration_id: str | None = None

    def query(self) -> dict[str, Any]:
        find: dict[str, Any] = {}
        if self.tenant_id:
            find["tenantId"] = oid(self.tenant_id)
        if self.type:
            find["type"] = self.type
        if len(self.statuses) == 1:
            find["status"] = self.statuses[0]
        elif self.statuses:
            find["status"] = {"$in": list(self.statuses)}
        created: dict[str, datetime] = {}
        if self.created_from:
            created["$gte"] = self.created_from
        if self.created_to:
            created["$lt"] = self.created_to
        if created:
            find["createdAt"] = created
        if self.integration_id:
            find["subject.integrationId"] = self.integration_id
        return find


@dataclass(slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def newest_jobs(jobs: Collection[Document], find: dict[str, Any], cursor: str | None, limit: int) -> Page:
    """A page of ``find``'s jobs, newest first, starting after ``cursor`` (``api_thin.pagination``)."""
    query = dict(find)
    if cursor:
        position = pagination.decode(cursor, "jobs", {"t": int, "id": str})
        after = pagination.from_millis(position["t"])
        query = {
            "$and": [
                find,
                {
                    "$or": [
                        {"createdAt": {"$lt": after}},
                        {"createdAt": after, "_id": {"$lt": position["id"]}},
                    ]
                },
            ]
        }
    docs = list(jobs.find(query).sort([("createdAt", -1), ("_id", -1)]).limit(limit + 1))
    page = Page(docs[:limit])
    if len(docs) > limit:
        last = page.items[-1]
        page.next_cursor = pagination.encode(
            "jobs", t=pagination.to_millis(last["createdAt"]), id=last["_id"]
        )
    return page


def stuck_filter(stale_after: int, moment: datetime | None = None) -> JobFilter:
    """The reconciler's view: open jobs created more than ``stale_after`` seconds ago."""
    cutoff = (moment or now()) - timedelta(seconds=stale_after)
    return JobFilter(statuses=tuple(ledger.OPEN), created_to=cutoff)


def job_counts(jobs: Collection[Document], since: datetime) -> dict[str, int]:
    """Jobs created since ``since``, per status (one indexed count each)."""
    return {
        status.value: jobs.count_documents({"status": status.value, "createdAt": {"$gte": since}})
        for status in ledger.Status
    }


def failing_tenants(jobs: Collection[Document], since: datetime, limit: int = 10) -> list[dict[str, Any]]:
    """The tenants with the most failed jobs since ``since``: tenant id, count, last failure, and
    the job types that failed."""
    pipeline: list[dict[str, Any]] = [
        {"$match": {"status": ledger.Status.FAILED.value, "createdAt": {"$gte": since}}},
        {
            "$group": {
                "_id": "$tenantId",
                "failed": {"$sum": 1},
                "last": {"$max": "$createdAt"},
                "types": {"$addToSet": "$type"},
            }
        },
        {"$sort": {"failed": -1, "last": -1}},
        {"$limit": limit},
    ]
    return list(jobs.aggregate(pipeline))


def names(collection: Collection[Document], ids: set[Any], field_name: str = "name") -> dict[str, str]:
    """``field_name`` of the documents with these ids (tenants, providers), by 24-hex id, in one query."""
    wanted = sorted({oid(i) for i in ids if i is not None and ObjectId.is_valid(str(i))})
    if not wanted:
        return {}
    found = collection.find({"_id": {"$in": wanted}}, {field_name: 1})
    return {str(doc["_id"]): str(doc.get(field_name) or "") for doc in found}


@dataclass(frozen=True, slots=True)
class IntegrationFilter:
    tenant_id: str | None = None
    status: str | None = None

    def query(self) -> dict[str, Any]:
        find: dict[str, Any] = {}
        if self.tenant_id:
            find["tenantId"] = oid(self.tenant_id)
        if self.status:
            find["status"] = self.status
        return find


# What the list shows of an integration: never its tokens (authData holds only their expiry here).
INTEGRATION_FIELDS = {
    "tenantId": 1,
    "providerId": 1,
    "status": 1,
    "health": 1,
    "authData.expiresAt": 1,
    "userInfo.email": 1,
    "mwapTasks.lastSyncAt": 1,
    "mwapTasks.lastRefreshAt": 1,
    "mwapTasks.healthCheckedAt": 1,
    "mwapTasks.statusReason": 1,
    "mwapTasks.authFailedAt": 1,
    "mwapTasks.syncTotals": 1,
    "createdAt": 1,
}


def integrations_page(
    integrations: Collection[Document], find: dict[str, Any], cursor: str | None, limit: int
) -> Page:
    """A page of integrations by id."""
    query = dict(find)
    if cursor:
        position = pagination.decode(cursor, "integrations", {"id": str})
        if not ObjectId.is_valid(position["id"]):
            pagination.decode("", "integrations", {})  # the same 400 as any other bad cursor
        query["_id"] = {"$gt": ObjectId(position["id"])}
    docs = list(integrations.find(query, INTEGRATION_FIELDS).sort("_id", 1).limit(limit + 1))
    page = Page(docs[:limit])
    if len(docs) > limit:
        page.next_cursor = pagination.encode("integrations", id=str(page.items[-1]["_id"]))
    return page


@dataclass(frozen=True, slots=True)
class QueueRow:
    name: str
    depth: int
    oldest_age: float | None


def queues(redis: Redis) -> tuple[list[QueueRow], int]:
    """Each queue's waiting messages and its oldest's age (seconds), and how many messages workers
    hold unacknowledged (running, or waiting for their ETA) across queues."""
    stats = broker.queue_stats(redis, broker.all_queues())
    moment = time.time()
    rows = [QueueRow(name, stat.depth, stat.oldest_age(moment)) for name, stat in stats.items()]
    return rows, int(redis.hlen(broker.UNACKED_KEY))


@dataclass(frozen=True, slots=True)
class BeatEntry:
    name: str
    task: str
    last_run_at: datetime | None
    total_run_count: int
    due_at: datetime | None


@dataclass(frozen=True, slots=True)
class BeatState:
    leader: str | None
    leader_ttl: int | None
    lock_held: bool
    entries: list[BeatEntry]


def beat(redis: Redis) -> BeatState:
    """The beat leader (as it last said) and each RedBeat entry's last run and next due time,
    read from RedBeat's keys (``redbeat.schedulers``) in two round trips."""
    schedule_key = REDBEAT_PREFIX + ":schedule"
    pipe = redis.pipeline(transaction=False)
    pipe.get(liveness.BEAT_LEADER_KEY)
    pipe.ttl(liveness.BEAT_LEADER_KEY)
    pipe.exists(REDBEAT_PREFIX + ":lock")
    pipe.zrange(schedule_key, 0, -1, withscores=True)
    leader, leader_ttl, lock_held, scheduled = pipe.execute()
    pipe = redis.pipeline(transaction=False)
    for key, _score in scheduled:
        pipe.hmget(key, ["definition", "meta"])
    entries = []
    for (key, score), (definition, meta) in zip(scheduled, pipe.execute(), strict=True):
        spec = json.loads(definition, cls=RedBeatJSONDecoder) if definition else {}
        state = json.loads(meta, cls=RedBeatJSONDecoder) if meta else {}
        name = spec.get("name") or key.decode().removeprefix(REDBEAT_PREFIX)
        entries.append(
            BeatEntry(
                name=str(name),
                task=str(spec.get("task") or ""),
                last_run_at=state.get("last_run_at"),
                total_run_count=int(state.get("total_run_count") or 0),
                due_at=datetime.fromtimestamp(score, now().tzinfo) if score else None,
            )
        )
    entries.sort(key=lambda entry: entry.name)
    return BeatState(
        leader=leader.decode() if leader else None,
        leader_ttl=leader_ttl if leader_ttl and leader_ttl > 0 else None,
        lock_held=bool(lock_held),
        entries=entries,
    )


def worker_alive(redis: Redis, run: str | None) -> bool | None:
    """Whether the worker run that last started a job still beats; None when unknown."""
    if not run:
        return None
    return bool(redis.exists(liveness.alive_key(run)))
