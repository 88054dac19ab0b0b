"""The periodic schedule beat runs, derived from the job types' declarations.

One entry per scheduled job type (its dispatcher, every ``Schedule.interval``), plus the
reconciler, the dead-worker check and the webhook sweep. Each entry expires after its own
interval, so a tick that could not run in time is dropped rather than piling up behind the next one.
"""

from typing import Any

from mwap import jobtypes
from mwap.settings import Settings

# Not a job type: resends ledger jobs the broker lost (tasks/reconcile.py).
RECONCILE = "system.reconcile"
# Resends the running jobs of workers whose heartbeat expired (tasks/dead_workers.py).
DEAD_WORKERS = "system.recover_dead_workers"
# Not a job type either: relays webhook outboxes and resends due deliveries (tasks/webhooks.py).
WEBHOOK_SWEEP = "webhooks.sweep"


def build_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery ``beat_schedule`` for these settings."""
    intervals = {
        jt.dispatcher: jt.schedule.seconds(settings) for jt in jobtypes.scheduled() if jt.schedule is not None
    }
    intervals[RECONCILE] = float(settings.reconcile_interval)
    intervals[DEAD_WORKERS] = float(settings.dead_worker_check_interval)
    intervals[WEBHOOK_SWEEP] = float(settings.webhook_sweep_interval)
    return {
        task_name: {"task": task_name, "schedule": interval, "options": {"expires": interval}}
        for task_name, interval in intervals.items()
    }
