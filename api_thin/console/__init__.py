"""The operators' console under ``/console``: server-rendered pages over the ledger, served by the
API process, for the admin key's holders (``session``). No JavaScript: links, GET forms for
filters, POST forms (with a CSRF token) for the two actions.

Every answer carries a Content-Security-Policy that allows only the console's own stylesheet and
forms posting to itself, and is not cached; errors are pages, not problem documents.
"""

import json
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, render_template, request
from werkzeug.exceptions import HTTPException

from api_thin.console import session, views
from api_thin.problems import Problem

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    if request.is_secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response


def _error_page(
    status: int, title: str, detail: str | None, headers: dict[str, str] | None = None
) -> Response:
    html = render_template(
        "error.html", status=status, title=title, detail=detail, operator=session.current_operator()
    )
    response = Response(html, status=status, mimetype="text/html")
    response.headers.update(headers or {})
    return response


def _problem(problem: Problem) -> Response:
    return _error_page(problem.status, problem.title, problem.detail, dict(problem.headers or {}))


def _http(error: HTTPException) -> Response:
    status = error.code or 500
    title = "Not found" if status == 404 else error.name
    return _error_page(status, title, None if status == 404 else error.description)


def when(moment: Any) -> str:
    """A time as operators read it: UTC, to the second."""
    if not isinstance(moment, datetime):
        return "—"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(seconds: Any) -> str:
    """A duration in seconds, short: 42 s, 3 min, 5 h, 2 d."""
    if not isinstance(seconds, int | float):
        return "—"
    seconds = max(float(seconds), 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86_400:.0f} d"


def ago(moment: Any) -> str:
    if not isinstance(moment, datetime):
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{age((datetime.now(UTC) - moment).total_seconds())} ago"


views.bp.after_request(_headers)
views.bp.register_error_handler(Problem, _problem)
views.bp.register_error_handler(HTTPException, _http)


def pretty(value: Any) -> str:
    """A document shown as indented JSON (ids and times as text)."""
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def install(app: Flask) -> None:
    """Serve the console under ``/console``."""
    app.register_blueprint(views.bp, url_prefix="/console")
    app.add_template_filter(when)
    app.add_template_filter(age)
    app.add_template_filter(ago)
    app.add_template_filter(pretty)
