"""The base class of every job task: the message carries a job id, the ledger follows the job."""

import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import kombu.exceptions
import pymongo.errors
from celery import Celery, Task, shared_task
from celery.exceptions import Reject, Retry, WorkerLostError
from celery.worker.request import Request
from pymongo.database import Database
from redis import exceptions as redis_exceptions

from mwap import enqueue, jobtypes, leases, ledger, logs, notify, webhooks
from mwap.connections import mongo_db, redis_client
from mwap.ids import is_oid, oid
from mwap.jobtypes import JobType
from mwap.services import Services, services_for
from mwap.store import Store, TenantBoundaryError
from worker import heartbeat
from worker.app import publisher, settings_of
from worker.delivery import Delivery, delivery_of

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
    retries: int = 0  # retries spent, as the ledger counts them (storage outages never count)
    continues: str | None = None  # the job this one continues (``enqueue.continue_job``)

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
            retries=len(doc.get("retries") or []),
            continues=doc.get("continues"),
        )


def services_of(app: Celery) -> Services:
    """The Services of this process for a Celery app built by ``worker.app``."""
    return services_for(settings_of(app))


# MongoDB or Redis unreachable: a job meeting these is retried, never failed for them.
INFRA_ERRORS: tuple[type[Exception], ...] = (
    pymongo.errors.ConnectionFailure,
    redis_exceptions.ConnectionError,
    redis_exceptions.TimeoutError,
)

# What publishing without retries raises when Redis is away (Celery re-raises it as kombu's).
PUBLISH_ERRORS: tuple[type[Exception], ...] = (
    cast(type[Exception], kombu.exceptions.OperationalError),
    *INFRA_ERRORS,
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


class JobRequest(Request):
    """A delivery as the worker's main process sees it.

    When the pool process running the job dies (SIGKILL, OOM), the message is requeued
    (``task_reject_on_worker_lost``), but the execution lock the dead process held would make the
    redelivery wait out its expiry (``leases.exec_ttl``). The main process knows that process is
    gone, so it releases the lock first, if that process (owner ``host:pid:tag``) still holds it.
    """

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        exc = getattr(exc_info.exception, "exc", exc_info.exception)  # unwrap ExceptionWithTraceback
        if isinstance(exc, WorkerLostError | SystemExit | KeyboardInterrupt) and self.worker_pid:
            with _tolerating_outage("release after worker lost", self.id):
                leases.release_if_held_by(
                    redis_client(settings_of(self.task.app)),
                    leases.exec_key(self.id),
                    f"{self.hostname}:{self.worker_pid}:",
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
    tenants = Store(db).global_collection("tenants")
    tenant = tenants.find_one({"_id": oid(tenant_id)}, {"settings.maxConcurrentJobs": 1}) or {}
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
    max_retries = None  # the type's Retry policy decides (see _run_with_policy), not Celery's count
    # Set by @job_task from the type's declaration. A JobTask made without one (a test's) has no
    # policy of its own: its errors fail the job, unless Celery's own task options retry them.
    job_type: JobType | None = None
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
        policy = self.job_type.retry if self.job_type else jobtypes.NO_RETRY
        cap = settings.broker_visibility_timeout * 0.8
        wanted = getattr(error, "retry_after", None)
        if wanted is None:
            step = min(cap, policy.backoff * 2 ** delivery_of(self.request).retries)
            # Half of the step random: retries of many jobs failing together spread out.
            wanted = step / 2 + random.uniform(0, step / 2) if policy.jitter else step  # noqa: S311
        # At least a second: the retry must not overtake this delivery's release of the job.
        return max(1.0, min(float(wanted), cap))

    def retry(self, *args: Any, **options: Any) -> Retry:
        """Celery's retry, its new message showing what this one showed (``argsrepr``,
        ``kwargsrepr``: the job id, whom the job is for). Celery's own would show the arguments'
        tuple and no keyword arguments, and Flower would then list the job as for no one."""
        for key in ("argsrepr", "kwargsrepr"):
            shown = self.request.get(key)
            if isinstance(shown, str) and shown:
                options.setdefault(key, shown)
        return super().retry(*args, **options)

    def continue_later(self, job: Job, *, params: dict[str, Any]) -> str:
        """Enqueue this job's continuation (same type and subject), handing it this job's lease."""
        settings = settings_of(self.app)
        continuation = enqueue.continue_job(
            self.db(),
            redis_client(settings),
            publisher(self.app),
            enqueue.OpenJob(job.id, job.type, job.tenant_id, job.subject, job.lease_key),
            params=params,
            lease_ttl=leases.job_lease_ttl(settings),
        )
        delivery_of(self.request).lease_key = None  # handed over: this job's end must not release it
        return continuation

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
            ttl=leases.slot_ttl(settings),
        )

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

    def _refuse_malformed(self, job_id: Any) -> None:
        """Reject a delivery whose argument is no job id (an operator expression, a huge string)
        before it reaches a lock or a query."""
        if not isinstance(job_id, str) or len(job_id) > MAX_JOB_ID_CHARS:
            logger.error("refused a %s delivery: its argument is not a job id", self.name)
            raise Reject("the message's argument is not a job id", requeue=False)

    def _refuse_foreign(self, job_id: str, delivery: Delivery) -> None:
        """Reject a delivery that names a ledger job of another type.

        The broker does not say who sent a message: anyone who can publish to it (a Flower user,
        a host with the Redis password) could send ``integration.sync_files`` carrying the id of
        another job. ``ledger.start`` only starts a job of this task's type, so such a delivery
        never changes the ledger job; when it started nothing, this reads the job's type and a
        job of another type gets the delivery rejected (dropped, not requeued) with the execution
        lock it took freed at once: the job's own message still runs it, and a forged one cannot
        fail someone's job. A job id the ledger does not hold goes on (nothing to do).
        """
        doc = ledger.get(self.db(), job_id, tenant_id=None, projection={"type": 1})
        if doc is None or doc.get("type") == self.name:
            return
        exec_key, exec_owner = delivery.exec_key, delivery.exec_owner
        if exec_key and exec_owner:
            delivery.exec_key = None  # a rejected delivery gets no after_return: free it here
            leases.release(redis_client(settings_of(self.app)), exec_key, exec_owner)
        logger.error(
            "refused a %s delivery for job %s, a %s job: the message does not match the ledger",
            self.name,
            job_id,
            doc.get("type"),
        )
        raise Reject(f"job {job_id} is not a {self.name} job", requeue=False)

    def _execute(self, job_id: str) -> Any:
        self._refuse_malformed(job_id)
        request = self.request
        delivery = delivery_of(request)
        settings = settings_of(self.app)
        redis = redis_client(settings)
        # One execution of a job at a time, even if its message was delivered twice (a broker
        # restore, or the reconciler's resend racing a slow worker).
        # The delivery tag is in the message's properties (Celery's delivery_info carries none): it
        # names this delivery's entry in kombu's unacked hash (tasks/dead_workers.py drops it).
        tag = (request.properties or {}).get("delivery_tag") or ""
        owner = f"{request.hostname}:{os.getpid()}:{tag}"
        exec_key = delivery.exec_key = leases.exec_key(job_id)
        delivery.exec_owner = owner
        if not leases.acquire(redis, exec_key, owner, leases.exec_ttl(settings)):
            delivery.exec_key = None
            return self._requeue(
                job_id, countdown=min(60.0, settings.task_time_limit / 4), why="already executing"
            )
        # Only a job of this task's type starts: a forged message naming another type's job
        # changes nothing, and is told apart from a final or unknown job only then.
        doc = ledger.start(
            self.db(),
            job_id,
            worker=request.hostname or "unknown",
            job_type=self.name,
            worker_run=heartbeat.run_id(),
            exec_owner=owner,
        )
        if doc is None:
            self._refuse_foreign(job_id, delivery)
            logger.info("job %s is final or unknown; nothing to do", job_id)
            return None
        logs.bind_job(doc)
        if not self._take_tenant_slot(doc):
            # The tenant has its share of workers busy: step aside for other tenants' jobs.
            ledger.defer(self.db(), job_id)
            return self._requeue(
                job_id,
                countdown=random.uniform(1, 5),  # noqa: S311
                why="tenant at its running-job cap",
                about=enqueue.about_job(doc),
            )
        delivery.skip = False
        delivery.started_at = doc["startedAt"]
        delivery.lease_key = doc.get("leaseKey")
        delivery.subject = {k: str(v) for k, v in (doc.get("subject") or {}).items()}
        unfinished = doc["attempts"] - 1 - len(doc.get("retries") or [])
        if unfinished > MAX_UNFINISHED_DELIVERIES:
            raise PoisonJobError(
                f"delivered {unfinished} times without finishing (its worker died each time); dead-lettered"
            )
        job = Job.from_document(doc)
        delivery.retries = job.retries
        return self._run_with_policy(job)

    def _run_with_policy(self, job: Job) -> Any:
        """Run the body; the type's policy turns its errors into a skip, a retry or a failure."""
        job_type = self.job_type
        if job_type is None:
            return self.run(job)
        try:
            return self.run(job)
        except job_type.skip_on as skip:
            logger.info("job %s skipped: %s", job.id, skip)
            return {"skipped": str(skip)}
        except job_type.retry.on as error:
            if job.retries >= job_type.retry.max_retries:
                if job_type.retry.exhausted is not None:
                    job_type.retry.exhausted(self.services(), job, error)
                raise
            # max_retries=None: the budget is the ledger's count, checked above, not Celery's.
            raise self.retry(exc=error, countdown=self.backoff(error), max_retries=None) from None

    def _requeue(
        self, job_id: str, *, countdown: float, why: str, about: Mapping[str, str] | None = None
    ) -> None:
        """Send the job's message again for later and finish this delivery without an outcome.

        The new message shows ``about`` (from the ledger document when the caller read it), else
        what this message showed, so Flower keeps listing whom the job is for.
        """
        queue = (self.request.delivery_info or {}).get("routing_key") or (
            self.job_type.queue.value if self.job_type else jobtypes.Queue.DEFAULT.value
        )
        if about is None:
            about = enqueue.about_from_repr(self.request.get("kwargsrepr"))
        enqueue.resend(publisher(self.app), self.name, job_id, queue, countdown=countdown, about=about)
        logger.info("job %s put back for %.0fs: %s", job_id, countdown, why)

    def after_return(  # noqa: PLR0917 - Celery's hook signature
        self, status: str, retval: Any, task_id: str, args: tuple, kwargs: dict, einfo: Any
    ) -> None:
        self._let_go(task_id, args)
        if webhooks.take_pending():
            # This delivery wrote a webhook outbox entry: relay it now rather than at the next sweep.
            # Best effort, so no publish retries: in a Redis outage the sweep relays it, and the
            # delivery ends at once (its worker may be terminating it for a lost connection).
            try:
                self.app.send_task("webhooks.relay", queue=jobtypes.Queue.WEBHOOKS.value, retry=False)
            except PUBLISH_ERRORS as error:
                logger.warning("job %s: webhook relay left to the sweep (%s)", task_id, type(error).__name__)

    def _let_go(self, task_id: str, args: tuple) -> None:
        """Release what this delivery held, in one Redis round trip (``leases.let_go``): its
        tenant slot and the job's execution lock; once the ledger says the job ended (``ended``,
        set by on_success and on_failure after their ledger write), also the job's (type, subject)
        lease, so the next run can be enqueued, and the notice that wakes whoever waits on it.

        Called from after_return, and from on_retry, since Celery skips after_return on a retry.
        """
        delivery = delivery_of(self.request)
        job_id = args[0] if args else task_id
        ended, delivery.ended = delivery.ended, None
        document, delivery.ended_document = delivery.ended_document, None
        owned: list[tuple[str, str]] = []
        dropped: list[str] = []
        if delivery.exec_key and delivery.exec_owner:
            if ended is None:
                owned.append((delivery.exec_key, delivery.exec_owner))
            else:
                # The job is final: ledger.start runs it never again, whoever would take the lock
                # next, so the lock is deleted without the compare (and without a script).
                dropped.append(delivery.exec_key)
            delivery.exec_key = None
        if ended is not None and delivery.lease_key:
            owned.append((delivery.lease_key, job_id))  # a newer job's lease is never freed
        slots = [(delivery.slot, job_id)] if delivery.slot and args else []
        publish = notify.notice(job_id, ended, document) if ended is not None else None
        with _tolerating_outage("release", task_id):
            leases.let_go(
                redis_client(settings_of(self.app)),
                owned=owned,
                dropped=dropped,
                slots=slots,
                publish=publish,
            )

    # The hooks write the ledger; after_return then lets go of what the delivery held. If MongoDB
    # or Redis is down at that moment, the job stays open in the ledger and the reconciler
    # (system.reconcile) brings it to an end later.

    def on_success(self, retval: Any, task_id: str, args: tuple, kwargs: dict) -> None:
        delivery = delivery_of(self.request)
        if delivery.skip:
            return
        emits = self.job_type.emits if self.job_type else None
        events = [webhooks.event(p) for p in emits(retval)] if emits and isinstance(retval, dict) else []
        with _tolerating_outage("on_success", task_id):
            final = ledger.succeed(
                self.db(),
                args[0],
                retval,
                started_at=delivery.started_at,
                extra=webhooks.outbox_push(*events) if events else None,
            )
            delivery.ended, delivery.ended_document = ledger.Status.SUCCEEDED.value, final

    def on_retry(self, exc: BaseException, task_id: str, args: tuple, kwargs: dict, einfo: Any) -> None:
        self._let_go(task_id, args)
        if isinstance(exc, INFRA_ERRORS) and delivery_of(self.request).skip:
            return  # never started: nothing for the ledger to say
        with _tolerating_outage("on_retry", task_id):
            ledger.retrying(self.db(), args[0], ledger.error_summary(exc))

    def on_failure(self, exc: BaseException, task_id: str, args: tuple, kwargs: dict, einfo: Any) -> None:
        if len(args) != 1 or kwargs or isinstance(exc, INFRA_ERRORS):
            return  # left open in the ledger on purpose: the reconciler resends it
        delivery = delivery_of(self.request)
        summary = ledger.error_summary(exc)
        # The job.failed webhook event goes in the ledger's final write itself (an outbox entry).
        failed = webhooks.job_failed(args[0], self.name, delivery.subject, summary)
        with _tolerating_outage("on_failure", task_id):
            final = ledger.fail(
                self.db(),
                args[0],
                summary,
                started_at=delivery.started_at,
                extra=webhooks.outbox_push(failed),
            )
            delivery.ended, delivery.ended_document = ledger.Status.FAILED.value, final


def job_task(job_type: JobType, **options: Any) -> Callable[[Callable[..., Any]], JobTask]:
    """Declare ``job_type`` and make the decorated ``body(task, job)`` its task.

    The task's name is the type's name; its policy (skip, retry, backoff) comes from the type.
    """
    jobtypes.register(job_type)

    def decorate(body: Callable[..., Any]) -> JobTask:
        task = shared_task(bind=True, base=JobTask, name=job_type.name, job_type=job_type, **options)(body)
        return cast(JobTask, task)

    return decorate
