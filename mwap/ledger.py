"""The job ledger: one ``jobs`` document per job, whose status follows the job.

queued -> running -> succeeded | failed, with running -> retrying -> running for retries; any open
job becomes ``cancelled`` when its integration is removed or disabled (``cancel``), or when the API
or an operator cancels it (``cancel_one``, through ``mwap.job_actions``). The
ledger is the source of truth for results (Celery keeps none) and survives a broker that loses
its data; every transition is a single conditional update, so a redelivered message cannot move
a finished job back.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.database import Database

from mwap.ids import oid
from mwap.store import Document

COLLECTION = "jobs"


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
OPEN = [Status.QUEUED.value, Status.RUNNING.value, Status.RETRYING.value]


def is_final(doc: dict[str, Any]) -> bool:
    """The ledger document's job has ended (succeeded, failed or cancelled)."""
    return doc.get("status") in FINAL


def now() -> datetime:
    # MongoDB stores milliseconds; truncating here keeps what we hold equal to what we read back.
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def new_job_id() -> str:
    """A job's id, also its Celery task id: an ObjectId's 24-hex form, like every id the API shows."""
    return str(ObjectId())


def new_job(
    job_type: str,
    *,
    tenant_id: ObjectId | str | None,
    subject: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    queue: str,
    request_id: str | None = None,
    job_id: str | None = None,
) -> dict[str, Any]:
    """A ledger document for a job about to be enqueued."""
    return {
        "_id": job_id or new_job_id(),
        "type": job_type,
        "tenantId": None if tenant_id is None else oid(tenant_id),
        "subject": subject or {},
        "params": params or {},
        "queue": queue,
        "status": Status.QUEUED.value,
        "attempts": 0,
        "retries": [],
        "createdAt": now(),
        "startedAt": None,
        "finishedAt": None,
        "durationMs": None,
        "result": None,
        "error": None,
        "requestId": request_id,
    }


def start(
    db: Database[Document],
    job_id: str,
    *,
    worker: str,
    job_type: str | None = None,
    worker_run: str | None = None,
    exec_owner: str | None = None,
) -> dict[str, Any] | None:
    """Mark a job running and count the attempt; None when it is already final or unknown, or
    (with ``job_type``) of another type, in which case it is left exactly as it was.

    ``running`` is accepted as a starting state: a message redelivered after its worker died
    finds its job still running and must be allowed to take it over. The same write records who
    runs it: the worker's node name, its run (``workerRun``, whose heartbeat says whether it lives:
    ``mwap.liveness``) and the execution lock's owner (``execOwner``, ``host:pid:delivery tag``),
    so a dead worker's jobs are found, their locks freed and their held messages dropped
    (tasks/dead_workers.py). Both are overwritten, with None if unknown, by every start.
    """
    query: dict[str, Any] = {"_id": job_id, "status": {"$in": OPEN}}
    if job_type is not None:
        query["type"] = job_type
    return db[COLLECTION].find_one_and_update(
        query,
        {
            "$set": {
                "status": Status.RUNNING.value,
                "startedAt": now(),
                "worker": worker,
                "workerRun": worker_run,
                "execOwner": exec_owner,
            },
            "$inc": {"attempts": 1},
        },
        return_document=ReturnDocument.AFTER,
    )


def _finish(
    db: Database[Document],
    job_id: str,
    status: Status,
    fields: dict[str, Any],
    started_at: datetime | None,
    *,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The job's final write, in one findAndModify: its final document, or None when it was
    already final (the document goes out in the end notice, ``mwap.notify``). ``extra``: more
    update operators for the same write (a webhook outbox entry, ``mwap.webhooks.outbox_push``)."""
    finished = now()
    duration = int((finished - started_at).total_seconds() * 1000) if started_at else None
    return db[COLLECTION].find_one_and_update(
        {"_id": job_id, "status": {"$in": OPEN}},
        {
            "$set": {"status": status.value, "finishedAt": finished, "durationMs": duration, **fields},
            **(extra or {}),
        },
        return_document=ReturnDocument.AFTER,
    )


def succeed(
    db: Database[Document],
    job_id: str,
    result: dict[str, Any] | None,
    *,
    started_at: datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Record success with the job's result summary: the final document, None when the job was
    already final."""
    return _finish(db, job_id, Status.SUCCEEDED, {"result": result, "error": None}, started_at, extra=extra)


def fail(
    db: Database[Document],
    job_id: str,
    error: dict[str, Any],
    *,
    started_at: datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Record final failure: the final document, None when the job was already final."""
    return _finish(db, job_id, Status.FAILED, {"error": error}, started_at, extra=extra)


def retrying(db: Database[Document], job_id: str, error: dict[str, Any]) -> None:
    """Record that an attempt failed and the job will run again."""
    entry = {"at": now(), "error": error}
    db[COLLECTION].update_one(
        {"_id": job_id, "status": {"$in": OPEN}},
        {"$set": {"status": Status.RETRYING.value, "error": error}, "$push": {"retries": entry}},
    )


def defer(db: Database[Document], job_id: str) -> None:
    """Put a started job back to queued without counting the attempt (it never ran its body)."""
    db[COLLECTION].update_one(
        {"_id": job_id, "status": Status.RUNNING.value},
        {
            "$set": {"status": Status.QUEUED.value, "startedAt": None},
            "$inc": {"attempts": -1, "deferrals": 1},
        },
    )


def cancel(db: Database[Document], query: dict[str, Any], *, reason: str) -> list[dict[str, Any]]:
    """Mark every open job matching ``query`` cancelled; returns them (``_id``, ``leaseKey``).

    A cancelled job that a worker already holds finds itself final at its next ledger write and
    the worker's task drops it (a queued message finds it final and does nothing).
    """
    found = list(db[COLLECTION].find({**query, "status": {"$in": OPEN}}, {"_id": 1, "leaseKey": 1}))
    if not found:
        return []
    db[COLLECTION].update_many(
        {"_id": {"$in": [job["_id"] for job in found]}, "status": {"$in": OPEN}},
        {"$set": _cancelled(reason)},
    )
    return found


def cancel_one(
    db: Database[Document], job_id: str, *, tenant_id: ObjectId | str | None, reason: str
) -> dict[str, Any] | None:
    """Cancel one open job (with a tenant id, only that tenant's) in one conditional update: its
    document after, or None when it is unknown, another tenant's or already final (then nothing
    changed). Of concurrent callers exactly one gets the document, so what follows a cancellation
    (freeing its lease, its end notice, its audit entry) happens once."""
    query: dict[str, Any] = {"_id": job_id, "status": {"$in": OPEN}}
    if tenant_id is not None:
        query["tenantId"] = oid(tenant_id)
    return db[COLLECTION].find_one_and_update(
        query, {"$set": _cancelled(reason)}, return_document=ReturnDocument.AFTER
    )


def _cancelled(reason: str) -> dict[str, Any]:
    """What a cancellation writes (``cancel``, ``cancel_one``)."""
    return {
        "status": Status.CANCELLED.value,
        "finishedAt": now(),
        "error": {"type": "Cancelled", "message": reason[:500]},
    }


def get(
    db: Database[Document],
    job_id: str,
    *,
    tenant_id: ObjectId | str | None,
    projection: dict[str, int] | None = None,
) -> dict[str, Any] | None:
    """A job by id; with a tenant id, only that tenant's job (None for another tenant's)."""
    query: dict[str, Any] = {"_id": job_id}
    if tenant_id is not None:
        query["tenantId"] = oid(tenant_id)
    return db[COLLECTION].find_one(query, projection)


def error_summary(exc: BaseException, *, limit: int = 2000) -> dict[str, Any]:
    """What the ledger keeps of an exception: its class and message, scrubbed of secrets (before it
    is cut, so no secret is cut short of the length its pattern needs) and bounded in size.

    URLs, hosts and key ids stay: the admin reads them here. A tenant key reads the message
    through ``redact.public_text`` (``api_thin.jobs``)."""
    from mwap import redact  # noqa: PLC0415 - stdlib-only module; imported where it is used

    return {"type": type(exc).__name__, "message": redact.redact_text(str(exc))[:limit]}
