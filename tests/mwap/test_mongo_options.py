"""Write concern, retries and the list read preference (``mwap.mongo_options``): settings as
defaults, a URL option winning, and what is refused at start."""

import base64
import secrets
from typing import Any

import pytest
from pydantic import ValidationError
from pymongo import MongoClient
from pymongo.read_preferences import Primary, SecondaryPreferred

from mwap import mongo_options
from mwap.settings import Settings

URL = "mongodb://m1.internal:27017,m2.internal:27017/?replicaSet=rs0"


def make(**values: Any) -> Settings:
    return Settings(
        redis_url="redis://127.0.0.1:1/0",
        mongo_url=values.pop("mongo_url", URL),
        encryption_keys="k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        admin_api_key="a" * 8 + secrets.token_urlsafe(16),
        **values,
    )


def client_of(settings: Settings) -> MongoClient:
    """A client as mwap.connections builds it (connect=False: nothing is contacted)."""
    return MongoClient(settings.mongo_url, connect=False, **mongo_options.client_options(settings))


def test_defaults_are_majority_with_a_timeout_and_retries() -> None:
    client = client_of(make())
    try:
        assert client.write_concern.document == {"w": "majority", "wtimeout": 10_000}
        assert client.options.retry_writes is True
        assert client.options.retry_reads is True
        assert client.read_preference == Primary()
        # The socket outlasts a write waiting for its write concern.
        assert client.options.pool_options.socket_timeout * 1000 >= 10_000 + 5_000
    finally:
        client.close()


def test_settings_change_the_write_concern() -> None:
    client = client_of(make(mongo_write_concern="2", mongo_wtimeout_ms=2500))
    try:
        assert client.write_concern.document == {"w": 2, "wtimeout": 2500}
    finally:
        client.close()


def test_an_option_in_the_url_wins_over_the_default() -> None:
    settings = make(mongo_url=URL + "&w=1&wtimeoutMS=700&retryWrites=false")
    client = client_of(settings)
    try:
        assert client.write_concern.document == {"w": 1, "wtimeout": 700}
        assert client.options.retry_writes is False
        assert client.options.retry_reads is True
    finally:
        client.close()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mongo_url": URL + "&w=1", "mongo_write_concern": "majority"}, "MWAP_MONGO_WRITE_CONCERN is set"),
        ({"mongo_url": URL + "&wTimeoutMS=9", "mongo_wtimeout_ms": 9}, "MWAP_MONGO_WTIMEOUT_MS is set"),
        ({"mongo_url": URL + "&w=0"}, "w=0"),
        ({"mongo_url": URL + "&readPreference=secondary"}, "readPreference must be primary"),
        ({"mongo_list_max_staleness_seconds": 120}, "needs a non-primary"),
        ({"mongo_list_read_preference": "secondary", "mongo_list_max_staleness_seconds": 30}, "greater than"),
        ({"mongo_list_read_preference": "tertiary"}, "String should match pattern"),
        ({"mongo_write_concern": "0"}, "String should match pattern"),
    ],
)
def test_refused_at_start(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make(**values)


def test_primary_in_the_url_is_accepted() -> None:
    make(mongo_url=URL + "&readPreference=primary&w=majority")


def test_list_read_preference() -> None:
    assert mongo_options.list_read_preference(make()) == Primary()
    chosen = make(mongo_list_read_preference="secondaryPreferred", mongo_list_max_staleness_seconds=120)
    assert mongo_options.list_read_preference(chosen) == SecondaryPreferred(max_staleness=120)
    assert mongo_options.list_read_preference(chosen).document == {
        "mode": "secondaryPreferred",
        "maxStalenessSeconds": 120,
    }
