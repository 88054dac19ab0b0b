"""A job's end, pushed through Redis: the worker publishes it, an API request waiting on the job wakes.

``GET /v1/jobs/{id}?wait=N`` subscribes to the job's channel, reads the ledger (a job that ended
before the subscription is seen there), then waits for the message or the deadline and reads the
ledger again. The ledger stays the truth: a lost message only means the request answers at its
deadline with what the ledger holds then. Pub/sub keeps nothing in Redis, so a job nobody waits
for costs one PUBLISH.
"""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from redis import Redis

PREFIX = "mwap:job-done:"


def channel(job_id: str) -> str:
    return f"{PREFIX}{job_id}"


def job_ended(redis: Redis, job_id: str, status: str) -> None:
    """Wake whoever waits on ``job_id`` (called after the ledger write that made it final)."""
    redis.publish(*notice(job_id, status))


def notice(job_id: str, status: str) -> tuple[str, str]:
    """The (channel, message) that ``job_ended`` publishes, for a caller publishing it along with
    other writes in one round trip (a worker's ``leases.let_go``)."""
    return channel(job_id), status


class Waiters:
    """A per-process cap on requests held open waiting: each holds a server thread and a Redis
    connection, so past the cap a request answers at once instead of waiting."""

    def __init__(self, limit: int) -> None:
        self._slots = threading.BoundedSemaphore(limit) if limit > 0 else None

    @contextmanager
    def slot(self) -> Iterator[bool]:
        """True while a waiting slot is held; False when every slot is taken (do not wait)."""
        if self._slots is None or not self._slots.acquire(blocking=False):
            yield False
            return
        try:
            yield True
        finally:
            self._slots.release()


def wait_until_final[T](
    redis: Redis,
    job_id: str,
    read: Callable[[], T],
    is_final: Callable[[T], bool],
    *,
    timeout: float,
) -> T:
    """``read()`` once the job is final or ``timeout`` seconds have passed, whichever comes first."""
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(channel(job_id))
        current = read()  # after subscribing: an end published from now on is not missed
        deadline = time.monotonic() + timeout
        while not is_final(current):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            message: Any = pubsub.get_message(timeout=remaining)
            if message is not None:
                current = read()
        return current
    finally:
        pubsub.close()
