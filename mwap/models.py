"""The documents of every collection, as pydantic v2 models with the stored camelCase names.

Models validate what is read from MongoDB before a job acts on it; a document that does not
validate is reported with its ids and skipped (``mwap.store.valid_documents``), never crashes a
dispatcher. Fields the platform does not own are kept (``extra="allow"``) so that reading and
writing back never drops another service's data.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mwap.ids import ObjectIdField


class Document(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow", serialize_by_alias=True)


class ProviderSlug(StrEnum):
    """The provider adapters the platform has; a provider with another slug gets no jobs."""

    GOOGLE_DRIVE = "google-drive"
    DROPBOX = "dropbox"
    ONEDRIVE = "onedrive"


# --- seed 000 "Core Schema Definitions" -------------------------------------------------------
# Field names, types and enums as the MWAP backend writes them. Optional seed fields may be absent.


class TenantFeatures(Document):
    cloud_integrations: bool = Field(default=True, alias="cloudIntegrations")
    advanced_security: bool = Field(default=False, alias="advancedSecurity")
    custom_branding: bool = Field(default=False, alias="customBranding")


class TenantSettings(Document):
    allow_public_projects: bool = Field(default=False, alias="allowPublicProjects")
    max_projects: int = Field(default=10, ge=1, le=100, alias="maxProjects")
    retention_days: int = Field(default=90, gt=0, le=36500, alias="retentionDays")
    features: TenantFeatures = Field(default_factory=TenantFeatures)


class SubscriptionPlan(StrEnum):
    FREE = "free"
    PRO = "pro"
    ENTERPRISE = "enterprise"


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Subscription(Document):
    plan: SubscriptionPlan
    status: SubscriptionStatus
    expires_at: datetime = Field(alias="expiresAt")
    features: list[str] = Field(default_factory=list)


class TenantMetadata(Document):
    total_projects: int = Field(default=0, ge=0, alias="totalProjects")
    total_members: int = Field(default=0, ge=0, alias="totalMembers")
    storage_used: int = Field(default=0, ge=0, alias="storageUsed")
    last_activity: datetime | None = Field(default=None, alias="lastActivity")


class Tenant(Document):
    id: ObjectIdField = Field(alias="_id")
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    owner_id: str = Field(alias="ownerId", min_length=1, max_length=200)
    settings: TenantSettings = Field(default_factory=TenantSettings)
    subscription: Subscription | None = None
    metadata: TenantMetadata = Field(default_factory=TenantMetadata)
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")
    archived: bool = False


class ProjectRole(StrEnum):
    OWNER = "OWNER"
    DEPUTY = "DEPUTY"
    MEMBER = "MEMBER"


class ProjectMember(Document):
    user_id: str = Field(alias="userId", min_length=1)
    role: ProjectRole
    added_at: datetime | None = Field(default=None, alias="addedAt")
    added_by: str | None = Field(default=None, alias="addedBy")


class ProjectIntegration(Document):
    integration_id: ObjectIdField = Field(alias="integrationId")
    enabled: bool = True
    config: dict[str, Any] | None = None


class ProjectMetadata(Document):
    file_count: int = Field(default=0, ge=0, alias="fileCount")
    total_size: int = Field(default=0, ge=0, alias="totalSize")
    last_sync: datetime | None = Field(default=None, alias="lastSync")


class Project(Document):
    id: ObjectIdField = Field(alias="_id")
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    tenant_id: ObjectIdField = Field(alias="tenantId")
    project_type_id: ObjectIdField | None = Field(default=None, alias="projectTypeId")
    config: dict[str, Any] = Field(default_factory=dict)
    members: list[ProjectMember] = Field(default_factory=list)
    folder_path: str | None = Field(default=None, alias="folderPath")
    integrations: list[ProjectIntegration] = Field(default_factory=list)
    metadata: ProjectMetadata = Field(default_factory=ProjectMetadata)
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")
    archived: bool = False


class ProjectType(Document):
    """Admin-managed; seed 000 lists the collection without its fields, so only these are read."""

    id: ObjectIdField = Field(alias="_id")
    name: str = Field(min_length=1, max_length=200)


class CloudProvider(Document):
    id: ObjectIdField = Field(alias="_id")
    name: str = Field(min_length=1, max_length=200)
    slug: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(default_factory=list)
    auth_url: str = Field(alias="authUrl", min_length=1)
    token_url: str = Field(alias="tokenUrl", min_length=1)
    client_id: str = Field(alias="clientId", min_length=1)
    client_secret: str = Field(alias="clientSecret", min_length=1)  # ciphertext, see mwap.crypto
    grant_type: str = Field(default="authorization_code", alias="grantType")
    token_method: str = Field(default="POST", alias="tokenMethod")
    # Free form in the seed; the platform reads ``apiBaseUrl`` from it (default: the real API).
    metadata: dict[str, Any] | None = None
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")
    created_by: str | None = Field(default=None, alias="createdBy")


class IntegrationStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    ERROR = "error"  # needs re-authorization or operator action; no automatic jobs
    PENDING = "pending"  # OAuth not completed; no jobs


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class AuthData(Document):
    access_token: str = Field(alias="accessToken", min_length=1)  # ciphertext
    refresh_token: str | None = Field(default=None, alias="refreshToken")  # ciphertext
    expires_at: datetime | None = Field(default=None, alias="expiresAt")
    scope: list[str] = Field(default_factory=list)


class UserInfo(Document):
    email: str | None = None
    name: str | None = None
    provider_id: str | None = Field(default=None, alias="providerId")


class Health(Document):
    last_check: datetime | None = Field(default=None, alias="lastCheck")
    status: HealthStatus = HealthStatus.HEALTHY
    error_count: int = Field(default=0, ge=0, alias="errorCount")
    last_error: str | None = Field(default=None, alias="lastError")


class Usage(Document):
    total_requests: int = Field(default=0, ge=0, alias="totalRequests")
    last_request: datetime | None = Field(default=None, alias="lastRequest")
    quota_used: int | None = Field(default=None, alias="quotaUsed")
    quota_limit: int | None = Field(default=None, alias="quotaLimit")


class IntegrationState(Document):
    """The platform's own sub-document ``mwapTasks`` on an integration (not in the seed)."""

    sync_cursor: str | None = Field(default=None, alias="syncCursor")
    sync_run_id: str | None = Field(default=None, alias="syncRunId")
    last_sync_at: datetime | None = Field(default=None, alias="lastSyncAt")
    last_refresh_at: datetime | None = Field(default=None, alias="lastRefreshAt")
    refresh_cooldown_until: datetime | None = Field(default=None, alias="refreshCooldownUntil")
    health_checked_at: datetime | None = Field(default=None, alias="healthCheckedAt")
    status_reason: str | None = Field(default=None, alias="statusReason")
    # Set when the platform marks the integration ``error`` for its authorization; cleared, with
    # the integration.recovered webhook event, once it is active and answering again.
    auth_failed_at: datetime | None = Field(default=None, alias="authFailedAt")
    # A sync's counts so far (added, written, deleted), stored with each checkpoint's cursor.
    sync_totals: dict[str, int] | None = Field(default=None, alias="syncTotals")


class CloudIntegration(Document):
    id: ObjectIdField = Field(alias="_id")
    tenant_id: ObjectIdField = Field(alias="tenantId")
    provider_id: ObjectIdField = Field(alias="providerId")
    status: IntegrationStatus
    auth_data: AuthData = Field(alias="authData")
    user_info: UserInfo | None = Field(default=None, alias="userInfo")
    health: Health = Field(default_factory=Health)
    usage: Usage = Field(default_factory=Usage)
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")
    created_by: str | None = Field(default=None, alias="createdBy")
    mwap_tasks: IntegrationState = Field(default_factory=IntegrationState, alias="mwapTasks")


class SyncState(StrEnum):
    SYNCED = "synced"
    PENDING = "pending"
    ERROR = "error"


class SyncStatus(Document):
    last_sync: datetime | None = Field(default=None, alias="lastSync")
    status: SyncState
    error: str | None = None


class FileMetadata(Document):
    download_url: str | None = Field(default=None, alias="downloadUrl")
    thumbnail_url: str | None = Field(default=None, alias="thumbnailUrl")
    permissions: list[str] = Field(default_factory=list)
    checksum: str | None = None


class FileState(Document):
    """The platform's own sub-document ``mwapTasks`` on a virtual file (not in the seed)."""

    doc_hash: str | None = Field(default=None, alias="docHash")
    seen_run: str | None = Field(default=None, alias="seenRun")
    path_lower: str | None = Field(default=None, alias="pathLower")
    parent_id: str | None = Field(default=None, alias="parentId")
    is_folder: bool = Field(default=False, alias="isFolder")


class VirtualFile(Document):
    id: ObjectIdField = Field(alias="_id")
    project_id: ObjectIdField = Field(alias="projectId")
    integration_id: ObjectIdField = Field(alias="integrationId")
    provider_id: ObjectIdField = Field(alias="providerId")
    provider_file_id: str = Field(alias="providerFileId", min_length=1)
    name: str
    path: str
    type: str  # MIME type
    size: int | None = Field(default=None, ge=0)
    modified_time: datetime | None = Field(default=None, alias="modifiedTime")
    metadata: FileMetadata = Field(default_factory=FileMetadata)
    sync_status: SyncStatus = Field(alias="syncStatus")
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")
    # Platform additions: the tenant (isolation, shard key) and the sync's own state.
    tenant_id: ObjectIdField | None = Field(default=None, alias="tenantId")
    mwap_tasks: FileState | None = Field(default=None, alias="mwapTasks")


# --- the platform's own collections -----------------------------------------------------------


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
    tenant_id: ObjectIdField | None = Field(alias="tenantId")
    actor: Actor
    action: str = Field(min_length=1, max_length=100)
    target: AuditTarget
    details: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(alias="createdAt")


class UsageDaily(Document):
    id: ObjectIdField = Field(alias="_id")
    tenant_id: ObjectIdField = Field(alias="tenantId")
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
    tenant_id: ObjectIdField = Field(alias="tenantId")
    key_hash: str = Field(alias="keyHash", min_length=64, max_length=64)
    prefix: str
    name: str = ""
    created_at: datetime = Field(alias="createdAt")
    revoked_at: datetime | None = Field(default=None, alias="revokedAt")


class JobRecord(Document):
    id: str = Field(alias="_id")
    type: str
    tenant_id: ObjectIdField | None = Field(alias="tenantId")
    subject: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    status: str = Field(pattern=r"^(queued|running|retrying|succeeded|failed|cancelled)$")
    attempts: int = Field(ge=0)
    created_at: datetime = Field(alias="createdAt")
