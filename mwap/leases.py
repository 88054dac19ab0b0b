"""Leases in Redis: a key that names its owner and expires by itself.

Used for "at most one active job per (job type, subject)" and for single-flight work. The
dispatcher or API takes the lease with the new job id as owner; the worker that finishes the job
releases it with a compare-and-delete, so a late finisher never frees a newer owner's lease. A
worker that dies leaves the lease to expire.

redis-py's ``Lock`` keeps its token in the acquiring object; here the owner acquiring (API,
dispatcher) and the one releasing (a worker) are different processes, so the two primitives are
used directly: ``SET NX EX`` and a compare-and-delete script.
"""

from collections.abc import Sequence

from redis import Redis, WatchError

PREFIX = "mwap:lease:"

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end
return 0
"""


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
    return bool(redis.eval(_RELEASE, 1, lease_key, owner))


def extend(redis: Redis, lease_key: str, owner: str, ttl: int) -> bool:
    return bool(redis.eval(_EXTEND, 1, lease_key, owner, ttl))


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


def slot_key(kind: str, subject: str) -> str:
    return f"mwap:slots:{kind}:{subject}"


def acquire_slot(redis: Redis, slots_key: str, holder: str, *, limit: int, ttl: int) -> bool:
    """Take one of ``limit`` slots for ``holder`` (re-entrant) for at most ``ttl`` seconds."""
    now = redis.time()
    return bool(redis.eval(_SLOT_ACQUIRE, 1, slots_key, holder, limit, now[0] + now[1] / 1e6, ttl))


def release_slot(redis: Redis, slots_key: str, holder: str) -> None:
    redis.zrem(slots_key, holder)


def _text(value: bytes | str) -> str:
    """A stored owner as text: the clients here return bytes, redis-py's types allow either."""
    return value.decode() if isinstance(value, bytes) else value
