"""``system.echo``: a diagnostic job that proves the path from the API to a worker and back."""

import time
from typing import Any

from celery import shared_task

from mwap.jobtypes import EchoParams
from worker.base import Job, JobTask


class EchoError(Exception):
    """The permanent failure ``system.echo`` raises when asked to fail."""


class EchoTransientError(Exception):
    """The retryable failure ``system.echo`` raises for its first ``failTimes`` attempts."""


@shared_task(
    bind=True,
    base=JobTask,
    name="system.echo",
    autoretry_for=(EchoTransientError,),
    max_retries=5,
    retry_backoff=1,
    retry_jitter=False,
)
def echo(self: JobTask, job: Job) -> dict[str, Any]:
    params = EchoParams.model_validate(job.params)
    if params.sleep_seconds:
        time.sleep(params.sleep_seconds)  # bounded by the params model; used to hold a worker busy
    if params.fail:
        raise EchoError(f"asked to fail: {params.message}")
    if self.request.retries < params.fail_times:
        raise EchoTransientError(f"transient failure {self.request.retries + 1} of {params.fail_times}")
    return {"message": params.message, "retries": self.request.retries}
