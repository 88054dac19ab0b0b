"""What one delivery of a job holds between ``JobTask.__call__``, its hooks and the signal handlers."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery.app.task import Context

_KEY = "mwap_delivery"


@dataclass(slots=True)
class Delivery:
    """Per-delivery state, one typed object on Celery's request instead of loose attributes."""

    skip: bool = False  # no ledger outcome: refused, requeued, already final, or never started
    exec_key: str | None = None  # the execution lock this delivery holds
    exec_owner: str | None = None
    slot: str | None = None  # the tenant running-job slot taken
    lease_key: str | None = None  # the job's (type, subject) lease, released when the job is final
    ended: str | None = None  # the final status the ledger took: lease released, waiters woken
    ended_document: dict[str, Any] | None = None  # the final ledger document, for the waiters
    started_at: datetime | None = None  # as the ledger recorded it
    clock: float | None = None  # monotonic start, for the duration metric
    retries: int = 0  # the job's retries spent, as the ledger counts them
    subject: dict[str, str] | None = None  # the job's subject, for its job.failed event


def delivery_of(request: Context) -> Delivery:
    """The delivery state of ``request`` (Celery makes one request per delivery), made on first use."""
    state = vars(request).get(_KEY)
    if not isinstance(state, Delivery):
        state = Delivery()
        vars(request)[_KEY] = state
    return state
