"""The base class of every job task: the message carries a job id, the ledger follows the job."""

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import Task
from pymongo.database import Database

from mwap import leases, ledger
from mwap.connections import mongo_db, redis_client

logger = logging.getLogger(__name__)

# A job that keeps killing its worker is redelivered this many times, then dead-lettered.
MAX_UNFINISHED_DELIVERIES = 3


@dataclass(frozen=True, slots=True)
class Job:
    """What a task body gets: the job as the ledger holds it."""

    id: str
    type: str
    tenant_id: str | None
    subject: dict[str, str]
    params: dict[str, Any]
    attempts: int
    created_at: datetime
    lease_key: str | None = None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> "Job":
        return cls(
            id=doc["_id"],
            type=doc["type"],
            tenant_id=doc.get("tenantId"),
            subject=doc.get("subject") or {},
            params=doc.get("params") or {},
            attempts=doc["attempts"],
            created_at=doc["createdAt"],
            lease_key=doc.get("leaseKey"),
        )


class PoisonJobError(Exception):
    """A job whose deliveries keep ending without an outcome (its worker dies every time)."""


class JobTask(Task):
    """Runs ``run(job: Job)`` for a message whose only argument is the job id.

    ``__call__`` marks the job running in the ledger (or skips a job that is already final, so a
    redelivered message does nothing twice); the hooks record success, retry and failure.
    """

    acks_late = True
    ignore_result = True
    typing = False  # the message carries the id; run() receives the Job built from it

    def db(self) -> Database:
        return mongo_db(self.app.mwap_settings)

    def __call__(self, job_id: str) -> Any:
        request = self.request
        request.mwap_skip = True
        doc = ledger.start(self.db(), job_id, worker=request.hostname or "unknown")
        if doc is None:
            logger.info("job %s is final or unknown; nothing to do", job_id)
            return None
        request.mwap_skip = False
        request.mwap_started_at = doc["startedAt"]
        request.mwap_lease_key = doc.get("leaseKey")
        unfinished = doc["attempts"] - 1 - len(doc.get("retries") or [])
        if unfinished > MAX_UNFINISHED_DELIVERIES:
            raise PoisonJobError(
                f"delivered {unfinished} times without finishing (its worker died each time); dead-lettered"
            )
        return self.run(Job.from_document(doc))

    def _started_at(self) -> datetime | None:
        return getattr(self.request, "mwap_started_at", None)

    def _release_lease(self, job_id: str) -> None:
        """The job is final: free its (type, subject) lease so the next run can be enqueued."""
        lease_key = getattr(self.request, "mwap_lease_key", None)
        if lease_key:
            leases.release(redis_client(self.app.mwap_settings), lease_key, job_id)

    def on_success(self, retval: Any, task_id: str, args: tuple, kwargs: dict) -> None:
        if getattr(self.request, "mwap_skip", False):
            return
        ledger.succeed(self.db(), args[0], retval, started_at=self._started_at())
        self._release_lease(args[0])

    def on_retry(self, exc: BaseException, task_id: str, args: tuple, kwargs: dict, einfo: Any) -> None:
        ledger.retrying(self.db(), args[0], ledger.error_summary(exc))

    def on_failure(self, exc: BaseException, task_id: str, args: tuple, kwargs: dict, einfo: Any) -> None:
        if not args:
            return
        ledger.fail(self.db(), args[0], ledger.error_summary(exc), started_at=self._started_at())
        self._release_lease(args[0])
