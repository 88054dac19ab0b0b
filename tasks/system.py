"""``system.echo``: a diagnostic job that proves the path from the API to a worker and back."""

import time
from typing import Any

from pydantic import Field, StrictBool

from mwap.jobtypes import JobType, Params, Queue, Retry, Scope
from worker.base import Job, JobTask, job_task


class EchoError(Exception):
    """The permanent failure ``system.echo`` raises when asked to fail."""


class EchoTransientError(Exception):
    """The retryable failure ``system.echo`` raises for its first ``failTimes`` attempts."""


class EchoParams(Params):
    """``system.echo``: proves the path from API to worker and back, and lets tests make it fail."""

    message: str = Field(default="", max_length=1000)
    fail_times: int = Field(default=0, ge=0, le=5, alias="failTimes")
    fail: StrictBool = False
    sleep_seconds: float = Field(default=0, ge=0, le=30, alias="sleepSeconds")


ECHO = JobType(
    "system.echo",
    Scope.SYSTEM,
    Queue.DEFAULT,
    EchoParams,
    "Echo a message back; can be told to fail or retry. For smoke tests and operators.",
    retry=Retry(on=(EchoTransientError,), max_retries=5, backoff=1, jitter=False),
)


@job_task(ECHO)
def echo(self: JobTask, job: Job) -> dict[str, Any]:
    params = EchoParams.model_validate(job.params)
    if params.sleep_seconds:
        time.sleep(params.sleep_seconds)  # bounded by the params model; used to hold a worker busy
    if params.fail:
        raise EchoError(f"asked to fail: {params.message}")
    if job.retries < params.fail_times:
        raise EchoTransientError(f"transient failure {job.retries + 1} of {params.fail_times}")
    return {"message": params.message, "retries": job.retries}
