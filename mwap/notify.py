"""A job's end, pushed through Redis: the worker publishes it, an API request waiting on the job wakes.

``GET /v1/jobs/{id}?wait=N`` subscribes to the job's channel, then reads the ledger (a job that
ended before the subscription is seen there), then waits for the message or the deadline. The
message carries the job's final ledger document as the worker's write returned it (BSON, when it
is small), so the woken request answers without reading the ledger again; a larger document, or a
notice from a path that has no document (a cancellation), carries only the status and the
request reads the ledger. The ledger stays the truth: a lost message only means the request
answers at its deadline with what the ledger holds then. Pub/sub keeps nothing in Redis, so a job
nobody waits for costs one PUBLISH.
"""

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import bson
from bson.codec_options import CodecOptions
from bson.errors import BSONError
from redis import Redis, RedisError

PREFIX = "mwap:job-done:"
# A notice carries the final document up to this size (a job's result summary is small; a large
# one is read from the ledger by whoever waits).
DOCUMENT_MAX_BYTES = 16 * 1024
_DOCUMENT = b"D"  # the message's first byte: a BSON document follows
_STATUS = b"S"  # ... or only the status


def channel(job_id: str) -> str:
    return f"{PREFIX}{job_id}"


def job_ended(redis: Redis, job_id: str, status: str, document: Mapping[str, Any] | None = None) -> None:
    """Wake whoever waits on ``job_id`` (called after the ledger write that made it final)."""
    redis.publish(*notice(job_id, status, document))


def notice(job_id: str, status: str, document: Mapping[str, Any] | None = None) -> tuple[str, bytes]:
    """The (channel, message) that ``job_ended`` publishes, for a caller publishing it along with
    other writes in one round trip (a worker's ``leases.let_go``): the final ``document`` when one
    is given and small enough, else the status."""
    if document is not None:
        encoded = bson.encode(document)
        if len(encoded) <= DOCUMENT_MAX_BYTES:
            return channel(job_id), _DOCUMENT + encoded
    return channel(job_id), _STATUS + status.encode()


def ended_document(message: bytes, codec_options: CodecOptions[Any]) -> dict[str, Any] | None:
    """The final document a notice carries, decoded as the database's client decodes (``codec_options``);
    None when it carries only a status or is not a notice."""
    if not message.startswith(_DOCUMENT):
        return None
    try:
        return dict(bson.decode(message[1:], codec_options))
    except BSONError:
        return None


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


def wait_until_final(
    redis: Redis,
    job_id: str,
    read: Callable[[], dict[str, Any] | None],
    is_final: Callable[[dict[str, Any] | None], bool],
    *,
    timeout: float,
    codec_options: CodecOptions[Any],
) -> dict[str, Any] | None:
    """The job as ``read()`` (tenant-scoped by the caller) finds it once it is final or ``timeout``
    seconds have passed, whichever comes first: ``read()`` once, then the document the end notice
    carries (another read only when it carries none). Without Redis, the one ``read()``."""
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    try:
        try:
            pubsub.subscribe(channel(job_id))
        except RedisError:
            return read()
        current = read()  # after subscribing: an end published from now on is not missed
        deadline = time.monotonic() + timeout
        while not is_final(current):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            message: Any = pubsub.get_message(timeout=remaining)
            if message is None:
                continue
            ended = ended_document(message["data"], codec_options)
            # The caller's read proved the job is theirs: the notice must name that very job.
            if current is not None and ended is not None and _same_job(ended, current):
                current = ended
            else:
                current = read()
        return current
    finally:
        pubsub.close()


def _same_job(ended: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    return ended.get("_id") == current.get("_id") and ended.get("tenantId") == current.get("tenantId")
