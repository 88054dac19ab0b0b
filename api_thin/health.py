"""Liveness and readiness."""

from flask import Blueprint, Response, jsonify

from api_thin import context

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> Response:
    """The process is alive and serving; checks nothing else."""
    return jsonify(status="ok")


@bp.get("/ready")
def ready() -> tuple[Response, int, dict[str, str]] | Response:
    """200 when Redis and MongoDB both answer, else 503 naming what is down."""
    checks: dict[str, str] = {}
    try:
        context.redis().ping()
        checks["redis"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"; named in the answer
        checks["redis"] = f"unavailable: {type(error).__name__}"
    try:
        context.db().command("ping")
        checks["mongo"] = "ok"
    except Exception as error:  # noqa: BLE001 - as above
        checks["mongo"] = f"unavailable: {type(error).__name__}"
    if all(value == "ok" for value in checks.values()):
        return jsonify(status="ready", checks=checks)
    return jsonify(status="unavailable", checks=checks), 503, {"Retry-After": "5"}
