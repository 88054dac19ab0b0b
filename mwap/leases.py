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

A delivery's end lets go of everything it held in one round trip (``let_go``: its execution lock,
its tenant slot, the job's lease once the job is final, and the notice that it ended), and a slot
is taken on Redis's own clock inside its script: a job costs the worker two Redis round trips of
its own (three with a tenant slot), whatever it held.
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
# Redis's clock, read inside the script: every worker host agrees on it, and it costs no round trip.
_SLOT_ACQUIRE = """
local time = redis.call('time')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if redis.call('zscore', KEYS[1], ARGV[1]) or redis.call('zcard', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('zadd', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('expire', KEYS[1], tonumber(ARGV[3]))
  return 1
end
return 0
"""
# Everything a delivery lets go of at its end, in one call. KEYS[1..n] are compare-and-deleted
# against ARGV[1+i] (n = ARGV[1]); KEYS[n+1..n+d] are deleted (d = ARGV[2+n]); KEYS[n+d+1..n+d+m]
# are sorted sets losing member ARGV[3+n+j] (m = ARGV[3+n]); then, when ARGV[4+n+m] is not empty,
# ARGV[5+n+m] is published on that channel.
_LET_GO = """
local n = tonumber(ARGV[1])
for i = 1, n do
  if redis.call('get', KEYS[i]) == ARGV[1 + i] then redis.call('del', KEYS[i]) end
end
local d = tonumber(ARGV[2 + n])
for i = 1, d do
  redis.call('del', KEYS[n + i])
end
local m = tonumber(ARGV[3 + n])
for j = 1, m do
  redis.call('zrem', KEYS[n + d + j], ARGV[3 + n + j])
end
local channel = ARGV[4 + n + m]
if channel ~= '' then redis.call('publish', channel, ARGV[5 + n + m]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class _Scripts:
    release: Script
    release_if_held_by: Script
    slot_acquire: Script
    let_go: Script


@functools.lru_cache(maxsize=64)  # one entry per client; a process holds a few
def _scripts(client: Redis) -> _Scripts:
    return _Scripts(
        release=client.register_script(_RELEASE),
        release_if_held_by=client.register_script(_RELEASE_IF_HELD_BY),
        slot_acquire=client.register_script(_SLOT_ACQUIRE),
        let_go=client.register_script(_LET_GO),
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
    return bool(_scripts(redis).slot_acquire(keys=[slots_key], args=[holder, limit, ttl]))


def release_slot(redis: Redis, slots_key: str, holder: str) -> None:
    redis.zrem(slots_key, holder)


def let_go(
    redis: Redis,
    *,
    owned: Sequence[tuple[str, str]] = (),
    dropped: Sequence[str] = (),
    slots: Sequence[tuple[str, str]] = (),
    publish: tuple[str, str | bytes] | None = None,
) -> None:
    """In one round trip: compare-and-delete each (key, owner) of ``owned`` (what ``release``
    does), delete the keys of ``dropped`` whoever holds them, take each (slots key, holder) of
    ``slots`` out of its semaphore (``release_slot``), then publish (channel, message).

    Only a compare needs a script; without one this is a plain pipeline. Nothing to do costs
    nothing."""
    if owned:
        channel, message = publish if publish is not None else ("", "")
        keys = [key for key, _ in owned] + list(dropped) + [key for key, _ in slots]
        args: list[str | bytes | int] = [len(owned), *(owner for _, owner in owned), len(dropped), len(slots)]
        args += [*(holder for _, holder in slots), channel, message]
        _scripts(redis).let_go(keys=keys, args=args)
        return
    if not dropped and not slots and publish is None:
        return
    pipe = redis.pipeline(transaction=False)
    if dropped:
        pipe.delete(*dropped)
    for slots_key, holder in slots:
        pipe.zrem(slots_key, holder)
    if publish is not None:
        pipe.publish(*publish)
    pipe.execute()


def _text(value: bytes | str) -> str:
    """A stored owner as text: the clients here return bytes, redis-py's types allow either."""
    return value.decode() if isinstance(value, bytes) else value
