"""Security headers on every answer, and CORS only for configured origins (``MWAP_CORS_ORIGINS``).

CORS is small enough to write by hand here: with no origins configured nothing is added, and a
browser on another origin cannot read any answer; with origins configured, only those get
``Access-Control-Allow-Origin`` and answered preflights.
"""

from flask import Flask, Response, g, request

from api_thin import context, idempotency

_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
_ALLOWED_METHODS = "GET, POST, DELETE"
_ALLOWED_HEADERS = f"Authorization, Content-Type, {idempotency.HEADER}, X-Request-ID"
_EXPOSED_HEADERS = "Location, Retry-After, X-Request-ID, Idempotent-Replayed"
PREFLIGHT_MAX_AGE = 600


def allowed_origins() -> frozenset[str]:
    configured = context.option("cors_origins") or ""
    if not isinstance(configured, str):  # a list, should Settings declare it so
        configured = ",".join(configured)
    return frozenset(origin.strip().rstrip("/") for origin in configured.split(",") if origin.strip())


def _preflight() -> Response | None:
    """Answer a CORS preflight from an allowed origin before routing (which would say 405 or 401)."""
    origin = request.headers.get("Origin")
    if (
        request.method != "OPTIONS"
        or origin is None
        or "Access-Control-Request-Method" not in request.headers
        or origin not in allowed_origins()
    ):
        return None
    response = Response(status=204)
    response.headers.update(
        {
            "Access-Control-Allow-Methods": _ALLOWED_METHODS,
            "Access-Control-Allow-Headers": _ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
        }
    )
    return response


def _decorate(response: Response) -> Response:
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
    if "principal" in g or "Authorization" in request.headers:
        response.headers["Cache-Control"] = "no-store"
    origin = request.headers.get("Origin")
    if origin is not None and origin in allowed_origins():
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = _EXPOSED_HEADERS
        response.vary.add("Origin")
    return response


def install(app: Flask) -> None:
    app.before_request(_preflight)
    app.after_request(_decorate)
