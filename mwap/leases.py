"""Locks and leases in Redis: every key, expiry and Lua script the platform coordinates with.

A lease is a key that names its owner and expires by itself:

- ``mwap:lease:<tenant>:<kind>:<subject>``: "at most one active job per (job type, subject)". The
  dispatcher or API takes it with the new job id as owner; the worker that finishes the job
  releases it with a compare-and-delete, so a late finisher never frees a newer owner's lease. A
  worker that dies leaves it to expire. It lives ``Settings.broker_visibility_timeout`` seconds.
- ``mwap:exec:<job id>``: one execution of a job at a time (``exec_key``, ``exec_ttl``), owned by
  ``host:pid:delivery tag``; released by its delivery, or by the worker's main process when the
  pool process died (``release_if_held_by``), or by the reconciler (``release``).
- ``mwap:slots:<kind>:<subject>``: a counting semaphore (the tenant's running jobs, ``slot_ttl``).
- ``mwap:lock:oauth-refresh:<tenant>:<integration>``: the single-flight token refresh, a redis-py
  ``Lock`` (``refresh_lock_key``, ``REFRESH_LOCK_TTL``).

redis-py's ``Lock`` keeps its token in the acquiring object; for leases the owner acquiring (API,
dispatcher) and the one releasing (a worker) are different processes, so the two primitives are
used directly: ``SET NX EX`` and a compare-and-delete script. Each script is registered once per
client (``register_script``: EVALSHA, loading it again only if Redis answers NOSCRIPT).
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis, WatchError
from redis.commands.core import Script

from mwap.settings import Settings

PREFIX = "mwap:lease:"
EXEC_PREFIX = "mwap:exec:"
SLOTS_PREFIX = "mwap:slots:"
REFRESH_LOCK_PREFIX = "mwap:lock:oauth-refresh:"
REFRESH_LOCK_TTL = 60  # seconds; longer than one token call with its retries

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# Delete the key only if its owner starts with ARGV[1] (a dead pool process: "host:pid:").
_RELEASE_IF_HELD_BY = """
local holder = redis.call('get', KEYS[1])
if holder and string.sub(holder, 1, string.len(ARGV[1])) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# Counting semaphore: a sorted set of holders scored by expiry, so a dead holder's slot frees itself.
_SLOT_ACQUIRE = """
local now = tonumber(ARGV[3])
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if redis.call('zscore', KEYS[1], ARGV[1]) or redis.call('zcard', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('zadd', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
  redis.call('expire', KEYS[1], tonumber(ARGV[4]))
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class _Scripts:
    release: Script
    release_if_held_by: Script
    slot_acquire: Script


@functools.lru_cache(maxsize=64)  # one entry per client; a process holds a few
def _scripts(client: Redis) -> _Scripts:
    return _Scripts(
        release=client.register_script(_RELEASE),
        release_if_held_by=client.register_script(_RELEASE_IF_HELD_BY),
        slot_acquire=client.register_script(_SLOT_ACQUIRE),
    )


def key(kind: str, subject: str, tenant_id: object | None = None) -> str:
    """``mwap:lease:<tenant>:<kind>:<subject>``: the tenant is part of every lease, so a subject id
    that shows up again under another tenant can never find (or be handed) that tenant's job."""
    return f"{PREFIX}{tenant_id if tenant_id is not None else '-'}:{kind}:{subject}"


def acquire(redis: Redis, lease_key: str, owner: str, ttl: int) -> bool:
    return bool(redis.set(lease_key, owner, nx=True, ex=ttl))


def acquire_many(redis: Redis, leases: Sequence[tuple[str, str]], ttl: int) -> list[bool]:
    """Try several (key, owner) leases in one round trip; True where taken."""
    if not leases:
        return []
    pipe = redis.pipeline(transaction=False)
    for lease_key, owner in leases:
        pipe.set(lease_key, owner, nx=True, ex=ttl)
    return [bool(taken) for taken in pipe.execute()]


def holders(redis: Redis, lease_keys: Sequence[str]) -> list[str | None]:
    if not lease_keys:
        return []
    return [_text(value) if value is not None else None for value in redis.mget(lease_keys)]


def take_over(redis: Redis, lease_key: str, stale_owner: str, owner: str, ttl: int) -> bool:
    """Replace a lease whose owner is known to be finished; False if someone else holds it now."""
    pipe = redis.pipeline(transaction=True)
    try:
        pipe.watch(lease_key)
        current = pipe.get(lease_key)
        if current is not None and _text(current) != stale_owner:
            return False
        pipe.multi()
        pipe.set(lease_key, owner, ex=ttl)
        pipe.execute()
        return True
    except WatchError:  # another writer changed it between our read and write
        return False
    finally:
        pipe.reset()


def release(redis: Redis, lease_key: str, owner: str) -> bool:
    """Delete the key if ``owner`` still holds it (compare-and-delete); True if deleted."""
    return bool(_scripts(redis).release(keys=[lease_key], args=[owner]))


def release_if_held_by(redis: Redis, lease_key: str, owner_prefix: str) -> bool:
    """Delete the key if its owner starts with ``owner_prefix``; True if deleted."""
    return bool(_scripts(redis).release_if_held_by(keys=[lease_key], args=[owner_prefix]))


def job_lease_ttl(settings: Settings) -> int:
    """A (type, subject) lease outlives its job's message: a message Redis has not redelivered
    yet (the broker's visibility timeout) still holds it."""
    return settings.broker_visibility_timeout


def exec_key(job_id: str) -> str:
    """The execution lock of a job: held by the one delivery running it."""
    return f"{EXEC_PREFIX}{job_id}"


def exec_ttl(settings: Settings) -> int:
    """Seconds an execution lock lives: past the task's hard time limit, so it outlasts its holder."""
    return settings.task_time_limit + 30


def refresh_lock_key(tenant_id: object, integration_id: object) -> str:
    """The single-flight refresh lock of an integration. The tenant is part of it: one tenant's
    refresh never waits on (or frees) another's."""
    return f"{REFRESH_LOCK_PREFIX}{tenant_id}:{integration_id}"


def slot_key(kind: str, subject: str) -> str:
    return f"{SLOTS_PREFIX}{kind}:{subject}"


def slot_ttl(settings: Settings) -> int:
    """Seconds a running job's slot lives: past the task's hard time limit."""
    return settings.task_time_limit + 60


def acquire_slot(redis: Redis, slots_key: str, holder: str, *, limit: int, ttl: int) -> bool:
    """Take one of ``limit`` slots for ``holder`` (re-entrant) for at most ``ttl`` seconds."""
    now = redis.time()
    moment = now[0] + now[1] / 1e6
    return bool(_scripts(redis).slot_acquire(keys=[slots_key], args=[holder, limit, moment, ttl]))


def release_slot(redis: Redis, slots_key: str, holder: str) -> None:
    redis.zrem(slots_key, holder)


def _text(value: bytes | str) -> str:
    """A stored owner as text: the clients here return bytes, redis-py's types allow either."""
    return value.decode() if isinstance(value, bytes) else value
