"""Error reporting to Sentry when ``MWAP_SENTRY_DSN`` is set, with secrets scrubbed before sending.

What reaches Sentry: unhandled errors of API requests (logged by the problem handler, picked up by
the logging integration), final failures of jobs (Celery integration), and ERROR log records.
Retries are control flow (``celery.exceptions.Retry``) and are dropped, so a job that fails three
times and then gives up is one event. Every event and breadcrumb goes through ``mwap.redact``
(header, extra, context, frame variables, messages) and carries the bound job/request ids as tags.
"""

import logging
from importlib import metadata
from typing import Any

import sentry_sdk
from celery.exceptions import Retry
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.flask import FlaskIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.transport import Transport

from mwap import logs, redact

# Log-context field -> Sentry tag.
_TAGS = {
    "jobType": "job_type",
    "jobId": "job_id",
    "tenantId": "tenant_id",
    "integrationId": "integration_id",
    "requestId": "request_id",
}


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
        traces_sample_rate=getattr(settings, "sentry_traces_sample_rate", None),
        integrations=[
            CeleryIntegration(monitor_beat_tasks=False, propagate_traces=True),
            FlaskIntegration(transaction_style="url"),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        before_send=before_send,
        before_send_transaction=before_send_transaction,
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


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """Drop retries; tag with the job/request ids; scrub every secret-looking value."""
    exc_info = hint.get("exc_info")
    if exc_info and isinstance(exc_info[1], Retry):
        return None
    return redact.redact(_with_context_tags(event))


def before_send_transaction(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    return redact.redact(_with_context_tags(event))


def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """Scrub a breadcrumb's message and data (log lines, HTTP calls) before Sentry keeps it."""
    return redact.redact(crumb)
