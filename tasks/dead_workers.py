"""``system.recover_dead_workers``: a dead worker's running jobs run again within seconds.

A worker killed outright (SIGKILL, the OOM killer, a lost node) leaves its running jobs
``running`` in the ledger, their execution locks held for ``leases.exec_ttl`` and their messages
in kombu's ``unacked`` hash until the visibility timeout (900 s); the reconciler alone would
resend them only once they are ``stale_job_after`` old. Every worker run keeps a heartbeat key
(``mwap/liveness.py``, ``worker/heartbeat.py``), and every ``dead_worker_check_interval`` beat runs
this pass:

1. the registered runs and their keys: two Redis round trips, and nothing more while all live;
2. for a run whose key expired, the jobs the ledger shows it running (an indexed query);
3. for each: marked resent in the ledger, conditional on it still running under that run and
   attempt (a newer delivery that started it wins); its execution lock freed by compare-and-delete
   against the owner the ledger recorded (never another holder's), so the new delivery starts at
   once; its message published again; and the dead delivery's message dropped from ``unacked``
   (its delivery tag is in that owner), so the visibility timeout restores nothing later;
4. the run unregistered once its jobs are handed back.

A live worker is never judged dead: its key is refreshed every ``worker_heartbeat_interval`` by a
thread no task holds up and lives ``worker_heartbeat_ttl`` (three beats by default). A job names a
run only once that run has beaten (its first beat precedes its first message). A worker stalled
past its TTL that comes back may find its job running twice at once; the ledger's conditional
transitions and the sync's checkpoints still end the job once, with its files once.
"""

import logging
from typing import Any

from celery import shared_task

from mwap import broker, leases, ledger, liveness
from mwap.ledger import now
from mwap.services import Services
from tasks.reconcile import RESEND_FIELDS, resend_or_fail
from worker.app import publisher
from worker.base import services_of

logger = logging.getLogger(__name__)

BATCH = 1000
PROJECTION = {**RESEND_FIELDS, "workerRun": 1, "execOwner": 1}  # and the run's lock owner


def recover(services: Services, app: Any) -> dict[str, int]:
    """One pass; returns how many dead worker runs were found, and their jobs resent and failed
    as lost."""
    redis = services.redis
    dead = liveness.dead_runs(redis, ttl=services.settings.worker_heartbeat_ttl)
    counts = {"dead": len(dead), "resent": 0, "lost": 0}
    if not dead:
        return counts
    jobs = services.store.unscoped(ledger.COLLECTION)  # every tenant's jobs: the explicit door
    query = {"workerRun": {"$in": dead}, "status": ledger.Status.RUNNING.value}  # partial index
    running = list(jobs.find(query, PROJECTION).limit(BATCH))
    publish = publisher(app)
    moment = now()
    dropped: list[str] = []
    for job in running:
        owner = job.get("execOwner")

        def free_lock(job_id: str = job["_id"], owner: str | None = owner) -> None:
            if owner:  # only the dead delivery's own lock: a newer holder keeps its
                leases.release(redis, leases.exec_key(job_id), owner)

        outcome = resend_or_fail(services, publish, job, moment, before_send=free_lock)
        if outcome is None:
            continue
        counts[outcome] += 1
        if owner:
            dropped.append(owner.rsplit(":", 1)[-1])
    held = broker.drop_held(redis, [tag for tag in dropped if tag])
    if len(running) < BATCH:  # every job of these runs handed back; otherwise the next pass goes on
        liveness.forget(redis, dead)
    logger.warning(
        "dead workers: %d runs stopped beating (%s); %d jobs resent, %d failed as lost, %d held messages dropped",
        len(dead),
        ", ".join(dead),
        counts["resent"],
        counts["lost"],
        held,
    )
    return counts


@shared_task(bind=True, name="system.recover_dead_workers", acks_late=True, ignore_result=True)
def recover_task(self: Any) -> dict[str, int]:
    return recover(services_of(self.app), self.app)
