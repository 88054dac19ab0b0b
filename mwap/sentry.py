"""Error reporting to Sentry when ``MWAP_SENTRY_DSN`` is set, with secrets scrubbed before sending.

What reaches Sentry: unhandled errors of API requests (logged by the problem handler, picked up by
the logging integration), final failures of jobs (Celery integration), and ERROR log records.
Retries are control flow (``celery.exceptions.Retry``) and are dropped, so a job that fails three
times and then gives up is one event. Every event and breadcrumb goes through ``mwap.redact``
(header, extra, context, frame variables, messages) and carries the bound job/request ids as tags.

Secrets are scrubbed three ways: by name (a dict entry or local variable called ``access_token``,
``client_secret``, ``authorization``...), by shape (``Bearer ...``, ``mwap_...``, ``ya29....``,
``user:password@`` in URLs, ``name=value`` pairs) and by value: every string found under a secret
name anywhere in the event is hidden wherever else it appears in that event (a token held by
``access_token`` in one frame and by ``value`` in the next). Strings longer than
``redact.MAX_SCRUB_CHARS`` are cut first (``max_value_length``), so scrubbing stays cheap.

One event per cause per interval: the same exception type raised at the same place (or the same
error log template) is sent once per ``MWAP_SENTRY_DEDUPE_SECONDS`` per process; the next one sent
says how many were dropped meanwhile (``suppressed`` in its extra). A burst of identical 500s is one
event, not one per request. The state is in-process (bounded), so each gunicorn or Celery worker
process sends at most one per cause per interval, and it keeps working when Redis is the cause.
"""

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from importlib import metadata
from typing import Any, cast

import sentry_sdk
from celery.exceptions import Retry
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.flask import FlaskIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.transport import Transport
from sentry_sdk.types import Event, Hint

from mwap import logs, redact

# Log-context field -> Sentry tag.
_TAGS = {
    "jobType": "job_type",
    "jobId": "job_id",
    "tenantId": "tenant_id",
    "integrationId": "integration_id",
    "requestId": "request_id",
}


# Sentry hands its hooks plain dicts; its ``Event`` TypedDict documents their usual keys, and the
# hooks here read and rewrite them as the dicts they are.
type _EventHook = Callable[[Event, Hint], Event | None]


def init_sentry(
    settings: object, component: str, *, transport: type[Transport] | Transport | None = None
) -> bool:
    """Start reporting when ``settings.sentry_dsn`` is set; returns whether it did.

    Call it once per process before work starts: for the worker in the main process before the
    pool forks (``celeryd_init``), so the task tracers the children build are instrumented.
    ``transport`` replaces the HTTP transport (tests capture events in-process with it).
    """
    dsn = getattr(settings, "sentry_dsn", None)
    if not dsn:
        return False
    redact.register_secrets(redact.settings_secrets(settings))
    _throttle.configure(float(getattr(settings, "sentry_dedupe_seconds", DEFAULT_DEDUPE_SECONDS)))
    sentry_sdk.init(
        dsn=dsn,
        environment=getattr(settings, "sentry_environment", None),
        release=_release(),
        # No PII: send_default_pii is left at its default, False. Passing it is deprecated in recent
        # sentry-sdk 2.x, and its successor, data_collection, would switch off the SDK's own
        # EventScrubber, which we keep as a second layer under before_send.
        # Request bodies carry OAuth tokens (POST /v1/integrations); never attach them.
        max_request_body_size="never",
        include_local_variables=True,
        # Bounds every string the SDK serializes (local variables, messages): what before_send scrubs.
        max_value_length=redact.MAX_SCRUB_CHARS,
        traces_sample_rate=getattr(settings, "sentry_traces_sample_rate", None),
        integrations=[
            CeleryIntegration(monitor_beat_tasks=False, propagate_traces=True),
            FlaskIntegration(transaction_style="url"),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        before_send=cast(_EventHook, before_send),
        before_send_transaction=cast(_EventHook, before_send_transaction),
        before_breadcrumb=before_breadcrumb,
        transport=transport,
    )
    sentry_sdk.get_global_scope().set_tag("component", component)
    return True


def _release() -> str | None:
    try:
        return f"mwap-tasks@{metadata.version('mwap-tasks')}"
    except metadata.PackageNotFoundError:
        return None


def _with_context_tags(event: dict[str, Any]) -> dict[str, Any]:
    tags = event.get("tags")
    if not isinstance(tags, dict):
        tags = event["tags"] = {}
    for field, value in logs.current().items():
        tags.setdefault(_TAGS[field], value)
    return event


DEFAULT_DEDUPE_SECONDS = 60.0
MAX_CAUSES = 1024  # distinct causes remembered; the oldest is forgotten first


class Throttle:
    """Lets one event per cause through per ``window`` seconds and counts the ones it drops."""

    def __init__(self, window: float = DEFAULT_DEDUPE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        # cause -> [when its last event was sent, events dropped since]
        self._seen: OrderedDict[tuple[str, ...], list[float]] = OrderedDict()

    def configure(self, window: float) -> None:
        with self._lock:
            self.window = window
            self._seen.clear()

    def admit(self, cause: tuple[str, ...]) -> int | None:
        """None to drop this event; else how many of its cause were dropped since the last one sent."""
        if self.window <= 0:
            return 0
        now = self.clock()
        with self._lock:
            entry = self._seen.get(cause)
            if entry is not None and now - entry[0] < self.window:
                entry[1] += 1
                return None
            dropped = int(entry[1]) if entry is not None else 0
            self._seen[cause] = [now, 0]
            self._seen.move_to_end(cause)
            while len(self._seen) > MAX_CAUSES:
                self._seen.popitem(last=False)
            return dropped


_throttle = Throttle()


def cause_of(event: dict[str, Any], hint: dict[str, Any]) -> tuple[str, ...] | None:
    """What makes two events "the same": the exception's type and the place it was raised (file,
    function, line of the innermost frame), or the logger and message template of an error log
    without an exception. None for events of neither kind (they are never throttled)."""
    exc_info = hint.get("exc_info")
    if exc_info and exc_info[1] is not None:
        error = exc_info[1]
        tb = error.__traceback__
        place: tuple[str, ...] = ("?",)
        while tb is not None:
            frame = tb.tb_frame
            place = (frame.f_code.co_filename, frame.f_code.co_name, str(tb.tb_lineno))
            tb = tb.tb_next
        kind = type(error)
        return ("exception", f"{kind.__module__}.{kind.__qualname__}", *place)
    values = (event.get("exception") or {}).get("values") or []
    if values:
        last = values[-1]
        frames = (last.get("stacktrace") or {}).get("frames") or [{}]
        top = frames[-1]
        return (
            "exception",
            f"{last.get('module') or ''}.{last.get('type') or ''}",
            str(top.get("abs_path") or top.get("filename")),
            str(top.get("function")),
            str(top.get("lineno")),
        )
    logentry = event.get("logentry") or {}
    template = logentry.get("message") or event.get("message")
    if event.get("level") in ("error", "fatal") and template:
        return ("log", str(event.get("logger") or ""), str(template)[:500])
    return None


def _scrubbed(event: dict[str, Any]) -> dict[str, Any]:
    """By name and shape (``redact.redact``), then by value: what hid under a secret's name goes
    wherever else it appears too."""
    found = redact.secret_values(event)
    return cast(dict[str, Any], redact.replace_values(redact.redact(event), found))


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """Drop retries and repeats of a cause sent within the interval; tag with the job/request
    ids; scrub every secret by name, shape and value."""
    exc_info = hint.get("exc_info")
    if exc_info and isinstance(exc_info[1], Retry):
        return None
    cause = cause_of(event, hint)
    if cause is not None:
        dropped = _throttle.admit(cause)
        if dropped is None:
            return None
        if dropped:
            extra = event.get("extra")
            if not isinstance(extra, dict):
                extra = event["extra"] = {}
            extra["suppressed"] = dropped
    return _scrubbed(_with_context_tags(event))


def before_send_transaction(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    return _scrubbed(_with_context_tags(event))


def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """Scrub a breadcrumb's message and data (log lines, HTTP calls) before Sentry keeps it."""
    return cast(dict[str, Any], redact.redact(crumb))
