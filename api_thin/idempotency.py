"""``Idempotency-Key`` on POST: a replay gets the first answer and does nothing again.

Per (principal scope, key) Redis holds first a claim — the request's hash, while it is in
flight — then the answer it got, for ``idempotency_ttl`` seconds (24 h by default). One Lua call
claims or reads; a second call stores the answer.

- same key, same request, answered: the stored status, body and Location (``Idempotent-Replayed``)
- same key, another request (method, path, query or body bytes differ): 409
- same key while the first is still in flight: 409 with ``Retry-After: 1`` (no waiting in a
  request thread; the client retries and then gets the stored answer)
- only successful (2xx) answers are kept: after a 4xx or a failure the key is free again, so a
  client can fix its request and retry with the same key.

Keys are scoped per tenant (any of its API keys) or admin, so tenants cannot collide.
"""

import functools
import hashlib
import json
import re
from dataclasses import dataclass

from flask import Response, request
from redis import Redis
from redis.commands.core import Script

from api_thin import context
from api_thin.auth import Principal
from api_thin.problems import Problem

HEADER = "Idempotency-Key"
PATTERN = r"^[!-~]{1,255}$"  # visible ASCII
PREFIX = "mwap:idempotency:"
# A claim outlives any request: gunicorn kills a request after 30 s (api_thin/gunicorn_conf.py).
CLAIM_TTL = 60
_KEPT_HEADERS = ("Content-Type", "Location")

# Claim KEYS[1] with ARGV[1] for ARGV[2] seconds, or return what it holds.
_CLAIM = """
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""


@functools.cache
def _script(client: Redis) -> Script:
    return client.register_script(_CLAIM)


@dataclass(slots=True)
class Claim:
    """This request holds the key: store its answer, or let the key go."""

    key: str
    fingerprint: str

    def complete(self, response: Response) -> None:
        if not 200 <= response.status_code < 300:
            self.abandon()
            return
        record = {
            "state": "done",
            "hash": self.fingerprint,
            "status": response.status_code,
            "headers": {name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers},
            "body": response.get_data(as_text=True),
        }
        context.redis().set(self.key, json.dumps(record), ex=context.option("idempotency_ttl"))

    def abandon(self) -> None:
        context.redis().delete(self.key)


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.full_path.encode(), request.get_data(cache=True)):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


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
    key = PREFIX + principal.scope + ":" + hashlib.sha256(raw.encode()).hexdigest()
    fingerprint = _fingerprint()
    claim = json.dumps({"state": "pending", "hash": fingerprint})
    held = _script(context.redis())(keys=[key], args=[claim, CLAIM_TTL])
    if held is None:
        return Claim(key, fingerprint)
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
    response = Response(record["body"], status=record["status"], headers=record["headers"])
    response.headers["Idempotent-Replayed"] = "true"
    return response
