"""The job types the platform runs: their names (equal to Celery task names), scope and queue.

The API validates requests against this table and the worker routes by it; neither imports the
other to do so.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mwap.bson_dates import BsonDate


class Queue(StrEnum):
    DEFAULT = "default"
    SYNC = "sync"
    MAINTENANCE = "maintenance"


class Scope(StrEnum):
    SYSTEM = "system"  # no tenant: admin only
    TENANT = "tenant"
    INTEGRATION = "integration"
    PROJECT = "project"  # subject {projectId, integrationId}; shares the integration sync's lease


class Params(BaseModel):
    """Base of every job's params: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EchoParams(Params):
    """``system.echo``: proves the path from API to worker and back, and lets tests make it fail."""

    message: str = Field(default="", max_length=1000)
    fail_times: int = Field(default=0, ge=0, le=5, alias="failTimes")
    fail: bool = False
    sleep_seconds: float = Field(default=0, ge=0, le=30, alias="sleepSeconds")


class NoParams(Params):
    """Jobs that take no parameters."""


class RefreshParams(Params):
    force: bool = False  # refresh even when the token is not close to expiry


class SyncParams(Params):
    full: bool = False  # relist everything instead of following the saved cursor


MAX_AGGREGATE_DAYS = 366


class AggregateParams(Params):
    """Days to roll up (UTC dates); default: yesterday and today."""

    start: BsonDate | None = Field(default=None, alias="from")
    end: BsonDate | None = Field(default=None, alias="to")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        # The window the job will roll up: "to" defaults to today, so "from" alone is bounded too.
        end = self.end or datetime.now(UTC).date()
        if self.start and self.start > end:
            raise ValueError("from must not be after to (or today)")
        if self.start and (end - self.start).days > MAX_AGGREGATE_DAYS:
            raise ValueError(f"at most {MAX_AGGREGATE_DAYS} days per job")
        return self


class RetentionParams(Params):
    dry_run: bool = Field(default=False, alias="dryRun")


@dataclass(frozen=True, slots=True)
class JobType:
    name: str
    scope: Scope
    queue: Queue
    params: type[Params]
    description: str

    def validate_params(self, raw: dict[str, Any] | None) -> dict[str, Any]:
        """Params checked against the type's model, returned in their stored (alias) form."""
        return self.params.model_validate(raw or {}).model_dump(mode="json", by_alias=True)


JOB_TYPES: dict[str, JobType] = {
    jt.name: jt
    for jt in (
        JobType(
            "system.echo",
            Scope.SYSTEM,
            Queue.DEFAULT,
            EchoParams,
            "Echo a message back; can be told to fail or retry. For smoke tests and operators.",
        ),
        JobType(
            "integration.health_check",
            Scope.INTEGRATION,
            Queue.DEFAULT,
            NoParams,
            "Cheap authenticated provider call; updates the integration's health.",
        ),
        JobType(
            "integration.refresh_token",
            Scope.INTEGRATION,
            Queue.DEFAULT,
            RefreshParams,
            "OAuth refresh_token grant; stores the new tokens encrypted.",
        ),
        JobType(
            "integration.sync_files",
            Scope.INTEGRATION,
            Queue.SYNC,
            SyncParams,
            "Incremental listing of the provider account into virtualFiles.",
        ),
        JobType(
            "project.sync_files",
            Scope.PROJECT,
            Queue.SYNC,
            SyncParams,
            "Seed sync-virtual-files {projectId, integrationId}: the integration's sync, run for one "
            "project whose link is enabled; shares the integration sync's lease.",
        ),
        JobType(
            "tenant.aggregate_usage",
            Scope.TENANT,
            Queue.MAINTENANCE,
            AggregateParams,
            "Daily usage rollups into usageDaily.",
        ),
        JobType(
            "tenant.apply_retention",
            Scope.TENANT,
            Queue.MAINTENANCE,
            RetentionParams,
            "Deletes what is past the tenant's retention.",
        ),
    )
}


def routes() -> dict[str, dict[str, str]]:
    """Celery ``task_routes``: each job type to its queue; the dispatchers to ``maintenance``."""
    table: dict[str, dict[str, str]] = {name: {"queue": jt.queue.value} for name, jt in JOB_TYPES.items()}
    table["dispatch.*"] = {"queue": Queue.MAINTENANCE.value}
    table["system.reconcile"] = {"queue": Queue.MAINTENANCE.value}
    return table
