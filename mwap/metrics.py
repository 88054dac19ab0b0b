"""Prometheus metrics for the API, the workers, the providers and the scheduler.

Workers, beat and gunicorn run many processes, so metrics use prometheus-client's multiprocess
mode: every process that has ``PROMETHEUS_MULTIPROC_DIR`` in its environment *when it imports
prometheus_client* writes its values to files there, and the API's ``GET /metrics`` merges the
files of every process on the host (``render``). The directory must exist and be wiped before the
processes start (``reset_multiprocess_dir``; ``ops/run`` does both). A process without the
variable (a test runner hosting the API in-process, a one-off script) keeps its values in memory;
``render`` then serves those merged with whatever the directory holds.

Labels never carry tenant or integration ids: their cardinality is unbounded. Every label takes
its value from a closed set, folded here rather than trusted from callers, so that nothing a
client sends (an HTTP method is any token gunicorn accepts, before authentication), no typo and
no exception message can create new series: routes are URL rules or ``<unmatched>`` (the caller
never passes a raw path), methods outside ``HTTP_METHODS`` are ``other``, statuses are known HTTP
codes or a class such as ``5xx``, job types are the registered ones or ``other``, providers the
known slugs or ``other``, outcomes one of their fixed set or ``error``.
"""

import json
import os
import time
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from pathlib import Path

import redis
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from mwap import jobtypes
from mwap.connections import redis_client
from mwap.models import ProviderSlug

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Celery message headers stamped at publish time (worker/signals.py) and read back here.
SENT_AT_HEADER = "mwap_sent_at"

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
PROVIDER_OUTCOMES = frozenset(
    {"ok", "not_found", "rate_limited", "auth_expired", "reauth_required", "timeout", "server_error", "error"}
)
TOKEN_REFRESH_OUTCOMES = frozenset({"ok", "invalid_grant", "rate_limited", "timeout", "error", "skipped"})
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


# --- closed label sets ---------------------------------------------------------------------------
OTHER = "other"
# The methods any route of this API answers (RFC 9110's, minus CONNECT and TRACE); anything else
# a client sends is counted as "other".
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
HTTP_STATUSES = frozenset(str(status.value) for status in HTTPStatus)
# Every task a worker runs: the job types, their dispatchers and the reconciler.
TASK_NAMES = frozenset(
    {*jobtypes.JOB_TYPES, *(f"dispatch.{name}" for name in jobtypes.JOB_TYPES), "system.reconcile"}
)
JOB_OUTCOMES = frozenset({"succeeded", "failed", "retried", "skipped"})
PROVIDERS = frozenset(slug.value for slug in ProviderSlug)


def _fold(outcome: str, allowed: frozenset[str]) -> str:
    return outcome if outcome in allowed else "error"


def _closed(value: object, allowed: frozenset[str]) -> str:
    return value if isinstance(value, str) and value in allowed else OTHER


def http_method_label(method: str) -> str:
    """``method`` if it is one of ``HTTP_METHODS``, else ``other``."""
    return _closed(method, HTTP_METHODS)


def http_status_label(status: int) -> str:
    """A known HTTP status code as is; anything else as its class (``5xx``), or ``other``."""
    code = str(status)
    if code in HTTP_STATUSES:
        return code
    return f"{code[0]}xx" if len(code) == 3 and code[0] in "12345" else OTHER


def task_label(name: str) -> str:
    """A registered job type, dispatcher or the reconciler; ``other`` for any other task name."""
    return _closed(name, TASK_NAMES)


def provider_label(slug: str) -> str:
    """A known provider slug; ``other`` for a provider document with any other slug."""
    return _closed(slug, PROVIDERS)


# --- the call API for jobs, providers and the scheduler -----------------------------------------
def provider_call(provider: str, outcome: str) -> None:
    """Count one provider API call; ``outcome`` is one of ``PROVIDER_OUTCOMES`` (else "error")."""
    PROVIDER_CALLS.labels(provider_label(provider), _fold(outcome, PROVIDER_OUTCOMES)).inc()


def token_refresh(provider: str, outcome: str) -> None:
    """Count one OAuth refresh; ``outcome`` is one of ``TOKEN_REFRESH_OUTCOMES`` (else "error")."""
    TOKEN_REFRESHES.labels(provider_label(provider), _fold(outcome, TOKEN_REFRESH_OUTCOMES)).inc()


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
    JOB_DURATION.labels(task_label(job_type), _closed(outcome, JOB_OUTCOMES)).observe(seconds)


def http_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request. ``route`` is the matched URL rule or ``<unmatched>`` (never the
    raw path); the method and status are folded into their closed sets."""
    method_label = http_method_label(method)
    HTTP_REQUESTS.labels(route, method_label, http_status_label(status)).inc()
    HTTP_DURATION.labels(route, method_label).observe(seconds)


# --- multiprocess plumbing ---------------------------------------------------------------------
def multiprocess_dir(settings: object) -> Path | None:
    """Where this host's processes write metrics: ``settings.metrics_dir``, else the env variable."""
    configured = getattr(settings, "metrics_dir", None) or os.environ.get(MULTIPROC_ENV)
    return Path(configured) if configured else None


def in_multiprocess_mode() -> bool:
    """True when this process writes its metrics to files (the variable was set at import)."""
    return bool(getattr(prometheus_values.ValueClass, "_multiprocess", False))


def reset_multiprocess_dir(path: Path) -> Path:
    """Create ``path`` and delete metric files a previous run left (they would be summed in)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path


def process_exited(pid: int | None = None) -> None:
    """Drop a finished process's live gauges (breaker, leader) so they stop counting."""
    if in_multiprocess_mode():
        mark_process_dead(pid or os.getpid())


class _HostCollector(Collector):
    """The metrics of every process on this host: the multiprocess files, plus this process's
    in-memory registry when it does not write files itself (families merged by name)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def collect(self) -> Iterator[Metric]:
        sources: list[Iterable[Metric]] = []
        if self.path is not None and self.path.is_dir():
            sources.append(MultiProcessCollector(None, path=str(self.path)).collect())
        if not in_multiprocess_mode():
            sources.append(REGISTRY.collect())
        families: dict[str, Metric] = {}
        for source in sources:
            for family in source:
                if family.name in families:
                    families[family.name].samples.extend(family.samples)
                else:
                    families[family.name] = family
        yield from families.values()


# --- queues --------------------------------------------------------------------------------------
# kombu's Redis transport: one list per queue and priority step, LPUSH to publish, RPOP to consume,
# so the oldest waiting message is the list's last element.
_KOMBU_PRIORITY_SEPARATOR = "\x06\x16"
_KOMBU_PRIORITY_STEPS = (3, 6, 9)


def queue_keys(queue: str) -> list[str]:
    return [queue, *(f"{queue}{_KOMBU_PRIORITY_SEPARATOR}{step}" for step in _KOMBU_PRIORITY_STEPS)]


def queue_stats(client: redis.Redis, queues: Iterable[str]) -> dict[str, tuple[int, float | None]]:
    """Per queue: messages waiting, and the publish time of the oldest one (None if unknown).

    One pipelined round trip: LLEN and LINDEX -1 per list. The publish time comes from the
    ``mwap_sent_at`` header our producers stamp on every message; a message without it (sent by
    something else) leaves the age unknown rather than guessed.
    """
    queues = list(queues)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for key in queue_keys(queue):
            pipe.llen(key)
            pipe.lindex(key, -1)
    replies = iter(pipe.execute())
    stats: dict[str, tuple[int, float | None]] = {}
    for queue in queues:
        depth, oldest = 0, None
        for _key in queue_keys(queue):
            length, raw = next(replies), next(replies)
            depth += int(length or 0)
            sent_at = _sent_at(raw)
            if sent_at is not None:
                oldest = sent_at if oldest is None else min(oldest, sent_at)
        stats[queue] = (depth, oldest)
    return stats


def _sent_at(raw: bytes | None) -> float | None:
    if not raw:
        return None
    try:
        headers = json.loads(raw).get("headers") or {}
        return float(headers[SENT_AT_HEADER])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


class QueueCollector(Collector):
    """Broker queue depth and oldest-message age, read from Redis at scrape time."""

    def __init__(self, settings: object, queues: Iterable[str] | None = None) -> None:
        self.settings = settings
        self.queues = list(queues or (q.value for q in jobtypes.Queue))

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("mwap_broker_up", "1 when the broker answered the queue metrics scrape")
        try:
            stats = queue_stats(redis_client(self.settings), self.queues)  # type: ignore[arg-type]
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        depth = GaugeMetricFamily(
            "mwap_queue_depth",
            "Messages waiting in a broker queue (not yet taken by a worker)",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "mwap_queue_oldest_message_age_seconds",
            "Age of the oldest waiting message in a broker queue (0 when empty)",
            labels=["queue"],
        )
        now = time.time()
        for queue, (count, oldest) in stats.items():
            depth.add_metric([queue], count)
            if count == 0:
                age.add_metric([queue], 0)
            elif oldest is not None:
                age.add_metric([queue], max(now - oldest, 0.0))
        yield from (up, depth, age)


def render(settings: object, *, queues: Iterable[str] | None = None) -> tuple[bytes, str]:
    """The ``/metrics`` body and content type: every process on this host plus the queues."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_HostCollector(multiprocess_dir(settings)))
    registry.register(QueueCollector(settings, queues))
    return generate_latest(registry), CONTENT_TYPE_LATEST
