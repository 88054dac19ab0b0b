"""Crypto faults seen by jobs: tampered, moved or unknown-key ciphertexts mark the integration
`error` once with a reason naming the key id; the job fails without retrying; nothing loops."""

import factories
import pytest
from pymongo.database import Database

from mwap.crypto import KeyRing, integration_binding
from mwap.services import Services
from ops.fake_providers.control import FakeProviders
from ops.processes import wait_for
from tasks import dispatch
from worker.app import create_celery_app

pytestmark = [pytest.mark.usefixtures("worker"), pytest.mark.faults]


def tampered(value: str) -> str:
    head, _, payload = value.rpartition(":")
    return f"{head}:{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}"


@pytest.mark.parametrize("fault", ["tampered", "moved", "unknown-key"])
def test_unreadable_credentials_mark_the_integration_error_once(
    services: Services, db: Database, ring, fake: FakeProviders, tenant_id: str, fault: str
) -> None:
    account = fake.create_account("google-drive")
    victim = factories.integration_for(db, ring, tenant_id, account)
    # Another integration of the same tenant (one per provider per tenant: another provider).
    other = factories.integration_for(db, ring, tenant_id, fake.create_account("dropbox"))
    access = db["cloudIntegrations"].find_one({"_id": victim["_id"]})["authData"]["accessToken"]
    if fault == "tampered":
        bad = tampered(access)
    elif fault == "moved":
        bad = db["cloudIntegrations"].find_one({"_id": other["_id"]})["authData"]["accessToken"]
    else:
        stranger = KeyRing.parse(f"old:{KeyRing.generate_key()}")
        bad = stranger.encrypt("x", integration_binding(tenant_id, victim["_id"], "authData.accessToken"))
    db["cloudIntegrations"].update_one({"_id": victim["_id"]}, {"$set": {"authData.accessToken": bad}})

    job = factories.run_integration_job(services, "integration.health_check", victim)
    assert job["status"] == "failed"
    assert job["attempts"] == 1  # no retry loop
    expected_kid = "old" if fault == "unknown-key" else ring.primary
    assert f"'{expected_kid}'" in job["error"]["message"]
    doc = db["cloudIntegrations"].find_one({"_id": victim["_id"]})
    assert doc["status"] == "error"
    assert f"'{expected_kid}'" in doc["mwapTasks"]["statusReason"]
    assert (
        db["auditLogs"].count_documents({"target.id": str(victim["_id"]), "action": "integration.error"}) == 1
    )

    # Skipped from now on: no dispatcher picks it, and a direct job only says why.
    again = factories.run_integration_job(services, "integration.sync_files", victim)
    assert again["result"] == {"skipped": "integration is error"}
    assert (
        db["auditLogs"].count_documents({"target.id": str(victim["_id"]), "action": "integration.error"}) == 1
    )
    query = dispatch.due_integrations(services, "integration.sync_files")
    assert db["cloudIntegrations"].count_documents({**query, "_id": victim["_id"]}) == 0


def test_a_pickled_message_is_refused_not_executed(db: Database, settings, worker) -> None:
    """Only JSON is accepted: a pickle payload pushed straight into a queue never runs."""
    import pickle  # noqa: PLC0415 - the point is to show it is refused

    from mwap import ledger  # noqa: PLC0415

    doc = ledger.new_job("system.echo", tenant_id=None, params={"message": "never"}, queue="default")
    db["jobs"].insert_one(doc)  # a ledger job whose only message is the pickled one below
    log = worker.log_path
    before = log.read_bytes().count(b"x-python-serialize")
    app = create_celery_app(settings, include_tasks=False)
    try:
        with app.producer_or_acquire() as producer:
            producer.publish(
                pickle.dumps(((doc["_id"],), {}, {})),
                routing_key="default",
                exchange="",
                serializer=None,
                content_type="application/x-python-serialize",
                content_encoding="binary",
                headers={"task": "system.echo", "id": doc["_id"], "lang": "py"},
            )
    finally:
        app.close()
    wait_for(
        lambda: log.read_bytes().count(b"x-python-serialize") > before, timeout=30, what="refusal logged"
    )
    after = db["jobs"].find_one({"_id": doc["_id"]})
    assert after["status"] == "queued"
    assert after["attempts"] == 0
    db["jobs"].delete_one({"_id": doc["_id"]})


def test_an_integration_document_that_does_not_validate_fails_its_job_naming_fields(
    services: Services, db: Database, ring, tenant_id: str
) -> None:
    broken = factories.integration(db, ring, tenant_id)
    db["cloudIntegrations"].update_one({"_id": broken["_id"]}, {"$set": {"health.status": "on fire"}})
    job = factories.run_integration_job(services, "integration.health_check", broken)
    assert job["status"] == "failed"
    assert job["error"]["type"] == "InvalidDocument"
    assert "health.status" in job["error"]["message"]
