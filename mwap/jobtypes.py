"""The job types the platform runs: their names (equal to Celery task names), scope and queue.

The API validates requests against this table and the worker routes by it; neither imports the
other to do so.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Queue(StrEnum):
    DEFAULT = "default"
    SYNC = "sync"
    MAINTENANCE = "maintenance"


class Scope(StrEnum):
    SYSTEM = "system"  # no tenant: admin only
    TENANT = "tenant"
    INTEGRATION = "integration"


class Params(BaseModel):
    """Base of every job's params: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EchoParams(Params):
    """``system.echo``: proves the path from API to worker and back, and lets tests make it fail."""

    message: str = Field(default="", max_length=1000)
    fail_times: int = Field(default=0, ge=0, le=5, alias="failTimes")
    fail: bool = False
    sleep_seconds: float = Field(default=0, ge=0, le=30, alias="sleepSeconds")


@dataclass(frozen=True, slots=True)
class JobType:
    name: str
    scope: Scope
    queue: Queue
    params: type[Params]
    description: str

    def validate_params(self, raw: dict[str, Any] | None) -> dict[str, Any]:
        """Params checked against the type's model, returned in their stored (alias) form."""
        return self.params.model_validate(raw or {}).model_dump(by_alias=True)


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
    )
}


def routes() -> dict[str, dict[str, str]]:
    """Celery ``task_routes``: each job type to its queue."""
    return {name: {"queue": jt.queue.value} for name, jt in JOB_TYPES.items()}
