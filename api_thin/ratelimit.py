"""Per-key rate limits in Redis: GCRA (a token bucket kept as one timestamp), one round trip.

Each key may make ``burst`` requests at once and then one every ``60 / per_minute`` seconds. The
bucket is a single "theoretical arrival time" per key, advanced by a Lua script that also reads
Redis's clock, so every API process on every host shares one budget and one time source. The
same script bumps the tenant's daily API-request counter (``mwap.usage``), read by the usage
rollup, so counting costs no extra round trip.

Neither redis-py nor a small maintained library offers this in one round trip with our counter
beside it (``limits`` has fixed and moving windows); the script is short enough to own.
"""

import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis
from redis.commands.core import Script

from mwap import usage

PREFIX = "mwap:ratelimit:"

# KEYS[1] bucket, KEYS[2] usage counter or "" ; ARGV[1] emission interval in ms (0: no limit),
# ARGV[2] burst, ARGV[3] usage counter expiry in seconds.
# Returns {allowed (1/0), retry after in ms}.
_GCRA = """
local interval = tonumber(ARGV[1])
if interval > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local tat = tonumber(redis.call('GET', KEYS[1])) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local tolerance = interval * tonumber(ARGV[2])
  if new_tat - now > tolerance then
    return {0, new_tat - now - tolerance}
  end
  redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
end
if KEYS[2] ~= '' then
  redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return {1, 0}
"""


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: int  # whole seconds, at least 1 when not allowed


@functools.cache
def _script(client: Redis) -> Script:
    # EVALSHA with a fallback to EVAL on NOSCRIPT: one round trip once Redis has cached it.
    return client.register_script(_GCRA)


def check(
    client: Redis, bucket: str, *, per_minute: int, burst: int, tenant_id: str | None = None
) -> Verdict:
    """Take one request from ``bucket``; with ``tenant_id``, count it in the tenant's daily usage."""
    interval_ms = math.ceil(60_000 / per_minute) if per_minute > 0 else 0
    counter = usage.key(usage.API_REQUESTS, tenant_id, datetime.now(UTC).date()) if tenant_id else ""
    if not interval_ms and not counter:
        return Verdict(True, 0)
    allowed, retry_ms = _script(client)(
        keys=[PREFIX + bucket, counter], args=[interval_ms, max(burst, 1), usage.KEEP_SECONDS]
    )
    return Verdict(bool(allowed), 0 if allowed else max(1, math.ceil(int(retry_ms) / 1000)))
