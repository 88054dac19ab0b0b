"""``system.reconcile``: MongoDB holds the truth about jobs; the broker may lose messages.

A broker restarted without its data, a worker killed with jobs in hand, a publish that failed
after the ledger write: each leaves a ledger job open with no message that will ever run it.
Every ``reconcile_interval`` beat runs this pass, which finds open jobs untouched for
``stale_job_after`` seconds and resends those that are neither waiting in the broker nor being
executed by a live worker (a "running" job whose delivery ended without its outcome reaching the
ledger, during a storage outage, is resent too). A job resent ``max_resends`` times is failed as lost, so nothing loops forever.
Resending is safe: a job runs once at a time (the execution lock in worker/base.py) and a message
for a job that is already final does nothing.
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from celery import shared_task
from redis import Redis

from mwap import enqueue, jobtypes, leases, ledger, notify, webhooks
from mwap.broker import broker_job_ids
from mwap.ledger import now
from mwap.services import Services
from worker.app import publisher
from worker.base import services_of

logger = logging.getLogger(__name__)

BATCH = 1000
# What ``resend_or_fail`` reads of a job: enough to resend it (its message shows whom it is for:
# type, tenant and subject) or fail it as lost.
RESEND_FIELDS = {"type": 1, "tenantId": 1, "subject": 1, "status": 1, "attempts": 1, "queue": 1, "resends": 1}
# What a pass reads of a stale job: that, and enough to judge whether anyone runs it.
PROJECTION = {**RESEND_FIELDS, "worker": 1, "startedAt": 1, "reconciledAt": 1}


def executing_jobs(app: Any) -> dict[str, set[str]]:
    """Each live worker (one answering within a second) and the ids of the jobs it is executing."""
    replies = app.control.inspect(timeout=1.0).active() or {}
    return {name: {task["id"] for task in tasks or []} for name, tasks in replies.items()}


def free_execution_lock(
    redis: Redis, job_id: str, executing: dict[str, set[str]], *, lock_ttl: int, min_age: float
) -> bool:
    """Delete the job's execution lock when its holder cannot be running it any more; True if so.

    The holder (``host:pid:tag``) is gone when its worker did not answer, or answered without
    this job among those it executes (its pool process was killed, or terminated when the broker
    connection dropped, and could not release the lock): the lock would otherwise turn every
    delivery away (each put back for a minute) until it expires (``leases.exec_ttl``). A lock
    younger than ``min_age`` is left alone: its worker may not list the job as executing yet.
    """
    key = leases.exec_key(job_id)
    pipe = redis.pipeline(transaction=False)
    pipe.get(key)
    pipe.ttl(key)
    holder, ttl = pipe.execute()
    if holder is None or 0 <= lock_ttl - ttl < min_age:
        return False
    if job_id in executing.get(holder.decode().split(":", 1)[0], ()):
        return False
    return leases.release(redis, key, holder.decode())  # compare-and-delete: a new holder keeps it


def resend_or_fail(
    services: Services,
    publish: enqueue.Publisher,
    job: dict[str, Any],
    moment: datetime,
    *,
    before_send: Callable[[], object] | None = None,
) -> Literal["resent", "lost"] | None:
    """Resend an open job no one runs, or fail it as lost once it was resent ``max_resends``
    times; None when it changed since it was read (under load many finish during a pass).

    ``job`` as read (``_id``, ``type``, ``tenantId``, ``subject``, ``status``, ``attempts``,
    ``queue``, ``resends``, and ``workerRun`` when the caller read it: the resend is then
    conditional on it too).
    ``before_send`` runs between the ledger's mark and the publish (freeing a dead holder's lock).
    """
    job_id = job["_id"]
    if int(job.get("resends") or 0) >= services.settings.max_resends:
        lost = {"type": "JobLost", "message": f"resent {job.get('resends')} times"}
        final = ledger.fail(
            services.db,
            job_id,
            lost,
            extra=webhooks.outbox_push(webhooks.job_failed(job_id, job["type"], job.get("subject"), lost)),
        )
        if final is None:
            return None
        notify.job_ended(services.redis, job_id, ledger.Status.FAILED.value, final)
        return "lost"
    unchanged = {
        "_id": job_id,
        "status": job["status"],
        "attempts": job.get("attempts", {"$exists": False}),
        **({"workerRun": job["workerRun"]} if "workerRun" in job else {}),
    }
    jobs = services.store.unscoped(ledger.COLLECTION)
    marked = jobs.update_one(unchanged, {"$inc": {"resends": 1}, "$set": {"reconciledAt": moment}})
    if not marked.modified_count:
        return None
    if before_send is not None:
        before_send()
    job_type = jobtypes.get(job["type"])
    queue = job.get("queue") or (job_type.queue.value if job_type else jobtypes.Queue.DEFAULT.value)
    enqueue.resend(publish, job["type"], job_id, queue, about=enqueue.about_job(job))
    return "resent"


def reconcile(services: Services, app: Any) -> dict[str, int]:
    """One pass; returns how many open jobs were looked at, resent and failed as lost."""
    settings = services.settings
    moment = now()
    jobs = services.store.unscoped(ledger.COLLECTION)  # every tenant's open jobs: the explicit door
    stale = list(
        jobs.find(
            {
                "status": {"$in": ledger.OPEN},
                "createdAt": {"$lt": moment - timedelta(seconds=settings.stale_job_after)},
            },
            PROJECTION,
        ).limit(BATCH)
    )
    counts = {"stale": len(stale), "resent": 0, "lost": 0}
    if not stale:
        return counts
    waiting = broker_job_ids(services.redis, held_for=settings.stale_job_after)
    executing = executing_jobs(app)
    running_now = set().union(*executing.values())
    lock_ttl = leases.exec_ttl(settings)
    publish = publisher(app)
    for job in stale:
        job_id = job["_id"]
        touched = job.get("reconciledAt") or job.get("startedAt")
        if touched is not None and touched > moment - timedelta(seconds=settings.stale_job_after):
            continue  # resent or started recently: give it time
        if job_id in running_now:
            continue  # a live worker is executing it
        # A dead holder's lock freed: whatever message waits was (or will be) turned away by it.
        if not free_execution_lock(
            services.redis, job_id, executing, lock_ttl=lock_ttl, min_age=settings.stale_job_after
        ):
            if waiting is not None and job_id in waiting:
                continue  # its message is still in the broker
            if waiting is None and job["status"] != ledger.Status.RUNNING.value:
                continue  # too many messages to look: assume it is in there
        # Open but executed nowhere: its worker died, or the delivery ended without the ledger
        # hearing of it (the outcome's write met a storage outage).
        outcome = resend_or_fail(services, publish, job, moment)
        if outcome is not None:
            counts[outcome] += 1
    if counts["resent"] or counts["lost"]:
        logger.warning(
            "reconcile: %(stale)d stale open jobs, %(resent)d resent, %(lost)d failed as lost", counts
        )
    return counts


@shared_task(bind=True, name="system.reconcile", acks_late=True, ignore_result=True)
def reconcile_task(self: Any) -> dict[str, int]:
    return reconcile(services_of(self.app), self.app)
