"""The dispatchers beat runs: each finds its due items with one indexed query and enqueues jobs.

The query streams (pymongo fetches it in batches); each chunk of due items becomes one Redis
pipeline of lease claims, one ``insert_many`` of ledger documents and one message per new job.
An item whose job is still queued or running holds its lease and is skipped, so the cost of a
dispatch grows with the due items, not with all items.
"""

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from itertools import batched
from typing import Any

from bson import ObjectId
from celery import shared_task

from mwap import jobtypes, leases, metrics
from mwap.enqueue import JobRequest, enqueue
from mwap.jobtypes import JobType, Scope
from mwap.ledger import now
from mwap.services import Services
from mwap.settings import Settings
from worker.app import publisher
from worker.base import services_of

logger = logging.getLogger(__name__)


def due_or_never(field: str, cutoff: object) -> list[dict[str, Any]]:
    """``$or`` branches: ``field`` unset (never done) or older than ``cutoff``."""
    return [{field: None}, {field: {"$lt": cutoff}}]


def last_run_cutoff(moment: datetime, interval: float, tick: float) -> datetime:
    """The due queries' cutoff at ``moment`` (a tick of a dispatcher beat runs every ``tick``
    seconds) for a type that runs each item every ``interval``: an item whose last run finished
    before it is due.

    The last run's time (``lastSyncAt``…) is written when its job *finishes*, a little after the
    tick that dispatched it, so a cutoff of ``moment - interval`` would miss the tick one interval
    later and run each item a whole tick late (every two intervals when ``tick == interval``).
    Half a tick of tolerance absorbs that lag: an item runs at the first tick more than
    ``interval - tick / 2`` after its last run, the interval rounded to ticks, never sooner.
    """
    return moment - timedelta(seconds=interval - tick / 2)


ARCHIVED = {"archived": True}


def live_tenants(settings: Settings, moment: datetime) -> dict[str, Any]:
    """The due query of tenant-scoped types: every tenant not archived (seed ``archived``)."""
    return {"archived": {"$ne": True}}


def archived_tenants(services: Services) -> list[ObjectId]:
    """Ids of archived tenants (seed ``archived: true``): their integrations get no jobs."""
    tenants = services.store.global_collection("tenants")
    return [doc["_id"] for doc in tenants.find(ARCHIVED, {"_id": 1})]


def _scheduled(name: str) -> JobType:
    job_type = jobtypes.get(name)
    if job_type is None or job_type.schedule is None:
        raise ValueError(f"no due query for {name}")
    return job_type


def due_integrations(services: Services, job_type: str) -> dict[str, Any]:
    """The indexed query of integrations due for ``job_type`` now, as the type declares it."""
    schedule = _scheduled(job_type).schedule
    assert schedule is not None
    return schedule.due(services.settings, now())


def dispatch(
    services: Services, app: Any, job_type: str, items: Iterable[dict[str, Any]], subject: str
) -> dict[str, int]:
    """Enqueue ``job_type`` for each item (``_id`` and ``tenantId``), chunk by chunk."""
    settings = services.settings
    publish = publisher(app)
    due = created = 0
    for chunk in batched(items, settings.dispatch_chunk_size, strict=False):
        requests = []
        for item in chunk:
            tenant_id = item["tenantId"] if subject == "integrationId" else item["_id"]
            if not isinstance(tenant_id, ObjectId):
                logger.warning("skipping %s with no ObjectId tenant id: _id=%s", job_type, item.get("_id"))
                continue
            requests.append(JobRequest(job_type, tenant_id, {subject: str(item["_id"])}))
        due += len(requests)
        results = enqueue(
            services.db, services.redis, publish, requests, lease_ttl=leases.job_lease_ttl(settings)
        )
        created += sum(1 for result in results if result.created)
    metrics.scheduler_dispatch(job_type, created)
    logger.info(
        "dispatched %s: %d due, %d enqueued, %d already queued or running",
        job_type,
        due,
        created,
        due - created,
    )
    return {"due": due, "enqueued": created}


def dispatch_integrations(services: Services, app: Any, job_type: str) -> dict[str, int]:
    """Enqueue an integration-scoped type for every integration due (archived tenants excluded)."""
    integrations = services.store.unscoped("cloudIntegrations")
    query = due_integrations(services, job_type)
    archived = archived_tenants(services)
    if archived:
        query["tenantId"] = {"$nin": archived}
    cursor = integrations.find(
        query, {"_id": 1, "tenantId": 1}, batch_size=services.settings.dispatch_chunk_size
    )
    return dispatch(services, app, job_type, cursor, "integrationId")


def dispatch_tenants(services: Services, app: Any, job_type: str) -> dict[str, int]:
    """Enqueue a tenant-scoped type for every tenant its due query selects."""
    schedule = _scheduled(job_type).schedule
    assert schedule is not None
    tenants = services.store.global_collection("tenants")
    cursor = tenants.find(
        schedule.due(services.settings, now()), {"_id": 1}, batch_size=services.settings.dispatch_chunk_size
    )
    return dispatch(services, app, job_type, cursor, "tenantId")


def dispatch_due(services: Services, app: Any, job_type: JobType) -> dict[str, int]:
    """One tick of ``job_type``'s dispatcher."""
    if job_type.scope is Scope.TENANT:
        return dispatch_tenants(services, app, job_type.name)
    return dispatch_integrations(services, app, job_type.name)


def register_dispatchers() -> None:
    """A ``dispatch.<type>`` task for every scheduled type (``tasks.load()`` calls this).

    Dispatchers are scheduler plumbing, not jobs: no ledger documents of their own (each job they
    create has one), and an expired tick is simply dropped.
    """
    for job_type in jobtypes.scheduled():
        if job_type.dispatcher not in _DISPATCHERS:
            _DISPATCHERS[job_type.dispatcher] = _dispatcher(job_type)


_DISPATCHERS: dict[str, Any] = {}


def _dispatcher(job_type: JobType) -> Any:
    def run(self: Any) -> dict[str, int]:
        return dispatch_due(services_of(self.app), self.app, job_type)

    run.__name__ = run.__qualname__ = job_type.dispatcher.replace(".", "_")
    run.__module__ = __name__
    return shared_task(name=job_type.dispatcher, bind=True, acks_late=True, ignore_result=True)(run)
