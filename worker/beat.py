"""The beat scheduler: RedBeat (schedule state and a leader lock in Redis), with two changes.

Celery starts a new interval entry's clock at "now", so a fresh deployment would wait a whole
interval (15 minutes for health checks) before its first dispatch. Here an entry that Redis has
never seen is due at once; entries already known keep their last run, so a restart or a leader
takeover neither repeats nor skips a tick.

RedBeat lets a Redis error out of ``tick``, which ends the beat process; and after Redis comes
back without its data the leader lock and the schedule entries are gone. Here beat waits for
Redis, and a leader that lost its lock takes it again only if it is free (else it waits as a
standby) and then reinstalls the schedule, so beat rides out a Redis restart by itself.
"""

import logging
import os
import socket
import time
from typing import Any

from redbeat import RedBeatScheduler
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, get_redis
from redis import exceptions as redis_exceptions

from mwap import liveness, metrics

logger = logging.getLogger(__name__)

REDIS_DOWN = (redis_exceptions.ConnectionError, redis_exceptions.TimeoutError)
REDIS_RETRY_SECONDS = 1.0


class Scheduler(RedBeatScheduler):
    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            return self._tick_as_leader(*args, **kwargs)
        except REDIS_DOWN as error:
            logger.warning("beat: Redis unavailable (%s); retrying", type(error).__name__)
            return REDIS_RETRY_SECONDS

    def _tick_as_leader(self, *args: Any, **kwargs: Any) -> float:
        if self.lock_key and self.lock is None and not self._take_free_lock():
            return self.max_interval
        try:
            interval = super().tick(*args, **kwargs)
        except redis_exceptions.LockNotOwnedError:
            # Redis lost the lock (restarted without its data, or it expired while Redis was away).
            if self.lock is None or not self.lock.acquire(blocking=False):
                logger.warning("beat: leader lock lost and held by another beat; standing by")
                return self.max_interval
            # Without its data Redis also lost the schedule entries: install them again, as a
            # restarted beat would (entries Redis still has keep their last run).
            self.setup_schedule()
            logger.info("beat: leader lock lost, acquired again; schedule reinstalled")
            return 0.0
        # Only the lock holder ticks: a standby blocks on the lock until the leader's lapses.
        identity = f"{socket.gethostname()}:{os.getpid()}"
        metrics.scheduler_leader(identity, is_leader=True)
        liveness.beat_leader(get_redis(self.app), identity, ttl=int(self.lock_timeout))
        return interval

    def setup_schedule(self) -> None:
        # Also run at start, right after a standby's wait for the lock: Redis may be failing over.
        while True:
            try:
                super().setup_schedule()
            except REDIS_DOWN as error:
                logger.warning(
                    "beat: Redis unavailable (%s); installing the schedule again", type(error).__name__
                )
                time.sleep(REDIS_RETRY_SECONDS)
            else:
                return

    def _take_free_lock(self) -> bool:
        """A standby whose blocking wait for the leader lock failed (Redis unreachable: restarted, or
        its master failing over) has no lock, and RedBeat's tick would fail on it; take the lock
        here if it is free, else keep standing by. True once this beat holds it."""
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)  # as RedBeat's own lock
        if not lock.acquire(blocking=False):
            return False
        self.lock = lock
        logger.info("beat: Acquired lock (after the wait for it was interrupted)")
        return True

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
