"""Request and response bodies of the API, as pydantic models (the OpenAPI document's source).

Request models forbid unknown fields and bound every value that reaches MongoDB (no free-form
objects, no integers BSON cannot hold). Response models describe exactly what the views send.
"""

import functools
import operator
import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    create_model,
    field_validator,
)

from mwap import jobtypes, registry
from mwap.jobtypes import JobType, Scope
from mwap.ledger import Status
from mwap.models import HealthStatus, IntegrationStatus, ProviderSlug, TenantSettings

ID_PATTERN = registry.ID_PATTERN
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Query(BaseModel):
    """Query parameters: one spelling (the camelCase alias), unknown names rejected."""

    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


# --- jobs -------------------------------------------------------------------------------------


def _variant_name(job_type: JobType) -> str:
    return "".join(part.capitalize() for part in re.split(r"[._]", job_type.name)) + "Job"


def _job_variant(job_type: JobType) -> type[Body]:
    """The request body for one job type: its ``type`` tag, its params model and its subject."""
    fields: dict[str, Any] = {
        "type": (Literal[job_type.name], ...),  # type: ignore[valid-type]  # built per job type
        "params": (job_type.params, Field(default_factory=job_type.params)),
    }
    if job_type.scope is Scope.TENANT:
        fields["tenant_id"] = (Id | None, Field(default=None, alias="tenantId"))
    elif job_type.scope is Scope.INTEGRATION:
        fields["integration_id"] = (Id, Field(alias="integrationId"))
        fields["tenant_id"] = (Id | None, Field(default=None, alias="tenantId"))
    return create_model(_variant_name(job_type), __base__=Body, __doc__=job_type.description, **fields)


JOB_VARIANTS: dict[str, type[Body]] = {name: _job_variant(jt) for name, jt in jobtypes.JOB_TYPES.items()}
JobItem = Annotated[
    functools.reduce(operator.or_, JOB_VARIANTS.values()),  # type: ignore[valid-type]
    Field(discriminator="type"),
]


class JobCreate(RootModel[JobItem]):
    """One job: ``type`` selects the params model and whether a tenant or an integration is named."""


@functools.cache
def job_batch_model(max_items: int) -> type[Body]:
    """The batch body for a configured maximum (the OpenAPI document shows the same bound)."""
    return create_model(
        "JobBatchCreate",
        __base__=Body,
        __doc__="Up to the configured maximum of jobs, validated all-or-nothing.",
        jobs=(list[JobItem], Field(min_length=1, max_length=max_items)),
    )


class JobError(BaseModel):
    type: str
    message: str


class JobRetry(BaseModel):
    at: datetime
    error: JobError


class JobOut(Out):
    id: str
    type: str
    tenant_id: str | None = Field(alias="tenantId")
    subject: dict[str, str]
    params: dict[str, Any]
    queue: str
    status: Status
    attempts: int
    retries: list[JobRetry]
    created_at: datetime = Field(alias="createdAt")
    started_at: datetime | None = Field(alias="startedAt")
    finished_at: datetime | None = Field(alias="finishedAt")
    duration_ms: int | None = Field(alias="durationMs")
    result: dict[str, Any] | None
    error: JobError | None
    request_id: str | None = Field(alias="requestId")

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> "JobOut":
        return cls.model_validate({**doc, "id": doc["_id"]})


class JobPage(Out):
    items: list[JobOut]
    next_cursor: str | None = Field(alias="nextCursor", description="Pass as `cursor` for the next page.")


class BatchItemOut(Out):
    status: Literal[200, 202] = Field(
        description="202: a new job; 200: the open job of that type and subject."
    )
    created: bool
    location: str
    job: JobOut


class BatchOut(Out):
    items: list[BatchItemOut]


class JobListQuery(Query):
    type: Literal[tuple(jobtypes.JOB_TYPES)] | None = None  # type: ignore[valid-type]
    status: Status | None = None
    subject: Id | None = Field(default=None, description="An integration or tenant id the job is about.")
    tenant_id: Id | None = Field(default=None, alias="tenantId")
    created_from: datetime | None = Field(default=None, alias="createdFrom", description="Inclusive.")
    created_to: datetime | None = Field(default=None, alias="createdTo", description="Exclusive.")
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, min_length=1, max_length=1000)


# --- tenants, providers, integrations -----------------------------------------------------------


class TenantSettingsIn(TenantSettings):
    # Stored as given: nothing beyond the known settings may reach MongoDB.
    model_config = ConfigDict(extra="forbid")


class TenantCreate(registry.TenantCreate):
    settings: TenantSettingsIn = Field(default_factory=TenantSettingsIn)


UserInfoKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
UserInfoValue = (
    Annotated[str, StringConstraints(max_length=1000)]
    | Annotated[int, Field(ge=-(2**53), le=2**53)]
    | Annotated[float, Field(ge=-(2**53), le=2**53, allow_inf_nan=False)]
    | bool
    | None
)


class IntegrationCreate(registry.IntegrationCreate):
    # A flat object of plain values: keys MongoDB accepts, integers BSON can hold.
    user_info: dict[UserInfoKey, UserInfoValue] = Field(
        default_factory=dict,
        alias="userInfo",
        max_length=50,
        json_schema_extra={"additionalProperties": False},  # keys must match the pattern
    )
    project_ids: list[Id] = Field(default_factory=list, alias="projectIds", max_length=100)

    @field_validator("expires_at")
    @classmethod
    def _to_milliseconds(cls, value: datetime) -> datetime:
        # What MongoDB keeps: the answer to this request then equals every later read.
        return value.replace(microsecond=value.microsecond // 1000 * 1000)


class TenantOut(Out):
    id: str
    name: str
    status: str
    settings: dict[str, Any]
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> "TenantOut":
        return cls.model_validate({**doc, "id": doc["_id"]})


class ProviderMetadataOut(Out):
    api_base_url: str = Field(alias="apiBaseUrl")


class ProviderOut(Out):
    id: str
    slug: ProviderSlug
    name: str
    auth_url: str = Field(alias="authUrl")
    token_url: str = Field(alias="tokenUrl")
    client_id: str = Field(alias="clientId")
    client_secret: Literal["[REDACTED]"] = Field(alias="clientSecret")
    scopes: list[str]
    status: str
    metadata: ProviderMetadataOut
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")


class AuthDataOut(Out):
    access_token: Literal["[REDACTED]"] = Field(alias="accessToken")
    refresh_token: Literal["[REDACTED]"] | None = Field(alias="refreshToken")
    expires_at: datetime | None = Field(alias="expiresAt")
    scope: str


class IntegrationOut(Out):
    id: str
    tenant_id: str = Field(alias="tenantId")
    provider_id: str | None = Field(alias="providerId")
    provider_slug: str | None = Field(alias="providerSlug")
    name: str
    status: str | None
    status_reason: str | None = Field(alias="statusReason")
    auth_data: AuthDataOut = Field(alias="authData", description="Token expiry and scope; never a token.")
    user_info: dict[str, Any] = Field(alias="userInfo")
    health: dict[str, Any]
    usage: dict[str, Any]
    last_sync_at: datetime | None = Field(alias="lastSyncAt")
    created_at: datetime | None = Field(alias="createdAt")


class IntegrationPage(Out):
    items: list[IntegrationOut]
    next_cursor: str | None = Field(alias="nextCursor")


class IntegrationListQuery(Query):
    tenant_id: Id | None = Field(default=None, alias="tenantId")
    status: IntegrationStatus | None = None
    health: HealthStatus | None = None
    provider_slug: ProviderSlug | None = Field(default=None, alias="providerSlug")
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, min_length=1, max_length=1000)


# --- files and usage ----------------------------------------------------------------------------


class SyncStatusOut(Out):
    status: str
    last_synced_at: datetime | None = Field(default=None, alias="lastSyncedAt")
    error: str | None = None


class FileOut(Out):
    id: str
    integration_id: str = Field(alias="integrationId")
    project_id: str | None = Field(default=None, alias="projectId")
    provider_file_id: str = Field(alias="providerFileId")
    name: str
    path: str
    mime_type: str | None = Field(default=None, alias="mimeType")
    size: int = 0
    is_folder: bool = Field(default=False, alias="isFolder")
    modified_at: datetime | None = Field(default=None, alias="modifiedAt")
    content_hash: str | None = Field(default=None, alias="contentHash")
    sync_status: SyncStatusOut | None = Field(default=None, alias="syncStatus")
    deleted_at: datetime | None = Field(default=None, alias="deletedAt")
    created_at: datetime | None = Field(default=None, alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")


class FilePage(Out):
    items: list[FileOut]
    next_cursor: str | None = Field(alias="nextCursor")


class FileListQuery(Query):
    path: str | None = Field(
        default=None,
        max_length=1024,
        description="Folder: only files below it (whose path starts with `path` + '/').",
    )
    include_deleted: bool = Field(default=False, alias="includeDeleted")
    limit: int = Field(default=100, ge=1, le=500)
    cursor: str | None = Field(default=None, min_length=1, max_length=3000)


class UsageQuery(Query):
    start: date | None = Field(
        default=None, alias="from", description="First day (UTC); default: `to` - 29 days."
    )
    end: date | None = Field(
        default=None, alias="to", description="Last day (UTC), inclusive; default: today."
    )


class UsageDayOut(Out):
    day: date
    jobs: dict[str, dict[str, int]]
    api_requests: int = Field(alias="apiRequests")
    provider_requests: int = Field(alias="providerRequests")
    files_synced: int = Field(alias="filesSynced")
    storage_bytes: int = Field(alias="storageBytes")
    integrations_by_health: dict[str, int] = Field(alias="integrationsByHealth")


class UsageTotalsOut(Out):
    jobs: dict[str, dict[str, int]]
    api_requests: int = Field(alias="apiRequests")
    provider_requests: int = Field(alias="providerRequests")
    files_synced: int = Field(alias="filesSynced")


class UsageOut(Out):
    tenant_id: str = Field(alias="tenantId")
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    days: list[UsageDayOut] = Field(description="Days with a rollup, oldest first.")
    totals: UsageTotalsOut


# --- operations and errors ----------------------------------------------------------------------


class HealthOut(Out):
    status: Literal["ok"]


class ReadyOut(Out):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


class OpenApiOut(RootModel[dict[str, Any]]):
    """The OpenAPI 3.1 document of this API."""


class ProblemItem(Out):
    pointer: str | None = Field(default=None, description="JSON pointer into the request body.")
    parameter: str | None = Field(default=None, description="The query parameter or header at fault.")
    detail: str


class ProblemOut(Out):
    """An RFC 9457 problem document."""

    type: str = Field(description="Stable URI naming the kind of problem.")
    title: str
    status: int
    instance: str | None = None
    detail: str | None = None
    errors: list[ProblemItem] | None = None
