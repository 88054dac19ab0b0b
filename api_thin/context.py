"""Per-process handles the views use: settings, MongoDB, Redis, the key ring and the task producer."""

from typing import Any

from celery import Celery
from flask import current_app
from pymongo.database import Database
from redis import Redis

from mwap import connections, mongo_options, notify
from mwap.crypto import KeyRing
from mwap.enqueue import BatchingPublisher
from mwap.settings import Settings
from mwap.store import Store
from worker.app import publisher


def settings() -> Settings:
    return current_app.config["MWAP_SETTINGS"]


def setting(source: Settings, name: str) -> Any:
    """A setting by name (the API's limits live in mwap.settings with the rest)."""
    return getattr(source, name)


def option(name: str) -> Any:
    """``setting`` of this app's settings."""
    return setting(settings(), name)


def db() -> Database:
    return connections.mongo_db(settings())


def store() -> Store:
    """Tenant scopes, global collections and the explicit cross-tenant door over ``db()``."""
    return Store(db())


def list_store() -> Store:
    """``store()`` for the list endpoints, reading at ``MWAP_MONGO_LIST_READ_PREFERENCE``: the one
    place their reads may leave the primary (``mwap.mongo_options``). A listing may then trail a
    write by the replication lag; a single document read after a write (``GET /v1/jobs/{id}``, its
    ``?wait``, a lookup before a change) uses ``store()``/``db()`` and the primary."""
    source = settings()
    return Store(db().with_options(read_preference=mongo_options.list_read_preference(source)))


def redis() -> Redis:
    return connections.redis_client(settings())


def key_ring() -> KeyRing:
    """This process's encryption key ring (``mwap.connections``, parsed once)."""
    return connections.key_ring(settings())


def job_waiters() -> notify.Waiters:
    """This process's cap on requests waiting for a job's end (``GET /v1/jobs/{id}?wait``)."""
    return current_app.extensions["mwap_job_waiters"]


def producer() -> Celery:
    return current_app.extensions["mwap_celery"]


def publish() -> BatchingPublisher:
    """This app's one publisher (``worker.app.publisher``): sends a job by name, and holds a
    request's messages to send them together (``batch``)."""
    return publisher(producer())
