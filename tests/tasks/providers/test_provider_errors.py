"""Error mapping, retries and token renewal, the same for every provider, against the fake server."""

import socket
from collections.abc import Callable
from dataclasses import replace
from email.utils import formatdate
from time import time

import pytest

from ops.fake_providers.control import FakeAccount, FakeProviders
from tasks.providers import (
    AuthExpired,
    ProviderClient,
    ProviderRequestError,
    RateLimited,
    ReauthRequired,
    RetryPolicy,
    Tokens,
    TransientProviderError,
)

type MakeAccount = Callable[..., FakeAccount]
type MakeClient = Callable[..., ProviderClient]

FILES = ["/docs/a.txt", "/docs/b.txt", "/c.txt"]


@pytest.fixture
def account(provider: str, make_account: MakeAccount) -> FakeAccount:
    return make_account(provider, files=FILES)


@pytest.mark.parametrize("status", [429, 503])
def test_short_retry_after_in_seconds_is_waited_inside_the_client(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, sleeps: list[float], status: int
) -> None:
    fake.fault(account.id, "status", status=status, retry_after="2")
    client = make_client(account)

    info = client.account()

    assert info.email == account.email
    assert sleeps == [2.0]
    assert client.request_count == 2


def test_short_retry_after_as_http_date_is_waited_inside_the_client(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, sleeps: list[float]
) -> None:
    fake.fault(account.id, "status", status=429, retry_after=formatdate(time() + 3, usegmt=True))
    client = make_client(account)

    client.account()

    assert len(sleeps) == 1
    assert 0 <= sleeps[0] <= 3


def test_long_retry_after_in_seconds_raises_rate_limited_without_sleeping(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, sleeps: list[float]
) -> None:
    fake.fault(account.id, "status", status=429, retry_after="120")
    client = make_client(account)

    with pytest.raises(RateLimited) as caught:
        client.account()

    assert caught.value.retry_after == 120.0
    assert caught.value.status == 429
    assert sleeps == []
    assert client.request_count == 1


def test_long_retry_after_as_http_date_raises_rate_limited_without_sleeping(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, sleeps: list[float]
) -> None:
    fake.fault(account.id, "status", status=503, retry_after=formatdate(time() + 300, usegmt=True))
    client = make_client(account)

    with pytest.raises(RateLimited) as caught:
        client.account()

    assert 280 < caught.value.retry_after <= 300
    assert sleeps == []


def test_inline_wait_limit_is_configurable(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, sleeps: list[float]
) -> None:
    fake.fault(account.id, "status", status=429, retry_after="8")
    client = make_client(account, retry=RetryPolicy(max_inline_wait=10))

    client.account()

    assert sleeps == [8.0]


# Dropbox always names a wait (in the body when not in a header): see the test after this one.
@pytest.mark.parametrize("provider", ["google-drive", "onedrive"])
def test_throttle_without_retry_after_backs_off_with_jitter(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, sleeps: list[float]
) -> None:
    fake.fault(account.id, "status", status=429, count=2)
    client = make_client(account, retry=RetryPolicy(max_attempts=3, backoff_base=0.4))

    client.account()

    assert len(sleeps) == 2
    assert 0.2 <= sleeps[0] <= 0.4  # equal jitter: half the step fixed, half random
    assert 0.4 <= sleeps[1] <= 0.8


@pytest.mark.parametrize("provider", ["dropbox"])
def test_dropbox_429_body_retry_after_is_used_without_the_header(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, sleeps: list[float]
) -> None:
    fake.fault(account.id, "status", status=429)  # the fake's body says retry_after: 1
    client = make_client(account)

    client.account()

    assert sleeps == [1.0]


def test_throttle_that_outlasts_the_attempts_raises_rate_limited(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, sleeps: list[float]
) -> None:
    fake.fault(account.id, "status", status=429, retry_after="1", count=None)
    client = make_client(account, retry=RetryPolicy(max_attempts=3))

    with pytest.raises(RateLimited) as caught:
        client.account()

    assert caught.value.retry_after == 1.0
    assert sleeps == [1.0, 1.0]
    assert client.request_count == 3


def test_5xx_burst_then_success(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, sleeps: list[float]
) -> None:
    fake.fault(account.id, "status", status=500, count=2)
    client = make_client(account)

    client.account()

    assert len(sleeps) == 2
    assert client.request_count == 3


@pytest.mark.parametrize("status", [500, 502, 504])
def test_5xx_forever_raises_transient(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, status: int
) -> None:
    fake.fault(account.id, "status", status=status, count=None)
    client = make_client(account, retry=RetryPolicy(max_attempts=4, backoff_base=0.01))

    with pytest.raises(TransientProviderError) as caught:
        client.account()

    assert caught.value.status == status
    assert client.request_count == 4


def test_read_timeout_raises_transient(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, sleeps: list[float]
) -> None:
    fake.fault(account.id, "timeout", hang_seconds=5, count=2)
    client = make_client(account, timeout=(3.05, 0.3), retry=RetryPolicy(max_attempts=2))

    with pytest.raises(TransientProviderError, match="ReadTimeout"):
        client.account()

    assert client.request_count == 2
    assert len(sleeps) == 1


def test_read_timeout_once_is_retried(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient
) -> None:
    fake.fault(account.id, "timeout", hang_seconds=5, count=1)
    client = make_client(account, timeout=(3.05, 0.3))

    assert client.account().email == account.email
    assert client.request_count == 2


def test_connection_refused_raises_transient(make_account: MakeAccount, make_client: MakeClient) -> None:
    account = make_account("dropbox")
    client = make_client(account, retry=RetryPolicy(max_attempts=1))
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client.config = replace(client.config, api_base_url=f"http://127.0.0.1:{port}/dropbox")

    with pytest.raises(TransientProviderError):
        client.account()


def test_401_calls_the_refresher_once_then_succeeds(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient
) -> None:
    renewer = make_client(account)
    calls: list[Tokens] = []

    def refresher() -> Tokens:
        calls.append(renewer.refresh())
        return calls[-1]

    fake.fault(account.id, "unauthorized")
    client = make_client(account, refresher=refresher)

    assert client.account().email == account.email
    assert len(calls) == 1
    assert client.tokens == calls[0]
    assert fake.stats(account.id)["refresh_grants"] == 1


def test_expired_token_401_uses_the_clients_own_refresh(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient
) -> None:
    client = make_client(account)
    fake.expire_access_tokens(account.id)

    client.account()

    assert client.tokens.access_token != account.access_token
    assert fake.stats(account.id)["refresh_grants"] == 1
    assert client.request_count == 3  # 401, token, retry


def test_401_after_refresh_raises_auth_expired(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient
) -> None:
    fake.fault(account.id, "unauthorized", count=2)
    client = make_client(account)

    with pytest.raises(AuthExpired):
        client.account()

    assert fake.stats(account.id)["refresh_grants"] == 1


def test_access_token_about_to_expire_is_refreshed_before_the_call(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient
) -> None:
    client = make_client(account, expires_in=-10)

    client.account()

    stats = fake.stats(account.id)
    assert stats["refresh_grants"] == 1
    assert stats["total"] == 2  # no 401 round trip


def test_revoked_refresh_token_raises_reauth_required(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient
) -> None:
    fake.revoke_refresh_tokens(account.id)
    fake.expire_access_tokens(account.id)
    client = make_client(account)

    with pytest.raises(ReauthRequired) as caught:
        client.account()

    assert caught.value.code == "invalid_grant"


def test_injected_invalid_grant_raises_reauth_required(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient
) -> None:
    fake.fault(account.id, "invalid_grant")

    with pytest.raises(ReauthRequired):
        make_client(account).refresh()


def test_token_endpoint_throttle_is_retried(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, sleeps: list[float]
) -> None:
    fake.fault(account.id, "status", status=503, retry_after="1", endpoint="*.token")
    client = make_client(account)

    client.refresh()

    assert sleeps == [1.0]
    assert fake.stats(account.id)["refresh_grants"] == 2


def test_wrong_client_secret_is_a_request_error_not_reauth(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient
) -> None:
    client = make_client(account)
    client.config = replace(client.config, client_secret="wrong")

    with pytest.raises(ProviderRequestError) as caught:
        client.refresh()

    assert caught.value.code == "invalid_client"


@pytest.mark.parametrize("status", [400, 403, 404])
def test_other_4xx_raise_request_error_with_the_providers_message(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient, status: int
) -> None:
    fake.fault(account.id, "status", status=status, message="fake says no")
    client = make_client(account)

    with pytest.raises(ProviderRequestError, match=r"fake says no|no_permission") as caught:
        client.account()

    assert caught.value.status == status
    assert client.request_count == 1


def test_request_count_matches_what_the_provider_saw(
    fake: FakeProviders, account: FakeAccount, make_client: MakeClient
) -> None:
    fake.fault(account.id, "status", status=500)
    fake.fault(account.id, "unauthorized")
    client = make_client(account)

    client.account()
    pages = list(client.changes(None))

    assert pages[-1].done
    assert client.request_count == fake.stats(account.id)["total"]
