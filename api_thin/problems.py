"""Errors as RFC 9457 ``application/problem+json`` documents with stable ``type`` URIs."""

import logging
from collections.abc import Mapping
from typing import Any

import kombu.exceptions
import pymongo.errors
import redis.exceptions
from flask import Flask, Response, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)

PROBLEM_BASE = "https://mwap.dev/problems/"
CONTENT_TYPE = "application/problem+json"
UNAVAILABLE_RETRY_AFTER = 5

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
TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "The request is not valid",
    429: "Too many requests",
    503: "Service unavailable",
}

# A dependency that is down or unreachable: the client should retry later, not see a 500.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
    pymongo.errors.ConnectionFailure,  # AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError
)


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


def _pointer(data: Any, loc: tuple[int | str, ...]) -> str:
    """A JSON pointer for a pydantic error location, without the tags of discriminated unions
    (pydantic puts the chosen variant's tag in the location; the client's document has none)."""
    parts: list[str] = []
    node = data
    for part in loc:
        if (
            isinstance(node, Mapping)
            and isinstance(part, str)
            and part not in node
            and part == node.get("type")
        ):
            continue  # the union tag: same node, next part
        parts.append(str(part).replace("~", "~0").replace("/", "~1"))
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return "/" + "/".join(parts)


def validation_problem(error: ValidationError, *, data: Any = None, status: int = 422) -> Problem:
    """A 422 naming each offending field (as a JSON pointer) without echoing its value.

    An unknown job ``type`` (a discriminated union's tag) is named at ``.../type`` and gets its own
    slug, so clients can tell "no such job type" from a malformed field.
    """
    errors = []
    slug = None
    for item in error.errors(include_url=False, include_input=False):
        loc = tuple(item["loc"])
        if item["type"] in {"union_tag_invalid", "union_tag_not_found"}:
            loc = (*loc, str(item.get("ctx", {}).get("discriminator", "type")).strip("'"))
            if item["type"] == "union_tag_invalid" and isinstance(_at(data, loc), str):
                slug = "unknown-job-type"
        errors.append({"pointer": _pointer(data, loc), "detail": item["msg"]})
    title = "Unknown job type" if slug else "The request is not valid"
    return Problem(status, title, slug=slug, errors=errors)


def _at(data: Any, loc: tuple[int | str, ...]) -> Any:
    for part in loc:
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def unavailable(error: BaseException) -> Problem:
    return Problem(
        503,
        "A backing service is unavailable",
        detail=f"{type(error).__name__}; retry later.",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
    )


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

    def _unavailable(error: Exception) -> Response:
        logger.warning("dependency unavailable on %s %s: %r", request.method, request.path, error)
        return problem_response(unavailable(error))

    for error_type in UNAVAILABLE_ERRORS:
        app.register_error_handler(error_type, _unavailable)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(Problem(500, "Internal Server Error"))
