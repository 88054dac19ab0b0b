"""Helpers shared by the API tests (tests/api_thin/)."""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import factories
from flask import Flask
from pymongo.database import Database
from redis import Redis

from mwap.jobtypes import Queue
from mwap.settings import Settings
from ops import processes

OFFLINE_REDIS_DB = 14


def assert_problem(response: Any, status: int, slug: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem of ``status`` (and ``slug``); returns its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["title"]
    if slug is not None:
        assert body["type"] == f"https://mwap.dev/problems/{slug}", body
    return body


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def tenant_with_key(db: Database) -> tuple[dict[str, Any], dict[str, str]]:
    """A new tenant and the headers of a live API key of its own (its own rate-limit bucket)."""
    tenant = factories.tenant(db)
    _, key = factories.api_key(db, tenant["_id"])
    return tenant, bearer(key)


def app_with(settings: Settings, **update: Any) -> Flask:
    """A second API app over the same servers with some settings changed."""
    from api_thin import create_app  # noqa: PLC0415

    app = create_app(settings.model_copy(update=update))
    app.testing = False
    return app


def offline_app(settings: Settings, **update: Any) -> Flask:
    """An app whose jobs go to a Redis database no worker consumes, so they stay queued."""
    return app_with(settings, redis_url=offline_redis_url(settings), **update)


def offline_redis_url(settings: Settings, database: int = OFFLINE_REDIS_DB) -> str:
    base, _, _ = settings.redis_url.rpartition("/")
    return f"{base}/{database}"


def forget_offline(settings: Settings, database: int = OFFLINE_REDIS_DB) -> None:
    """Drop what the API and Celery left in an offline database (not FLUSHDB: the server may be shared)."""
    client = Redis.from_url(offline_redis_url(settings, database))
    try:
        for pattern in ("mwap:*", "_kombu.*", "unacked*", *(queue.value for queue in Queue)):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


@contextlib.contextmanager
def own_api_stack(stack_env: dict[str, str], logs: Path, **settings: str) -> Iterator[dict[str, Any]]:
    """gunicorn over a Redis and a MongoDB of its own (``settings``: extra MWAP_ variables), so a test
    may stop or freeze them without disturbing the session's servers."""
    redis_port, mongo_port, api_port = processes.free_port(), processes.free_port(), processes.free_port()
    redis = processes.start_redis(redis_port, data_dir=None, log_dir=logs, env=stack_env)
    mongo = processes.start_mongo(mongo_port, sqlite_path=None, log_dir=logs, env=stack_env)
    env = {
        **stack_env,
        "MWAP_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "MWAP_MONGO_URL": processes.mongo_url(mongo_port),
        **settings,
    }
    api = processes.start_api(env=env, log_dir=logs, port=api_port)
    try:
        yield {"url": f"http://127.0.0.1:{api_port}", "redis": redis, "mongo": mongo, "logs": logs}
    finally:
        for child in (api, mongo, redis):
            child.stop()
