"""Rate limits in Redis: GCRA (a token bucket kept as one timestamp), one round trip.

Each bucket allows ``burst`` requests at once and then one every ``60 / per_minute`` seconds. A
bucket is a single "theoretical arrival time", advanced by a Lua script that also reads Redis's
clock, so every API process on every host shares one budget and one time source.

One call checks several buckets at once and takes from all of them or from none: a tenant key's
request draws from the key's bucket and from its tenant's (every key of a tenant shares that one),
so minting more keys buys no more throughput. The same script bumps the tenant's daily API-request
counter (``mwap.usage``), read by the usage rollup, so counting costs no extra round trip.

Failed authentications have buckets of their own, per client address: ``peek`` asks whether one
more would be allowed without taking it (before the key lookup), ``check`` takes one (after a
failure), so a legitimate client's successful requests never draw from that budget.

Neither redis-py nor a small maintained library offers this in one round trip with our counter
beside it (``limits`` has fixed and moving windows); the script is short enough to own.
"""

import functools
import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis
from redis.commands.core import Script

from mwap import usage

PREFIX = "mwap:ratelimit:"

# KEYS[1..n] buckets, KEYS[n+1] usage counter or "".
# ARGV[1] usage counter expiry in seconds, ARGV[2] "take" or "peek", then per bucket its emission
# interval in ms and its burst. Returns {allowed (1/0), retry after in ms}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS - 1
local wait = 0
local tats = {}
for i = 1, n do
  local interval = tonumber(ARGV[1 + 2 * i])
  local tolerance = interval * tonumber(ARGV[2 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  if new_tat - now > tolerance then
    wait = math.max(wait, new_tat - now - tolerance)
  end
  tats[i] = new_tat
end
if wait > 0 then return {0, wait} end
if ARGV[2] == 'take' then
  for i = 1, n do
    redis.call('SET', KEYS[i], tats[i], 'PX', tats[i] - now)
  end
  if KEYS[n + 1] ~= '' then
    redis.call('INCR', KEYS[n + 1])
    redis.call('EXPIRE', KEYS[n + 1], ARGV[1])
  end
end
return {1, 0}
"""


@dataclass(frozen=True, slots=True)
class Budget:
    """One bucket: its name (below ``PREFIX``) and its rate; ``per_minute`` 0 means unlimited."""

    bucket: str
    per_minute: int
    burst: int


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: int  # whole seconds, at least 1 when not allowed


@functools.cache
def _script(client: Redis) -> Script:
    # EVALSHA with a fallback to EVAL on NOSCRIPT: one round trip once Redis has cached it.
    return client.register_script(_GCRA)


def _run(client: Redis, budgets: Sequence[Budget], counter: str, mode: str) -> Verdict:
    limited = [b for b in budgets if b.per_minute > 0]
    if not limited and not counter:
        return Verdict(True, 0)
    args: list[int | str] = [usage.KEEP_SECONDS, mode]
    for budget in limited:
        args += [math.ceil(60_000 / budget.per_minute), max(budget.burst, 1)]
    allowed, retry_ms = _script(client)(keys=[*(PREFIX + b.bucket for b in limited), counter], args=args)
    return Verdict(bool(allowed), 0 if allowed else max(1, math.ceil(int(retry_ms) / 1000)))


def check(client: Redis, budgets: Sequence[Budget], *, tenant_id: str | None = None) -> Verdict:
    """Take one request from every budget, or from none when any is spent; with ``tenant_id``,
    count an allowed request in the tenant's daily usage."""
    counter = usage.key(usage.API_REQUESTS, tenant_id, datetime.now(UTC).date()) if tenant_id else ""
    return _run(client, budgets, counter, "take")


def peek(client: Redis, budgets: Sequence[Budget]) -> Verdict:
    """Whether one more request would be allowed, taking nothing."""
    return _run(client, budgets, "", "peek")


def key_budget(key_id: str, *, per_minute: int, burst: int) -> Budget:
    return Budget(key_id, per_minute, burst)


def tenant_budget(tenant_id: str, *, per_minute: int, burst: int) -> Budget:
    return Budget(f"tenant:{tenant_id}", per_minute, burst)


def address_bucket(address: str) -> str:
    """The failed-authentication bucket of a client address. An IPv6 client usually holds a whole
    /64, so that is what one budget covers; anything unparsable shares one bucket."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return "authfail:unknown"
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        return f"authfail:{ipaddress.ip_network(f'{ip}/64', strict=False).network_address}/64"
    return f"authfail:{ip}"
