"""Request and response bodies of the API, as pydantic models (the OpenAPI document's source)."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class JobCreate(Body):
    type: str = Field(min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)
    tenant_id: str | None = Field(default=None, alias="tenantId", pattern=ID_PATTERN)
    integration_id: str | None = Field(default=None, alias="integrationId", pattern=ID_PATTERN)


class JobError(BaseModel):
    type: str
    message: str


class JobRetry(BaseModel):
    at: datetime
    error: JobError


class JobOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: str
    type: str
    tenant_id: str | None = Field(alias="tenantId")
    subject: dict[str, str]
    params: dict[str, Any]
    queue: str
    status: str
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
