"""The API's request ids (bound to every log line and Sentry event), request metrics and ``GET /metrics``.

The process's logging and Sentry are set up by the entry point (``api_thin.wsgi``), not here:
building an app (a test, a tool) leaves the root logger and Sentry's client as they are.

``GET /metrics`` is unauthenticated unless ``MWAP_METRICS_TOKEN`` is set (then it needs that bearer
token): it exposes counts by job type, route and queue, no tenant data; without a token the API
is meant to sit in a private network (compose binds it to 127.0.0.1). It serves every process on this host that
shares ``PROMETHEUS_MULTIPROC_DIR`` (gunicorn workers, Celery workers, beat) plus queue metrics.
"""

import re
import time
import uuid

from flask import Flask, Response, g, request

from api_thin import context
from api_thin.problems import Problem
from mwap import logs, metrics

REQUEST_ID_HEADER = "X-Request-ID"
# Accepted from clients as is; anything else (too long, odd characters) is replaced, since the id
# ends up in log lines and message headers.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_UNMATCHED_ROUTE = "<unmatched>"


def install(app: Flask) -> None:
    """Hook request ids and request metrics into ``app``; add ``/metrics``."""
    app.before_request(_begin_request)
    app.after_request(_finish_request)
    app.teardown_request(_teardown_request)
    app.add_url_rule("/metrics", "metrics", _metrics, methods=["GET"])


def _begin_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = incoming if _VALID_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    # Views (and the ledger's requestId) read the header: make it the id we settled on.
    request.environ["HTTP_X_REQUEST_ID"] = request_id
    g.request_id = request_id
    g.request_started = time.perf_counter()
    logs.clear()
    logs.bind(requestId=request_id)


def _finish_request(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    started = g.get("request_started")
    if started is not None:
        # The URL rule ("/v1/jobs/<job_id>"), never the raw path: one series per route. The method
        # is whatever token the client sent (counted before authentication): metrics folds it,
        # and the status, into closed sets so no client can mint series.
        route = request.url_rule.rule if request.url_rule is not None else _UNMATCHED_ROUTE
        metrics.http_request(route, request.method, response.status_code, time.perf_counter() - started)
    return response


def _teardown_request(_error: BaseException | None) -> None:
    logs.clear()


def _metrics() -> Response:
    settings = context.settings()
    # Metrics carry no tenant data but do map the platform: with a token set, only its holder scrapes.
    if not metrics.authorized(request.headers.get("Authorization", ""), settings.metrics_token):
        raise Problem(
            401, "Metrics need the metrics token", headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
        )
    body, content_type = metrics.render(settings)
    return Response(body, content_type=content_type)
