"""Registering tenants, providers and integrations: shared by the API, the CLI and the demo seed.

Secrets arrive in the clear, are encrypted here before anything is written, and are never
returned: the public views replace them with ``[REDACTED]``.
"""

from typing import Annotated, Any, Self

from bson import ObjectId
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    StringConstraints,
    model_validator,
)
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from mwap import audit
from mwap.bson_dates import BsonDatetime
from mwap.crypto import ACCESS_TOKEN, CLIENT_SECRET, REFRESH_TOKEN, KeyRing, Secret, seal
from mwap.ids import HEX_PATTERN, oid
from mwap.ledger import now
from mwap.models import IntegrationStatus, ProviderSlug, SubscriptionPlan, SubscriptionStatus
from mwap.store import Document, Store

REDACTED = "[REDACTED]"
ID_PATTERN = HEX_PATTERN

# Where each provider's REST API lives when the provider document's free-form ``metadata`` does
# not say (``metadata.apiBaseUrl``; the fake providers and tests set it).
DEFAULT_API_BASE_URLS = {
    ProviderSlug.GOOGLE_DRIVE.value: "https://www.googleapis.com",
    ProviderSlug.DROPBOX.value: "https://api.dropboxapi.com",
    ProviderSlug.ONEDRIVE.value: "https://graph.microsoft.com",
}


class ConflictError(Exception):
    """The thing being created exists already (a unique key would be violated)."""


class NotFoundError(Exception):
    """A referenced document does not exist (or belongs to another tenant)."""


class PolicyError(ConflictError):
    """The tenant's policy refuses the write (a feature turned off, a cap reached)."""


# MWAP_MAX_INTEGRATIONS_PER_TENANT's default, for callers that pass no setting.
DEFAULT_MAX_INTEGRATIONS_PER_TENANT = 20


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class SubscriptionIn(Input):
    plan: SubscriptionPlan
    status: SubscriptionStatus
    expires_at: BsonDatetime = Field(alias="expiresAt")
    features: list[Annotated[str, StringConstraints(max_length=100)]] = Field(
        default_factory=list, max_length=50
    )


class TenantFeaturesIn(Input):
    cloud_integrations: bool = Field(default=True, alias="cloudIntegrations")
    advanced_security: bool = Field(default=False, alias="advancedSecurity")
    custom_branding: bool = Field(default=False, alias="customBranding")


class TenantSettingsIn(Input):
    allow_public_projects: bool = Field(default=False, alias="allowPublicProjects")
    max_projects: int = Field(default=10, ge=1, le=100, strict=True, alias="maxProjects")
    retention_days: int = Field(default=90, ge=1, le=36500, strict=True, alias="retentionDays")
    features: TenantFeaturesIn = Field(default_factory=TenantFeaturesIn)


class TenantCreate(Input):
    name: Text
    description: str | None = Field(default=None, max_length=2000)
    owner_id: Text = Field(alias="ownerId")
    settings: TenantSettingsIn = Field(default_factory=TenantSettingsIn)
    subscription: SubscriptionIn | None = None


class ProviderCreate(Input):
    name: Text
    slug: ProviderSlug
    scopes: list[Annotated[str, StringConstraints(max_length=500)]] = Field(
        default_factory=list, max_length=50
    )
    auth_url: HttpUrl = Field(alias="authUrl")
    token_url: HttpUrl = Field(alias="tokenUrl")
    client_id: str = Field(alias="clientId", min_length=1, max_length=500)
    client_secret: SecretStr = Field(alias="clientSecret", min_length=1, max_length=2000)
    grant_type: str = Field(default="authorization_code", alias="grantType", max_length=100)
    token_method: str = Field(default="POST", alias="tokenMethod", pattern=r"^(POST|GET)$")
    api_base_url: HttpUrl | None = Field(
        default=None, alias="apiBaseUrl", description="Stored as metadata.apiBaseUrl; default: the real API."
    )
    created_by: Text = Field(default="mwap-tasks", alias="createdBy")


class AuthDataIn(Input):
    access_token: SecretStr = Field(alias="accessToken", min_length=1, max_length=8000)
    refresh_token: SecretStr | None = Field(default=None, alias="refreshToken", max_length=8000)
    expires_at: BsonDatetime | None = Field(default=None, alias="expiresAt")
    scope: list[Annotated[str, StringConstraints(max_length=500)]] = Field(
        default_factory=list, max_length=50
    )


class UserInfoIn(Input):
    email: str = Field(max_length=320)
    name: str = Field(default="", max_length=200)
    provider_id: str = Field(alias="providerId", min_length=1, max_length=200)


class IntegrationCreate(Input):
    tenant_id: str = Field(alias="tenantId", pattern=HEX_PATTERN)
    provider_id: str | None = Field(default=None, alias="providerId", pattern=HEX_PATTERN)
    provider_slug: ProviderSlug | None = Field(
        default=None, alias="providerSlug", description="Instead of providerId: the provider's slug."
    )
    status: IntegrationStatus = IntegrationStatus.ACTIVE
    auth_data: AuthDataIn = Field(alias="authData")
    user_info: UserInfoIn | None = Field(default=None, alias="userInfo")
    created_by: Text = Field(default="mwap-tasks", alias="createdBy")
    project_ids: list[Annotated[str, StringConstraints(pattern=HEX_PATTERN)]] = Field(
        default_factory=list,
        alias="projectIds",
        max_length=100,
        description="Projects to link the integration to (enabled links).",
    )

    @model_validator(mode="after")
    def _one_provider(self) -> Self:
        if (self.provider_id is None) == (self.provider_slug is None):
            raise ValueError("give exactly one of providerId and providerSlug")
        return self


def _duplicate(error: DuplicateKeyError) -> str:
    keys = (error.details or {}).get("keyValue") or {}
    return ", ".join(f"{k}={v}" for k, v in keys.items()) or "a unique key"


def tenant_document(body: TenantCreate) -> dict[str, Any]:
    """The ``tenants`` document for ``body``, shaped as seed 000 defines it."""
    created = now()
    doc: dict[str, Any] = {
        "_id": ObjectId(),
        "name": body.name,
        **({"description": body.description} if body.description is not None else {}),
        "ownerId": body.owner_id,
        "settings": body.settings.model_dump(by_alias=True),
        "metadata": {"totalProjects": 0, "totalMembers": 0, "storageUsed": 0, "lastActivity": created},
        "createdAt": created,
        "updatedAt": created,
        "archived": False,
    }
    if body.subscription is not None:
        doc["subscription"] = body.subscription.model_dump(by_alias=True, mode="python")
        doc["subscription"]["plan"] = body.subscription.plan.value
        doc["subscription"]["status"] = body.subscription.status.value
    return doc


def create_tenant(db: Database[Document], body: TenantCreate, *, actor: dict[str, str]) -> dict[str, Any]:
    doc = tenant_document(body)
    try:
        db["tenants"].insert_one(doc)
    except DuplicateKeyError as error:
        raise ConflictError(f"a tenant with {_duplicate(error)} exists") from None
    audit.record(
        db,
        tenant_id=doc["_id"],
        action="tenant.created",
        target_type="tenant",
        target_id=doc["_id"],
        actor=actor,
    )
    return doc


def api_base_url(provider: dict[str, Any]) -> str:
    """The provider's API base: ``metadata.apiBaseUrl`` if set, else the real API of its slug."""
    configured = (provider.get("metadata") or {}).get("apiBaseUrl")
    if isinstance(configured, str) and configured:
        return configured.rstrip("/")
    return DEFAULT_API_BASE_URLS.get(provider.get("slug", ""), "")


def provider_document(ring: KeyRing, body: ProviderCreate) -> dict[str, Any]:
    """The ``cloudProviders`` document for ``body``, its client secret encrypted."""
    created = now()
    provider_id = ObjectId()
    doc: dict[str, Any] = {
        "_id": provider_id,
        "name": body.name,
        "slug": body.slug.value,
        "scopes": body.scopes,
        "authUrl": str(body.auth_url),
        "tokenUrl": str(body.token_url),
        "clientId": body.client_id,
        "clientSecret": seal(
            ring, CLIENT_SECRET, body.client_secret.get_secret_value(), document_id=provider_id
        ),
        "grantType": body.grant_type,
        "tokenMethod": body.token_method,
        "createdAt": created,
        "updatedAt": created,
        "createdBy": body.created_by,
    }
    if body.api_base_url is not None:
        doc["metadata"] = {"apiBaseUrl": str(body.api_base_url).rstrip("/")}
    return doc


def create_provider(
    db: Database[Document], ring: KeyRing, body: ProviderCreate, *, actor: dict[str, str]
) -> dict[str, Any]:
    doc = provider_document(ring, body)
    try:
        db["cloudProviders"].insert_one(doc)
    except DuplicateKeyError as error:
        raise ConflictError(f"a provider with {_duplicate(error)} exists") from None
    audit.record(
        db,
        tenant_id=None,
        action="provider.created",
        target_type="provider",
        target_id=doc["_id"],
        actor=actor,
    )
    return doc


def integration_document(
    ring: KeyRing, body: IntegrationCreate, provider_id: ObjectId, *, integration_id: ObjectId | None = None
) -> dict[str, Any]:
    """The ``cloudIntegrations`` document, shaped as the MWAP backend writes it, tokens encrypted."""
    tenant_id = oid(body.tenant_id)
    integration_id = integration_id or ObjectId()
    created = now()

    def sealed(secret: Secret, value: SecretStr) -> str:
        return seal(ring, secret, value.get_secret_value(), document_id=integration_id, tenant_id=tenant_id)

    auth: dict[str, Any] = {"accessToken": sealed(ACCESS_TOKEN, body.auth_data.access_token)}
    if body.auth_data.refresh_token is not None:
        auth["refreshToken"] = sealed(REFRESH_TOKEN, body.auth_data.refresh_token)
    if body.auth_data.expires_at is not None:
        auth["expiresAt"] = body.auth_data.expires_at
    auth["scope"] = body.auth_data.scope
    doc: dict[str, Any] = {
        "_id": integration_id,
        "tenantId": tenant_id,
        "providerId": provider_id,
        "status": body.status.value,
        "authData": auth,
        # As the backend registers it: healthy until a check says otherwise. The platform's own
        # "never checked" mark (mwapTasks.healthCheckedAt absent) makes it due for a check at once.
        "health": {"lastCheck": created, "status": "healthy", "errorCount": 0},
        "usage": {"totalRequests": 0, "lastRequest": created},
        "createdAt": created,
        "updatedAt": created,
        "createdBy": body.created_by,
    }
    if body.user_info is not None:
        doc["userInfo"] = body.user_info.model_dump(by_alias=True)
    return doc


def create_integration(
    db: Database[Document],
    ring: KeyRing,
    body: IntegrationCreate,
    *,
    actor: dict[str, str],
    max_integrations: int = DEFAULT_MAX_INTEGRATIONS_PER_TENANT,
) -> dict[str, Any]:
    """Register an integration for a live tenant whose policy allows it: cloud integrations not
    turned off (seed ``settings.features.cloudIntegrations``) and fewer than ``max_integrations``
    integrations already (PolicyError otherwise). Messages name only the caller's own tenant."""
    store = Store(db)
    tenant_id = oid(body.tenant_id)
    tenant = db["tenants"].find_one(
        {"_id": tenant_id}, {"archived": 1, "settings.features.cloudIntegrations": 1}
    )
    if tenant is None or tenant.get("archived") is True:
        raise NotFoundError(f"tenant {tenant_id} not found")
    if ((tenant.get("settings") or {}).get("features") or {}).get("cloudIntegrations") is False:
        raise PolicyError(
            f"tenant {tenant_id} has cloud integrations turned off (settings.features.cloudIntegrations)"
        )
    if (
        store.tenant(tenant_id)["cloudIntegrations"].count_documents({}, limit=max_integrations)
        >= max_integrations
    ):
        raise PolicyError(f"tenant {tenant_id} has {max_integrations} integrations, the most allowed")
    providers = store.global_collection("cloudProviders")
    provider = (
        providers.find_one({"_id": oid(body.provider_id)})
        if body.provider_id
        else providers.find_one({"slug": body.provider_slug.value if body.provider_slug else ""})
    )
    if provider is None:
        raise NotFoundError(f"provider {body.provider_id or body.provider_slug} is not registered")
    scope = store.tenant(tenant_id)
    project_ids = [oid(p) for p in body.project_ids]
    for project_id in project_ids:
        if scope["projects"].find_one({"_id": project_id, "archived": {"$ne": True}}, {"_id": 1}) is None:
            raise NotFoundError(f"project {project_id} not found")
    doc = integration_document(ring, body, provider["_id"])
    try:
        scope["cloudIntegrations"].insert_one(doc)
    except DuplicateKeyError:
        raise ConflictError(
            f"tenant {tenant_id} has an integration with provider {provider['slug']} already"
        ) from None
    for project_id in project_ids:
        scope["projects"].update_one(
            {"_id": project_id, "integrations.integrationId": {"$ne": doc["_id"]}},
            {
                "$push": {"integrations": {"integrationId": doc["_id"], "enabled": True}},
                "$set": {"updatedAt": now()},
            },
        )
    audit.record(
        db,
        tenant_id=tenant_id,
        action="integration.created",
        target_type="integration",
        target_id=doc["_id"],
        actor=actor,
        details={"provider": provider["slug"]},
    )
    return doc


def delete_integration(
    db: Database[Document],
    tenant_id: ObjectId | str,
    integration_id: ObjectId | str,
    *,
    actor: dict[str, str],
) -> bool:
    """Remove the integration, its tokens, its files and its project links (seed: files go with it)."""
    scope = Store(db).tenant(tenant_id)
    integration_id = oid(integration_id)
    if scope["cloudIntegrations"].delete_one({"_id": integration_id}).deleted_count == 0:
        return False
    scope["virtualFiles"].delete_many({"integrationId": integration_id})
    scope["projects"].update_many(
        {"integrations.integrationId": integration_id},
        {"$pull": {"integrations": {"integrationId": integration_id}}, "$set": {"updatedAt": now()}},
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


def public_integration(doc: dict[str, Any], provider_slug: str | None = None) -> dict[str, Any]:
    """An integration as the API shows it: status, health and expiry, never a token."""
    auth = doc.get("authData") or {}
    state = doc.get("mwapTasks") or {}
    return {
        "id": str(doc["_id"]),
        "tenantId": str(doc["tenantId"]),
        "providerId": str(doc["providerId"]),
        "providerSlug": provider_slug,
        "status": doc.get("status"),
        "statusReason": state.get("statusReason"),
        "authData": {
            "accessToken": REDACTED,
            "refreshToken": REDACTED if auth.get("refreshToken") else None,
            "expiresAt": auth.get("expiresAt"),
            "scope": auth.get("scope") or [],
        },
        "userInfo": doc.get("userInfo"),
        "health": doc.get("health") or {},
        "usage": doc.get("usage") or {},
        "lastSyncAt": state.get("lastSyncAt"),
        "createdAt": doc.get("createdAt"),
        "createdBy": doc.get("createdBy"),
    }


def public_provider(doc: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in doc.items() if k != "_id"}
    return {"id": str(doc["_id"]), **shown, "clientSecret": REDACTED}
