"""The base class of every job task: the message carries a job id, the ledger follows the job."""

import contextlib
import functools
import logging
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pymongo.errors
from celery import Celery, Task
from celery.exceptions import Reject, WorkerLostError
from celery.worker.request import Request
from pymongo.database import Database
from redis import Redis
from redis import exceptions as redis_exceptions

from mwap import jobtypes, leases, ledger, logs
from mwap.connections import mongo_db, redis_client
from mwap.crypto import KeyRing
from mwap.ids import is_oid, oid
from mwap.settings import Settings
from mwap.store import TenantBoundaryError
from worker.app import publisher, settings_of
from worker.delivery import delivery_of

logger = logging.getLogger(__name__)

# A job that keeps killing its worker is redelivered this many times, then dead-lettered.
MAX_UNFINISHED_DELIVERIES = 3
# Job ids are 24-hex ObjectIds; a longer argument is no job id (and never reaches a query).
MAX_JOB_ID_CHARS = 64


@dataclass(frozen=True, slots=True)
class Job:
    """What a task body gets: the job as the ledger holds it."""

    id: str
    type: str
    tenant_id: str | None
    subject: dict[str, str]
    params: dict[str, Any]
    attempts: int
    created_at: datetime
    lease_key: str | None = None

    @property
    def tenant(self) -> str:
        """The tenant of a tenant-, integration- or project-scoped job (they always have one)."""
        if self.tenant_id is None:
            raise TenantBoundaryError("a tenant id (ObjectId) is required")
        return self.tenant_id

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> "Job":
        return cls(
            id=doc["_id"],
            type=doc["type"],
            tenant_id=doc.get("tenantId"),
            subject=doc.get("subject") or {},
            params=doc.get("params") or {},
            attempts=doc["attempts"],
            created_at=doc["createdAt"],
            lease_key=doc.get("leaseKey"),
        )


@dataclass(frozen=True, slots=True)
class Services:
    """What a job's logic needs from its process: settings, MongoDB, Redis, the key ring."""

    settings: Settings
    db: Database
    redis: Redis
    ring: KeyRing


@functools.cache
def _ring(encryption_keys: str, legacy_password: str | None = None) -> KeyRing:
    return KeyRing.parse(encryption_keys, legacy_password=legacy_password)


def key_ring(settings: Settings) -> KeyRing:
    """The process's parsed key ring (parsed once per distinct pair of settings)."""
    return _ring(settings.encryption_keys.get_secret_value(), settings.legacy_password())


def services_of(app: Celery) -> Services:
    """The Services of this process for a Celery app built by ``worker.app``."""
    settings = settings_of(app)
    return Services(settings, mongo_db(settings), redis_client(settings), key_ring(settings))


# MongoDB or Redis unreachable: a job meeting these is retried, never failed for them.
INFRA_ERRORS: tuple[type[Exception], ...] = (
    pymongo.errors.ConnectionFailure,
    redis_exceptions.ConnectionError,
    redis_exceptions.TimeoutError,
)


@contextlib.contextmanager
def _tolerating_outage(hook: str, job_id: str) -> Iterator[None]:
    try:
        yield
    except INFRA_ERRORS as error:
        logger.warning(
            "%s of job %s could not reach storage (%s); the reconciler will finish it", hook, job_id, error
        )


class PoisonJobError(Exception):
    """A job whose deliveries keep ending without an outcome (its worker dies every time)."""


# Delete the execution lock only if the dead pool process still holds it (owner "host:pid:tag").
_RELEASE_IF_HELD_BY = """
local holder = redis.call('get', KEYS[1])
if holder and string.sub(holder, 1, string.len(ARGV[1])) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class JobRequest(Request):
    """A delivery as the worker's main process sees it.

    When the pool process running the job dies (SIGKILL, OOM), the message is requeued
    (``task_reject_on_worker_lost``), but the execution lock the dead process held would make the
    redelivery wait out its expiry (``task_time_limit`` + 30 s). The main process knows that
    process is gone, so it releases the lock first.
    """

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        exc = getattr(exc_info.exception, "exc", exc_info.exception)  # unwrap ExceptionWithTraceback
        if isinstance(exc, WorkerLostError | SystemExit | KeyboardInterrupt) and self.worker_pid:
            with _tolerating_outage("release after worker lost", self.id):
                redis_client(settings_of(self.task.app)).eval(
                    _RELEASE_IF_HELD_BY, 1, f"mwap:exec:{self.id}", f"{self.hostname}:{self.worker_pid}:"
                )
        return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


# A tenant's own cap on running jobs (``settings.maxConcurrentJobs``, a platform addition to the
# seed's tenant document), read at most once per TENANT_POLICY_TTL seconds per worker process.
TENANT_POLICY_TTL = 30.0
MAX_TENANT_CONCURRENCY = 1000
_concurrency_cache: dict[str, tuple[float, int | None]] = {}


def _tenant_concurrency(db: Database, tenant_id: Any) -> int | None:
    """The tenant's ``settings.maxConcurrentJobs`` if it is an integer in 1..1000, else None."""
    key = str(tenant_id)
    moment = time.monotonic()
    cached = _concurrency_cache.get(key)
    if cached is not None and cached[0] > moment:
        return cached[1]
    if not is_oid(tenant_id):
        return None
    tenant = db["tenants"].find_one({"_id": oid(tenant_id)}, {"settings.maxConcurrentJobs": 1}) or {}
    value = (tenant.get("settings") or {}).get("maxConcurrentJobs")
    valid = type(value) is int and 1 <= value <= MAX_TENANT_CONCURRENCY
    if len(_concurrency_cache) > 10_000:  # bounded: when full, stale and fresh entries go wholesale
        _concurrency_cache.clear()
    _concurrency_cache[key] = (moment + TENANT_POLICY_TTL, value if valid else None)
    return value if valid else None


class JobTask(Task):
    """Runs ``run(job: Job)`` for a message whose only argument is the job id.

    ``__call__`` marks the job running in the ledger (or skips a job that is already final, so a
    redelivered message does nothing twice); the hooks record success, retry and failure.
    """

    acks_late = True
    ignore_result = True
    Request = "worker.base:JobRequest"  # by name, as Celery's own default is given
    typing = False  # the message carries the id; run() receives the Job built from it

    def db(self) -> Database:
        return mongo_db(settings_of(self.app))

    def services(self) -> Services:
        """Settings, MongoDB, Redis and the key ring of this process, for the job's logic."""
        return services_of(self.app)

    def backoff(self, error: BaseException) -> float:
        """Seconds before the next attempt: the provider's Retry-After, else exponential with jitter.

        Capped below the broker's visibility timeout, or Redis would redeliver the waiting message.
        """
        settings = settings_of(self.app)
        cap = settings.broker_visibility_timeout * 0.8
        wanted = getattr(error, "retry_after", None)
        if wanted is None:
            step = min(cap, 5 * 2**self.request.retries)
            wanted = step / 2 + random.uniform(0, step / 2)  # noqa: S311 - jitter, not crypto
        # At least a second: the retry must not overtake this delivery's release of the job.
        return max(1.0, min(float(wanted), cap))

    def continue_later(self, job: Job, *, params: dict[str, Any]) -> str:
        """Enqueue this job's continuation (same type and subject), handing it this job's lease."""
        settings = settings_of(self.app)
        job_type = jobtypes.JOB_TYPES[job.type]
        draft = ledger.new_job(
            job.type, tenant_id=job.tenant_id, subject=job.subject, params=params, queue=job_type.queue.value
        )
        draft["continues"] = job.id
        if job.lease_key:
            draft["leaseKey"] = job.lease_key
            leases.take_over(
                redis_client(settings),
                job.lease_key,
                job.id,
                draft["_id"],
                settings.broker_visibility_timeout,
            )
            delivery_of(self.request).lease_key = None  # handed over: this job's end must not release it
        self.db()[ledger.COLLECTION].insert_one(draft)
        publisher(self.app)(job.type, draft["_id"], job_type.queue.value, {})
        return draft["_id"]

    def _take_tenant_slot(self, doc: dict[str, Any]) -> bool:
        """Fairness: at most ``tenant_max_running_jobs`` running jobs per tenant across workers, or
        the tenant's own ``settings.maxConcurrentJobs`` when its document has a valid one."""
        tenant_id = doc.get("tenantId")
        if tenant_id is None:
            return True
        settings = settings_of(self.app)
        limit = _tenant_concurrency(self.db(), tenant_id) or settings.tenant_max_running_jobs
        slot = delivery_of(self.request).slot = leases.slot_key("tenant-running", tenant_id)
        return leases.acquire_slot(
            redis_client(settings),
            slot,
            doc["_id"],
            limit=limit,
            ttl=settings.task_time_limit + 60,
        )

    def _release_tenant_slot(self, job_id: str) -> None:
        slot = delivery_of(self.request).slot
        if slot:
            leases.release_slot(redis_client(settings_of(self.app)), slot, job_id)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        delivery = delivery_of(self.request)
        delivery.skip = True
        if kwargs or len(args) != 1:
            # A forged message of another shape: never let it reach a ledger job (see on_failure).
            logger.error("refused a %s delivery: it must carry exactly one job id", self.name)
            raise Reject("the message must carry exactly one job id", requeue=False)
        (job_id,) = args
        try:
            return self._execute(job_id)
        except INFRA_ERRORS as error:
            # MongoDB or Redis is unreachable: not the job's fault. Try again later; if even the
            # re-publish fails, the ledger still says the job is open and the reconciler resends it.
            delivery.skip = True
            logger.warning("job %s: infrastructure unavailable (%s); retrying", job_id, type(error).__name__)
            raise self.retry(exc=error, countdown=self.backoff(error), max_retries=None) from None

    def _refuse_foreign(self, job_id: Any) -> None:
        """Reject a delivery that does not name a ledger job of this task's type.

        The broker does not say who sent a message: anyone who can publish to it (a Flower user,
        a host with the Redis password) could send ``integration.sync_files`` carrying the id of
        another job, or an operator expression instead of an id. Such a delivery is rejected
        (dropped, not requeued) before anything runs or is locked, and the ledger job is left as it
        is: the job's own message still runs it, and a forged one cannot fail someone's job.
        A job id the ledger does not hold goes on (``ledger.start`` finds nothing to do).
        """
        if not isinstance(job_id, str) or len(job_id) > MAX_JOB_ID_CHARS:
            logger.error("refused a %s delivery: its argument is not a job id", self.name)
            raise Reject("the message's argument is not a job id", requeue=False)
        doc = self.db()[ledger.COLLECTION].find_one({"_id": job_id}, {"type": 1})
        if doc is not None and doc.get("type") != self.name:
            logger.error(
                "refused a %s delivery for job %s, a %s job: the message does not match the ledger",
                self.name,
                job_id,
                doc.get("type"),
            )
            raise Reject(f"job {job_id} is not a {self.name} job", requeue=False)

    def _execute(self, job_id: str) -> Any:
        self._refuse_foreign(job_id)
        request = self.request
        delivery = delivery_of(request)
        settings = settings_of(self.app)
        redis = redis_client(settings)
        # One execution of a job at a time, even if its message was delivered twice (a broker
        # restore, or the reconciler's resend racing a slow worker).
        owner = f"{request.hostname}:{os.getpid()}:{(request.delivery_info or {}).get('delivery_tag', '')}"
        exec_key = delivery.exec_key = f"mwap:exec:{job_id}"
        delivery.exec_owner = owner
        if not redis.set(exec_key, owner, nx=True, ex=settings.task_time_limit + 30):
            delivery.exec_key = None
            return self._requeue(
                job_id, countdown=min(60.0, settings.task_time_limit / 4), why="already executing"
            )
        doc = ledger.start(self.db(), job_id, worker=request.hostname or "unknown")
        if doc is None:
            logger.info("job %s is final or unknown; nothing to do", job_id)
            return None
        logs.bind_job(doc)
        if not self._take_tenant_slot(doc):
            # The tenant has its share of workers busy: step aside for other tenants' jobs.
            ledger.defer(self.db(), job_id)
            return self._requeue(job_id, countdown=random.uniform(1, 5), why="tenant at its running-job cap")  # noqa: S311
        delivery.skip = False
        delivery.started_at = doc["startedAt"]
        delivery.lease_key = doc.get("leaseKey")
        unfinished = doc["attempts"] - 1 - len(doc.get("retries") or [])
        if unfinished > MAX_UNFINISHED_DELIVERIES:
            raise PoisonJobError(
                f"delivered {unfinished} times without finishing (its worker died each time); dead-lettered"
            )
        return self.run(Job.from_document(doc))

    def _requeue(self, job_id: str, *, countdown: float, why: str) -> None:
        """Send the job's message again for later and finish this delivery without an outcome."""
        queue = (self.request.delivery_info or {}).get("routing_key") or jobtypes.JOB_TYPES[
            self.name
        ].queue.value
        self.apply_async(args=(job_id,), task_id=job_id, countdown=countdown, queue=queue)
        logger.info("job %s put back for %.0fs: %s", job_id, countdown, why)

    def _started_at(self) -> datetime | None:
        return delivery_of(self.request).started_at

    def after_return(  # noqa: PLR0917 - Celery's hook signature
        self, status: str, retval: Any, task_id: str, args: tuple, kwargs: dict, einfo: Any
    ) -> None:
        self._let_go(task_id, args)

    def _let_go(self, task_id: str, args: tuple) -> None:
        """Release what this delivery held: its tenant slot and the job's execution lock.

        Called from after_return, and from on_retry, since Celery skips after_return on a retry.
        """
        with _tolerating_outage("release", task_id):
            if args:
                self._release_tenant_slot(args[0])
            delivery = delivery_of(self.request)
            exec_key, exec_owner = delivery.exec_key, delivery.exec_owner
            if exec_key and exec_owner:
                delivery.exec_key = None
                leases.release(redis_client(settings_of(self.app)), exec_key, exec_owner)

    def _release_lease(self, job_id: str) -> None:
        """The job is final: free its (type, subject) lease so the next run can be enqueued."""
        lease_key = delivery_of(self.request).lease_key
        if lease_key:
            leases.release(redis_client(settings_of(self.app)), lease_key, job_id)

    # The hooks write the ledger. If MongoDB or Redis is down at that moment, the job stays open
    # in the ledger and the reconciler (system.reconcile) brings it to an end later.

    def on_success(self, retval: Any, task_id: str, args: tuple, kwargs: dict) -> None:
        if delivery_of(self.request).skip:
            return
        with _tolerating_outage("on_success", task_id):
            ledger.succeed(self.db(), args[0], retval, started_at=self._started_at())
            self._release_lease(args[0])

    def on_retry(self, exc: BaseException, task_id: str, args: tuple, kwargs: dict, einfo: Any) -> None:
        self._let_go(task_id, args)
        if isinstance(exc, INFRA_ERRORS) and delivery_of(self.request).skip:
            return  # never started: nothing for the ledger to say
        with _tolerating_outage("on_retry", task_id):
            ledger.retrying(self.db(), args[0], ledger.error_summary(exc))

    def on_failure(self, exc: BaseException, task_id: str, args: tuple, kwargs: dict, einfo: Any) -> None:
        if len(args) != 1 or kwargs or isinstance(exc, INFRA_ERRORS):
            return  # left open in the ledger on purpose: the reconciler resends it
        with _tolerating_outage("on_failure", task_id):
            ledger.fail(self.db(), args[0], ledger.error_summary(exc), started_at=self._started_at())
            self._release_lease(args[0])
