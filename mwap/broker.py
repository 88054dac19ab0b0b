"""The one reader of kombu's Redis transport internals: queue lists, the unacked hash, messages.

Celery's Redis broker (``kombu.transport.redis``) keeps each queue as one Redis list per priority
step (``Channel.priority_steps``): the queue's own name for step 0, ``<queue><sep><step>`` for the
others. Producers LPUSH and consumers RPOP, so a list's oldest message is its last element. A
message handed to a consumer that has not acknowledged it yet (a running job, or one a worker
holds until its ETA) sits in the hash ``unacked`` (delivery tag -> JSON ``[message, exchange,
routing key]``), its delivery time in the sorted set ``unacked_index``; kombu puts it back in its
queue once the visibility timeout has passed. A message is kombu's envelope around Celery's
protocol 2: ``headers.id`` is the task id (the job id), ``headers.eta`` an ISO time or null, and
``headers.mwap_sent_at`` our producers' publish time (``worker/signals.py``).

The queue metrics, ``mwap queues`` and the reconciler read the broker through this module only.
Names come from kombu's ``Channel`` rather than being spelled again; ``tests/test_broker_adapter.py``
checks them against the pinned kombu with real messages. The app sets none of the transport
options that would move them (``global_keyprefix``, ``sep``, ``priority_steps``, ``unacked_key``).
"""

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple, cast

import redis
from kombu.transport.redis import Channel as RedisChannel

from mwap.jobtypes import Queue

SENT_AT_HEADER: Final = "mwap_sent_at"  # stamped by every producer of ours, at publish time
UNACKED_KEY: Final[str] = RedisChannel.unacked_key
UNACKED_INDEX_KEY: Final[str] = RedisChannel.unacked_index_key
PRIORITY_STEPS: Final[tuple[int, ...]] = tuple(RedisChannel.priority_steps)
# Beyond this many messages (waiting and held), the reconciler does not read them one by one.
SCAN_LIMIT: Final = 50_000


def queue_keys(queue: str) -> list[str]:
    """The Redis lists holding ``queue``'s waiting messages, one per priority step (kombu's
    ``Channel._q_for_pri``)."""
    return [f"{queue}{RedisChannel.sep}{step}" if step else queue for step in PRIORITY_STEPS]


def all_queues() -> list[str]:
    """Every queue the platform's workers consume."""
    return [queue.value for queue in Queue]


class QueueStat(NamedTuple):
    """One queue's waiting messages: how many, and when the oldest was published (if stamped)."""

    depth: int
    oldest_sent_at: float | None

    def oldest_age(self, now: float) -> float | None:
        """Seconds the oldest waiting message has waited: 0 when none waits, None when unknown."""
        if self.depth == 0:
            return 0.0
        if self.oldest_sent_at is None:
            return None
        return max(now - self.oldest_sent_at, 0.0)


def queue_stats(client: redis.Redis, queues: Iterable[str]) -> dict[str, QueueStat]:
    """Per queue: messages waiting, and the publish time of the oldest one (None if unknown).

    One pipelined round trip: LLEN and LINDEX -1 per list. A message without the ``mwap_sent_at``
    header (sent by something else) leaves the age unknown rather than guessed.
    """
    queues = list(queues)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for key in queue_keys(queue):
            pipe.llen(key)
            pipe.lindex(key, -1)
    replies = iter(pipe.execute())
    stats: dict[str, QueueStat] = {}
    for queue in queues:
        depth, oldest = 0, None
        for _key in queue_keys(queue):
            length, raw = next(replies), next(replies)
            depth += int(length or 0)
            sent_at = sent_at_of(decode(raw))
            if sent_at is not None:
                oldest = sent_at if oldest is None else min(oldest, sent_at)
        stats[queue] = QueueStat(depth, oldest)
    return stats


@dataclass(frozen=True, slots=True)
class Held:
    """A message delivered to a consumer and not acknowledged yet."""

    job_id: str | None
    delivered_at: float | None  # unix time; None when the index has no entry for it
    eta: float | None  # unix time the worker holds it until; None for an immediate job


def waiting_job_ids(client: redis.Redis, queues: Iterable[str]) -> set[str]:
    """Ids of the jobs whose message waits in one of ``queues``."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for key in queue_keys(queue):
            pipe.lrange(key, 0, -1)
    ids = {job_id_of(decode(raw)) for replies in pipe.execute() for raw in replies}
    return {job_id for job_id in ids if job_id is not None}


def held_messages(client: redis.Redis) -> list[Held]:
    """Every message held unacknowledged by a consumer, with its delivery time and ETA."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(UNACKED_KEY)
    pipe.zrange(UNACKED_INDEX_KEY, 0, -1, withscores=True)
    entries, scored = pipe.execute()
    delivered = {_text(tag): float(score) for tag, score in cast(list[tuple[bytes | str, float]], scored)}
    held = []
    for tag, entry in cast(dict[bytes | str, bytes | str], entries).items():
        message = _unacked_message(entry)
        held.append(Held(job_id_of(message), delivered.get(_text(tag)), eta_of(message)))
    return held


def held_job_ids(client: redis.Redis, *, held_for: float, now: float | None = None) -> set[str]:
    """Ids of held jobs whose delivery is recent (under ``held_for`` seconds) or whose ETA is ahead.

    A message held longer, with no ETA ahead (a retry's countdown), belongs to a worker that died
    with it: Redis would give it back only after the visibility timeout.
    """
    now = time.time() if now is None else now
    cutoff = now - held_for
    return {
        message.job_id
        for message in held_messages(client)
        if message.job_id is not None
        and (
            (message.eta is not None and message.eta > now)
            or message.delivered_at is None
            or message.delivered_at > cutoff
        )
    }


def drop_held(client: redis.Redis, delivery_tags: Iterable[str]) -> int:
    """Forget messages held by a consumer known to be dead, by delivery tag (kombu's are uuids);
    how many were there. What kombu's ack does (``QoS._remove_from_indices``), so the visibility
    timeout never restores them; a live consumer's later ack of one finds nothing and does nothing."""
    tags = list(delivery_tags)
    if not tags:
        return 0
    pipe = client.pipeline(transaction=True)
    pipe.zrem(UNACKED_INDEX_KEY, *tags)
    pipe.hdel(UNACKED_KEY, *tags)
    return int(pipe.execute()[1] or 0)


def broker_job_ids(
    client: redis.Redis, *, held_for: float, queues: Iterable[str] | None = None
) -> set[str] | None:
    """Ids of jobs whose message waits in a queue or is held by a worker; None if too many to scan.

    Held messages count as in ``held_job_ids``. ``queues`` defaults to every platform queue.
    """
    queues = all_queues() if queues is None else list(queues)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for key in queue_keys(queue):
            pipe.llen(key)
    pipe.hlen(UNACKED_KEY)
    if sum(int(n or 0) for n in pipe.execute()) > SCAN_LIMIT:
        return None
    return waiting_job_ids(client, queues) | held_job_ids(client, held_for=held_for)


# --- one message ---------------------------------------------------------------------------------


def decode(raw: bytes | str | None) -> dict[str, Any] | None:
    """A message as kombu stored it (JSON), or None for nothing or anything unreadable."""
    if not raw:
        return None
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _unacked_message(entry: bytes | str) -> dict[str, Any] | None:
    # kombu's QoS.append stores dumps([message._raw, exchange, routing_key]).
    try:
        stored = json.loads(entry)
    except ValueError:
        return None
    message = stored[0] if isinstance(stored, list) and stored else None
    return message if isinstance(message, dict) else None


def _headers(message: dict[str, Any] | None) -> dict[str, Any]:
    headers = (message or {}).get("headers")
    return headers if isinstance(headers, dict) else {}


def job_id_of(message: dict[str, Any] | None) -> str | None:
    """The task id (our job id) of a Celery message."""
    job_id = _headers(message).get("id")
    return job_id if isinstance(job_id, str) else None


def eta_of(message: dict[str, Any] | None) -> float | None:
    """The unix time a Celery message's ETA names; None without one (or an unreadable one)."""
    eta = _headers(message).get("eta")
    try:
        return datetime.fromisoformat(eta).timestamp() if isinstance(eta, str) else None
    except ValueError:
        return None


def sent_at_of(message: dict[str, Any] | None) -> float | None:
    """The publish time our producers stamp on a message; None if it is not ours."""
    try:
        return float(_headers(message)[SENT_AT_HEADER])
    except (ValueError, TypeError, KeyError):
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
