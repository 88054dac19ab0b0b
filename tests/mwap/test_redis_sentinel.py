"""MWAP_REDIS_URL in Sentinel form: parsing, the settings' checks, and what each client is given."""

import base64

import pytest
from pydantic import ValidationError
from redis.sentinel import SentinelConnectionPool

from mwap import redis_urls
from mwap.settings import Settings, describe_errors

BASE = {
    "mongo_url": "mongodb://127.0.0.1:27017",
    "encryption_keys": "k1:" + base64.b64encode(b"k" * 32).decode(),
    "admin_api_key": "a" * 32,
}
PASSWORD = "master-pw-Zq81x"
URL = f"sentinel://:{PASSWORD}@s1:26379/2;sentinel://s2;sentinel://s3:26380"


def settings(**values: str) -> Settings:
    return Settings(**BASE, **values)


def problems(**values: str) -> str:
    with pytest.raises(ValidationError) as caught:
        settings(**values)
    return describe_errors(caught.value)


def test_parse_takes_kombus_form() -> None:
    parsed = redis_urls.parse(URL)
    assert parsed.sentinels == (("s1", 26379), ("s2", 26379), ("s3", 26380))
    assert (parsed.db, parsed.username, parsed.password) == (2, None, PASSWORD)
    assert PASSWORD not in repr(parsed)
    assert redis_urls.parse("sentinel://u:p%40ss@h").password == "p@ss"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"sentinel://:{PASSWORD}@h1;redis://h2", "sentinel URL 2 must start with sentinel://"),
        (f"sentinel://:{PASSWORD}@h1:port", "sentinel URL 1 has an invalid port"),
        (f"sentinel://:{PASSWORD}@h1;sentinel://:other-pw@h2", "credentials belong on the first URL"),
        (f"sentinel://:{PASSWORD}@h1/1;sentinel://h2/3", "names another database"),
        (f"sentinel://:{PASSWORD}@h1/db", "the database must be a number"),
        (f"sentinel://:{PASSWORD}@h1?master=x", "may not carry a query"),
        (f"sentinel://:{PASSWORD}@h1;sentinel://h1:26379", "repeats h1:26379"),
        (f"sentinel://:{PASSWORD}@h1;", "sentinel URL 2 must start with sentinel://"),
    ],
)
def test_bad_sentinel_urls_are_refused_naming_the_rule_not_the_password(url: str, reason: str) -> None:
    message = problems(redis_url=url, redis_sentinel_master="mwap")
    assert "MWAP_REDIS_URL" in message
    assert reason in message
    assert PASSWORD not in message


def test_sentinel_url_needs_a_master_name_and_a_master_name_needs_a_sentinel_url() -> None:
    assert "MWAP_REDIS_SENTINEL_MASTER is required" in problems(redis_url=URL)
    assert "is not a sentinel:// URL" in problems(redis_url="redis://h/0", redis_sentinel_master="mwap")
    assert "is not a sentinel:// URL" in problems(redis_url="redis://h/0", redis_sentinel_password="x" * 12)
    assert "MWAP_REDIS_URL" in problems(redis_url="sentinels://h")  # TLS to sentinels: not supported
    # Empty values (compose, ConfigMaps) are unset.
    assert settings(redis_url="redis://h/0", redis_sentinel_master="").redis_sentinel_master is None


def test_sentinel_password_is_a_secret() -> None:
    mine = settings(redis_url=URL, redis_sentinel_master="mwap", redis_sentinel_password="sentinel-pw-8Kq")
    assert "sentinel-pw-8Kq" not in repr(mine)


def test_each_client_is_given_the_sentinels() -> None:
    broker_url, options = redis_urls.celery_broker(URL, "mwap", "sentinel-pw", timeout=2.0)
    assert broker_url == URL  # kombu reads ";"-separated sentinels and the first URL's password
    assert options["master_name"] == "mwap"
    assert options["sentinel_kwargs"] == {
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
        "password": "sentinel-pw",
    }
    assert redis_urls.celery_broker("redis://h/0", None, None, timeout=2.0) == ("redis://h/0", {})

    beat = redis_urls.redbeat(URL, "mwap", None, timeout=2.0)
    assert beat["redbeat_redis_url"].startswith("redis-sentinel")  # RedBeat's own marker
    assert beat["redbeat_redis_options"]["sentinels"] == [("s1", 26379), ("s2", 26379), ("s3", 26380)]
    assert beat["redbeat_redis_options"]["service_name"] == "mwap"
    assert (beat["redbeat_redis_options"]["password"], beat["redbeat_redis_options"]["db"]) == (PASSWORD, 2)
    assert redis_urls.redbeat("redis://h/0", None, None, timeout=2.0) == {"redbeat_redis_url": "redis://h/0"}

    client = redis_urls.redis_client(URL, "mwap", "sentinel-pw", timeout=2.0)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mwap"
    assert (pool.connection_kwargs["password"], pool.connection_kwargs["db"]) == (PASSWORD, 2)
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26379, 26380]
    assert all(s.connection_pool.connection_kwargs["password"] == "sentinel-pw" for s in sentinels)


def test_celery_app_uses_kombus_sentinel_transport_and_redbeat_sentinel() -> None:
    from worker.app import create_celery_app  # noqa: PLC0415 - loads the task registry

    app = create_celery_app(settings(redis_url=URL, redis_sentinel_master="mwap"), include_tasks=False)
    assert app.conf.broker_transport_options["master_name"] == "mwap"
    assert app.conf.broker_transport_options["visibility_timeout"] == 900
    assert app.conf.redbeat_redis_options["service_name"] == "mwap"
    with app.connection_for_write() as connection:
        assert type(connection.transport).__module__ == "worker.sentinel_transport"  # survives a lost master
        assert PASSWORD not in connection.as_uri()
