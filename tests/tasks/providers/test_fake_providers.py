"""The fake providers server itself: process life, demo seed, OAuth code flow, control API."""

import signal
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from ops.fake_providers.control import FakeAccount, FakeControlError, FakeProviders
from ops.fake_providers.demo import DEMO_ACCOUNTS, demo_tokens
from tasks.providers import ProviderConfig, Tokens, client_for
from tasks.providers.outbound import DEV_LOOPBACK

type MakeAccount = Callable[..., FakeAccount]


def test_seeded_demo_server_serves_and_exits_cleanly_on_sigterm(
    spawn_fake_server: Callable[..., tuple[subprocess.Popen[str], str]],
) -> None:
    process, url = spawn_fake_server("--seed-demo")
    with FakeProviders(url) as fake:
        for account_id, slug in DEMO_ACCOUNTS.items():
            access, refresh = demo_tokens(account_id)
            config = ProviderConfig.from_document(fake.document(slug))
            tokens = Tokens(access, refresh, datetime.now(UTC) + timedelta(hours=1))
            client = client_for(config, tokens, policy=DEV_LOOPBACK)
            assert client.account().email == f"{account_id}@example.test"
            assert sum(len(page.items) for page in client.changes(None)) == 16

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=10) == 0


def test_sigint_also_exits_cleanly(
    spawn_fake_server: Callable[..., tuple[subprocess.Popen[str], str]],
) -> None:
    process, _ = spawn_fake_server()

    process.send_signal(signal.SIGINT)

    assert process.wait(timeout=10) == 0


def test_provider_documents_point_at_the_server(fake: FakeProviders) -> None:
    docs = {doc["slug"]: doc for doc in fake.provider_documents()}

    assert set(docs) == {"google-drive", "dropbox", "onedrive"}
    assert docs["dropbox"]["tokenUrl"] == f"{fake.base_url}/dropbox/oauth2/token"
    assert docs["onedrive"]["metadata"]["apiBaseUrl"] == f"{fake.base_url}/graph"
    assert "offline_access" in docs["onedrive"]["scopes"]


@pytest.mark.parametrize("slug", ["google-drive", "dropbox", "onedrive"])
def test_authorization_code_flow(fake: FakeProviders, make_account: MakeAccount, slug: str) -> None:
    account = make_account(slug)
    doc = fake.document(slug)
    redirect = requests.get(
        doc["authUrl"],
        params={
            "client_id": doc["clientId"],
            "redirect_uri": "http://app.test/cb",
            "state": "s1",
            "login_hint": account.id,
        },
        allow_redirects=False,
        timeout=5,
    )
    assert redirect.status_code == 302
    query = parse_qs(urlsplit(redirect.headers["Location"]).query)
    assert query["state"] == ["s1"]

    form = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": "http://app.test/cb",
        "client_id": doc["clientId"],
        "client_secret": doc["clientSecret"],
    }
    tokens = requests.post(doc["tokenUrl"], data=form, timeout=5).json()
    replay = requests.post(doc["tokenUrl"], data=form, timeout=5)

    assert tokens["refresh_token"]
    assert tokens["expires_in"] > 0
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"


def test_unknown_bearer_token_gets_the_providers_401(fake: FakeProviders) -> None:
    response = requests.get(
        f"{fake.base_url}/graph/v1.0/me/drive", headers={"Authorization": "Bearer nope"}, timeout=5
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_control_api_refuses_what_a_provider_would(fake: FakeProviders, make_account: MakeAccount) -> None:
    account = make_account("dropbox", files=["/a.txt"])

    with pytest.raises(FakeControlError) as caught:
        fake.add_file(account.id, "/A.TXT")  # Dropbox names are case-insensitive
    assert caught.value.status == 409
    with pytest.raises(FakeControlError) as caught:
        fake.fault(account.id, "explode")
    assert caught.value.status == 400
    with pytest.raises(FakeControlError) as caught:
        fake.account("no-such-account")
    assert caught.value.status == 404


def test_faults_are_listed_spent_and_cleared(fake: FakeProviders, make_account: MakeAccount) -> None:
    account = make_account("google-drive")

    queued = fake.fault(account.id, "status", status=500, count=2, endpoint="google.files.*")
    fake.clear_faults(account.id)

    assert queued[0]["remaining"] == 2
    assert queued[0]["endpoint"] == "google.files.*"
    assert fake.account(account.id)["latency_ms"] == 0


def test_global_settings_round_trip(fake: FakeProviders) -> None:
    before = fake.settings()
    try:
        assert fake.settings(latency_ms=25)["latency_ms"] == 25
    finally:
        fake.settings(latency_ms=before["latency_ms"])
    assert fake.settings()["latency_ms"] == before["latency_ms"]


def test_stats_attribute_a_retired_refresh_token(
    fake: FakeProviders, make_account: MakeAccount, make_client: Callable[..., object]
) -> None:
    account = make_account("onedrive")
    doc = fake.document("onedrive")
    form = {
        "grant_type": "refresh_token",
        "refresh_token": account.refresh_token,
        "client_id": doc["clientId"],
        "client_secret": doc["clientSecret"],
    }

    first = requests.post(doc["tokenUrl"], data=form, timeout=5)
    second = requests.post(doc["tokenUrl"], data=form, timeout=5)

    assert first.status_code == 200
    assert second.json()["error"] == "invalid_grant"
    assert fake.stats(account.id)["refresh_grants"] == 2
    assert fake.tokens(account.id)["refresh_tokens"] == [first.json()["refresh_token"]]
