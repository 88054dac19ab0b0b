"""``Idempotency-Key`` on POST: a replay gets the first answer and does nothing again.

Per (principal scope, key) Redis holds first a claim — the request's hash, while it is in
flight — then what a replay needs, for ``idempotency_ttl`` seconds (24 h by default). One Lua call
claims or reads; a second call stores the answer.

- same key, same request, answered: the same status, job ids and Location
  (``Idempotent-Replayed``); a job answer (one job or a batch) is rebuilt from the ledger, so it
  shows the jobs as they are now
- same key, another request (method, path, query or body bytes differ): 409
- same key while the first is still in flight: 409 with ``Retry-After: 1`` (no waiting in a
  request thread; the client retries and then gets the stored answer)
- only successful (2xx) answers are kept: after a 4xx or a failure the key is free again, so a
  client can fix its request and retry with the same key.

Keys are scoped per tenant (any of its API keys) or admin, so tenants cannot collide.

Memory is bounded per scope, not only by time: a record holds the request's fingerprint, the
status, the Location and the job ids (a 100-job batch is ~3 KB, not its ~54 KB body); only the
small one-resource answers of the registration endpoints keep their body. Each scope has an
index (a sorted set by write time) and a size ledger (a hash); once a scope's records take more
than ``idempotency_tenant_bytes`` (counted with Redis's per-entry overhead), its oldest keys are
forgotten first. All keys of a scope share a Redis Cluster hash tag (``{tenant:<id>}``).
"""

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, cast

from flask import Response, current_app, request, url_for
from pydantic import BaseModel
from pymongo.collection import Collection
from redis import Redis
from redis.commands.core import Script

from api_thin import context
from api_thin.auth import Principal
from api_thin.problems import Problem
from api_thin.schemas import BatchItemOut, BatchOut
from mwap import ledger
from mwap.store import Document, Store, TenantCollection

HEADER = "Idempotency-Key"
PATTERN = r"^[!-~]{1,255}$"  # visible ASCII
PREFIX = "mwap:idempotency:"
# A claim outlives any request: gunicorn kills a request after 30 s (api_thin/gunicorn_conf.py).
CLAIM_TTL = 60
# What Redis spends per record beyond its value (the key and its expiry, the index's and the size
# hash's entries), and the allocator's rounding of the value (an eighth): measured on Redis 7 with
# MEMORY USAGE and INFO used_memory, rounded up, so the budget is an upper bound of real memory.
ENTRY_OVERHEAD = 640
_KEPT_HEADERS = ("Content-Type", "Location")

# Shared by the scripts: remember that member ARGV[2] holds `value` (charged with its overhead), then forget expired and
# (oldest first, never the one just written) over-budget records of the scope.
#   KEYS[1] record, KEYS[2] index (zset member -> ms written), KEYS[3] sizes (hash member -> bytes,
#   plus "total"); ARGV[1] prefix of the scope's record keys, ARGV[2] member, ARGV[3] ttl seconds,
#   ARGV[4] budget bytes.
_ACCOUNT = """
local function forget(member)
  redis.call('DEL', ARGV[1] .. member)
  local size = tonumber(redis.call('HGET', KEYS[3], member) or '0')
  redis.call('HDEL', KEYS[3], member)
  redis.call('HINCRBY', KEYS[3], 'total', -size)
  redis.call('ZREM', KEYS[2], member)
end
local function account(value, overhead)
  local size = #value + math.floor(#value / 8) + tonumber(overhead)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local ttl_ms = tonumber(ARGV[3]) * 1000
  local old = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
  redis.call('HSET', KEYS[3], ARGV[2], size)
  redis.call('HINCRBY', KEYS[3], 'total', size - old)
  redis.call('ZADD', KEYS[2], now, ARGV[2])
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl_ms, 'LIMIT', 0, 100)) do
    forget(member)
  end
  local budget = tonumber(ARGV[4])
  while tonumber(redis.call('HGET', KEYS[3], 'total') or '0') > budget do
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
    if not oldest or oldest == ARGV[2] then break end
    forget(oldest)
  end
  redis.call('PEXPIRE', KEYS[2], ttl_ms)
  redis.call('PEXPIRE', KEYS[3], ttl_ms)
end
"""

# Claim the record with ARGV[5] for ARGV[6] seconds, or return what it holds.
_CLAIM = (
    _ACCOUNT
    + """
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[5], 'EX', ARGV[6])
account(ARGV[5], ARGV[7])
return false
"""
)

# Store the answer ARGV[5] for the ttl.
_COMPLETE = (
    _ACCOUNT
    + """
redis.call('SET', KEYS[1], ARGV[5], 'EX', ARGV[3])
account(ARGV[5], ARGV[6])
return true
"""
)

# Let the key go.
_ABANDON = (
    _ACCOUNT
    + """
forget(ARGV[2])
return true
"""
)


@functools.cache
def _scripts(client: Redis) -> dict[str, Script]:
    return {
        name: client.register_script(source)
        for name, source in (("claim", _CLAIM), ("complete", _COMPLETE), ("abandon", _ABANDON))
    }


@dataclass(frozen=True, slots=True)
class _Keys:
    """The Redis names of one Idempotency-Key of one scope."""

    scope: str
    member: str  # sha256 of the client's key

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{{{self.scope}}}:"

    @property
    def record(self) -> str:
        return self.prefix + self.member

    @property
    def index(self) -> str:
        return f"{PREFIX}{{{self.scope}}}"

    @property
    def sizes(self) -> str:
        return self.prefix + "sizes"

    def call(self, name: str, *extra: Any) -> Any:
        redis = context.redis()
        args = [
            self.prefix,
            self.member,
            context.option("idempotency_ttl"),
            context.option("idempotency_tenant_bytes"),
            *extra,
        ]
        return _scripts(redis)[name](keys=[self.record, self.index, self.sizes], args=args)


def scope_keys(scope: str) -> str:
    """The SCAN pattern matching every Redis key of one scope (for operators and tests)."""
    return f"{PREFIX}{{{scope}}}*"


def _job_location(job_id: str) -> str:
    return url_for("get_job", jobId=job_id)


def _replay_of(response: Response) -> dict[str, Any]:
    """What a replay of ``response`` needs: job ids when it answers with jobs, else its body."""
    headers = {name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers}
    body = response.get_json(silent=True) if response.is_json else None
    if isinstance(body, dict):
        items = body.get("items")
        if set(body) == {"items"} and isinstance(items, list):
            try:
                jobs = [item["job"]["id"] for item in items]
                created = "".join("1" if item["created"] else "0" for item in items)
            except (KeyError, TypeError):
                jobs = None
            if jobs is not None and all(isinstance(j, str) for j in jobs):
                return {"kind": "batch", "jobs": jobs, "created": created}
        job_id = body.get("id")
        if isinstance(job_id, str) and headers.get("Location") == _job_location(job_id):
            return {"kind": "job", "jobs": [job_id], "location": headers["Location"]}
    if isinstance(body, dict) and isinstance(body.get("secret"), str):
        # A secret shown once (a webhook's signing secret) never rests in Redis: a replay has null.
        return {"kind": "body", "headers": headers, "body": json.dumps({**body, "secret": None})}
    return {"kind": "body", "headers": headers, "body": response.get_data(as_text=True)}


@dataclass(slots=True)
class Claim:
    """This request holds the key: store its answer, or let the key go."""

    keys: _Keys
    fingerprint: str

    @property
    def key(self) -> str:
        return self.keys.record

    def complete(self, response: Response) -> None:
        if not 200 <= response.status_code < 300:
            self.abandon()
            return
        record = {"state": "done", "hash": self.fingerprint, "status": response.status_code}
        record.update(_replay_of(response))
        self.keys.call("complete", json.dumps(record, separators=(",", ":")), ENTRY_OVERHEAD)

    def abandon(self) -> None:
        self.keys.call("abandon")


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.full_path.encode(), request.get_data(cache=True)):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _jobs_now(principal: Principal, ids: list[str]) -> list[dict[str, Any]]:
    """The ledger documents of ``ids``, in that order (the caller's own only)."""
    store = Store(context.db())
    collection: Collection[Document] | TenantCollection
    if principal.is_admin:
        collection = store.unscoped(ledger.COLLECTION)
    else:
        collection = store.tenant(principal.tenant)[ledger.COLLECTION]
    found = {doc["_id"]: doc for doc in collection.find({"_id": {"$in": sorted(set(ids))}})}
    if len(found) != len(set(ids)):
        raise Problem(
            409,
            "The first answer to this Idempotency-Key is no longer available",
            slug="idempotency-key-expired",
            detail="A job it named was deleted; use a new key for a new request.",
        )
    return [found[job_id] for job_id in ids]


def _json(model: BaseModel, status: int) -> Response:
    # Flask's provider builds app.response_class; its annotation names werkzeug's base class.
    response = cast(Response, current_app.json.response(model.model_dump(mode="json", by_alias=True)))
    response.status_code = status
    return response


def _rebuild(principal: Principal, record: dict[str, Any]) -> Response:
    # The jobs as this caller may read them (a tenant key sees errors without internal hosts).
    from api_thin.jobs import job_out  # noqa: PLC0415 - api_thin.jobs imports this module

    kind = record.get("kind")
    if kind == "job":
        [doc] = _jobs_now(principal, record["jobs"])
        response = _json(job_out(doc, principal), record["status"])
        response.headers["Location"] = record["location"]
    elif kind == "batch":
        docs = _jobs_now(principal, record["jobs"])
        items = [
            BatchItemOut(
                status=202 if flag == "1" else 200,
                created=flag == "1",
                location=_job_location(doc["_id"]),
                job=job_out(doc, principal),
            )
            for doc, flag in zip(docs, record["created"], strict=True)
        ]
        response = _json(BatchOut(items=items), record["status"])
    else:
        response = Response(record["body"], status=record["status"], headers=record["headers"])
    response.headers["Idempotent-Replayed"] = "true"
    return response


def begin(principal: Principal) -> Claim | Response | None:
    """None without the header; the stored answer for a replay; else this request's claim."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    if not re.fullmatch(PATTERN, raw):
        raise Problem(
            400,
            "Invalid Idempotency-Key",
            slug="invalid-idempotency-key",
            errors=[{"parameter": HEADER, "detail": "1 to 255 visible ASCII characters"}],
        )
    keys = _Keys(principal.scope, hashlib.sha256(raw.encode()).hexdigest())
    fingerprint = _fingerprint()
    claim = json.dumps({"state": "pending", "hash": fingerprint}, separators=(",", ":"))
    held = keys.call("claim", claim, CLAIM_TTL, ENTRY_OVERHEAD)
    if held is None:
        return Claim(keys, fingerprint)
    record = json.loads(held)
    if record.get("hash") != fingerprint:
        raise Problem(
            409,
            "Idempotency-Key reused for a different request",
            slug="idempotency-key-reused",
            detail="An Idempotency-Key names one request; use a new key for a new request.",
        )
    if record.get("state") != "done":
        raise Problem(
            409,
            "A request with this Idempotency-Key is in progress",
            slug="idempotency-key-in-progress",
            headers={"Retry-After": "1"},
        )
    return _rebuild(principal, record)
