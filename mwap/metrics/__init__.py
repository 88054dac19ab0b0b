"""Prometheus metrics for the API, the workers, the providers and the scheduler.

Callers record through this package's functions (``metrics.job_started``,
``metrics.provider_call``, ``metrics.scheduler_dispatch``, ...) and the API serves ``render``.
Inside:

- ``definitions``: the metric families and the functions that record them;
- ``labels``: the closed label sets every value is folded into (no unbounded series);
- ``multiprocess``: prometheus-client's multiprocess mode (the directory every process on a host
  writes to, its cleanup, the collector that merges it);
- ``queues``: broker queue depth and age, read through ``mwap.broker`` at scrape time;
- ``exposition``: ``render``, the ``/metrics`` body; ``pod_registry``, what ``mwap metrics serve``
  serves; ``authorized``, the metrics token check.
"""

from mwap.metrics.definitions import (
    MongoCommandCounter,
    breaker,
    http_request,
    job_finished,
    job_outcome,
    job_started,
    provider_call,
    scheduler_dispatch,
    scheduler_leader,
    set_role,
    token_refresh,
    webhook_backlog,
    webhook_delivery,
)
from mwap.metrics.exposition import authorized, pod_registry, render
from mwap.metrics.labels import (
    HTTP_METHODS,
    HTTP_STATUSES,
    JOB_OUTCOMES,
    MONGO_COMMANDS,
    OTHER,
    PROCESS_ROLES,
    PROVIDER_OUTCOMES,
    PROVIDERS,
    TOKEN_REFRESH_OUTCOMES,
    http_method_label,
    http_status_label,
    provider_label,
    task_label,
    task_names,
)
from mwap.metrics.multiprocess import (
    MULTIPROC_ENV,
    in_multiprocess_mode,
    multiprocess_dir,
    process_exited,
    reset_multiprocess_dir,
)
from mwap.metrics.queues import QueueCollector

__all__ = [
    "HTTP_METHODS",
    "HTTP_STATUSES",
    "JOB_OUTCOMES",
    "MONGO_COMMANDS",
    "MULTIPROC_ENV",
    "OTHER",
    "PROCESS_ROLES",
    "PROVIDERS",
    "PROVIDER_OUTCOMES",
    "TOKEN_REFRESH_OUTCOMES",
    "MongoCommandCounter",
    "QueueCollector",
    "authorized",
    "breaker",
    "http_method_label",
    "http_request",
    "http_status_label",
    "in_multiprocess_mode",
    "job_finished",
    "job_outcome",
    "job_started",
    "multiprocess_dir",
    "pod_registry",
    "process_exited",
    "provider_call",
    "provider_label",
    "render",
    "reset_multiprocess_dir",
    "scheduler_dispatch",
    "scheduler_leader",
    "set_role",
    "task_label",
    "task_names",
    "token_refresh",
    "webhook_backlog",
    "webhook_delivery",
]
