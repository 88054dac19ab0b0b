"""Bearer-key authentication (the admin key from settings, or a tenant key stored hashed) and
the per-key rate limit that follows it."""

import hmac
from dataclasses import dataclass

from flask import g, request

from api_thin import context, ratelimit
from api_thin.problems import Problem
from mwap import apikeys

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="mwap"'}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the admin, or one tenant's key."""

    tenant_id: str | None  # the 24-hex form
    key_id: str

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None

    def can_see(self, tenant_id: object) -> bool:
        return self.is_admin or (tenant_id is not None and str(tenant_id) == self.tenant_id)

    @property
    def scope(self) -> str:
        """What an Idempotency-Key is scoped to: the tenant (all its keys) or the admin."""
        return "admin" if self.is_admin else f"tenant:{self.tenant_id}"

    @property
    def actor(self) -> dict[str, str]:
        """Who the audit trail names for writes made with this key."""
        return {"type": "admin", "id": "admin"} if self.is_admin else {"type": "apiKey", "id": self.key_id}


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Problem(
            401,
            "Missing or malformed Authorization header",
            detail="Send Authorization: Bearer <api key>.",
            headers=_CHALLENGE,
        )
    return key.strip()


def authenticate() -> Principal:
    """The caller of this request, or a 401 problem; then a 429 when its key is over budget."""
    if "principal" in g:
        return g.principal
    key = _bearer()
    settings = context.settings()
    if hmac.compare_digest(key.encode(), settings.admin_api_key.get_secret_value().encode()):
        principal = Principal(tenant_id=None, key_id="admin")
    else:
        doc = apikeys.find_live(context.db(), key)
        if doc is None:
            raise Problem(401, "Invalid API key", headers=_CHALLENGE)
        principal = Principal(tenant_id=str(doc["tenantId"]), key_id=str(doc["_id"]))
    g.principal = principal
    _rate_limit(principal)
    return principal


def _rate_limit(principal: Principal) -> None:
    """One Redis round trip: take a token from the key's bucket and count the tenant's request.

    The admin key has its own bucket, off unless MWAP_ADMIN_RATE_LIMIT_PER_MINUTE is set: it is the
    MWAP backend's and the operators' key, and throttling it would throttle every tenant at once.
    """
    per_minute = context.option(
        "admin_rate_limit_per_minute" if principal.is_admin else "rate_limit_per_minute"
    )
    verdict = ratelimit.check(
        context.redis(),
        principal.key_id,
        per_minute=per_minute,
        burst=context.option("rate_limit_burst"),
        tenant_id=principal.tenant_id,
    )
    if not verdict.allowed:
        raise Problem(
            429,
            "Rate limit exceeded",
            detail=f"at most {per_minute} requests a minute for this key; retry after {verdict.retry_after} s",
            headers={"Retry-After": str(verdict.retry_after)},
        )


def require_admin() -> Principal:
    principal = authenticate()
    if not principal.is_admin:
        raise Problem(403, "This operation needs the admin key")
    return principal
