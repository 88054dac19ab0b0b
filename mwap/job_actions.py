"""Cancelling and re-running one job: the one path of the API (``POST /v1/jobs/{id}/cancel|rerun``)
and of the operator console, each caller naming who acts for the audit trail.

Each call makes its change through the ledger's conditional update (``ledger.cancel_one``) or
``mwap.enqueue`` and then writes one audit entry, or changes nothing and audits nothing: a job
that has already ended is not cancelled again (``Cancellation.changed`` False), and a rerun that
cannot be made is refused (``Refused``: missing, still open, or its type, params or subject gone).
With a tenant id only that tenant's jobs are found: another tenant's job, and a system job (which
has no tenant), are "no such job" like a missing one. Without one (the admin key, an operator)
any job is.
"""

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pymongo.collection import Collection
from pymongo.database import Database
from redis import Redis, RedisError

from mwap import audit, jobtypes, leases, ledger, notify
from mwap.enqueue import Enqueued, JobRequest, Publisher, enqueue
from mwap.ids import is_oid, oid
from mwap.jobtypes import JobType, Scope
from mwap.store import Document, Store, TenantCollection

logger = logging.getLogger(__name__)

CANCELLED = "job.cancelled"  # audit actions, past tense like the others (``webhook.deleted``)
RERUN = "job.rerun"
CANCEL_REASON = "cancelled on request"
# Held while one rerun of a job is enqueued and linked (a few round trips); a dead caller's expires.
RERUN_LOCK_TTL = 30
RERUN_LOCK_KIND = "job.rerun"

# The subject ids a job of each scope names (``mwap.enqueue.JobRequest.lease_key`` reads them).
_SUBJECT_KEYS = {
    Scope.SYSTEM: frozenset(),
    Scope.TENANT: frozenset({"tenantId"}),
    Scope.INTEGRATION: frozenset({"integrationId"}),
    Scope.PROJECT: frozenset({"projectId", "integrationId"}),
}


class Refused(Exception):
    """A job action that was refused; nothing changed. ``code`` names why, stably (the API's
    problem slug); ``job`` is the job as it was read, when the caller may see it."""

    code = "conflict"

    def __init__(self, message: str, job: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.job = job


class NoSuchJob(Refused):
    """No such job for this caller (missing, another tenant's, or a system job for a tenant)."""

    code = "not-found"


class JobOpen(Refused):
    """Rerun: the job is still queued, running or retrying."""

    code = "job-open"


class UnknownJobType(Refused):
    """Rerun: the job's type no longer exists."""

    code = "job-type-removed"


class JobTypeChanged(Refused):
    """Rerun: the job's params or subject no longer fit its type."""

    code = "job-type-changed"


class SubjectGone(Refused):
    """Rerun: the job's tenant, integration or project no longer exists (or is archived)."""

    code = "job-subject-gone"


class RerunInProgress(Refused):
    """Rerun: another rerun of this job is being enqueued right now; ask again in a moment."""

    code = "rerun-in-progress"


@dataclass(frozen=True, slots=True)
class Cancellation:
    """A cancel's outcome: the job as it is now, and whether this call cancelled it (False: it had
    already ended, and nothing changed)."""

    job: dict[str, Any]
    changed: bool


def cancel_job(
    db: Database[Document],
    redis: Redis,
    job_id: str,
    *,
    tenant_id: str | None,
    actor: dict[str, str],
    reason: str = CANCEL_REASON,
) -> Cancellation:
    """Cancel an open job (queued, running or retrying): the ledger, its lease, its end notice and
    an audit entry. A job that has already ended is left as it is (``changed`` False, no audit
    entry); ``NoSuchJob`` when the caller has no such job.

    A queued message of the job then finds it final and does nothing; a worker running it finds it
    final at its next ledger write (a sync at its next checkpoint) and drops its outcome.
    """
    if not _is_job_id(job_id):
        raise NoSuchJob("no such job")
    job = ledger.cancel_one(db, job_id, tenant_id=tenant_id, reason=reason)
    if job is None:
        current = ledger.get(db, job_id, tenant_id=tenant_id)
        if current is None:
            raise NoSuchJob("no such job")
        return Cancellation(current, changed=False)
    audit.record(
        db,
        tenant_id=job["tenantId"],
        action=CANCELLED,
        target_type="job",
        target_id=job["_id"],
        actor=actor,
        details={"type": job["type"], "subject": job.get("subject") or {}},
    )
    try:
        if job.get("leaseKey"):
            leases.release(redis, job["leaseKey"], job["_id"])
        notify.job_ended(redis, job["_id"], ledger.Status.CANCELLED.value, job)
    except RedisError as error:
        # The ledger is the truth and is written: a lease whose job has ended is taken over by the
        # next enqueue of its subject, and a waiting request answers at its deadline.
        logger.warning("job %s cancelled, but its lease or end notice failed: %r", job["_id"], error)
    return Cancellation(job, changed=True)


def rerun_job(
    db: Database[Document],
    redis: Redis,
    publish: Publisher,
    job_id: str,
    *,
    tenant_id: str | None,
    actor: dict[str, str],
    lease_ttl: int,
    request_id: str | None = None,
) -> Enqueued:
    """Enqueue a final job (succeeded, failed or cancelled) again as a new job: same type, tenant,
    subject and params, with ``rerunOf`` naming it; audited. Refused (``Refused``) for a job that
    is missing, still open, or whose type, params or subject no longer hold.

    Asked twice, it answers the first rerun while that one is open (``created`` False), and an
    open job of the same type and subject likewise (``mwap.enqueue``'s lease): nothing is audited
    then, since nothing was enqueued.
    """
    if not _is_job_id(job_id):
        raise NoSuchJob("no such job")
    old = ledger.get(db, job_id, tenant_id=tenant_id)
    if old is None:
        raise NoSuchJob("no such job")
    if not ledger.is_final(old):
        raise JobOpen(f"the job has not ended: {old['status']}", old)
    job_type = jobtypes.get(old["type"])
    if job_type is None:
        raise UnknownJobType(f"job type {old['type']} no longer exists", old)
    params = _current_params(job_type, old)
    _check_subject(db, job_type, old)

    lock = leases.key(RERUN_LOCK_KIND, job_id, old["tenantId"])
    owner = secrets.token_hex(12)
    if not leases.acquire(redis, lock, owner, RERUN_LOCK_TTL):
        raise RerunInProgress("a rerun of this job is being enqueued", old)
    try:
        jobs = _jobs(db, old["tenantId"])
        previous = _open_rerun(jobs, job_id)
        if previous is not None:
            return Enqueued(previous, created=False)
        request = JobRequest(
            old["type"], old["tenantId"], dict(old.get("subject") or {}), params, request_id=request_id
        )
        [outcome] = enqueue(db, redis, publish, [request], lease_ttl=lease_ttl)
        if not outcome.created:
            return outcome  # the open job of that type and subject: not a rerun of this one
        new_id = outcome.job["_id"]
        # JobRequest has no field for the link: one write on each side, after the enqueue.
        jobs.update_one({"_id": new_id}, {"$set": {"rerunOf": job_id}})
        jobs.update_one({"_id": job_id}, {"$set": {"lastRerun": new_id}})
        audit.record(
            db,
            tenant_id=old["tenantId"],
            action=RERUN,
            target_type="job",
            target_id=job_id,
            actor=actor,
            details={"newJobId": new_id, "type": old["type"]},
        )
        return Enqueued({**outcome.job, "rerunOf": job_id}, created=True)
    finally:
        try:
            leases.release(redis, lock, owner)
        except RedisError as error:  # it expires by itself; never hide what happened above
            logger.warning("rerun lock of job %s not released: %r", job_id, error)


def _is_job_id(job_id: object) -> bool:
    # Ledger ids are 24-hex strings; anything else (an operator document, a list) never reaches a query.
    return isinstance(job_id, str) and is_oid(job_id)


def _jobs(db: Database[Document], tenant_id: Any) -> TenantCollection | Collection[Document]:
    """The ledger as the job's tenant's (a system job has none: the named cross-tenant door)."""
    store = Store(db)
    return (
        store.tenant(tenant_id)[ledger.COLLECTION]
        if tenant_id is not None
        else store.unscoped(ledger.COLLECTION)
    )


def _open_rerun(jobs: TenantCollection | Collection[Document], job_id: str) -> dict[str, Any] | None:
    """The job's latest rerun, while it is still open."""
    old = jobs.find_one({"_id": job_id}, {"lastRerun": 1})
    if old is None or not old.get("lastRerun"):
        return None
    return jobs.find_one({"_id": old["lastRerun"], "status": {"$in": ledger.OPEN}})


def _current_params(job_type: JobType, old: dict[str, Any]) -> dict[str, Any]:
    """The job's params as its type's model reads them today; refused when they no longer fit."""
    try:
        return job_type.validate_params(old.get("params"))
    except ValidationError:
        raise JobTypeChanged(f"the job's params no longer fit {job_type.name}", old) from None


def _check_subject(db: Database[Document], job_type: JobType, old: dict[str, Any]) -> None:
    """The job's subject still fits its type and still exists, as the enqueue endpoints require."""
    subject = old.get("subject") or {}
    tenant_id = old.get("tenantId")
    if set(subject) != _SUBJECT_KEYS[job_type.scope] or (tenant_id is None) != (
        job_type.scope is Scope.SYSTEM
    ):
        raise JobTypeChanged(f"the job's subject no longer fits {job_type.name}", old)
    if tenant_id is None:
        return
    store = Store(db)
    tenant = store.global_collection("tenants").find_one(
        {"_id": tenant_id, "archived": {"$ne": True}}, {"_id": 1}
    )
    if tenant is None:
        raise SubjectGone("the job's tenant no longer exists", old)
    scope = store.tenant(tenant_id)
    for key, collection in (("integrationId", "cloudIntegrations"), ("projectId", "projects")):
        if key not in subject:
            continue
        found = is_oid(subject[key]) and scope[collection].find_one({"_id": oid(subject[key])}, {"_id": 1})
        if not found:
            raise SubjectGone(f"the job's {key.removesuffix('Id')} no longer exists", old)
