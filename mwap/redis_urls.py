"""``MWAP_REDIS_URL``'s two forms, and what each Redis client of the platform is built from.

A ``redis://`` or ``rediss://`` URL names one server. A Sentinel URL, in kombu's own format, names
the sentinels that know which server is the master called ``MWAP_REDIS_SENTINEL_MASTER``::

    sentinel://[[user]:password@]host[:port][/db];sentinel://host[:port];...

The credentials and the database on the first URL are the master's (kombu reads them there; a
later URL may repeat them or leave them out); the sentinels' own password, when they have one
(``requirepass`` in sentinel.conf), is ``MWAP_REDIS_SENTINEL_PASSWORD``. Every client asks the
sentinels for the master whenever it opens a connection, so after a failover each reconnects to
the promoted replica by itself: redis-py's ``SentinelConnectionPool`` (locks, leases, rate limits,
idempotency, notifications, breakers, queue metrics), kombu's ``sentinel`` transport (the broker,
and so Flower), and RedBeat's Sentinel support (the beat leader and schedule).
"""

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

SCHEME = "sentinel"
DEFAULT_PORT = 26379
FORMAT = "sentinel://[:password@]host[:port][/db];sentinel://host[:port];..."


@dataclass(frozen=True)
class SentinelURL:
    """A parsed Sentinel URL: where the sentinels are, and how to talk to the master they name."""

    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def is_sentinel(url: str) -> bool:
    return url.startswith(f"{SCHEME}://")


def parse(url: str) -> SentinelURL:
    """The sentinels, database and master credentials of ``url``; a ValueError naming the problem
    (never the password) when it is not kombu's ``sentinel://…;sentinel://…`` form."""
    parts = url.split(";")
    sentinels: list[tuple[str, int]] = []
    first: tuple[str | None, str | None, int] | None = None
    for n, part in enumerate(parts, start=1):
        if not part.startswith(f"{SCHEME}://"):
            raise ValueError(f"sentinel URL {n} must start with {SCHEME}:// (format: {FORMAT})")
        split = urlsplit(part)
        if split.query or split.fragment:
            raise ValueError(f"sentinel URL {n} may not carry a query or a fragment (format: {FORMAT})")
        try:
            host, port = split.hostname, split.port or DEFAULT_PORT
        except ValueError:
            raise ValueError(f"sentinel URL {n} has an invalid port (format: {FORMAT})") from None
        if not host:
            raise ValueError(f"sentinel URL {n} names no host (format: {FORMAT})")
        path = split.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"sentinel URL {n}: the database must be a number (format: {FORMAT})")
        credentials = (
            unquote(split.username) if split.username else None,
            unquote(split.password) if split.password else None,
            int(path) if path else 0,
        )
        if first is None:
            first = credentials
        elif credentials[:2] != (None, None) and credentials[:2] != first[:2]:
            # kombu only reads the first URL's credentials: different ones later would be ignored.
            raise ValueError(f"sentinel URL {n}: the master's credentials belong on the first URL only")
        elif path and credentials[2] != first[2]:
            raise ValueError(f"sentinel URL {n} names another database than the first")
        if (host, port) in sentinels:
            raise ValueError(f"sentinel URL {n} repeats {host}:{port}")
        sentinels.append((host, port))
    assert first is not None  # str.split always yields one part
    username, password, db = first
    return SentinelURL(tuple(sentinels), db, username or None, password or None)


def _sentinel_kwargs(sentinel_password: str | None, timeout: float) -> dict[str, Any]:
    """How to talk to the sentinels themselves (their password is not the master's)."""
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        **({"password": sentinel_password} if sentinel_password else {}),
    }


def _require(master: str | None) -> str:
    if not master:
        raise ValueError("a sentinel:// MWAP_REDIS_URL needs MWAP_REDIS_SENTINEL_MASTER")
    return master


def redis_client(
    url: str, master: str | None, sentinel_password: str | None, *, timeout: float, **options: Any
) -> redis.Redis:
    """A redis-py client for ``url``: for Sentinel, one whose pool asks the sentinels for the
    master on every new connection (and drops its connections when the master it had is demoted)."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, **options)
    target = parse(url)
    sentinel = Sentinel(
        target.sentinels,
        sentinel_kwargs=_sentinel_kwargs(sentinel_password, timeout),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        username=target.username,
        password=target.password,
        db=target.db,
        **options,
    )
    client: redis.Redis = sentinel.master_for(_require(master))
    return client


def celery_broker(
    url: str, master: str | None, sentinel_password: str | None, *, timeout: float
) -> tuple[str, dict[str, Any]]:
    """``broker_url`` and the transport options it needs beyond the platform's own (for Sentinel:
    ``master_name`` and how to reach the sentinels, read by kombu's ``SentinelChannel`` and Flower)."""
    if not is_sentinel(url):
        return url, {}
    parse(url)  # refuse what kombu would misread
    return url, {
        "master_name": _require(master),
        "sentinel_kwargs": _sentinel_kwargs(sentinel_password, timeout),
    }


def redbeat(url: str, master: str | None, sentinel_password: str | None, *, timeout: float) -> dict[str, Any]:
    """RedBeat's settings: its own ``redis-sentinel://`` marker plus ``redbeat_redis_options`` for
    Sentinel (``redbeat.schedulers.get_redis``), else the URL as it is."""
    if not is_sentinel(url):
        return {"redbeat_redis_url": url}
    target = parse(url)
    options: dict[str, Any] = {
        "sentinels": list(target.sentinels),
        "service_name": _require(master),
        "db": target.db,
        "password": target.password,
        "socket_timeout": timeout,
        "sentinel_kwargs": _sentinel_kwargs(sentinel_password, timeout),
    }
    if target.username:
        options["username"] = target.username
    return {"redbeat_redis_url": f"redis-{SCHEME}://", "redbeat_redis_options": options}


def secret(value: Any) -> str | None:
    """The text of an optional SecretStr setting."""
    return value.get_secret_value() if value is not None else None
