"""Webhooks: endpoints over the API, events through the outbox, signed delivery by a real worker."""

import json
import subprocess
import sys
from datetime import timedelta
from typing import Any

import factories
import pytest
from api_support import app_with, assert_problem, tenant_with_key
from bson import ObjectId
from pymongo.database import Database
from standardwebhooks.webhooks import Webhook
from webhook_receiver import receiver

from mwap import ledger, webhooks
from mwap.connections import redis_client
from mwap.crypto import TamperedError, unseal
from mwap.services import Services
from mwap.settings import Settings
from ops.fake_providers.control import FakeProviders
from ops.processes import wait_for
from tasks import health
from tasks import webhooks as webhook_tasks
from tasks.integrations import mark_error
from tasks.providers.outbound import DEV_LOOPBACK, OutboundPolicy
from worker.app import create_celery_app

ALL_EVENTS = [kind.value for kind in webhooks.EventType]


def create(client: Any, headers: dict[str, str], url: str, events: list[str] | None = None) -> Any:
    return client.post("/v1/webhooks", json={"url": url, "events": events or ALL_EVENTS}, headers=headers)


def test_endpoint_lifecycle_secret_shown_once_stored_sealed(client, db: Database, ring) -> None:
    tenant, headers = tenant_with_key(db)
    answer = create(client, headers, "https://hooks.example.com/in", ["job.failed"])
    assert answer.status_code == 201, answer.get_data(as_text=True)
    created = answer.get_json()
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert len(secret) > 30
    assert created["enabled"] is True
    assert created["events"] == ["job.failed"]
    stored = db[webhooks.ENDPOINTS].find_one({"_id": ObjectId(created["id"])})
    assert stored["secret"].startswith("enc:v1:")
    assert secret not in json.dumps(stored, default=str)
    assert (
        unseal(
            ring,
            webhooks.SIGNING_SECRET,
            stored["secret"],
            document_id=stored["_id"],
            tenant_id=tenant["_id"],
        )
        == secret
    )
    with pytest.raises(TamperedError):  # bound to its document: copied elsewhere it does not open
        unseal(
            ring, webhooks.SIGNING_SECRET, stored["secret"], document_id=ObjectId(), tenant_id=tenant["_id"]
        )

    listed = client.get("/v1/webhooks", headers=headers).get_json()["items"]
    assert [item["id"] for item in listed] == [created["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in client.get(answer.headers["Location"], headers=headers).get_json()

    _, other = tenant_with_key(db)
    assert client.get("/v1/webhooks", headers=other).get_json()["items"] == []
    assert_problem(client.get(f"/v1/webhooks/{created['id']}", headers=other), 404)
    assert_problem(client.delete(f"/v1/webhooks/{created['id']}", headers=other), 404)

    assert client.delete(f"/v1/webhooks/{created['id']}", headers=headers).status_code == 204
    assert_problem(client.get(f"/v1/webhooks/{created['id']}", headers=headers), 404)
    assert db["auditLogs"].count_documents({"target.id": created["id"]}) == 2  # created, deleted


def test_admin_names_the_tenant(client, db: Database, admin_headers: dict[str, str]) -> None:
    tenant = factories.tenant(db)
    assert_problem(create(client, admin_headers, "https://hooks.example.com/a"), 422)
    body = {
        "url": "https://hooks.example.com/a",
        "events": ["sync.completed"],
        "tenantId": str(tenant["_id"]),
    }
    answer = client.post("/v1/webhooks", json=body, headers=admin_headers)
    assert answer.status_code == 201
    assert answer.get_json()["tenantId"] == str(tenant["_id"])
    missing = {**body, "tenantId": str(ObjectId())}
    assert_problem(client.post("/v1/webhooks", json=missing, headers=admin_headers), 404)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/in", "scheme"),
        ("ftp://hooks.example.com/in", "scheme"),
        ("https://10.1.2.3/in", "private"),
        ("https://127.0.0.1:8443/in", "loopback"),
        ("https://169.254.169.254/latest", "metadata"),
        ("https://[::ffff:10.0.0.1]/in", "private"),
        ("https://user:pw@hooks.example.com/in", "credentials"),
        ("https://hooks.example.com/" + "a" * 2100, None),
    ],
)
def test_refused_urls_change_nothing(settings: Settings, db: Database, url: str, why: str | None) -> None:
    strict = app_with(settings, outbound_allow_http=False, outbound_allow_private=False).test_client()
    tenant, headers = tenant_with_key(db)
    answer = create(strict, headers, url)
    problem = assert_problem(answer, 422)
    if why:
        assert why in json.dumps(problem)
    assert db[webhooks.ENDPOINTS].count_documents({"tenantId": tenant["_id"]}) == 0


def test_unknown_event_type_is_refused(client, db: Database) -> None:
    tenant, headers = tenant_with_key(db)
    assert_problem(create(client, headers, "https://hooks.example.com/in", ["file.deleted"]), 422)
    assert db[webhooks.ENDPOINTS].count_documents({"tenantId": tenant["_id"]}) == 0


def test_delivery_guard_refuses_redirect_targets_and_private_addresses() -> None:
    # The delivery path checks the URL again (settings may have changed since it was registered).
    assert webhook_tasks.check_url("https://10.0.0.8/x", OutboundPolicy.STRICT)
    assert webhook_tasks.check_url("http://hooks.example.com/x", OutboundPolicy.STRICT)
    assert webhook_tasks.check_url("https://hooks.example.com/x", OutboundPolicy.STRICT) is None
    assert webhook_tasks.check_url("http://127.0.0.1:9/x", DEV_LOOPBACK) is None
    assert webhook_tasks.check_url("http://169.254.169.254/x", DEV_LOOPBACK)  # never, whatever the settings


def test_job_failed_event_rides_the_ledgers_final_write(db: Database) -> None:
    tenant = factories.tenant(db)
    job = ledger.new_job("integration.sync_files", tenant_id=tenant["_id"], queue="sync")
    db["jobs"].insert_one(job)
    entry = webhooks.event(
        webhooks.JobFailed(
            job_id=job["_id"], type=job["type"], subject={}, error={"type": "X", "message": "m"}
        )
    )
    final = ledger.fail(db, job["_id"], {"type": "X", "message": "m"}, extra=webhooks.outbox_push(entry))
    assert final["status"] == "failed"
    assert final["mwapTasks"]["webhookOutbox"][0]["id"] == entry["id"]
    # A second final write (a redelivered message) neither changes the job nor emits again.
    assert (
        ledger.fail(db, job["_id"], {"type": "Y", "message": "n"}, extra=webhooks.outbox_push(entry)) is None
    )
    assert len(db["jobs"].find_one({"_id": job["_id"]})["mwapTasks"]["webhookOutbox"]) == 1

    webhooks.relay(db)
    webhooks.relay(db)  # a repeated relay (a crash before the $pull) adds nothing
    assert db[webhooks.EVENTS].count_documents({"_id": entry["id"]}) == 1
    assert db["jobs"].find_one({"_id": job["_id"]})["mwapTasks"]["webhookOutbox"] == []


def unhealthy(db: Database, integration: dict[str, Any]) -> None:
    """Start from a failing health, so the next successful probe changes it (and emits)."""
    db["cloudIntegrations"].update_one(
        {"_id": integration["_id"]}, {"$set": {"health.status": "unhealthy", "health.errorCount": 3}}
    )


def _verify(secret: str, request: Any) -> dict[str, Any]:
    """What a receiver does: the standardwebhooks package checks the signature and timestamp."""
    return Webhook(secret).verify(request.body, request.headers)


@pytest.mark.usefixtures("worker")
def test_health_change_delivered_signed_end_to_end(
    client, services: Services, db: Database, ring, fake: FakeProviders
) -> None:
    tenant, headers = tenant_with_key(db)
    with receiver() as hook:
        created = create(client, headers, hook.url, ["integration.health_changed"]).get_json()
        account = fake.create_account("google-drive", files=["/a.txt"])
        integration = factories.integration_for(db, ring, tenant["_id"], account)
        unhealthy(db, integration)
        job = factories.run_integration_job(services, "integration.health_check", integration)
        assert job["status"] == "succeeded", job["error"]

        wait_for(lambda: hook.requests, timeout=30, what="the webhook request")
        request = hook.requests[0]
        payload = _verify(created["secret"], request)
        assert payload["type"] == "integration.health_changed"
        assert payload["data"]["integrationId"] == str(integration["_id"])
        assert payload["data"]["status"] == "healthy"
        assert payload["data"]["previous"] == "unhealthy"
        assert request.headers["webhook-id"] == payload["id"]
        assert payload["id"].startswith("evt_")
        with pytest.raises(Exception, match="signature"):  # another secret does not verify
            Webhook(webhooks.new_secret()).verify(request.body, request.headers)

        def delivered() -> list[dict[str, Any]]:
            items = client.get(f"/v1/webhooks/{created['id']}/deliveries", headers=headers).get_json()[
                "items"
            ]
            return items if items and items[0]["status"] == "delivered" else []

        (item,) = wait_for(delivered, timeout=15, what="the delivery recorded")
        assert item["attempts"][0]["statusCode"] == 200
        assert item["event"]["id"] == payload["id"]
        assert item["event"]["data"] == payload["data"]

        # A second probe with the same health emits nothing new.
        assert (
            factories.run_integration_job(services, "integration.health_check", integration)["status"]
            == "succeeded"
        )
        # Manual redelivery: the same event, the same webhook-id.
        again = client.post(
            f"/v1/webhooks/{created['id']}/deliveries/{item['id']}/redeliver", headers=headers
        )
        assert again.status_code == 202, again.get_data(as_text=True)
        wait_for(lambda: len(hook.requests) >= 2, timeout=30, what="the redelivery")
        assert hook.ids() == [payload["id"], payload["id"]]
        _verify(created["secret"], hook.requests[1])


@pytest.mark.usefixtures("worker")
def test_gone_disables_the_endpoint_with_an_audit_entry(
    client, services: Services, db: Database, ring, fake: FakeProviders
) -> None:
    tenant, headers = tenant_with_key(db)
    with receiver() as hook:
        hook.answer = lambda _n: (410, 0.0, {})
        created = create(client, headers, hook.url, ["integration.health_changed"]).get_json()
        account = fake.create_account("dropbox")
        integration = factories.integration_for(db, ring, tenant["_id"], account)
        unhealthy(db, integration)
        factories.run_integration_job(services, "integration.health_check", integration)
        endpoint = wait_for(
            lambda: (
                (doc := client.get(f"/v1/webhooks/{created['id']}", headers=headers).get_json())["enabled"]
                is False
                and doc
            ),
            timeout=30,
            what="the endpoint disabled",
        )
        assert "410" in endpoint["disabledReason"]
        assert endpoint["disabledAt"]
        assert db["auditLogs"].find_one({"action": "webhook.disabled", "target.id": created["id"]})
        assert len(hook.requests) == 1  # no retry after Gone


def test_cli_add_list_remove(stack_env: dict[str, str], db: Database) -> None:
    tenant = factories.tenant(db)

    def mwap(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "mwap_cli", "--json", "webhooks", *args],
            env=stack_env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert (result.returncode == 0) is ok, result.stderr
        return result

    tid = str(tenant["_id"])
    added = json.loads(
        mwap(
            "add", "--tenant", tid, "--url", "https://hooks.example.com/a", "--event", "sync.completed"
        ).stdout
    )
    assert added["secret"].startswith("whsec_")
    listed = json.loads(mwap("list", "--tenant", tid).stdout)
    assert [d["_id"] for d in listed] == [added["_id"]]
    assert "secret" not in listed[0]
    assert (
        "refused"
        in mwap(
            "add", "--tenant", tid, "--url", "ftp://x.example/a", "--event", "job.failed", ok=False
        ).stderr
    )
    mwap("remove", "--tenant", tid, added["_id"])
    assert json.loads(mwap("list", "--tenant", tid).stdout) == []
    mwap("remove", "--tenant", tid, added["_id"], ok=False)


@pytest.mark.usefixtures("worker")
def test_auth_failure_job_failure_and_retention_are_delivered(
    client, services: Services, db: Database, ring
) -> None:
    tenant, headers = tenant_with_key(db)
    with receiver() as hook:
        created = create(client, headers, hook.url).get_json()
        integration = factories.integration(db, ring, tenant["_id"], slug="dropbox")
        # Unreadable credentials: the integration goes to error (auth_failed) and the job fails.
        db["cloudIntegrations"].update_one(
            {"_id": integration["_id"]}, {"$set": {"authData.accessToken": "enc:v1:k1:AAAA"}}
        )
        job = factories.run_integration_job(services, "integration.health_check", integration)
        assert job["status"] == "failed"
        retention = factories.run_tenant_job(services, "tenant.apply_retention", tenant["_id"])
        assert retention["status"] == "succeeded"

        def by_type() -> dict[str, dict[str, Any]]:
            seen = {}
            for request in list(hook.requests):
                payload = Webhook(created["secret"]).verify(request.body, request.headers)
                seen[payload["type"]] = payload
            return seen if len(seen) >= 3 else {}

        seen = wait_for(by_type, timeout=30, what="three event types delivered")
        assert seen["integration.auth_failed"]["data"]["integrationId"] == str(integration["_id"])
        assert seen["job.failed"]["data"]["jobId"] == job["_id"]
        assert seen["job.failed"]["data"]["type"] == "integration.health_check"
        assert seen["job.failed"]["data"]["subject"] == {"integrationId": str(integration["_id"])}
        assert set(seen["retention.applied"]["data"]["deleted"]) == {"auditLogs", "jobs"}
        assert {p["tenantId"] for p in seen.values()} == {str(tenant["_id"])}


@pytest.mark.usefixtures("worker")
def test_sync_completed_carries_the_runs_counts(
    client, services: Services, db: Database, ring, fake: FakeProviders
) -> None:
    tenant, headers = tenant_with_key(db)
    with receiver() as hook:
        created = create(client, headers, hook.url, ["sync.completed"]).get_json()
        account = fake.create_account("dropbox", files=["/one.txt", "/two.txt"])
        everything = factories.project(db, tenant["_id"])
        integration = factories.integration_for(
            db, ring, tenant["_id"], account, project_ids=[everything["_id"]]
        )
        assert (
            factories.run_integration_job(services, "integration.sync_files", integration)["status"]
            == "succeeded"
        )
        ids = {f["path"]: f["id"] for f in fake.files(account.id)}
        fake.delete_file(account.id, ids["/two.txt"])
        assert (
            factories.run_integration_job(services, "integration.sync_files", integration)["status"]
            == "succeeded"
        )

        wait_for(lambda: len(hook.requests) >= 2, timeout=30, what="two sync.completed events")
        payloads = [Webhook(created["secret"]).verify(r.body, r.headers)["data"] for r in hook.requests]
        counts = sorted((p["added"], p["changed"], p["deleted"]) for p in payloads)
        assert counts == [(0, 0, 1), (2, 0, 0)]
        assert {p["integrationId"] for p in payloads} == {str(integration["_id"])}


@pytest.mark.usefixtures("worker")
def test_rotation_signs_with_both_secrets_during_the_overlap(
    client, services: Services, db: Database, ring, fake: FakeProviders
) -> None:
    tenant, headers = tenant_with_key(db)
    with receiver() as hook:
        created = create(client, headers, hook.url, ["integration.health_changed"]).get_json()
        rotated = client.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=headers)
        assert rotated.status_code == 200, rotated.get_data(as_text=True)
        new_secret = rotated.get_json()["secret"]
        assert new_secret != created["secret"]
        account = fake.create_account("onedrive")
        integration = factories.integration_for(db, ring, tenant["_id"], account)
        unhealthy(db, integration)
        factories.run_integration_job(services, "integration.health_check", integration)
        (request,) = wait_for(lambda: hook.requests, timeout=30, what="the webhook request")
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        # A receiver still on the old secret and one already on the new both accept it.
        assert (
            Webhook(created["secret"]).verify(request.body, request.headers)["type"]
            == "integration.health_changed"
        )
        assert (
            Webhook(new_secret).verify(request.body, request.headers)["type"] == "integration.health_changed"
        )
        _, other = tenant_with_key(db)
        assert_problem(client.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=other), 404)


def _pending_delivery(db: Database, ring, url: str) -> tuple[dict[str, Any], str]:
    """An endpoint and one relayed job.failed delivery for it, due now (no worker involved)."""
    tenant = factories.tenant(db)
    endpoint, _ = webhooks.create_endpoint(db, ring, tenant["_id"], url=url, events=["job.failed"])
    job = ledger.new_job("system.echo", tenant_id=tenant["_id"], queue="default")
    db["jobs"].insert_one(job)
    entry = webhooks.event(webhooks.JobFailed(job_id=job["_id"], type=job["type"], subject={}, error={}))
    ledger.fail(db, job["_id"], {"type": "E", "message": "m"}, extra=webhooks.outbox_push(entry))
    (delivery,) = (
        d
        for d in webhooks.relay(db)
        if db[webhooks.DELIVERIES].find_one({"_id": d, "endpointId": endpoint["_id"]})
    )
    return endpoint, delivery


def test_redirect_is_not_followed_and_is_retried_later(services: Services, db: Database, ring) -> None:
    with receiver() as target, receiver() as hook:
        hook.answer = lambda _n: (307, 0.0, {"location": target.url})
        _, delivery = _pending_delivery(db, ring, hook.url)
        assert webhook_tasks.deliver_once(services, delivery) == "redirect"
        assert len(hook.requests) == 1
        assert target.requests == []
        doc = db[webhooks.DELIVERIES].find_one({"_id": delivery})
        assert doc["status"] == "pending"
        assert doc["nextAttemptAt"] > doc["attempts"][0]["at"]  # the first backoff step ahead
        assert webhook_tasks.deliver_once(services, delivery) is None  # not due yet: nothing sent
        assert len(hook.requests) == 1


def test_failing_for_days_disables_the_endpoint(services: Services, db: Database, ring) -> None:
    with receiver() as hook:
        hook.answer = lambda _n: (500, 0.0, {})
        endpoint, delivery = _pending_delivery(db, ring, hook.url)
        long_ago = ledger.now() - timedelta(days=services.settings.webhook_disable_after_days + 1)
        db[webhooks.ENDPOINTS].update_one({"_id": endpoint["_id"]}, {"$set": {"failingSince": long_ago}})
        assert webhook_tasks.deliver_once(services, delivery) == "http_error"
        stored = db[webhooks.ENDPOINTS].find_one({"_id": endpoint["_id"]})
        assert stored["enabled"] is False
        assert "failing for" in stored["disabledReason"]
        assert db["auditLogs"].find_one({"action": "webhook.disabled", "target.id": str(endpoint["_id"])})


def test_success_clears_the_failing_clock(services: Services, db: Database, ring) -> None:
    with receiver() as hook:
        endpoint, delivery = _pending_delivery(db, ring, hook.url)
        db[webhooks.ENDPOINTS].update_one({"_id": endpoint["_id"]}, {"$set": {"failingSince": ledger.now()}})
        assert webhook_tasks.deliver_once(services, delivery) == "delivered"
        assert db[webhooks.ENDPOINTS].find_one({"_id": endpoint["_id"]})["failingSince"] is None


def test_idempotent_replay_never_shows_or_keeps_the_secret(client, db: Database, settings: Settings) -> None:
    _, headers = tenant_with_key(db)
    keyed = {**headers, "Idempotency-Key": "webhook-create-1"}
    body = {"url": "https://hooks.example.com/once", "events": ["job.failed"]}
    first = client.post("/v1/webhooks", json=body, headers=keyed)
    replay = client.post("/v1/webhooks", json=body, headers=keyed)
    assert first.status_code == replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json()["id"] == first.get_json()["id"]
    assert replay.get_json()["secret"] is None
    secret = first.get_json()["secret"]
    redis = redis_client(settings)

    def values(key: bytes) -> bytes:
        kind = redis.type(key)
        if kind == b"string":
            return redis.get(key) or b""
        if kind == b"hash":
            return b" ".join(v for pair in redis.hgetall(key).items() for v in pair)
        return b""

    assert any(b"hooks.example.com/once" in values(k) for k in redis.scan_iter(count=1000))  # it is stored
    assert not any(secret.encode() in values(k) for k in redis.scan_iter(count=1000))


@pytest.mark.usefixtures("worker")
def test_reconnect_after_an_error_emits_recovered(
    stack_env: dict[str, str], client, services: Services, db: Database, ring, fake: FakeProviders
) -> None:
    tenant, headers = tenant_with_key(db)
    with receiver() as hook:
        created = create(client, headers, hook.url, ["integration.recovered"]).get_json()
        account = fake.create_account("google-drive")
        integration = factories.integration_for(db, ring, tenant["_id"], account, status="error")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mwap_cli",
                "integrations",
                "reconnect",
                str(integration["_id"]),
                "--expires-at",
                "2030-01-01T00:00:00Z",
            ],
            env={**stack_env, "MWAP_INTEGRATION_ACCESS_TOKEN": account.access_token},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        # The CLI has no worker to kick: the sweep (beat's, here sent by hand) relays it.
        producer = create_celery_app(services.settings, include_tasks=False)
        try:
            producer.send_task("webhooks.sweep", queue="webhooks")
        finally:
            producer.close()
        (request,) = wait_for(lambda: hook.requests, timeout=30, what="the recovered event")
        payload = Webhook(created["secret"]).verify(request.body, request.headers)
        assert payload["type"] == "integration.recovered"
        assert payload["data"] == {"integrationId": str(integration["_id"])}


def emitted(db: Database, tenant_id: ObjectId, integration_id: ObjectId, kind: str) -> list[dict]:
    """The ``kind`` events of an integration: still in its outbox, or relayed already by a worker."""
    state = db["cloudIntegrations"].find_one({"_id": integration_id})["mwapTasks"]
    events = [e for e in state.get("webhookOutbox", []) if e["type"] == kind]
    events += db["webhookEvents"].find({"tenantId": tenant_id, "type": kind})
    return [e for e in events if e["data"]["integrationId"] == str(integration_id)]


def test_a_reauthorization_by_the_backend_is_noticed_as_recovered(
    services: Services, db: Database, ring, fake: FakeProviders
) -> None:
    tenant, _ = tenant_with_key(db)
    account = fake.create_account("google-drive")
    integration = factories.integration_for(db, ring, tenant["_id"], account)
    assert mark_error(
        services, tenant["_id"], integration["_id"], "needs re-authorization", action="health.failed"
    )
    assert len(emitted(db, tenant["_id"], integration["_id"], "integration.auth_failed")) == 1
    # The MWAP backend has the owner re-authorize: the integration is active again (as it writes it).
    db["cloudIntegrations"].update_one({"_id": integration["_id"]}, {"$set": {"status": "active"}})
    assert health.check(services, tenant["_id"], integration["_id"])["status"] == "healthy"
    assert health.check(services, tenant["_id"], integration["_id"])["status"] == "healthy"
    assert len(emitted(db, tenant["_id"], integration["_id"], "integration.recovered")) == 1  # once
    stored = db["cloudIntegrations"].find_one({"_id": integration["_id"]})
    assert "authFailedAt" not in stored["mwapTasks"]
