"""The pieces of the provider package that need no server: config, tokens, cursors, timing."""

import pickle
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests

from ops.fake_providers import provider_documents
from tasks.providers import (
    CLIENTS,
    CursorReset,
    DropboxClient,
    GoogleDriveClient,
    OneDriveClient,
    ProviderConfig,
    ProviderError,
    RateLimited,
    ReauthRequired,
    RetryPolicy,
    Tokens,
    client_for,
    http,
)
from tasks.providers.cursors import Cursor
from tasks.providers.data import parse_timestamp

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
TOKENS = Tokens("access", "refresh", NOW + timedelta(hours=1))


def configs() -> dict[str, ProviderConfig]:
    return {doc["slug"]: ProviderConfig.from_document(doc) for doc in provider_documents("http://fake:1")}


def test_config_comes_from_a_cloud_providers_document() -> None:
    doc = {
        "slug": "onedrive",
        "authUrl": "https://login.example/authorize",
        "tokenUrl": "https://login.example/token",
        "clientId": "id",
        "clientSecret": "secret",
        "scopes": "offline_access Files.Read",
        "metadata": {"apiBaseUrl": "https://graph.example/"},
    }

    config = ProviderConfig.from_document(doc)

    assert config.api_base_url == "https://graph.example"
    assert config.scopes == ("offline_access", "Files.Read")
    assert "secret" not in repr(config)


def test_client_for_picks_the_class_by_slug() -> None:
    built = {slug: type(client_for(config, TOKENS)) for slug, config in configs().items()}

    assert built == {"google-drive": GoogleDriveClient, "dropbox": DropboxClient, "onedrive": OneDriveClient}
    assert set(CLIENTS) == set(built)


def test_client_for_rejects_an_unknown_slug() -> None:
    config = configs()["dropbox"]

    with pytest.raises(ValueError, match="box"):
        client_for(ProviderConfig("box", "t", "a", "b", "i", "s"), TOKENS)
    with pytest.raises(ValueError, match="dropbox"):
        GoogleDriveClient(config, TOKENS)


def test_tokens_take_a_naive_expiry_as_utc() -> None:
    naive = Tokens("a", "r", datetime(2025, 1, 1, 13, 0))  # as pymongo returns it

    assert naive.expires_at == NOW + timedelta(hours=1)
    assert TOKENS.expires_within(3601, now=NOW)
    assert not TOKENS.expires_within(60, now=NOW)
    assert "access" not in repr(TOKENS)


def test_cursor_round_trip_and_rejections() -> None:
    cursor = Cursor("google-drive", "files", "tok", reset=True, start="c1-5")

    assert Cursor.decode(cursor.encode(), "google-drive") == cursor
    with pytest.raises(CursorReset):
        Cursor.decode(cursor.encode(), "dropbox")
    with pytest.raises(CursorReset):
        Cursor.decode("{}", "dropbox")
    with pytest.raises(CursorReset):
        Cursor.decode("[1]", "dropbox")


@pytest.mark.parametrize(
    "error",
    [
        RateLimited(30.0, "slow down", status=429),
        CursorReset("gone", status=410, restart_url="http://x/delta"),
        ReauthRequired("invalid_grant", status=400, code="invalid_grant"),
    ],
)
def test_errors_survive_pickle_and_celery_style_rebuilds(error: ProviderError) -> None:
    copied = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    rebuilt = type(error)(*error.args)  # how Celery's JSON result serialiser recreates them

    assert type(copied) is type(rebuilt) is type(error)
    assert str(copied) == str(rebuilt) == str(error)
    assert copied.__dict__ == error.__dict__


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(seconds=90), usegmt=True), 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_parsing(header: str | None, expected: float | None) -> None:
    assert http.parse_retry_after(header, now=NOW) == expected


def test_backoff_grows_and_stays_jittered_under_the_cap() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_cap=4.0)

    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (9, 4.0)]:
        delay = policy.backoff(attempt)
        assert ceiling / 2 <= delay <= ceiling


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:20:30Z", datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC)),
        ("2024-05-01T10:20:30.1234567Z", datetime(2024, 5, 1, 10, 20, 30, 123456, tzinfo=UTC)),
        ("2024-05-01T12:20:30.5+02:00", datetime(2024, 5, 1, 10, 20, 30, 500000, tzinfo=UTC)),
        ("garbage", None),
        (None, None),
    ],
)
def test_timestamps(text: str | None, expected: datetime | None) -> None:
    assert parse_timestamp(text) == expected


def test_session_is_one_per_process_and_new_after_a_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    session = http.process_session()
    assert http.process_session() is session
    adapter = session.get_adapter("https://example.test")
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    assert adapter.max_retries.connect == 2
    assert adapter.max_retries.read is False

    monkeypatch.setattr(http.os, "getpid", lambda: -1)
    child = http.process_session()

    assert child is not session
    monkeypatch.undo()
    http._sessions.clear()  # the real pid gets a fresh one next time
    child.close()
