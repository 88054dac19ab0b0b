"""Per-process clients: MongoDB, Redis and the parsed key ring.

MongoClient is not fork-safe, so clients are cached per process id: a prefork worker child or a
gunicorn worker that inherits a parent's cache builds its own on first use. The key ring holds
no connection or thread, so a child may keep the copy it inherits.

Caches that belong to one package stay with it: the provider HTTP sessions
(``tasks.providers.http``, also per process id) and the circuit breakers (``tasks.health``, keyed
by this process's Redis client).
"""

import atexit
import functools
import os
import threading
from collections.abc import Callable
from typing import Any

import pymongo
import redis
from pymongo.database import Database

from mwap import mongo_options, redis_urls
from mwap.crypto import KeyRing
from mwap.settings import Settings

_lock = threading.Lock()
_mongo: dict[tuple[int, str], pymongo.MongoClient[dict[str, Any]]] = {}
_redis: dict[tuple[int, str], redis.Redis] = {}
_dbs: dict[tuple[int, str], Database[dict[str, Any]]] = {}  # by (id of its client, name)


def close_all() -> None:
    """Close this process's clients (registered at exit, so interpreter shutdown stays quiet)."""
    pid = os.getpid()
    with _lock:
        for (owner, _), client in list(_mongo.items()):
            if owner == pid:
                client.close()
        _mongo.clear()
        _dbs.clear()
        for (owner, _), redis_conn in list(_redis.items()):
            if owner == pid:
                redis_conn.close()
        _redis.clear()


atexit.register(close_all)


def _per_process[C](cache: dict[tuple[int, str], C], url: str, make: Callable[[], C]) -> C:
    key = (os.getpid(), url)
    client = cache.get(key)
    if client is None:
        with _lock:
            client = cache.get(key)
            if client is None:
                client = cache[key] = make()
    return client


def mongo_client(settings: Settings) -> pymongo.MongoClient[dict[str, Any]]:
    """This process's MongoClient for ``settings.mongo_url``."""
    from mwap import metrics  # noqa: PLC0415 - mwap.metrics reads queues through this module

    # Timeouts, write concern (majority by default, with a wtimeout) and retries: mwap.mongo_options.
    return _per_process(
        _mongo,
        settings.mongo_url,
        lambda: pymongo.MongoClient(
            settings.mongo_url,
            **mongo_options.client_options(settings),
            # Commands per job, by process role, in the metrics (mwap_mongo_commands_total).
            event_listeners=[metrics.MongoCommandCounter()],
        ),
    )


def mongo_db(settings: Settings) -> Database[dict[str, Any]]:
    """This process's handle on the platform database (made once: a Database is a few objects
    built per ``client[name]``, and every ledger write of a job asks for it)."""
    client = mongo_client(settings)
    key = (id(client), settings.mongo_db)
    db = _dbs.get(key)
    if db is None or db.client is not client:
        db = _dbs[key] = client[settings.mongo_db]
    return db


def redis_client(settings: Settings) -> redis.Redis:
    """This process's Redis client (a pool underneath) for ``settings.redis_url``: with Sentinel,
    one that follows the master the sentinels name (``mwap.redis_urls``)."""
    return _per_process(
        _redis,
        f"{settings.redis_url}#{settings.redis_sentinel_master or ''}",
        lambda: redis_urls.redis_client(
            settings.redis_url,
            settings.redis_sentinel_master,
            redis_urls.secret(settings.redis_sentinel_password),
            timeout=settings.redis_timeout,
            health_check_interval=30,
        ),
    )


@functools.cache
def _parsed_ring(encryption_keys: str, legacy_password: str | None) -> KeyRing:
    return KeyRing.parse(encryption_keys, legacy_password=legacy_password)


def key_ring(settings: Settings) -> KeyRing:
    """This process's parsed key ring (parsed once per distinct keys and legacy password)."""
    return _parsed_ring(settings.encryption_keys.get_secret_value(), settings.legacy_password())
