"""Per-process handles the views use: settings, MongoDB, Redis, the key ring and the task producer."""

from typing import Any

from celery import Celery
from flask import current_app
from pymongo.database import Database
from redis import Redis

from mwap.connections import mongo_db, redis_client
from mwap.crypto import KeyRing
from mwap.settings import Settings

# API settings read with a default until mwap.settings declares them (names: MWAP_ + upper case).
API_DEFAULTS: dict[str, Any] = {
    "rate_limit_per_minute": 100,  # tenant keys, per key; 0 turns rate limiting off
    "rate_limit_burst": 20,  # requests a key may make at once before the per-minute pace applies
    "admin_rate_limit_per_minute": 0,  # the admin key's own bucket; 0: the admin key is not limited
    "api_batch_max": 100,  # jobs per POST /v1/jobs/batch
    "idempotency_ttl": 24 * 3600,  # seconds an Idempotency-Key's first answer is kept
    "cors_origins": "",  # comma-separated origins allowed to call the API from a browser
}


def settings() -> Settings:
    return current_app.config["MWAP_SETTINGS"]


def setting(source: Settings, name: str) -> Any:
    """An API setting, or its default when this version of Settings does not declare it."""
    return getattr(source, name, API_DEFAULTS[name])


def option(name: str) -> Any:
    """``setting`` of this app's settings."""
    return setting(settings(), name)


def db() -> Database:
    return mongo_db(settings())


def redis() -> Redis:
    return redis_client(settings())


def key_ring() -> KeyRing:
    """The encryption key ring, parsed once per app (so once per process)."""
    ring = current_app.extensions.get("mwap_key_ring")
    if ring is None:
        ring = current_app.extensions["mwap_key_ring"] = settings().key_ring()
    return ring


def producer() -> Celery:
    return current_app.extensions["mwap_celery"]


def publish(task_name: str, job_id: str, queue: str, headers: dict[str, str]) -> None:
    """Send one job by name: its id is the only argument and the Celery task id."""
    producer().send_task(task_name, args=[job_id], task_id=job_id, queue=queue, headers=headers)
