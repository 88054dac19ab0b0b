"""The closed label sets of every metric, and the folding of any value into them.

Labels never carry tenant or integration ids: their cardinality is unbounded. Every label takes
its value from a closed set, folded here rather than trusted from callers, so that nothing a
client sends (an HTTP method is any token gunicorn accepts, before authentication), no typo and
no exception message can create new series: routes are URL rules or ``<unmatched>`` (the caller
never passes a raw path), methods outside ``HTTP_METHODS`` are ``other``, statuses are known HTTP
codes or a class such as ``5xx``, job types are the registered ones or ``other``, providers the
known slugs or ``other``, outcomes one of their fixed set or ``error``.
"""

from http import HTTPStatus

from mwap import jobtypes
from mwap.models import ProviderSlug

OTHER = "other"
# The methods any route of this API answers (RFC 9110's, minus CONNECT and TRACE); anything else
# a client sends is counted as "other".
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
HTTP_STATUSES = frozenset(str(status.value) for status in HTTPStatus)
JOB_OUTCOMES = frozenset({"succeeded", "failed", "retried", "skipped"})
PROVIDERS = frozenset(slug.value for slug in ProviderSlug)
PROVIDER_OUTCOMES = frozenset(
    {"ok", "not_found", "rate_limited", "auth_expired", "reauth_required", "timeout", "server_error", "error"}
)
WEBHOOK_OUTCOMES = frozenset(
    {
        "delivered",
        "gone",
        "redirect",
        "http_error",
        "timeout",
        "connection_error",
        "refused",
        "endpoint_disabled",
        "error",
    }
)
TOKEN_REFRESH_OUTCOMES = frozenset({"ok", "invalid_grant", "rate_limited", "timeout", "error", "skipped"})
# MongoDB commands the platform sends (pymongo's command names); any other counts as "other".
MONGO_COMMANDS = frozenset(
    {
        "find",
        "getMore",
        "killCursors",
        "insert",
        "update",
        "delete",
        "findAndModify",
        "aggregate",
        "count",
        "distinct",
        "createIndexes",
        "listIndexes",
        "listCollections",
        "collMod",
        "drop",
        "dropDatabase",
        "dbStats",
        "serverStatus",
        "ping",
        "hello",
        "endSessions",
    }
)
# What a process is: set by its entry point (metrics.set_role).
PROCESS_ROLES = frozenset({"api", "worker", "beat", "cli"})


_task_names: tuple[int, frozenset[str]] = (-1, frozenset())  # (registry size, names)


def task_names() -> frozenset[str]:
    """Every task a worker runs: the job types, their dispatchers, the reconciler and the dead-worker
    check.

    Built again only when the registry grew (types are only ever added): every job's metrics
    fold its type through this set, three times per job."""
    global _task_names  # noqa: PLW0603 - a per-process cache of a per-process registry
    names = jobtypes.job_types()
    if _task_names[0] != len(names):
        passes = ("system.reconcile", "system.recover_dead_workers")
        found = frozenset({*names, *(jt.dispatcher for jt in names.values()), *passes})
        _task_names = (len(names), found)
    return _task_names[1]


def fold(outcome: str, allowed: frozenset[str]) -> str:
    """``outcome`` if it is one of ``allowed``, else ``error``."""
    return outcome if outcome in allowed else "error"


def closed(value: object, allowed: frozenset[str]) -> str:
    """``value`` if it is one of ``allowed``, else ``other``."""
    return value if isinstance(value, str) and value in allowed else OTHER


def http_method_label(method: str) -> str:
    """``method`` if it is one of ``HTTP_METHODS``, else ``other``."""
    return closed(method, HTTP_METHODS)


def http_status_label(status: int) -> str:
    """A known HTTP status code as is; anything else as its class (``5xx``), or ``other``."""
    code = str(status)
    if code in HTTP_STATUSES:
        return code
    return f"{code[0]}xx" if len(code) == 3 and code[0] in "12345" else OTHER


def task_label(name: str) -> str:
    """A registered job type, dispatcher or the reconciler; ``other`` for any other task name."""
    return closed(name, task_names())


def provider_label(slug: str) -> str:
    """A known provider slug; ``other`` for a provider document with any other slug."""
    return closed(slug, PROVIDERS)
