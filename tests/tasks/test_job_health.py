"""integration.health_check: probe, health transitions, usage, and the provider breaker."""

import factories
import pytest
from pymongo.database import Database

from mwap.services import Services
from mwap.store import Store
from ops.fake_providers.control import FakeProviders
from ops.processes import wait_for
from tasks import health
from tasks.integrations import Skip

pytestmark = pytest.mark.usefixtures("worker")


def integration_doc(db: Database, integration: dict) -> dict:
    return db["cloudIntegrations"].find_one({"_id": integration["_id"]})


def test_health_transitions_through_the_worker(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: str
) -> None:
    account = fake.create_account("google-drive", files=["/a.txt"])
    integration = factories.integration_for(db, ring, tenant_id, account)

    def check() -> dict:
        job = factories.run_integration_job(services, "integration.health_check", integration)
        assert job["status"] == "succeeded", job["error"]
        return integration_doc(db, integration)["health"]

    healthy = check()
    assert healthy["status"] == "healthy"
    assert healthy["lastCheck"] is not None
    assert "mwapTasks" not in integration  # new: never checked by the platform
    assert integration_doc(db, integration)["mwapTasks"]["healthCheckedAt"] == healthy["lastCheck"]
    assert integration_doc(db, integration)["usage"]["totalRequests"] >= 1

    fake.fault(account.id, "status", status=400, count=None, endpoint="google.about", message="bad probe")
    assert [check()["status"] for _ in range(3)] == ["degraded", "degraded", "unhealthy"]
    failing = integration_doc(db, integration)["health"]
    assert failing["errorCount"] == 3
    assert "bad probe" in failing["lastError"]

    fake.clear_faults(account.id)
    recovered = check()
    assert recovered == {**recovered, "status": "healthy", "errorCount": 0, "lastError": None}


def test_invalid_grant_during_probe_marks_integration_error(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: str
) -> None:
    account = fake.create_account("onedrive")
    integration = factories.integration_for(db, ring, tenant_id, account)
    fake.fault(account.id, "unauthorized", count=None, endpoint="graph.drive")
    fake.fault(account.id, "invalid_grant", count=None)
    job = factories.run_integration_job(services, "integration.health_check", integration)
    assert job["status"] == "succeeded"
    doc = integration_doc(db, integration)
    assert doc["status"] == "error"
    assert "re-authorization" in doc["mwapTasks"]["statusReason"]
    assert "statusReason" not in doc  # platform state lives in mwapTasks
    assert doc["health"]["status"] in {"degraded", "unhealthy"}
    assert (
        db["auditLogs"].count_documents({"target.id": str(integration["_id"]), "details.status": "error"})
        == 1
    )
    # An integration in error is not probed again.
    again = factories.run_integration_job(services, "integration.health_check", integration)
    assert again["result"] == {"skipped": "integration is error"}


def test_breaker_opens_for_a_failing_provider_and_closes_after_a_trial(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: str
) -> None:
    fast = Services(
        services.settings.model_copy(update={"breaker_fail_max": 2, "breaker_reset_timeout": 1}),
        services.db,
        services.redis,
        services.ring,
    )
    services.redis.delete(*services.redis.keys("mwap:breaker:dropbox:*") or ["-"])
    health._breakers.clear()
    accounts = [fake.create_account("dropbox") for _ in range(3)]
    # One integration per provider per tenant: three tenants, one Dropbox integration each.
    tenants = [tenant_id, factories.tenant(db)["_id"], factories.tenant(db)["_id"]]
    integrations = [
        factories.integration_for(db, ring, owner, a) for owner, a in zip(tenants, accounts, strict=True)
    ]
    for account, integration in zip(accounts[:2], integrations[:2], strict=True):
        fake.fault(account.id, "status", status=500, count=None, endpoint="dropbox.account")
        assert health.check(fast, integration["tenantId"], integration["_id"])["status"] == "degraded"
    assert health.breaker_state(services.redis, "dropbox") == "open"

    calls_before = fake.stats(accounts[2].id)["calls"].get("dropbox.account", 0)
    with pytest.raises(Skip, match="circuit is open"):
        health.check(fast, tenants[2], integrations[2]["_id"])
    assert fake.stats(accounts[2].id)["calls"].get("dropbox.account", 0) == calls_before

    fake.clear_faults(accounts[2].id)

    def trial() -> bool:
        try:
            return health.check(fast, tenants[2], integrations[2]["_id"])["status"] == "healthy"
        except Skip:
            return False

    wait_for(trial, timeout=10, what="breaker half-open trial")
    assert health.breaker_state(services.redis, "dropbox") == "closed"
    scope = Store(db).tenant(tenants[2])
    assert (
        scope["cloudIntegrations"].find_one({"_id": integrations[2]["_id"]})["health"]["status"] == "healthy"
    )
