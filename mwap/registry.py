"""Registering tenants, providers and integrations: shared by the API, the CLI and the demo seed.

Secrets arrive in the clear, are encrypted here before anything is written, and are never
returned: the public views replace them with ``[REDACTED]``.
"""

import secrets as random
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, HttpUrl, SecretStr
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from mwap import audit
from mwap.crypto import KeyRing, integration_binding, provider_binding
from mwap.ledger import now
from mwap.models import ProviderSlug, TenantSettings
from mwap.store import Store

REDACTED = "[REDACTED]"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class ConflictError(Exception):
    """The thing being created exists already (a unique key would be violated)."""


class NotFoundError(Exception):
    """A referenced document does not exist (or belongs to another tenant)."""


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TenantCreate(Input):
    id: str | None = Field(default=None, pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    settings: TenantSettings = Field(default_factory=TenantSettings)


class ProviderMetadataIn(Input):
    api_base_url: HttpUrl = Field(alias="apiBaseUrl")


class ProviderCreate(Input):
    id: str | None = Field(default=None, pattern=ID_PATTERN)
    slug: ProviderSlug
    name: str | None = Field(default=None, max_length=200)
    auth_url: HttpUrl = Field(alias="authUrl")
    token_url: HttpUrl = Field(alias="tokenUrl")
    client_id: str = Field(alias="clientId", min_length=1, max_length=500)
    client_secret: SecretStr = Field(alias="clientSecret", min_length=1, max_length=2000)
    scopes: list[str] = Field(default_factory=list, max_length=50)
    metadata: ProviderMetadataIn


class IntegrationCreate(Input):
    id: str | None = Field(default=None, pattern=ID_PATTERN)
    tenant_id: str = Field(alias="tenantId", pattern=ID_PATTERN)
    provider_slug: ProviderSlug = Field(alias="providerSlug")
    name: str = Field(default="", max_length=200)
    access_token: SecretStr = Field(alias="accessToken", min_length=1, max_length=8000)
    refresh_token: SecretStr | None = Field(default=None, alias="refreshToken", max_length=8000)
    expires_at: AwareDatetime = Field(alias="expiresAt")
    scope: str = Field(default="", max_length=2000)
    user_info: dict[str, Any] = Field(default_factory=dict, alias="userInfo")
    project_ids: list[str] = Field(default_factory=list, alias="projectIds", max_length=100)


def new_id(prefix: str) -> str:
    return f"{prefix}_{random.token_hex(8)}"


def create_tenant(db: Database, body: TenantCreate, *, actor: dict[str, str]) -> dict[str, Any]:
    created = now()
    doc = {
        "_id": body.id or new_id("ten"),
        "name": body.name,
        "status": "active",
        "settings": body.settings.model_dump(mode="json", by_alias=True),
        "createdAt": created,
        "updatedAt": created,
    }
    try:
        db["tenants"].insert_one(doc)
    except DuplicateKeyError:
        raise ConflictError(f"tenant {doc['_id']} exists") from None
    audit.record(
        db,
        tenant_id=doc["_id"],
        action="tenant.created",
        target_type="tenant",
        target_id=doc["_id"],
        actor=actor,
    )
    return doc


def provider_document(ring: KeyRing, body: ProviderCreate) -> dict[str, Any]:
    """The ``cloudProviders`` document for ``body``, its client secret encrypted."""
    created = now()
    provider_id = body.id or body.slug.value
    return {
        "_id": provider_id,
        "slug": body.slug.value,
        "name": body.name or body.slug.value,
        "authUrl": str(body.auth_url),
        "tokenUrl": str(body.token_url),
        "clientId": body.client_id,
        "clientSecret": ring.encrypt(body.client_secret.get_secret_value(), provider_binding(provider_id)),
        "scopes": body.scopes,
        "status": "active",
        "metadata": {"apiBaseUrl": str(body.metadata.api_base_url).rstrip("/")},
        "createdAt": created,
        "updatedAt": created,
    }


def create_provider(db: Database, ring: KeyRing, body: ProviderCreate, *, actor: dict[str, str]) -> dict[str, Any]:
    doc = provider_document(ring, body)
    try:
        db["cloudProviders"].insert_one(doc)
    except DuplicateKeyError:
        raise ConflictError(f"a provider with id {doc['_id']} or slug {doc['slug']} exists") from None
    audit.record(db, tenant_id=None, action="provider.created", target_type="provider", target_id=doc["_id"], actor=actor)
    return doc


def create_integration(
    db: Database, ring: KeyRing, body: IntegrationCreate, *, actor: dict[str, str]
) -> dict[str, Any]:
    store = Store(db)
    if db["tenants"].find_one({"_id": body.tenant_id}, {"_id": 1}) is None:
        raise NotFoundError(f"tenant {body.tenant_id} not found")
    provider = store.global_collection("cloudProviders").find_one({"slug": body.provider_slug.value})
    if provider is None:
        raise NotFoundError(f"provider {body.provider_slug.value} is not registered")
    scope = store.tenant(body.tenant_id)
    for project_id in body.project_ids:
        if scope["projects"].find_one({"_id": project_id}, {"_id": 1}) is None:
            raise NotFoundError(f"project {project_id} not found")
    integration_id = body.id or new_id("int")
    created = now()

    def seal(field: str, value: SecretStr | None) -> str | None:
        if value is None:
            return None
        return ring.encrypt(
            value.get_secret_value(), integration_binding(body.tenant_id, integration_id, field)
        )

    doc = {
        "_id": integration_id,
        "tenantId": body.tenant_id,
        "providerId": provider["_id"],
        "providerSlug": body.provider_slug.value,
        "name": body.name or f"{provider['name']} ({body.user_info.get('email', integration_id)})",
        "status": "active",
        "statusReason": None,
        "authData": {
            "accessToken": seal("authData.accessToken", body.access_token),
            "refreshToken": seal("authData.refreshToken", body.refresh_token),
            "expiresAt": body.expires_at,
            "scope": body.scope,
            "tokenType": "Bearer",
        },
        "userInfo": body.user_info,
        "health": {"status": "unknown", "lastCheck": None, "errorCount": 0, "lastError": None},
        "usage": {"totalRequests": 0},
        # Null times make a new integration due for every dispatcher on its next tick.
        "metadata": {"lastSyncAt": None, "lastRefreshAt": None, "syncCursor": None},
        "createdAt": created,
        "updatedAt": created,
    }
    try:
        scope["cloudIntegrations"].insert_one(doc)
    except DuplicateKeyError:
        raise ConflictError(f"integration {integration_id} (or this provider account) exists") from None
    for project_id in body.project_ids:
        scope["projects"].update_one(
            {"_id": project_id},
            {"$addToSet": {"integrations": {"integrationId": integration_id, "folderPath": "/"}}},
        )
    audit.record(
        db,
        tenant_id=body.tenant_id,
        action="integration.created",
        target_type="integration",
        target_id=integration_id,
        actor=actor,
        details={"provider": body.provider_slug.value},
    )
    return doc


def delete_integration(db: Database, tenant_id: str, integration_id: str, *, actor: dict[str, str]) -> bool:
    """Remove the integration and its tokens; its files are marked deleted for retention to purge."""
    scope = Store(db).tenant(tenant_id)
    if scope["cloudIntegrations"].delete_one({"_id": integration_id}).deleted_count == 0:
        return False
    moment = now()
    scope["virtualFiles"].update_many(
        {"integrationId": integration_id, "deletedAt": None},
        {"$set": {"deletedAt": moment, "syncStatus.status": "deleted", "updatedAt": moment}},
    )
    scope["projects"].update_many(
        {"integrations.integrationId": integration_id},
        {"$pull": {"integrations": {"integrationId": integration_id}}},
    )
    audit.record(
        db,
        tenant_id=tenant_id,
        action="integration.deleted",
        target_type="integration",
        target_id=integration_id,
        actor=actor,
    )
    return True


def public_integration(doc: dict[str, Any]) -> dict[str, Any]:
    """An integration as the API shows it: status, health and expiry, never a token."""
    auth = doc.get("authData") or {}
    return {
        "id": doc["_id"],
        "tenantId": doc["tenantId"],
        "providerId": doc.get("providerId"),
        "providerSlug": doc.get("providerSlug"),
        "name": doc.get("name", ""),
        "status": doc.get("status"),
        "statusReason": doc.get("statusReason"),
        "authData": {
            "accessToken": REDACTED,
            "refreshToken": REDACTED if auth.get("refreshToken") else None,
            "expiresAt": auth.get("expiresAt"),
            "scope": auth.get("scope", ""),
        },
        "userInfo": doc.get("userInfo") or {},
        "health": doc.get("health") or {},
        "usage": doc.get("usage") or {},
        "lastSyncAt": (doc.get("metadata") or {}).get("lastSyncAt"),
        "createdAt": doc.get("createdAt"),
    }


def public_provider(doc: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in doc.items() if k != "_id"}
    return {"id": doc["_id"], **shown, "clientSecret": REDACTED}
