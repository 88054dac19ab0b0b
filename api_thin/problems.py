"""Errors as RFC 9457 ``application/problem+json`` documents with stable ``type`` URIs."""

from typing import Any

from flask import Flask, Response, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

PROBLEM_BASE = "https://mwap.dev/problems/"
CONTENT_TYPE = "application/problem+json"

# Stable slugs per HTTP status for errors raised by Flask/Werkzeug themselves.
_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "rate-limited",
    500: "internal-error",
    503: "unavailable",
}


class Problem(Exception):
    """Raise from a view to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        *,
        slug: str | None = None,
        detail: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.slug = slug or _SLUGS.get(status, "error")
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def problem_response(problem: Problem) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "instance": request.path,
    }
    if problem.detail:
        body["detail"] = problem.detail
    if problem.errors:
        body["errors"] = problem.errors
    response = jsonify(body)
    response.status_code = problem.status
    response.content_type = CONTENT_TYPE
    response.headers.update(problem.headers)
    return response


def validation_problem(error: ValidationError, *, status: int = 422) -> Problem:
    """A 422 naming each offending field (as a JSON pointer) without echoing its value."""
    errors = [
        {
            "pointer": "/" + "/".join(str(part) for part in item["loc"]),
            "detail": item["msg"],
        }
        for item in error.errors(include_url=False, include_input=False)
    ]
    return Problem(status, "The request is not valid", errors=errors)


def install(app: Flask) -> None:
    """Every error the app can produce becomes a problem document; none leaks a traceback."""

    @app.errorhandler(Problem)
    def _problem(problem: Problem) -> Response:
        return problem_response(problem)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        status = error.code or 500
        # Keep what Werkzeug says beyond the body (Allow on 405, Retry-After on 429/503).
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        return problem_response(Problem(status, error.name, detail=error.description, headers=headers))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(Problem(500, "Internal Server Error"))
