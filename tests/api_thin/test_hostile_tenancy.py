"""Hostile tenancy: tenant policy that was stored but not enforced, and ids reused across tenants.

Each test shows what the tenant (or a careless operator) could do without the guard, then the
bound: refused with a problem (never a 5xx), skipped with a reason, nothing crossed, nothing leaked.
"""

import itertools
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import factories
import pytest
from api_support import assert_problem, bearer, forget_offline, offline_redis_url, tenant_with_key
from bson import ObjectId
from pymongo.database import Database

from mwap import leases, registry
from mwap.connections import redis_client
from mwap.enqueue import JobRequest, enqueue
from mwap.services import Services
from mwap.settings import Settings
from ops import processes
from tasks.integrations import Skip, load
from worker import base

OFFLINE_DB = 12


def integration_body(tenant_id: Any, slug: str = "dropbox") -> dict[str, Any]:
    return {
        "tenantId": str(tenant_id),
        "providerSlug": slug,
        "authData": {
            "accessToken": "secret-access-" + secrets.token_hex(8),
            "expiresAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        },
    }


# --- settings.features.cloudIntegrations --------------------------------------------------------


def test_registration_is_refused_when_the_tenant_has_cloud_integrations_off(
    client, db: Database, ring: Any, admin_headers: dict
) -> None:
    factories.provider(db, ring, "dropbox")
    # In spirit: the same registration for a tenant whose plan allows it is created.
    allowed = factories.tenant(db)
    assert (
        client.post(
            "/v1/integrations", json=integration_body(allowed["_id"]), headers=admin_headers
        ).status_code
        == 201
    )

    off = factories.tenant(db, features={"cloudIntegrations": False})
    _, key = factories.api_key(db, off["_id"])
    for headers in (admin_headers, bearer(key)):
        response = client.post("/v1/integrations", json=integration_body(off["_id"]), headers=headers)
        body = assert_problem(response, 403, "tenant-policy")
        assert "cloud integrations turned off" in body["detail"]
    assert db["cloudIntegrations"].count_documents({"tenantId": off["_id"]}) == 0


def test_integration_jobs_skip_with_a_reason_when_cloud_integrations_are_off(
    worker, services: Services, db: Database, ring: Any
) -> None:
    tenant = factories.tenant(db)
    integration = factories.integration(db, ring, tenant["_id"], slug="onedrive")
    # In spirit: the integration loads for work as long as the tenant's plan allows it.
    assert load(services, tenant["_id"], integration["_id"])[0]["_id"] == integration["_id"]

    db["tenants"].update_one({"_id": tenant["_id"]}, {"$set": {"settings.features.cloudIntegrations": False}})
    with pytest.raises(Skip, match="cloud integrations are turned off"):
        load(services, tenant["_id"], integration["_id"])
    job = factories.run_integration_job(services, "integration.health_check", integration)
    assert job["status"] == "succeeded"
    assert job["result"] == {
        "skipped": "cloud integrations are turned off for this tenant (settings.features.cloudIntegrations)"
    }


def test_an_archived_tenants_keys_are_refused_and_its_integrations_get_no_work(
    client, worker, services: Services, db: Database, ring: Any
) -> None:
    tenant, headers = tenant_with_key(db)
    integration = factories.integration(db, ring, tenant["_id"], slug="onedrive")
    assert client.get("/v1/jobs", headers=headers).status_code == 200
    db["tenants"].update_one({"_id": tenant["_id"]}, {"$set": {"archived": True}})
    assert_problem(client.get("/v1/jobs", headers=headers), 401)
    job = factories.run_integration_job(services, "integration.health_check", integration)
    assert job["result"] == {"skipped": "tenant is archived"}


# --- a cap on integrations per tenant --------------------------------------------------------------


def test_integrations_per_tenant_are_capped(db: Database, ring: Any) -> None:
    tenant = factories.tenant(db)
    for slug in ("google-drive", "dropbox"):
        factories.provider(db, ring, slug)
    actor = {"type": "admin", "id": "admin"}

    def create(slug: str, cap: int) -> dict[str, Any]:
        body = registry.IntegrationCreate.model_validate(integration_body(tenant["_id"], slug))
        return registry.create_integration(db, ring, body, actor=actor, max_integrations=cap)

    create("google-drive", 1)
    with pytest.raises(registry.PolicyError, match=f"tenant {tenant['_id']} has 1 integrations") as refused:
        create("dropbox", 1)
    assert isinstance(refused.value, registry.ConflictError)  # the API answers it as a 403 problem
    assert db["cloudIntegrations"].count_documents({"tenantId": tenant["_id"]}) == 1
    # In spirit: without the cap the second one goes in.
    create("dropbox", 2)
    assert db["cloudIntegrations"].count_documents({"tenantId": tenant["_id"]}) == 2
    assert (
        Settings.model_fields["max_integrations_per_tenant"].default
        == registry.DEFAULT_MAX_INTEGRATIONS_PER_TENANT
    )


# --- a tenant's own concurrency setting ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1), (3, 3), (0, None), (-2, None), (True, None), ("4", None), (10**9, None), (None, None)],
)
def test_only_a_valid_max_concurrent_jobs_overrides_the_platform_cap(
    db: Database, value: Any, expected: int | None
) -> None:
    tenant = factories.tenant(db, maxConcurrentJobs=value)
    assert base._tenant_concurrency(db, tenant["_id"]) == expected
    assert base._tenant_concurrency(db, "not-an-id") is None


@pytest.fixture
def roomy(
    stack_env: dict[str, str], settings: Settings, services: Services, log_dir: Path
) -> Iterator[Services]:
    """A worker with three pool processes and the platform's default cap (8), on its own Redis db."""
    url = stack_env["MWAP_REDIS_URL"].rsplit("/", 1)[0] + "/8"
    env = {**stack_env, "MWAP_REDIS_URL": url}
    own = settings.model_copy(update={"redis_url": url})
    redis_client(own).flushdb()
    child = processes.start_worker(env=env, log_dir=log_dir, name="worker-roomy", concurrency=3)
    yield Services(own, services.db, redis_client(own), services.ring)
    child.stop()


def _overlaps(jobs: list[dict[str, Any]]) -> bool:
    spans = sorted((job["startedAt"], job["finishedAt"]) for job in jobs)
    return any(start < end for (_, end), (start, _) in itertools.pairwise(spans))


def test_a_tenants_own_max_concurrent_jobs_is_its_cap(roomy: Services, db: Database) -> None:
    capped = factories.tenant(db, maxConcurrentJobs=1)["_id"]
    free = factories.tenant(db)["_id"]
    jobs = {
        tenant: [factories.enqueue_job(roomy, "system.echo", tenant, {}, sleepSeconds=1.5) for _ in range(3)]
        for tenant in (free, capped)
    }
    done = {
        tenant: [factories.wait_final(db, job["_id"], timeout=90) for job in js]
        for tenant, js in jobs.items()
    }
    assert {job["status"] for js in done.values() for job in js} == {"succeeded"}
    # In spirit: under the platform cap alone (8), a tenant's jobs run side by side...
    assert _overlaps(done[free])
    # ...while the tenant whose document says maxConcurrentJobs: 1 runs one at a time.
    assert not _overlaps(done[capped]), "two jobs of a tenant capped at one ran at once"
    assert sum(job.get("deferrals", 0) for job in done[capped]) > 0


# --- leases, locks and conflicts carry the tenant --------------------------------------------------


@pytest.fixture
def offline(settings: Settings, services: Services) -> Iterator[Services]:
    """Services whose jobs go to a Redis database no worker reads, so jobs stay open."""
    own = settings.model_copy(update={"redis_url": offline_redis_url(settings, OFFLINE_DB)})
    yield Services(own, services.db, redis_client(own), services.ring)
    forget_offline(settings, OFFLINE_DB)


def test_the_same_subject_id_under_two_tenants_gets_two_jobs(offline: Services, db: Database) -> None:
    a, b = factories.tenant(db)["_id"], factories.tenant(db)["_id"]
    reused = str(ObjectId())  # an id that shows up under both (deleted in one, reappearing in the other)
    first = JobRequest("integration.health_check", a, {"integrationId": reused})
    second = JobRequest("integration.health_check", b, {"integrationId": reused})
    # In spirit: a lease named by type and subject alone is one lease for both tenants, so the
    # second tenant's request would be answered with the first tenant's open job.
    assert leases.key(first.type, reused) == leases.key(second.type, reused)
    assert first.lease_key != second.lease_key
    assert str(a) in first.lease_key
    assert str(b) not in first.lease_key

    [one] = enqueue(db, offline.redis, lambda *_, **__: None, [first], lease_ttl=300)
    [two] = enqueue(db, offline.redis, lambda *_, **__: None, [second], lease_ttl=300)
    assert one.created
    assert two.created
    assert two.job["_id"] != one.job["_id"]
    assert (one.job["tenantId"], two.job["tenantId"]) == (a, b)
    # The second request of tenant A still finds A's open job: the lease still does its work.
    [again] = enqueue(db, offline.redis, lambda *_, **__: None, [first], lease_ttl=300)
    assert (again.created, again.job["_id"]) == (False, one.job["_id"])


def test_one_tenants_token_refresh_lock_never_blocks_another_tenant(services: Services, db: Database) -> None:
    from tasks.tokens import RefreshBusy, refresh_single_flight  # noqa: PLC0415

    a, b = factories.tenant(db)["_id"], factories.tenant(db)["_id"]
    reused = ObjectId()
    quick = Services(
        services.settings.model_copy(update={"refresh_wait": 0.1}), services.db, services.redis, services.ring
    )
    held = f"mwap:lock:oauth-refresh:{a}:{reused}"
    assert services.redis.set(held, "another worker", nx=True, ex=60)
    try:
        with pytest.raises(RefreshBusy):  # tenant A's refresh of that id waits for A's lock...
            refresh_single_flight(quick, a, reused)
        # ...tenant B's refresh of the same id is not held up by it (it finds no integration of its own).
        with pytest.raises(Skip, match="integration no longer exists"):
            refresh_single_flight(quick, b, reused)
    finally:
        services.redis.delete(held)


def test_answers_about_another_tenants_ids_match_answers_about_missing_ones(
    client, db: Database, ring: Any
) -> None:
    factories.provider(db, ring, "google-drive")
    mine, headers = tenant_with_key(db)
    theirs = factories.tenant(db)
    their_integration = factories.integration(db, ring, theirs["_id"], slug="google-drive")

    def shown(response: Any) -> tuple[int, dict[str, Any]]:
        body = response.get_json()
        return response.status_code, {k: v for k, v in body.items() if k != "instance"}

    # Registering for their tenant reads exactly as registering for a tenant that does not exist.
    for_theirs = client.post(
        "/v1/integrations", json=integration_body(theirs["_id"], "google-drive"), headers=headers
    )
    for_nobody = client.post(
        "/v1/integrations", json=integration_body(ObjectId(), "google-drive"), headers=headers
    )
    assert shown(for_theirs) == shown(for_nobody)
    assert for_theirs.status_code == 404
    # Their integration's id reads as a missing one.
    assert shown(client.get(f"/v1/integrations/{their_integration['_id']}", headers=headers)) == shown(
        client.get(f"/v1/integrations/{ObjectId()}", headers=headers)
    )
    # A 409 on one's own tenant names that tenant only, never theirs.
    assert (
        client.post(
            "/v1/integrations", json=integration_body(mine["_id"], "google-drive"), headers=headers
        ).status_code
        == 201
    )
    conflict = client.post(
        "/v1/integrations", json=integration_body(mine["_id"], "google-drive"), headers=headers
    )
    text = assert_problem(conflict, 409)["detail"]
    assert str(mine["_id"]) in text
    assert str(theirs["_id"]) not in text
    assert str(their_integration["_id"]) not in text
