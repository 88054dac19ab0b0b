"""Per-tenant daily counters kept in Redis between aggregations (API and provider requests).

Cheap to bump on hot paths (one INCRBY, expiring), read by ``tenant.aggregate_usage`` into
``usageDaily``. Keys: ``mwap:usage:<kind>:<tenantId>:<YYYY-MM-DD>``.
"""

from datetime import UTC, date, datetime

from bson import ObjectId
from redis import Redis

KEEP_SECONDS = 40 * 86400  # long enough for any re-aggregation window we run automatically
API_REQUESTS = "api"
PROVIDER_REQUESTS = "provider"


def key(kind: str, tenant_id: ObjectId | str, day: date) -> str:
    return f"mwap:usage:{kind}:{tenant_id}:{day.isoformat()}"


def bump(
    redis: Redis, kind: str, tenant_id: ObjectId | str, amount: int = 1, *, day: date | None = None
) -> None:
    day = day or datetime.now(UTC).date()
    pipe = redis.pipeline(transaction=False)
    pipe.incrby(key(kind, tenant_id, day), amount)
    pipe.expire(key(kind, tenant_id, day), KEEP_SECONDS)
    pipe.execute()


def read(redis: Redis, kind: str, tenant_id: ObjectId | str, days: list[date]) -> dict[date, int]:
    values = redis.mget([key(kind, tenant_id, day) for day in days]) if days else []
    return {day: int(value or 0) for day, value in zip(days, values, strict=True)}
