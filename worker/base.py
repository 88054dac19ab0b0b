"""The base class of every job task: the message carries a job id, the ledger follows the job."""

import functools
import logging
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import Task
from pymongo.database import Database
from redis import Redis

from mwap import jobtypes, leases, ledger, logs
from mwap.connections import mongo_db, redis_client
from mwap.crypto import KeyRing
from mwap.settings import Settings
from worker.app import publisher

logger = logging.getLogger(__name__)

# A job that keeps killing its worker is redelivered this many times, then dead-lettered.
MAX_UNFINISHED_DELIVERIES = 3


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
def _ring(encryption_keys: str) -> KeyRing:
    return KeyRing.parse(encryption_keys)


def key_ring(settings: Settings) -> KeyRing:
    """The process's parsed key ring (parsed once per distinct setting)."""
    return _ring(settings.encryption_keys.get_secret_value())


def services_of(app: Any) -> Services:
    """The Services of this process for a Celery app built by ``worker.app``."""
    settings = app.mwap_settings
    return Services(settings, mongo_db(settings), redis_client(settings), key_ring(settings))


class PoisonJobError(Exception):
    """A job whose deliveries keep ending without an outcome (its worker dies every time)."""


class JobTask(Task):
    """Runs ``run(job: Job)`` for a message whose only argument is the job id.

    ``__call__`` marks the job running in the ledger (or skips a job that is already final, so a
    redelivered message does nothing twice); the hooks record success, retry and failure.
    """

    acks_late = True
    ignore_result = True
    typing = False  # the message carries the id; run() receives the Job built from it

    def db(self) -> Database:
        return mongo_db(self.app.mwap_settings)

    def services(self) -> Services:
        """Settings, MongoDB, Redis and the key ring of this process, for the job's logic."""
        return services_of(self.app)

    def backoff(self, error: BaseException) -> float:
        """Seconds before the next attempt: the provider's Retry-After, else exponential with jitter.

        Capped below the broker's visibility timeout, or Redis would redeliver the waiting message.
        """
        settings = self.app.mwap_settings
        cap = settings.broker_visibility_timeout * 0.8
        wanted = getattr(error, "retry_after", None)
        if wanted is None:
            step = min(cap, 5 * 2**self.request.retries)
            wanted = step / 2 + random.uniform(0, step / 2)  # noqa: S311 - jitter, not crypto
        return min(float(wanted), cap)

    def continue_later(self, job: Job, *, params: dict[str, Any]) -> str:
        """Enqueue this job's continuation (same type and subject), handing it this job's lease."""
        settings = self.app.mwap_settings
        job_type = jobtypes.JOB_TYPES[job.type]
        draft = ledger.new_job(
            job.type, tenant_id=job.tenant_id, subject=job.subject, params=params, queue=job_type.queue.value
        )
        draft["continues"] = job.id
        if job.lease_key:
            draft["leaseKey"] = job.lease_key
            leases.take_over(
                redis_client(settings), job.lease_key, job.id, draft["_id"], settings.broker_visibility_timeout
            )
            self.request.mwap_lease_key = None  # handed over: this job's end must not release it
        self.db()[ledger.COLLECTION].insert_one(draft)
        publisher(self.app)(job.type, draft["_id"], job_type.queue.value, {})
        return draft["_id"]

    def _take_tenant_slot(self, doc: dict[str, Any]) -> bool:
        """Fairness: at most ``tenant_max_running_jobs`` running jobs per tenant across workers."""
        tenant_id = doc.get("tenantId")
        if tenant_id is None:
            return True
        settings = self.app.mwap_settings
        self.request.mwap_slot = leases.slot_key("tenant-running", tenant_id)
        return leases.acquire_slot(
            redis_client(settings),
            self.request.mwap_slot,
            doc["_id"],
            limit=settings.tenant_max_running_jobs,
            ttl=settings.task_time_limit + 60,
        )

    def _release_tenant_slot(self, job_id: str) -> None:
        slot = getattr(self.request, "mwap_slot", None)
        if slot:
            leases.release_slot(redis_client(self.app.mwap_settings), slot, job_id)

    def __call__(self, job_id: str) -> Any:
        request = self.request
        request.mwap_skip = True
        doc = ledger.start(self.db(), job_id, worker=request.hostname or "unknown")
        if doc is None:
            logger.info("job %s is final or unknown; nothing to do", job_id)
            return None
        logs.bind_job(doc)
        if not self._take_tenant_slot(doc):
            # The tenant has its share of workers busy: step aside for other tenants' jobs.
            ledger.defer(self.db(), job_id)
            self.apply_async(args=[job_id], task_id=job_id, countdown=random.uniform(1, 5), queue=doc["queue"])  # noqa: S311
            logger.info("job %s deferred: tenant %s at its running-job cap", job_id, doc["tenantId"])
            return None
        request.mwap_skip = False
        request.mwap_started_at = doc["startedAt"]
        request.mwap_lease_key = doc.get("leaseKey")
        unfinished = doc["attempts"] - 1 - len(doc.get("retries") or [])
        if unfinished > MAX_UNFINISHED_DELIVERIES:
            raise PoisonJobError(
                f"delivered {unfinished} times without finishing (its worker died each time); dead-lettered"
            )
        return self.run(Job.from_document(doc))

    def _started_at(self) -> datetime | None:
        return getattr(self.request, "mwap_started_at", None)

    def after_return(  # noqa: PLR0917 - Celery's hook signature
        self, status: str, retval: Any, task_id: str, args: tuple, kwargs: dict, einfo: Any
    ) -> None:
        if args:
            self._release_tenant_slot(args[0])

    def _release_lease(self, job_id: str) -> None:
        """The job is final: free its (type, subject) lease so the next run can be enqueued."""
        lease_key = getattr(self.request, "mwap_lease_key", None)
        if lease_key:
            leases.release(redis_client(self.app.mwap_settings), lease_key, job_id)

    def on_success(self, retval: Any, task_id: str, args: tuple, kwargs: dict) -> None:
        if getattr(self.request, "mwap_skip", False):
            return
        ledger.succeed(self.db(), args[0], retval, started_at=self._started_at())
        self._release_lease(args[0])

    def on_retry(self, exc: BaseException, task_id: str, args: tuple, kwargs: dict, einfo: Any) -> None:
        ledger.retrying(self.db(), args[0], ledger.error_summary(exc))

    def on_failure(self, exc: BaseException, task_id: str, args: tuple, kwargs: dict, einfo: Any) -> None:
        if not args:
            return
        ledger.fail(self.db(), args[0], ledger.error_summary(exc), started_at=self._started_at())
        self._release_lease(args[0])
