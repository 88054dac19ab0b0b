"""How the platform talks to a MongoDB replica set or sharded cluster: write concern, retries, and
the read preference of the API's list endpoints.

Settings give the defaults (``MWAP_MONGO_WRITE_CONCERN``, ``MWAP_MONGO_WTIMEOUT_MS``); an option
written in ``MWAP_MONGO_URL`` (``w=``, ``wtimeoutMS=``, ``retryWrites=``, ``retryReads=``) wins, as
operators of managed clusters expect of their connection string — but a setting given explicitly
*and* in the URL is refused at start as ambiguous, as are options that would break the platform's
guarantees: ``w=0`` (the ledger's conditional writes need their answers) and a non-primary
``readPreference`` for the whole client (a job is read back right after it is written). Reads that
may trail the primary are opted into per use: the list endpoints, ``list_read_preference``.

This module imports no settings at run time (``mwap.settings`` calls ``check_url`` in a validator).
"""

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from pymongo.read_preferences import (
    Nearest,
    Primary,
    PrimaryPreferred,
    Secondary,
    SecondaryPreferred,
    _ServerMode,
)

if TYPE_CHECKING:
    from mwap.settings import Settings

# MWAP_MONGO_LIST_READ_PREFERENCE's values, MongoDB's names for the read preference modes.
READ_PREFERENCES: dict[str, Callable[..., _ServerMode]] = {
    "primary": Primary,
    "primaryPreferred": PrimaryPreferred,
    "secondary": Secondary,
    "secondaryPreferred": SecondaryPreferred,
    "nearest": Nearest,
}
# The smallest maxStalenessSeconds MongoDB accepts (the server selection specification's floor).
MIN_MAX_STALENESS = 90
SOCKET_TIMEOUT_FLOOR_MS = 20_000

# Setting (field name) -> the URL options (lowercase, as MongoDB URIs are case-insensitive) it sets.
_URL_OPTIONS = {
    "mongo_write_concern": ("w",),
    "mongo_wtimeout_ms": ("wtimeoutms",),
}


def url_options(url: str) -> dict[str, str]:
    """The options of a ``mongodb://`` or ``mongodb+srv://`` URL, names lowercased (no DNS lookup:
    a ``+srv`` URL's TXT record options are not seen here, and MongoDB allows only ``authSource``,
    ``replicaSet`` and ``loadBalanced`` there)."""
    # Reserved characters in credentials must be percent-encoded (MongoDB's URI rules), so the
    # first '?' starts the options.
    _, _, query = url.partition("?")
    return {name.lower(): value for name, value in parse_qsl(query.replace(";", "&"), keep_blank_values=True)}


def check_url(url: str, explicit: set[str]) -> None:
    """Raise ValueError naming the setting or URL option that the platform refuses: ``explicit``
    holds the settings' field names given in the environment (not defaulted)."""
    options = url_options(url)
    for name, url_names in _URL_OPTIONS.items():
        given = [n for n in url_names if n in options]
        if name in explicit and given:
            raise ValueError(
                f"MWAP_{name.upper()} is set and MWAP_MONGO_URL has {given[0]}=: set it in one place"
            )
    if options.get("w", "").strip() == "0":
        raise ValueError("MWAP_MONGO_URL: w=0 (unacknowledged writes) breaks the job ledger; use w=majority")
    mode = options.get("readpreference")
    if mode is not None and mode.lower() != "primary":
        raise ValueError(
            "MWAP_MONGO_URL: readPreference must be primary (the platform reads its writes back); "
            "list endpoints may read from secondaries with MWAP_MONGO_LIST_READ_PREFERENCE"
        )


def write_concern_w(value: str) -> int | str:
    """``MWAP_MONGO_WRITE_CONCERN`` as pymongo's ``w``: a node count, ``majority`` or a tag-set name."""
    return int(value) if value.isdigit() else value


def socket_timeout_ms(settings: "Settings") -> int:
    """Long enough for a write waiting ``wtimeout`` for its write concern to get its answer."""
    timeout = settings.mongo_timeout_ms
    return max(timeout * 4, SOCKET_TIMEOUT_FLOOR_MS, settings.mongo_wtimeout_ms + timeout)


def client_options(settings: "Settings") -> dict[str, Any]:
    """``pymongo.MongoClient`` keyword arguments for ``settings`` (URL options left to the URL)."""
    timeout = settings.mongo_timeout_ms
    in_url = url_options(settings.mongo_url)
    options: dict[str, Any] = {
        "tz_aware": True,
        "appname": "mwap-tasks",
        "serverSelectionTimeoutMS": timeout,
        "connectTimeoutMS": timeout,
        "socketTimeoutMS": socket_timeout_ms(settings),
    }
    # pymongo lets a keyword argument override the URL: pass only what the URL does not say.
    defaults: Mapping[str, tuple[str, Any]] = {
        "w": ("w", write_concern_w(settings.mongo_write_concern)),
        "wtimeoutms": ("wTimeoutMS", settings.mongo_wtimeout_ms),
        # pymongo's defaults too, stated: a write or read interrupted by a failover (a new primary
        # elected, a mongos restarted) is retried once on the new primary instead of failing the job.
        "retrywrites": ("retryWrites", True),
        "retryreads": ("retryReads", True),
    }
    for url_name, (keyword, value) in defaults.items():
        if url_name not in in_url:
            options[keyword] = value
    return options


def list_read_preference(settings: "Settings") -> _ServerMode:
    """The read preference of the API's list endpoints (``MWAP_MONGO_LIST_READ_PREFERENCE``)."""
    return _read_preference(settings.mongo_list_read_preference, settings.mongo_list_max_staleness_seconds)


@functools.cache
def _read_preference(mode: str, max_staleness: int | None) -> _ServerMode:
    if mode == "primary":
        return Primary()
    return READ_PREFERENCES[mode](max_staleness=-1 if max_staleness is None else max_staleness)
