"""The platform's metric families and the functions callers record with.

Callers use the functions (``metrics.provider_call``, ``metrics.scheduler_dispatch``, ...), never
the families: each function folds its labels into their closed sets (``labels.py``) first.
"""

import time

from prometheus_client import Counter, Gauge, Histogram
from pymongo import monitoring

from mwap.metrics.labels import (
    JOB_OUTCOMES,
    MONGO_COMMANDS,
    OTHER,
    PROCESS_ROLES,
    PROVIDER_OUTCOMES,
    TOKEN_REFRESH_OUTCOMES,
    WEBHOOK_OUTCOMES,
    closed,
    fold,
    http_method_label,
    http_status_label,
    provider_label,
    task_label,
)

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_WAIT = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# --- API -------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "mwap_http_requests",
    "HTTP requests answered, by URL rule, method and status",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "mwap_http_request_duration_seconds",
    "HTTP request latency by URL rule",
    ["route", "method"],
    buckets=_FAST,
)

# --- MongoDB -----------------------------------------------------------------------------------
MONGO_COMMANDS_SENT = Counter(
    "mwap_mongo_commands",
    "MongoDB commands sent (pymongo command monitoring), by command and the sending process's role",
    ["command", "role"],
)


class _Role:
    name = OTHER  # until the process's entry point says what it is


def set_role(role: str) -> None:
    """Name this process's role (``api``, ``worker``, ``beat``, ``cli``) in the metrics that carry it."""
    _Role.name = closed(role, PROCESS_ROLES)


class MongoCommandCounter(monitoring.CommandListener):
    """Counts every command this process's MongoClient sends (registered by mwap.connections)."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        MONGO_COMMANDS_SENT.labels(closed(event.command_name, MONGO_COMMANDS), _Role.name).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


# --- jobs (workers) ----------------------------------------------------------------------------
JOBS_STARTED = Counter("mwap_jobs_started", "Job attempts started, by job type", ["type"])
JOBS_SUCCEEDED = Counter("mwap_jobs_succeeded", "Jobs that succeeded, by job type", ["type"])
JOBS_FAILED = Counter("mwap_jobs_failed", "Jobs that failed for good, by job type", ["type"])
JOBS_RETRIED = Counter(
    "mwap_jobs_retried", "Job attempts that failed and were retried, by job type", ["type"]
)
JOBS_SKIPPED = Counter(
    "mwap_jobs_skipped", "Deliveries of jobs already final or unknown (redeliveries), by job type", ["type"]
)
JOB_DURATION = Histogram(
    "mwap_job_duration_seconds",
    "Run time of one job attempt, by job type and outcome",
    ["type", "outcome"],
    buckets=_SLOW,
)
JOB_QUEUE_WAIT = Histogram(
    "mwap_job_queue_wait_seconds", "Time from publish (or ETA) to start, by job type", ["type"], buckets=_WAIT
)

# --- providers ---------------------------------------------------------------------------------
PROVIDER_CALLS = Counter(
    "mwap_provider_calls", "Calls to a provider API, by provider and outcome", ["provider", "outcome"]
)
TOKEN_REFRESHES = Counter(
    "mwap_token_refreshes", "OAuth token refreshes, by provider and outcome", ["provider", "outcome"]
)
PROVIDER_BREAKER_OPEN = Gauge(
    "mwap_provider_breaker_open",
    "1 while a provider's circuit breaker is open (calls are being refused)",
    ["provider"],
    multiprocess_mode="livemax",
)

# --- scheduler ---------------------------------------------------------------------------------
SCHEDULER_DISPATCHES = Counter("mwap_scheduler_dispatches", "Dispatcher runs, by job type", ["type"])
SCHEDULER_DUE_ITEMS = Counter(
    "mwap_scheduler_due_items", "Items a dispatcher found due and enqueued, by job type", ["type"]
)
SCHEDULER_LAST_DISPATCH = Gauge(
    "mwap_scheduler_last_dispatch_timestamp_seconds",
    "Unix time of the last dispatcher run, by job type",
    ["type"],
    multiprocess_mode="max",
)
SCHEDULER_LEADER = Gauge(
    "mwap_scheduler_leader",
    "1 while this beat instance holds the scheduler leadership, 0 while it stands by",
    ["identity"],
    multiprocess_mode="livemax",
)


# --- webhooks ---------------------------------------------------------------------------------
WEBHOOK_DELIVERIES = Counter(
    "mwap_webhook_deliveries",
    "Webhook delivery attempts, by outcome (a closed set: delivered, timeout, http_error, ...)",
    ["outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "mwap_webhook_delivery_duration_seconds",
    "Time from a webhook request's start to its answer (or its failure)",
    buckets=_FAST,
)
WEBHOOK_BACKLOG = Gauge(
    "mwap_webhook_backlog",
    "Webhook deliveries pending (waiting for a first attempt or a retry), as the last sweep counted",
    multiprocess_mode="livemax",
)


# --- the call API for jobs, providers and the scheduler -----------------------------------------
def webhook_delivery(outcome: str, seconds: float | None) -> None:
    """Count one webhook attempt; ``outcome`` is one of ``WEBHOOK_OUTCOMES`` (else "error")."""
    WEBHOOK_DELIVERIES.labels(fold(outcome, WEBHOOK_OUTCOMES)).inc()
    if seconds is not None:
        WEBHOOK_LATENCY.observe(seconds)


def webhook_backlog(pending: int) -> None:
    WEBHOOK_BACKLOG.set(pending)


def provider_call(provider: str, outcome: str) -> None:
    """Count one provider API call; ``outcome`` is one of ``PROVIDER_OUTCOMES`` (else "error")."""
    PROVIDER_CALLS.labels(provider_label(provider), fold(outcome, PROVIDER_OUTCOMES)).inc()


def token_refresh(provider: str, outcome: str) -> None:
    """Count one OAuth refresh; ``outcome`` is one of ``TOKEN_REFRESH_OUTCOMES`` (else "error")."""
    TOKEN_REFRESHES.labels(provider_label(provider), fold(outcome, TOKEN_REFRESH_OUTCOMES)).inc()


def breaker(provider: str, *, is_open: bool) -> None:
    """Record a provider's circuit breaker opening or closing."""
    PROVIDER_BREAKER_OPEN.labels(provider_label(provider)).set(1 if is_open else 0)


def scheduler_dispatch(job_type: str, due: int) -> None:
    """Record one dispatcher run that enqueued ``due`` items."""
    label = task_label(job_type)
    SCHEDULER_DISPATCHES.labels(label).inc()
    SCHEDULER_DUE_ITEMS.labels(label).inc(due)
    SCHEDULER_LAST_DISPATCH.labels(label).set(time.time())


def scheduler_leader(identity: str, *, is_leader: bool) -> None:
    """Record whether the beat instance ``identity`` (host:pid) currently leads.

    Not client-supplied: one series per beat process, dropped when it exits (``process_exited``)."""
    SCHEDULER_LEADER.labels(identity).set(1 if is_leader else 0)


def job_started(job_type: str, queue_wait: float | None) -> None:
    label = task_label(job_type)
    JOBS_STARTED.labels(label).inc()
    if queue_wait is not None:
        JOB_QUEUE_WAIT.labels(label).observe(max(queue_wait, 0.0))


_OUTCOME_COUNTERS = {
    "succeeded": JOBS_SUCCEEDED,
    "failed": JOBS_FAILED,
    "retried": JOBS_RETRIED,
    "skipped": JOBS_SKIPPED,
}


def job_outcome(job_type: str, outcome: str) -> None:
    """Count a job attempt's outcome: succeeded, failed, retried or skipped."""
    _OUTCOME_COUNTERS[outcome].labels(task_label(job_type)).inc()


def job_finished(job_type: str, outcome: str, seconds: float) -> None:
    """Time one attempt; an outcome outside ``JOB_OUTCOMES`` (a Celery state such as REVOKED) is
    ``other``."""
    JOB_DURATION.labels(task_label(job_type), closed(outcome, JOB_OUTCOMES)).observe(seconds)


def http_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request. ``route`` is the matched URL rule or ``<unmatched>`` (never the
    raw path); the method and status are folded into their closed sets."""
    method_label = http_method_label(method)
    HTTP_REQUESTS.labels(route, method_label, http_status_label(status)).inc()
    HTTP_DURATION.labels(route, method_label).observe(seconds)
