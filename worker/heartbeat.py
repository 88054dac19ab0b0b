"""The worker's heartbeat: a thread of the main process keeps this run's key alive in Redis.

Started at ``worker_init`` (``worker/signals.py``), in the main process before the pool starts and
before any message is consumed: the first beat is written there, so every job this run starts
names a registered run (``mwap.liveness``). Prefork children and pool threads inherit the run id
(``run_id``) and record it with each job they start (``ledger.start``). The beat comes from a
thread of its own, so running tasks never hold it up: prefork runs them in other processes, the
threads pool in other threads (a task holding the GIL is switched out every few milliseconds).

Celery's own worker heartbeats were not used: they are event messages (a PUBLISH every 2 s that
nobody stores), seen only by a process subscribed at that moment, and off with
``--without-heartbeat``; a key with an expiry can be read by a beat task at any time.

A warm shutdown stops the thread once the pool has finished (``worker_shutdown``) and deletes the
key, so whatever the ledger still shows this run running is handed back at the next check.
"""

import logging
import threading

from redis import exceptions as redis_exceptions

from mwap import liveness
from mwap.connections import redis_client
from mwap.settings import Settings

logger = logging.getLogger(__name__)

RETRY_AFTER_FAILURE = 1.0  # seconds between attempts while the heartbeat cannot be written


class Heartbeat:
    """One worker run's liveness key, refreshed every ``worker_heartbeat_interval`` seconds."""

    def __init__(self, settings: Settings, node: str) -> None:
        self.settings = settings
        self.node = node
        self.run = liveness.new_run_id()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mwap-heartbeat", daemon=True)

    def beat(self) -> bool:
        """Refresh the key once; False (logged) when it could not be written."""
        try:
            liveness.beat(
                redis_client(self.settings), self.run, self.node, ttl=self.settings.worker_heartbeat_ttl
            )
        # Any error: the thread must outlive it, or this live worker would soon look dead.
        except Exception as error:  # noqa: BLE001
            logger.warning("worker %s: heartbeat not written (%s)", self.node, type(error).__name__)
            return False
        return True

    def start(self) -> None:
        self.beat()  # before any message is consumed; the thread retries if Redis was away
        self._thread.start()

    def _loop(self) -> None:
        wait: float = self.settings.worker_heartbeat_interval
        while not self._stopping.wait(wait):
            # After a failure, try every second: once Redis is back (a restart, a failover), this
            # worker's key is there again long before its TTL would let a check judge it dead.
            wait = self.settings.worker_heartbeat_interval if self.beat() else RETRY_AFTER_FAILURE

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.settings.redis_timeout + 1)
        try:
            liveness.stop(redis_client(self.settings), self.run)
        except redis_exceptions.RedisError as error:
            logger.warning("worker %s: heartbeat key left to expire (%s)", self.node, type(error).__name__)


class _Current:
    heartbeat: Heartbeat | None = None


def start(settings: Settings, node: str) -> Heartbeat:
    """Start this worker process's heartbeat (once)."""
    if _Current.heartbeat is None:
        _Current.heartbeat = Heartbeat(settings, node)
        _Current.heartbeat.start()
        logger.info("worker %s: heartbeat run %s", node, _Current.heartbeat.run)
    return _Current.heartbeat


def stop() -> None:
    """Stop this worker process's heartbeat, if it runs, and delete its key."""
    heartbeat, _Current.heartbeat = _Current.heartbeat, None
    if heartbeat is not None:
        heartbeat.stop()


def run_id() -> str | None:
    """This worker run's id, in its main process and (inherited) its pool; None outside a worker."""
    return _Current.heartbeat.run if _Current.heartbeat is not None else None
