"""The beat scheduler: RedBeat (schedule state and a leader lock in Redis), with one change.

Celery starts a new interval entry's clock at "now", so a fresh deployment would wait a whole
interval (15 minutes for health checks) before its first dispatch. Here an entry that Redis has
never seen is due at once; entries already known keep their last run, so a restart or a leader
takeover neither repeats nor skips a tick.
"""

import os
import socket
from typing import Any

from redbeat import RedBeatScheduler

from mwap import metrics


class Scheduler(RedBeatScheduler):
    def tick(self, *args: Any, **kwargs: Any) -> float:
        # Only the lock holder ticks: a standby blocks on the lock until the leader's lapses.
        metrics.scheduler_leader(f"{socket.gethostname()}:{os.getpid()}", is_leader=True)
        return super().tick(*args, **kwargs)

    def update_from_dict(self, dict_: dict[str, Any]) -> None:
        for name, definition in dict_.items():
            key = self.Entry.generate_key(self.app, name)
            try:
                stored = self.Entry.from_key(key, app=self.app)
            except KeyError:
                stored = None
            entry = self._maybe_entry(name, definition)
            entry.last_run_at = stored.last_run_at if stored is not None else None
            entry.save()
