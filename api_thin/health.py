"""Liveness and readiness."""

from api_thin import context
from api_thin.routing import Call, Reply
from api_thin.schemas import HealthOut, ReadyOut


def health(_call: Call) -> Reply:
    """The process is alive and serving; checks nothing else."""
    return Reply(200, HealthOut(status="ok"))


def ready(_call: Call) -> Reply:
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
        return Reply(200, ReadyOut(status="ready", checks=checks))
    return Reply(503, ReadyOut(status="unavailable", checks=checks), {"Retry-After": "5"})
