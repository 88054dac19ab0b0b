"""Per-process handles the views use: settings, MongoDB, Redis, the key ring and the task producer."""

from typing import Any

from celery import Celery
from flask import current_app
from pymongo.database import Database
from redis import Redis

from mwap.connections import mongo_db, redis_client
from mwap.crypto import KeyRing
from mwap.settings import Settings


def settings() -> Settings:
    return current_app.config["MWAP_SETTINGS"]


def setting(source: Settings, name: str) -> Any:
    """A setting by name (the API's limits live in mwap.settings with the rest)."""
    return getattr(source, name)


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
