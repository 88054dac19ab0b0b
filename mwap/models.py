"""The documents of every collection, as pydantic v2 models with the stored camelCase names.

Models validate what is read from MongoDB before a job acts on it; a document that does not
validate is reported with its ids and skipped (``mwap.store.valid_documents``), never crashes a
dispatcher. Fields the platform does not own are kept (``extra="allow"``) so that reading and
writing back never drops another service's data.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl


class Document(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow", serialize_by_alias=True)


class TenantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    ARCHIVED = "archived"


class ProviderSlug(StrEnum):
    GOOGLE_DRIVE = "google-drive"
    DROPBOX = "dropbox"
    ONEDRIVE = "onedrive"


class TenantSettings(Document):
    max_projects: int = Field(default=10, ge=1, le=100, alias="maxProjects")
    retention_days: int = Field(default=90, gt=0, le=3650, alias="retentionDays")
    allowed_providers: list[ProviderSlug] = Field(
        default_factory=lambda: list(ProviderSlug), alias="allowedProviders"
    )
    max_concurrent_jobs: int = Field(default=8, ge=1, le=1000, alias="maxConcurrentJobs")


class Tenant(Document):
    id: str = Field(alias="_id", min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=200)
    status: TenantStatus = TenantStatus.ACTIVE
    settings: TenantSettings = Field(default_factory=TenantSettings)
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")


class ProjectRole(StrEnum):
    OWNER = "owner"
    DEPUTY = "deputy"
    MEMBER = "member"
    VIEWER = "viewer"


class ProjectMember(Document):
    user_id: str = Field(alias="userId", min_length=1)
    role: ProjectRole


class ProjectIntegration(Document):
    integration_id: str = Field(alias="integrationId", min_length=1)
    folder_path: str = Field(default="/", alias="folderPath", pattern=r"^/")


class ProjectStatus(StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"


class ProjectMetadata(Document):
    file_count: int = Field(default=0, ge=0, alias="fileCount")
    total_size: int = Field(default=0, ge=0, alias="totalSize")
    last_sync: datetime | None = Field(default=None, alias="lastSync")


class Project(Document):
    id: str = Field(alias="_id", min_length=1)
    tenant_id: str = Field(alias="tenantId", min_length=1)
    project_type_id: str | None = Field(default=None, alias="projectTypeId")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    status: ProjectStatus = ProjectStatus.ACTIVE
    members: list[ProjectMember] = Field(default_factory=list)
    integrations: list[ProjectIntegration] = Field(default_factory=list)
    metadata: ProjectMetadata = Field(default_factory=ProjectMetadata)
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")


class ProjectType(Document):
    id: str = Field(alias="_id", min_length=1)
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    config_schema: dict[str, Any] = Field(default_factory=dict, alias="configSchema")
    active: bool = True
    created_at: datetime = Field(alias="createdAt")


class ProviderStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"


class ProviderMetadata(Document):
    api_base_url: HttpUrl = Field(alias="apiBaseUrl")


class CloudProvider(Document):
    id: str = Field(alias="_id", min_length=1)
    slug: ProviderSlug
    name: str = Field(min_length=1, max_length=200)
    auth_url: HttpUrl = Field(alias="authUrl")
    token_url: HttpUrl = Field(alias="tokenUrl")
    client_id: str = Field(alias="clientId", min_length=1)
    client_secret: str = Field(alias="clientSecret", min_length=1)  # ciphertext, see mwap.crypto
    scopes: list[str] = Field(default_factory=list)
    status: ProviderStatus = ProviderStatus.ACTIVE
    metadata: ProviderMetadata
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")


class IntegrationStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    ERROR = "error"  # needs re-authorization or operator action; no automatic jobs
    REVOKED = "revoked"


class HealthStatus(StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class AuthData(Document):
    access_token: str = Field(alias="accessToken", min_length=1)  # ciphertext
    refresh_token: str | None = Field(default=None, alias="refreshToken")  # ciphertext
    expires_at: datetime = Field(alias="expiresAt")
    scope: str = ""
    token_type: str = Field(default="Bearer", alias="tokenType")


class Health(Document):
    status: HealthStatus = HealthStatus.UNKNOWN
    last_check: datetime | None = Field(default=None, alias="lastCheck")
    error_count: int = Field(default=0, ge=0, alias="errorCount")
    last_error: str | None = Field(default=None, alias="lastError")


class Usage(Document):
    total_requests: int = Field(default=0, ge=0, alias="totalRequests")


class CloudIntegration(Document):
    id: str = Field(alias="_id", min_length=1)
    tenant_id: str = Field(alias="tenantId", min_length=1)
    provider_id: str = Field(alias="providerId", min_length=1)
    provider_slug: ProviderSlug = Field(alias="providerSlug")
    name: str = Field(default="", max_length=200)
    status: IntegrationStatus = IntegrationStatus.ACTIVE
    status_reason: str | None = Field(default=None, alias="statusReason")
    auth_data: AuthData = Field(alias="authData")
    user_info: dict[str, Any] = Field(default_factory=dict, alias="userInfo")
    health: Health = Field(default_factory=Health)
    usage: Usage = Field(default_factory=Usage)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")


class SyncState(StrEnum):
    SYNCED = "synced"
    PENDING = "pending"
    ERROR = "error"
    DELETED = "deleted"


class SyncStatus(Document):
    status: SyncState
    last_synced_at: datetime | None = Field(default=None, alias="lastSyncedAt")
    error: str | None = None


class VirtualFile(Document):
    id: str = Field(alias="_id", min_length=1)
    tenant_id: str = Field(alias="tenantId", min_length=1)
    integration_id: str = Field(alias="integrationId", min_length=1)
    project_id: str | None = Field(alias="projectId")
    provider_file_id: str = Field(alias="providerFileId", min_length=1)
    name: str
    path: str
    mime_type: str | None = Field(default=None, alias="mimeType")
    size: int = Field(default=0, ge=0)
    is_folder: bool = Field(default=False, alias="isFolder")
    modified_at: datetime | None = Field(default=None, alias="modifiedAt")
    content_hash: str | None = Field(default=None, alias="contentHash")
    sync_status: SyncStatus = Field(alias="syncStatus")
    deleted_at: datetime | None = Field(default=None, alias="deletedAt")
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")


class ActorType(StrEnum):
    SYSTEM = "system"
    ADMIN = "admin"
    API_KEY = "apiKey"
    OPERATOR = "operator"


class Actor(Document):
    type: ActorType
    id: str


class AuditTarget(Document):
    type: str
    id: str


class AuditLog(Document):
    id: Any = Field(alias="_id")
    tenant_id: str | None = Field(alias="tenantId")
    actor: Actor
    action: str = Field(min_length=1, max_length=100)
    target: AuditTarget
    details: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(alias="createdAt")


class UsageDaily(Document):
    id: str = Field(alias="_id")
    tenant_id: str = Field(alias="tenantId")
    day: datetime
    jobs: dict[str, dict[str, int]] = Field(default_factory=dict)
    api_requests: int = Field(default=0, ge=0, alias="apiRequests")
    provider_requests: int = Field(default=0, ge=0, alias="providerRequests")
    files_synced: int = Field(default=0, ge=0, alias="filesSynced")
    storage_bytes: int = Field(default=0, ge=0, alias="storageBytes")
    integrations_by_health: dict[str, int] = Field(default_factory=dict, alias="integrationsByHealth")
    updated_at: datetime = Field(alias="updatedAt")


class ApiKey(Document):
    id: str = Field(alias="_id")
    tenant_id: str = Field(alias="tenantId")
    key_hash: str = Field(alias="keyHash", min_length=64, max_length=64)
    prefix: str
    name: str = ""
    created_at: datetime = Field(alias="createdAt")
    revoked_at: datetime | None = Field(default=None, alias="revokedAt")


class JobRecord(Document):
    id: str = Field(alias="_id")
    type: str
    tenant_id: str | None = Field(alias="tenantId")
    subject: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    status: str = Field(pattern=r"^(queued|running|retrying|succeeded|failed)$")
    attempts: int = Field(ge=0)
    created_at: datetime = Field(alias="createdAt")


MODELS: dict[str, type[Document]] = {
    "tenants": Tenant,
    "projects": Project,
    "projectTypes": ProjectType,
    "cloudProviders": CloudProvider,
    "cloudIntegrations": CloudIntegration,
    "virtualFiles": VirtualFile,
    "auditLogs": AuditLog,
    "jobs": JobRecord,
    "usageDaily": UsageDaily,
    "apiKeys": ApiKey,
}
