"""Creating and sending jobs: the one path used by the API, the dispatchers, the CLI, a job's
continuation, a worker's requeue and the reconciler's resends.

For each request: take the job's lease (at most one open job per type and subject), write the
ledger documents in one ``insert_many``, then publish one message per job carrying only its id
(several in one Redis round trip when the publisher can batch them). Beside it, for people reading
the broker (Flower, Celery's logs), the message shows who the job is for (``about_job``): its type,
tenant and subject ids, never its params.
A request whose lease is held gets the job that holds it instead of a new one. Messages are sent
by one ``Publisher`` (``worker.app.publisher``), always after the ledger write they point to.
"""

import ast
import contextlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from bson import ObjectId
from pymongo.database import Database
from redis import Redis

from mwap import jobtypes, leases, ledger, notify
from mwap.jobtypes import JobType, Scope
from mwap.store import Document


class Publisher(Protocol):
    """Sends one job's message: by task name, the job id its only argument and its task id.

    ``about`` (``about_job(job)``) is shown as the message's keyword arguments (Celery's ``kwargsrepr``)
    and never passed to the task. A publisher may also have ``batch()`` (``BatchingPublisher``):
    ``enqueue`` then sends its messages together when they are all written, in one round trip.
    """

    def __call__(
        self,
        task_name: str,
        job_id: str,
        queue: str,
        headers: dict[str, str],
        *,
        countdown: float | None = None,
        about: Mapping[str, str] | None = None,
    ) -> None: ...


class BatchingPublisher(Publisher, Protocol):
    """A publisher that can hold its messages and send them together (``worker.app.publisher``)."""

    def batch(self) -> AbstractContextManager[None]: ...


# The subject ids a message shows (the ledger's ``subject`` may only ever hold ids).
ABOUT_SUBJECT_KEYS = ("integrationId", "projectId", "tenantId")
_ABOUT_KEYS = frozenset({"type", *ABOUT_SUBJECT_KEYS})
# A kwargsrepr longer than this is none of ours (ours: a type and three 24-hex ids).
_ABOUT_REPR_MAX_CHARS = 512


def about_job(job: Mapping[str, Any]) -> dict[str, str]:
    """Who a ledger job is for, as its message shows it: its type, tenant id and subject ids.

    Ids only, so nothing secret; Flower finds a tenant's jobs with ``kwargs:tenantId=<id>``.
    """
    shown = {"type": str(job["type"])}
    if job.get("tenantId") is not None:
        shown["tenantId"] = str(job["tenantId"])
    subject = job.get("subject") or {}
    for key in ABOUT_SUBJECT_KEYS:
        if subject.get(key) is not None:
            shown.setdefault(key, str(subject[key]))  # the ledger's tenantId wins
    return shown


def about_from_repr(text: object) -> dict[str, str] | None:
    """``about_job`` back from a message's ``kwargsrepr`` (a worker's requeue shows what it was sent);
    None for anything else, so a forged message's text is never carried on."""
    if not isinstance(text, str) or len(text) > _ABOUT_REPR_MAX_CHARS:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    if (
        not isinstance(value, dict)
        or "type" not in value
        or not set(value) <= _ABOUT_KEYS
        or not all(isinstance(v, str) for v in value.values())
    ):
        return None
    shown: dict[str, str] = dict(value)
    return shown


def _type(name: str) -> JobType:
    job_type = jobtypes.get(name)
    if job_type is None:
        raise KeyError(f"unknown job type {name!r}")
    return job_type


@dataclass(frozen=True, slots=True)
class JobRequest:
    type: str
    tenant_id: ObjectId | str | None
    subject: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    idempotency_key: str | None = None

    @property
    def lease_key(self) -> str | None:
        """The job's lease: its tenant, type and subject (the tenant first, so equal subject ids of
        two tenants never share one)."""
        job_type = _type(self.type)
        kind = job_type.lease_kind or job_type.name
        tenant = str(self.tenant_id) if self.tenant_id is not None else None
        if job_type.scope in {Scope.INTEGRATION, Scope.PROJECT}:
            # A project sync names the integration sync's lease: one sync of an integration at a time.
            return leases.key(kind, self.subject["integrationId"], tenant)
        if job_type.scope is Scope.TENANT:
            return leases.key(kind, self.subject["tenantId"], tenant)
        return None


@dataclass(frozen=True, slots=True)
class Enqueued:
    job: dict[str, Any]
    created: bool  # False: an open job of the same type and subject already existed


def enqueue(
    db: Database[Document],
    redis: Redis,
    publish: Publisher,
    requests: Sequence[JobRequest],
    *,
    lease_ttl: int,
) -> list[Enqueued]:
    """Create (or find the open twin of) each requested job; results in request order.

    A request repeating an earlier one's (type, subject) in the same call gets that job.
    """
    first: dict[str, int] = {}
    unique: list[JobRequest] = []
    slots: list[tuple[int, bool]] = []  # per request: its index in unique, and whether a repeat
    for request in requests:
        lease_key = request.lease_key
        if lease_key is not None and lease_key in first:
            slots.append((first[lease_key], True))
            continue
        if lease_key is not None:
            first[lease_key] = len(unique)
        slots.append((len(unique), False))
        unique.append(request)
    outcomes = _enqueue_unique(db, redis, publish, unique, lease_ttl=lease_ttl)
    return [Enqueued(outcomes[i].job, created=False) if repeat else outcomes[i] for i, repeat in slots]


def _enqueue_unique(
    db: Database[Document],
    redis: Redis,
    publish: Publisher,
    requests: Sequence[JobRequest],
    *,
    lease_ttl: int,
) -> list[Enqueued]:
    drafts = [
        ledger.new_job(
            r.type,
            tenant_id=r.tenant_id,
            subject=r.subject,
            params=r.params,
            queue=_type(r.type).queue.value,
            request_id=r.request_id,
        )
        for r in requests
    ]
    for draft, request in zip(drafts, requests, strict=True):
        if request.lease_key:
            draft["leaseKey"] = request.lease_key
        if request.idempotency_key:
            draft["idempotencyKey"] = request.idempotency_key

    existing, found = _claim_leases(db, redis, requests, drafts, lease_ttl)

    new = [draft for i, draft in enumerate(drafts) if i not in existing]
    if new:
        try:
            db[ledger.COLLECTION].insert_many(new, ordered=False)
        except Exception:
            for draft in new:
                if "leaseKey" in draft:
                    leases.release(redis, draft["leaseKey"], draft["_id"])
            raise
        # Publish only after the ledger write: the worker must find the document it is sent.
        _publish_all(db, redis, publish, new)

    results = []
    for i, draft in enumerate(drafts):
        if i in existing:
            results.append(Enqueued(found.get(existing[i]) or draft, created=False))
        else:
            results.append(Enqueued(draft, created=True))
    return results


def _publish_all(
    db: Database[Document], redis: Redis, publish: Publisher, drafts: list[dict[str, Any]]
) -> None:
    """One message per draft: several are held and sent together when the publisher can batch,
    else one by one. Jobs whose message may not have gone out are failed and their leases freed
    (``_abandon``)."""

    def send(draft: dict[str, Any]) -> None:
        headers = {"requestId": draft["requestId"]} if draft.get("requestId") else {}
        publish(draft["type"], draft["_id"], draft["queue"], headers, about=about_job(draft))

    batch = getattr(publish, "batch", None)
    if batch is None or len(drafts) == 1:
        for n, draft in enumerate(drafts):
            try:
                send(draft)
            except Exception as error:
                _abandon(db, redis, drafts[n:], error)
                raise
        return
    try:
        with batch():
            for draft in drafts:
                send(draft)
    except Exception as error:
        # None of them, or an unknown part, went out: all are failed (a message that did go out
        # finds its job final and does nothing).
        _abandon(db, redis, drafts, error)
        raise


def _claim_leases(
    db: Database[Document],
    redis: Redis,
    requests: Sequence[JobRequest],
    drafts: list[dict[str, Any]],
    lease_ttl: int,
) -> tuple[dict[int, str], dict[str, dict[str, Any]]]:
    """Take each request's lease for its draft; returns {request index: open job id} for the
    requests whose lease another open job holds, and those jobs' documents."""
    leased = [(i, r.lease_key) for i, r in enumerate(requests) if r.lease_key]
    taken = leases.acquire_many(redis, [(k, drafts[i]["_id"]) for i, k in leased], lease_ttl)
    existing: dict[int, str] = {}  # request index -> job id holding its lease
    blocked = [(i, k) for (i, k), ok in zip(leased, taken, strict=True) if not ok]
    if blocked:
        holder_ids = leases.holders(redis, [k for _, k in blocked])
        open_jobs = {
            doc["_id"]: doc
            for doc in db[ledger.COLLECTION].find(
                {"_id": {"$in": [h for h in holder_ids if h]}, "status": {"$in": ledger.OPEN}}
            )
        }
        for (i, lease_key), holder in zip(blocked, holder_ids, strict=True):
            if holder is not None and holder in open_jobs:
                existing[i] = holder
            elif not leases.take_over(redis, lease_key, holder or "", drafts[i]["_id"], lease_ttl):
                # Someone else took it between our reads: their job is the open one.
                existing[i] = leases.holders(redis, [lease_key])[0] or ""
        found = {
            doc["_id"]: doc
            for doc in db[ledger.COLLECTION].find({"_id": {"$in": list(set(existing.values()))}})
        }
    else:
        found = {}
    return existing, found


def _abandon(db: Database[Document], redis: Redis, drafts: list[dict[str, Any]], error: Exception) -> None:
    """Jobs that could not be published are failed (the caller answers 503) and their leases freed."""
    for draft in drafts:
        ledger.fail(
            db,
            draft["_id"],
            {"type": "NotEnqueued", "message": f"broker unavailable: {type(error).__name__}"},
        )
        if "leaseKey" in draft:
            with contextlib.suppress(Exception):  # the broker being down is why we are here
                leases.release(redis, draft["leaseKey"], draft["_id"])


def cancel_integration_jobs(
    db: Database[Document], redis: Redis, integration_id: ObjectId | str, *, reason: str
) -> int:
    """Seed ``cancelJobsForIntegration``: every open job about the integration becomes ``cancelled``
    and its lease is freed. A job a worker is running stops at its next checkpoint (sync) or
    finds itself final when it ends; a queued message finds it final and does nothing."""
    cancelled = ledger.cancel(db, {"subject.integrationId": str(integration_id)}, reason=reason)
    for job in cancelled:
        if job.get("leaseKey"):
            leases.release(redis, job["leaseKey"], job["_id"])
        notify.job_ended(redis, job["_id"], ledger.Status.CANCELLED.value)
    return len(cancelled)


@dataclass(frozen=True, slots=True)
class OpenJob:
    """What a continuation needs of the job it continues."""

    id: str
    type: str
    tenant_id: ObjectId | str | None
    subject: dict[str, str]
    lease_key: str | None


def continue_job(
    db: Database[Document],
    redis: Redis,
    publish: Publisher,
    job: OpenJob,
    *,
    params: dict[str, Any],
    lease_ttl: int,
) -> str:
    """Enqueue the continuation of a running job (same type and subject, new params), handing it
    the job's lease so no other job of that subject slips in between; returns its id."""
    job_type = _type(job.type)
    draft = ledger.new_job(
        job.type, tenant_id=job.tenant_id, subject=job.subject, params=params, queue=job_type.queue.value
    )
    draft["continues"] = job.id
    if job.lease_key:
        draft["leaseKey"] = job.lease_key
        leases.take_over(redis, job.lease_key, job.id, draft["_id"], lease_ttl)
    db[ledger.COLLECTION].insert_one(draft)
    publish(job.type, draft["_id"], job_type.queue.value, {}, about=about_job(draft))
    return str(draft["_id"])


def resend(
    publish: Publisher,
    job_type: str,
    job_id: str,
    queue: str,
    *,
    countdown: float | None = None,
    about: Mapping[str, str] | None = None,
) -> None:
    """Send an existing ledger job's message again (a worker's requeue, the reconciler's resend),
    showing ``about`` as the first message did. Safe to repeat: a job runs once at a time and a
    message for a final job does nothing."""
    publish(job_type, job_id, queue, {}, countdown=countdown, about=about)
