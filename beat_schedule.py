"""The periodic schedule: one dispatcher per job type, every interval read from settings.

Each entry expires after its own interval, so a tick that could not run in time is dropped rather
than piling up behind the next one.
"""

from typing import Any

from mwap.settings import Settings

# Dispatcher task name -> the Settings field holding its interval in seconds.
DISPATCHERS: dict[str, str] = {
    "dispatch.integration.health_check": "health_check_interval",
    "dispatch.integration.refresh_token": "token_refresh_interval",
    "dispatch.integration.sync_files": "sync_interval",
    "dispatch.tenant.aggregate_usage": "usage_aggregation_interval",
    "dispatch.tenant.apply_retention": "retention_interval",
    # Not a dispatcher: resends ledger jobs the broker lost (tasks/reconcile.py).
    "system.reconcile": "reconcile_interval",
}


def build_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery ``beat_schedule`` for these settings."""
    schedule = {}
    for task_name, interval_field in DISPATCHERS.items():
        interval = float(getattr(settings, interval_field))
        if task_name == "dispatch.integration.health_check":
            # New integrations are due at once: tick often enough to check them within the bound.
            interval = float(min(interval, settings.new_integration_check_within))
        schedule[task_name] = {
            "task": task_name,
            "schedule": interval,
            "options": {"expires": interval},
        }
    return schedule
