"""integration.refresh_token: single-flight refresh, rotation, invalid_grant, and the 401 path."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import factories
import pytest
from pymongo.database import Database

from mwap.crypto import integration_binding
from mwap.services import Services
from ops.fake_providers.control import FakeProviders
from tasks import tokens
from tasks.integrations import tokens_of

pytestmark = pytest.mark.usefixtures("worker")


def stored_tokens(db: Database, ring, integration: dict):
    return tokens_of(ring, db["cloudIntegrations"].find_one({"_id": integration["_id"]}))


def test_twenty_concurrent_refreshes_make_one_token_call(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: str
) -> None:
    account = fake.create_account("onedrive")
    integration = factories.integration_for(db, ring, tenant_id, account)
    seen = stored_tokens(db, ring, integration)
    fake.reset_stats(account.id)

    def refresh(_: int) -> str:
        return tokens.refresh_single_flight(services, tenant_id, integration["_id"], seen=seen).access_token

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = set(pool.map(refresh, range(20)))

    assert fake.stats(account.id)["refresh_grants"] == 1
    after = stored_tokens(db, ring, integration)
    assert results == {after.access_token}
    # Graph rotated the refresh token: the new one is stored, the old one no longer works.
    assert after.refresh_token != account.refresh_token
    valid = fake.tokens(account.id)["refresh_tokens"]
    assert after.refresh_token in valid
    assert account.refresh_token not in valid
    raw = db["cloudIntegrations"].find_one({"_id": integration["_id"]})["authData"]
    assert after.access_token not in str(raw)
    assert ring.decrypt(
        raw["refreshToken"], integration_binding(tenant_id, integration["_id"], "authData.refreshToken")
    )


def test_scheduled_refresh_through_the_worker_and_skip_when_fresh(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: str
) -> None:
    # Tokens living longer than the look-ahead (default 75 min, above Google's usual hour), so the
    # refreshed one is fresh.
    lifetime = services.settings.token_refresh_lookahead + 3600
    account = fake.create_account("google-drive", token_lifetime=lifetime)
    integration = factories.integration_for(db, ring, tenant_id, account, expires_in=timedelta(minutes=2))
    job = factories.run_integration_job(services, "integration.refresh_token", integration)
    assert job["status"] == "succeeded", job["error"]
    after = stored_tokens(db, ring, integration)
    assert after.access_token != account.access_token
    assert after.refresh_token == account.refresh_token  # Google sends no new refresh token: keep the old
    doc = db["cloudIntegrations"].find_one({"_id": integration["_id"]})
    assert doc["mwapTasks"]["lastRefreshAt"] is not None
    assert doc["authData"]["expiresAt"] > integration["authData"]["expiresAt"]
    assert (
        db["auditLogs"].count_documents({"action": "token.refreshed", "target.id": str(integration["_id"])})
        == 1
    )

    again = factories.run_integration_job(services, "integration.refresh_token", integration)
    assert again["result"] == {"skipped": "token is fresh"}
    assert fake.stats(account.id)["refresh_grants"] == 1


def test_invalid_grant_is_terminal(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: str
) -> None:
    account = fake.create_account("dropbox")
    integration = factories.integration_for(db, ring, tenant_id, account, expires_in=timedelta(minutes=1))
    fake.revoke_refresh_tokens(account.id)
    job = factories.run_integration_job(services, "integration.refresh_token", integration)
    assert job["status"] == "failed"
    assert job["error"]["type"] == "ReauthRequired"
    assert job["attempts"] == 1
    assert job["retries"] == []
    doc = db["cloudIntegrations"].find_one({"_id": integration["_id"]})
    assert doc["status"] == "error"
    assert doc["mwapTasks"]["statusReason"].startswith("needs re-authorization")
    assert (
        db["auditLogs"].count_documents(
            {"action": "token.refresh_failed", "target.id": str(integration["_id"])}
        )
        == 1
    )


def test_transient_failures_retry_then_cool_down(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: str
) -> None:
    fast = Services(services.settings.model_copy(update={"refresh_cooldown": 3600}), db, services.redis, ring)
    account = fake.create_account("google-drive")
    integration = factories.integration_for(db, ring, tenant_id, account, expires_in=timedelta(minutes=1))
    fake.fault(account.id, "status", status=500, count=None, endpoint="google.token")
    with pytest.raises(tokens.TransientProviderError):
        tokens.refresh_job(fast, tenant_id, integration["_id"], force=False)
    tokens.start_cooldown(fast, tenant_id, integration["_id"], RuntimeError("500"))
    with pytest.raises(tokens.Skip, match="cooling down"):
        tokens.refresh_job(fast, tenant_id, integration["_id"], force=False)
    fake.clear_faults(account.id)
    assert tokens.refresh_job(fast, tenant_id, integration["_id"], force=True)["expiresAt"]


def test_a_401_during_a_job_refreshes_through_the_single_flight_path(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: str
) -> None:
    account = fake.create_account("onedrive")
    integration = factories.integration_for(db, ring, tenant_id, account)
    fake.expire_access_tokens(account.id)
    job = factories.run_integration_job(services, "integration.health_check", integration)
    assert job["result"]["status"] == "healthy"
    assert fake.stats(account.id)["refresh_grants"] == 1
    assert stored_tokens(db, ring, integration).refresh_token != account.refresh_token
