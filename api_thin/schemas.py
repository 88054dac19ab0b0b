"""Request and response bodies of the API, as pydantic models (the OpenAPI document's source).

Request models forbid unknown fields and bound every value that reaches MongoDB (no free-form
objects, no integers BSON cannot hold). Response models describe exactly what the views send.
"""

import functools
import operator
import re
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    create_model,
)

import tasks
from mwap import jobtypes, registry, webhooks
from mwap.bson_dates import BsonDate, BsonQueryDatetime
from mwap.ids import HEX_PATTERN, IdStr
from mwap.jobtypes import JobType, Scope
from mwap.ledger import Status
from mwap.models import HealthStatus, IntegrationStatus

ID_PATTERN = HEX_PATTERN
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
        "type": (Literal[job_type.name], ...),
        "params": (job_type.params, Field(default_factory=job_type.params)),
    }
    if job_type.scope is Scope.TENANT:
        fields["tenant_id"] = (Id | None, Field(default=None, alias="tenantId"))
    elif job_type.scope in {Scope.INTEGRATION, Scope.PROJECT}:
        fields["integration_id"] = (Id, Field(alias="integrationId"))
        fields["tenant_id"] = (Id | None, Field(default=None, alias="tenantId"))
    if job_type.scope is Scope.PROJECT:
        fields["project_id"] = (Id, Field(alias="projectId"))
    return create_model(_variant_name(job_type), __base__=Body, __doc__=job_type.description, **fields)


# The job types as their modules declare them (tasks.load() imports them; the API runs none).
JOB_VARIANTS: dict[str, type[Body]] = {name: _job_variant(jt) for name, jt in tasks.load().items()}
if TYPE_CHECKING:  # a union built at run time from the registry: statically, one of the bodies
    JobItem = Body
else:
    JobItem = Annotated[functools.reduce(operator.or_, JOB_VARIANTS.values()), Field(discriminator="type")]


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
    tenant_id: IdStr | None = Field(alias="tenantId")
    subject: dict[str, IdStr]
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
    rerun_of: IdStr | None = Field(
        default=None, alias="rerunOf", description="The job this one re-runs (`POST /v1/jobs/{id}/rerun`)."
    )

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


class JobGetQuery(Query):
    wait: float = Field(
        default=0,
        ge=0,
        le=25,
        description="Seconds to hold the request until the job ends (woken by the worker, no "
        "polling); answered at once when the job is final. Capped by MWAP_JOB_WAIT_MAX; when "
        "too many requests already wait in this API process, answered at once.",
    )


class JobListQuery(Query):
    type: Literal[tuple(jobtypes.job_types())] | None = None  # type: ignore[valid-type]
    status: Status | None = None
    subject: Id | None = Field(
        default=None, description="An integration, project or tenant id the job is about."
    )
    tenant_id: Id | None = Field(default=None, alias="tenantId")
    created_from: BsonQueryDatetime | None = Field(
        default=None, alias="createdFrom", description="Inclusive; without an offset, UTC."
    )
    created_to: BsonQueryDatetime | None = Field(
        default=None, alias="createdTo", description="Exclusive; without an offset, UTC."
    )
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, min_length=1, max_length=1000)


# --- tenants, providers, integrations -----------------------------------------------------------


class TenantCreate(registry.TenantCreate):
    """A tenant as seed 000 defines it (``ownerId`` unique: a second tenant of one owner is 409)."""


class ProviderCreate(registry.ProviderCreate):
    """A provider as seed 000 defines it (``slug`` and ``name`` unique)."""


class IntegrationCreate(registry.IntegrationCreate):
    """An integration as the backend writes it (one per provider and tenant); ``expiresAt`` is
    kept as MongoDB keeps it (UTC milliseconds), so this answer equals every later read."""


class TenantOut(Out):
    id: IdStr
    name: str
    description: str | None = None
    owner_id: str = Field(alias="ownerId")
    settings: dict[str, Any]
    subscription: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    archived: bool = False
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> "TenantOut":
        return cls.model_validate({**doc, "id": doc["_id"]})


class ProviderOut(Out):
    id: IdStr
    slug: str
    name: str
    scopes: list[str]
    auth_url: str = Field(alias="authUrl")
    token_url: str = Field(alias="tokenUrl")
    client_id: str = Field(alias="clientId")
    client_secret: Literal["[REDACTED]"] = Field(alias="clientSecret")
    grant_type: str | None = Field(default=None, alias="grantType")
    token_method: str | None = Field(default=None, alias="tokenMethod")
    metadata: dict[str, Any] | None = None
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")
    created_by: str | None = Field(default=None, alias="createdBy")


class AuthDataOut(Out):
    access_token: Literal["[REDACTED]"] = Field(alias="accessToken")
    refresh_token: Literal["[REDACTED]"] | None = Field(alias="refreshToken")
    expires_at: datetime | None = Field(alias="expiresAt")
    scope: list[str]


class IntegrationOut(Out):
    id: IdStr
    tenant_id: IdStr = Field(alias="tenantId")
    provider_id: IdStr = Field(alias="providerId")
    provider_slug: str | None = Field(alias="providerSlug")
    status: str | None
    status_reason: str | None = Field(alias="statusReason", description="Platform addition: why `error`.")
    auth_data: AuthDataOut = Field(alias="authData", description="Token expiry and scope; never a token.")
    user_info: dict[str, Any] | None = Field(alias="userInfo")
    health: dict[str, Any]
    usage: dict[str, Any]
    last_sync_at: datetime | None = Field(alias="lastSyncAt")
    created_at: datetime | None = Field(alias="createdAt")
    created_by: str | None = Field(default=None, alias="createdBy")


class IntegrationPage(Out):
    items: list[IntegrationOut]
    next_cursor: str | None = Field(alias="nextCursor")


class IntegrationListQuery(Query):
    tenant_id: Id | None = Field(default=None, alias="tenantId")
    status: IntegrationStatus | None = None
    health: HealthStatus | None = None
    provider_id: Id | None = Field(default=None, alias="providerId")
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, min_length=1, max_length=1000)


# --- files and usage ----------------------------------------------------------------------------


class SyncStatusOut(Out):
    last_sync: datetime | None = Field(default=None, alias="lastSync")
    status: str
    error: str | None = None


class FileMetadataOut(Out):
    download_url: str | None = Field(default=None, alias="downloadUrl")
    thumbnail_url: str | None = Field(default=None, alias="thumbnailUrl")
    permissions: list[str] = Field(default_factory=list)
    checksum: str | None = None


class FileOut(Out):
    """A virtual file as seed 000 defines it."""

    id: IdStr
    project_id: IdStr = Field(alias="projectId")
    integration_id: IdStr = Field(alias="integrationId")
    provider_id: IdStr = Field(alias="providerId")
    provider_file_id: str = Field(alias="providerFileId")
    name: str
    path: str
    type: str = Field(description="MIME type.")
    size: int | None = None
    modified_time: datetime | None = Field(default=None, alias="modifiedTime")
    metadata: FileMetadataOut = Field(default_factory=FileMetadataOut)
    sync_status: SyncStatusOut = Field(alias="syncStatus")
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
    limit: int = Field(default=100, ge=1, le=500)
    cursor: str | None = Field(default=None, min_length=1, max_length=3000)


class UsageQuery(Query):
    start: BsonDate | None = Field(
        default=None, alias="from", description="First day (UTC); default: `to` - 29 days."
    )
    end: BsonDate | None = Field(
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
    tenant_id: IdStr = Field(alias="tenantId")
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    days: list[UsageDayOut] = Field(description="Days with a rollup, oldest first.")
    totals: UsageTotalsOut


# --- webhooks -----------------------------------------------------------------------------------


class WebhookCreate(Body):
    """A receiver URL and the event types it wants; the answer shows the signing secret once."""

    url: str = Field(
        min_length=8,
        max_length=webhooks.MAX_URL_CHARS,
        description="https (http only where the deployment allows it); no credentials; a host "
        "whose addresses are public (private ones only where allowed). Redirects are not followed.",
    )
    events: list[webhooks.EventType] = Field(min_length=1, max_length=len(webhooks.EventType))
    description: str | None = Field(default=None, max_length=200)
    tenant_id: Id | None = Field(default=None, alias="tenantId", description="Required with the admin key.")


class WebhookOut(Out):
    id: IdStr
    tenant_id: IdStr = Field(alias="tenantId")
    url: str
    events: list[str]
    description: str | None = None
    enabled: bool
    created_at: datetime = Field(alias="createdAt")
    disabled_at: datetime | None = Field(default=None, alias="disabledAt")
    disabled_reason: str | None = Field(default=None, alias="disabledReason")

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> "WebhookOut":
        return cls.model_validate({**doc, "id": doc["_id"]})


class WebhookCreatedOut(WebhookOut):
    secret: str | None = Field(
        description="The signing secret (`whsec_` + base64), shown only in this answer: store it now. "
        "Null in an Idempotency-Key replay (the secret is never kept for replays)."
    )


class WebhookPage(Out):
    items: list[WebhookOut]


class WebhookListQuery(Query):
    tenant_id: Id | None = Field(default=None, alias="tenantId")


def _event_variant(kind: webhooks.EventType) -> type[Out]:
    name = "".join(part.capitalize() for part in re.split(r"[._]", kind.value)) + "Event"
    fields: dict[str, Any] = {
        "id": (str, Field(description="`evt_…`, also the `webhook-id` header: deduplicate on it.")),
        "type": (Literal[kind.value], ...),
        "timestamp": (datetime, Field(description="When the event happened.")),
        "tenant_id": (IdStr, Field(alias="tenantId")),
        "data": (webhooks.PAYLOADS[kind], ...),
    }
    return create_model(name, __base__=Out, __doc__=webhooks.PAYLOADS[kind].__doc__, **fields)


# Every event as a receiver gets it (the POST body), by type: their schemas are in components.
EVENT_VARIANTS = {kind: _event_variant(kind) for kind in webhooks.EventType}
if TYPE_CHECKING:
    WebhookEvent = Out
else:
    WebhookEvent = Annotated[
        functools.reduce(operator.or_, EVENT_VARIANTS.values()), Field(discriminator="type")
    ]


class DeliveryAttemptOut(Out):
    at: datetime
    outcome: str = Field(
        description="delivered, gone (410), redirect, http_error, timeout, connection_error, "
        "refused (outbound rules), endpoint_disabled."
    )
    status_code: int | None = Field(default=None, alias="statusCode")
    duration_ms: int | None = Field(default=None, alias="durationMs")
    response_body: str | None = Field(default=None, alias="responseBody", description="The first bytes.")
    error: str | None = None


class DeliveryOut(Out):
    id: IdStr
    endpoint_id: IdStr = Field(alias="endpointId")
    status: webhooks.DeliveryStatus
    attempt_count: int = Field(alias="attemptCount")
    next_attempt_at: datetime | None = Field(default=None, alias="nextAttemptAt")
    delivered_at: datetime | None = Field(default=None, alias="deliveredAt")
    created_at: datetime = Field(alias="createdAt")
    attempts: list[DeliveryAttemptOut]
    event: WebhookEvent | None = Field(description="The event as sent (null once it has expired).")


class DeliveryPage(Out):
    items: list[DeliveryOut]


class DeliveryListQuery(Query):
    status: webhooks.DeliveryStatus | None = None
    limit: int = Field(default=50, ge=1, le=200)


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
