"""Bearer-key authentication (the admin key from settings, or a tenant key stored hashed), the
throttle on failed attempts per client address, and the per-key and per-tenant rate limits."""

import hmac
from dataclasses import dataclass

from flask import g, request

from api_thin import context, ratelimit
from api_thin.problems import Problem
from mwap import apikeys
from mwap.ids import is_oid
from mwap.settings import Settings
from mwap.store import TenantBoundaryError

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="mwap"'}


# Longer than any key the platform issues ("mwap_" + 43 characters): refused without a lookup.
MAX_KEY_CHARS = 256


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the admin, or one tenant's key.

    ``is_admin`` is set only when the bearer matched the admin key of the settings; a tenant key
    always names its tenant. Admin is never inferred from a missing tenant.
    """

    tenant_id: str | None  # the 24-hex form; None only for the admin
    key_id: str
    is_admin: bool = False

    def __post_init__(self) -> None:
        if self.is_admin:
            if self.tenant_id is not None:
                raise ValueError("the admin principal has no tenant")
        elif not is_oid(self.tenant_id):
            raise ValueError("a tenant key's principal needs its tenant id")

    @classmethod
    def admin(cls) -> "Principal":
        return cls(tenant_id=None, key_id="admin", is_admin=True)

    def can_see(self, tenant_id: object) -> bool:
        return self.is_admin or (tenant_id is not None and str(tenant_id) == self.tenant_id)

    @property
    def scope(self) -> str:
        """What an Idempotency-Key is scoped to: the tenant (all its keys) or the admin."""
        return "admin" if self.is_admin else f"tenant:{self.tenant_id}"

    @property
    def tenant(self) -> str:
        """A tenant key's tenant id; the admin has none (the same refusal as the Store's)."""
        if self.tenant_id is None:
            raise TenantBoundaryError("a tenant id (ObjectId) is required")
        return self.tenant_id

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


def client_address() -> str:
    """The caller's address: REMOTE_ADDR, or with MWAP_TRUSTED_PROXY_COUNT = n > 0 the n-th
    X-Forwarded-For entry from the right (what werkzeug's ProxyFix(x_for=n) takes): the entries
    further left are the client's own claims and are never trusted."""
    trusted = context.option("trusted_proxy_count")
    if trusted:
        forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
        if len(forwarded) >= trusted and forwarded[-trusted]:
            return forwarded[-trusted]
    return request.remote_addr or ""


def authenticate() -> Principal:
    """The caller of this request, or a 401 problem; then a 429 when its key is over budget."""
    if "principal" in g:
        return g.principal
    key = _bearer()
    settings = context.settings()
    if hmac.compare_digest(key.encode(), settings.admin_api_key.get_secret_value().encode()):
        principal = Principal.admin()
    else:
        principal = _tenant_key(key)
    g.principal = principal
    _rate_limit(principal)
    return principal


def _failure_budget() -> list[ratelimit.Budget]:
    per_minute = context.option("auth_failures_per_minute")
    if not per_minute:
        return []
    bucket = ratelimit.address_bucket(client_address())
    return [ratelimit.Budget(bucket, per_minute, context.option("auth_failure_burst"))]


def _tenant_key(key: str) -> Principal:
    """The principal of a tenant key. A client address that has failed too often lately gets a
    429 before the key is looked up, so bogus bearers cost MongoDB nothing beyond that budget."""
    budget = _failure_budget()
    if budget:
        verdict = ratelimit.peek(context.redis(), budget)
        if not verdict.allowed:
            raise Problem(
                429,
                "Too many failed authentications",
                detail=f"from this address; retry after {verdict.retry_after} s",
                headers={"Retry-After": str(verdict.retry_after)},
            )
    doc = apikeys.find_live(context.db(), key) if len(key) <= MAX_KEY_CHARS else None
    if doc is None:
        if budget:
            ratelimit.check(context.redis(), budget)
        raise Problem(401, "Invalid API key", headers=_CHALLENGE)
    return Principal(tenant_id=str(doc["tenantId"]), key_id=str(doc["_id"]))


def _rate_limit(principal: Principal) -> None:
    """One Redis round trip: take a token from the key's bucket and from its tenant's (shared by
    every key of the tenant), and count the tenant's request.

    The admin key has its own bucket, off unless MWAP_ADMIN_RATE_LIMIT_PER_MINUTE is set: it is the
    MWAP backend's and the operators' key, and throttling it would throttle every tenant at once.
    """
    settings = context.settings()
    burst = settings.rate_limit_burst
    if principal.is_admin:
        per_minute = settings.admin_rate_limit_per_minute
        budgets = [ratelimit.key_budget(principal.key_id, per_minute=per_minute, burst=burst)]
        detail = f"at most {per_minute} requests a minute for this key"
    else:
        per_minute = settings.rate_limit_per_minute
        tenant_per_minute, tenant_burst = tenant_budget(settings)
        budgets = [
            ratelimit.key_budget(principal.key_id, per_minute=per_minute, burst=burst),
            ratelimit.tenant_budget(
                principal.tenant_id or "", per_minute=tenant_per_minute, burst=tenant_burst
            ),
        ]
        detail = (
            f"at most {per_minute} requests a minute for this key"
            f" and {tenant_per_minute} for all keys of its tenant"
        )
    verdict = ratelimit.check(context.redis(), budgets, tenant_id=principal.tenant_id)
    if not verdict.allowed:
        raise Problem(
            429,
            "Rate limit exceeded",
            detail=f"{detail}; retry after {verdict.retry_after} s",
            headers={"Retry-After": str(verdict.retry_after)},
        )


def tenant_budget(settings: Settings) -> tuple[int, int]:
    """(requests a minute, burst) shared by all keys of one tenant; unset: five keys' worth."""
    per_minute = settings.tenant_rate_limit_per_minute
    burst = settings.tenant_rate_limit_burst
    return (
        5 * settings.rate_limit_per_minute if per_minute is None else per_minute,
        5 * settings.rate_limit_burst if burst is None else burst,
    )
