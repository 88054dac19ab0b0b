"""What a job type is, and the registry the job types declare themselves into.

Each job type is declared once, next to its code (``tasks/<domain>.py``): its name (equal to its
Celery task name), scope, queue, parameter model, schedule with its due query and index, and its
retry and skip policy. The worker's routes and beat schedule, the dispatchers, the API's request
bodies and OpenAPI document, and the index set all derive from this registry.

The core only defines the shapes; the task modules register into it when imported. Entry points
load them all with ``tasks.load()``, and reading the registry before that is an error, never a
silently partial list.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from mwap.settings import Settings

if TYPE_CHECKING:  # mwap.indexes reads the due indexes from here
    from mwap.indexes import Index


class Queue(StrEnum):
    DEFAULT = "default"
    SYNC = "sync"
    MAINTENANCE = "maintenance"
    WEBHOOKS = "webhooks"  # webhook relay and deliveries (tasks/webhooks.py): slow receivers wait here


class Scope(StrEnum):
    SYSTEM = "system"  # no tenant: admin only
    TENANT = "tenant"
    INTEGRATION = "integration"
    PROJECT = "project"  # subject {projectId, integrationId}; shares the integration sync's lease


# The collection a scheduled type's due query runs on, by scope.
SCOPE_COLLECTIONS = {Scope.INTEGRATION: "cloudIntegrations", Scope.TENANT: "tenants"}


class Params(BaseModel):
    """Base of every job's params: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NoParams(Params):
    """Jobs that take no parameters."""


# (settings, now) -> the MongoDB filter of the subjects due now.
DueQuery = Callable[[Settings, datetime], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Schedule:
    """Beat runs ``dispatch.<type>`` every ``interval`` seconds (a Settings field name, or a
    function of the settings); it enqueues the type for every subject ``due`` selects, on the
    scope's collection, with the help of ``index``."""

    interval: str | Callable[[Settings], float]
    due: DueQuery
    index: "Index | None" = None

    def seconds(self, settings: Settings) -> float:
        if callable(self.interval):
            return float(self.interval(settings))
        return float(getattr(settings, self.interval))


@dataclass(frozen=True, slots=True)
class Retry:
    """A job type's retry policy, applied by the task base class: the body raises, this decides.

    An error of a type in ``on`` is retried while the job has spent fewer than ``max_retries``
    retries (counted in the ledger, so retries for a storage outage, which JobTask makes on its
    own, never spend them). The wait is the error's ``retry_after`` when it has one, else
    ``backoff * 2**retries`` seconds, with half of it random when ``jitter``. ``exhausted`` runs
    (with the task's Services, the Job and the error) when a retryable error meets an empty budget.
    """

    on: tuple[type[Exception], ...] = ()
    max_retries: int = 0
    backoff: float = 5.0
    jitter: bool = True
    exhausted: Callable[[Any, Any, Exception], None] | None = None


NO_RETRY = Retry()


@dataclass(frozen=True, slots=True)
class JobType:
    name: str
    scope: Scope
    queue: Queue
    params: type[Params]
    description: str
    schedule: Schedule | None = None
    retry: Retry = NO_RETRY
    # Errors that end the job as a normal outcome: succeeded with {"skipped": "<why>"}.
    skip_on: tuple[type[Exception], ...] = ()
    # The lease a job of this type takes: the type's own name, or another's (a project sync
    # shares the integration sync's, so one sync of an integration runs at a time).
    lease_kind: str | None = field(default=None)
    # Webhook events a success emits, from the job's result (``mwap.webhooks`` payloads): written
    # into the ledger's final write of the job, so they exist exactly when the success does.
    emits: Callable[[dict[str, Any]], list[Any]] | None = None

    @property
    def dispatcher(self) -> str:
        """The Celery task name of this type's dispatcher (beat runs it; scheduled types only)."""
        return f"dispatch.{self.name}"

    @property
    def due_collection(self) -> str:
        return SCOPE_COLLECTIONS[self.scope]

    def validate_params(self, raw: dict[str, Any] | None) -> dict[str, Any]:
        """Params checked against the type's model, returned in their stored (alias) form."""
        return self.params.model_validate(raw or {}).model_dump(mode="json", by_alias=True)


class RegistryNotLoaded(RuntimeError):
    """The registry was read before ``tasks.load()`` imported the job types' modules."""


_REGISTRY: dict[str, JobType] = {}
_loaded = False


def register(job_type: JobType) -> JobType:
    """Add a job type (at import of its module); a second, different type of the same name fails."""
    known = _REGISTRY.get(job_type.name)
    if known is not None and known != job_type:
        raise ValueError(f"job type {job_type.name!r} is declared twice")
    if job_type.schedule is not None and job_type.scope not in SCOPE_COLLECTIONS:
        raise ValueError(f"{job_type.name}: only integration and tenant types can be scheduled")
    _REGISTRY[job_type.name] = job_type
    return job_type


def mark_loaded() -> None:
    """Called by ``tasks.load()`` once every job type's module is imported."""
    global _loaded  # noqa: PLW0603 - the one process-wide registry
    _loaded = True


def job_types() -> dict[str, JobType]:
    """Every job type, by name."""
    if not _loaded:
        raise RegistryNotLoaded("job types are not loaded: call tasks.load() at process start")
    return _REGISTRY


def get(name: str) -> JobType | None:
    return job_types().get(name)


def scheduled() -> list[JobType]:
    return [jt for jt in job_types().values() if jt.schedule is not None]


def routes() -> dict[str, dict[str, str]]:
    """Celery ``task_routes``: each job type to its queue; the dispatchers, the reconciler and the
    dead-worker check to ``maintenance``."""
    table: dict[str, dict[str, str]] = {name: {"queue": jt.queue.value} for name, jt in job_types().items()}
    table["dispatch.*"] = {"queue": Queue.MAINTENANCE.value}
    table["system.reconcile"] = {"queue": Queue.MAINTENANCE.value}
    table["system.recover_dead_workers"] = {"queue": Queue.MAINTENANCE.value}
    table["webhooks.*"] = {"queue": Queue.WEBHOOKS.value}
    return table


def due_indexes() -> list["Index"]:
    """The indexes the scheduled types' due queries need."""
    return [jt.schedule.index for jt in scheduled() if jt.schedule is not None and jt.schedule.index]
