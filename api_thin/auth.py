"""Bearer-key authentication: the admin key from settings, or a tenant key (stored hashed)."""

import hmac
from dataclasses import dataclass

from flask import g, request

from api_thin import context
from api_thin.problems import Problem
from mwap import apikeys


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the admin, or one tenant's key."""

    tenant_id: str | None
    key_id: str

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None

    def can_see(self, tenant_id: str | None) -> bool:
        return self.is_admin or tenant_id == self.tenant_id


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Problem(
            401,
            "Missing or malformed Authorization header",
            detail="Send Authorization: Bearer <api key>.",
            headers={"WWW-Authenticate": 'Bearer realm="mwap"'},
        )
    return key.strip()


def authenticate() -> Principal:
    """The caller of this request, or a 401 problem."""
    if "principal" in g:
        return g.principal
    key = _bearer()
    settings = context.settings()
    if hmac.compare_digest(key.encode(), settings.admin_api_key.get_secret_value().encode()):
        principal = Principal(tenant_id=None, key_id="admin")
    else:
        doc = apikeys.find_live(context.db(), key)
        if doc is None:
            raise Problem(401, "Invalid API key", headers={"WWW-Authenticate": 'Bearer realm="mwap"'})
        principal = Principal(tenant_id=doc["tenantId"], key_id=str(doc["_id"]))
    g.principal = principal
    return principal


def require_admin() -> Principal:
    principal = authenticate()
    if not principal.is_admin:
        raise Problem(403, "This operation needs the admin key")
    return principal
