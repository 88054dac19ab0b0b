"""system.reconcile: ledger jobs the broker lost are resent; live ones are left alone."""

import json
import time
from datetime import timedelta

import factories
import pytest
from pymongo.database import Database

from mwap import ledger
from mwap.ledger import now
from mwap.services import Services
from ops.processes import wait_for
from tasks import reconcile
from worker.app import create_celery_app

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def quick(services: Services) -> Services:
    return Services(
        services.settings.model_copy(update={"stale_job_after": 5, "max_resends": 2}),
        services.db,
        services.redis,
        services.ring,
    )


@pytest.fixture(scope="module")
def producer(settings):
    app = create_celery_app(settings, include_tasks=False)
    yield app
    app.close()


def lost_job(db: Database, **fields: object) -> dict:
    """A ledger job whose message never reached (or vanished from) the broker."""
    doc = ledger.new_job("system.echo", tenant_id=None, params={"message": "lost"}, queue="default")
    doc.update(createdAt=now() - timedelta(minutes=5), **fields)
    db["jobs"].insert_one(doc)
    return doc


def test_a_queued_job_with_no_message_is_resent_and_completes(
    quick: Services, db: Database, producer
) -> None:
    doc = lost_job(db)
    counts = reconcile.reconcile(quick, producer)
    assert counts["resent"] >= 1
    done = factories.wait_final(db, doc["_id"])
    assert done["status"] == "succeeded"
    assert done["resends"] == 1
    assert done["result"] == {"message": "lost", "retries": 0}


def test_a_running_job_of_a_dead_worker_is_resent(quick: Services, db: Database, producer) -> None:
    doc = lost_job(
        db, status="running", worker="gone@nowhere", startedAt=now() - timedelta(minutes=4), attempts=1
    )
    quick.redis.set(f"mwap:exec:{doc['_id']}", "gone@nowhere:1:7", ex=600)  # the dead worker's lock
    reconcile.reconcile(quick, producer)
    done = factories.wait_final(db, doc["_id"])
    assert done["status"] == "succeeded"
    assert done["attempts"] == 2


def test_jobs_still_in_the_broker_or_on_a_live_worker_are_left_alone(
    quick: Services, db: Database, producer
) -> None:
    waiting = lost_job(db)
    # Its message is held, unacknowledged, by some worker (kombu's "unacked" hash).
    quick.redis.hset("unacked", "test-tag", json.dumps([{"headers": {"id": waiting["_id"]}}, "", "default"]))
    quick.redis.zadd("unacked_index", {"test-tag": time.time()})
    # A job the live worker is executing, made to look old enough to be stale.
    running = factories.enqueue_job(quick, "system.echo", None, {}, message="busy", sleepSeconds=5)
    wait_for(
        lambda: db["jobs"].find_one({"_id": running["_id"], "status": "running"}), timeout=30, what="running"
    )
    db["jobs"].update_one(
        {"_id": running["_id"]},
        {"$set": {"createdAt": now() - timedelta(minutes=5), "startedAt": now() - timedelta(seconds=30)}},
    )
    try:
        reconcile.reconcile(quick, producer)
        assert db["jobs"].find_one({"_id": waiting["_id"]}).get("resends") is None
        assert db["jobs"].find_one({"_id": running["_id"]}).get("resends") is None
    finally:
        quick.redis.hdel("unacked", "test-tag")
        quick.redis.zrem("unacked_index", "test-tag")
        factories.wait_final(db, running["_id"])
        db["jobs"].delete_many({"_id": {"$in": [waiting["_id"], running["_id"]]}})


def test_a_running_job_its_live_worker_is_not_executing_is_resent(
    quick: Services, db: Database, producer, worker
) -> None:
    # Its delivery ended without the outcome reaching the ledger (a storage outage at that moment).
    doc = lost_job(db, status="running", worker=worker.hostname, startedAt=now() - timedelta(seconds=30))
    reconcile.reconcile(quick, producer)
    done = factories.wait_final(db, doc["_id"])
    assert done["status"] == "succeeded"
    assert done["resends"] == 1


def test_a_job_resent_too_often_is_failed_as_lost(quick: Services, db: Database, producer) -> None:
    doc = lost_job(db, resends=2)
    reconcile.reconcile(quick, producer)
    final = db["jobs"].find_one({"_id": doc["_id"]})
    assert final["status"] == "failed"
    assert final["error"]["type"] == "JobLost"


def test_a_job_failed_as_lost_emits_job_failed_in_that_write(quick: Services, db: Database, producer) -> None:
    tenant = factories.tenant(db)
    doc = lost_job(db, resends=2, tenantId=tenant["_id"], subject={"integrationId": "int-lost"})
    reconcile.reconcile(quick, producer)
    final = db["jobs"].find_one({"_id": doc["_id"]})
    assert final["status"] == "failed"
    # In the ledger's outbox, or already relayed into the tenant's events by a worker.
    outbox = [
        e for e in final.get("mwapTasks", {}).get("webhookOutbox", []) if e["data"]["jobId"] == doc["_id"]
    ]
    relayed = list(db["webhookEvents"].find({"tenantId": tenant["_id"], "data.jobId": doc["_id"]}))
    events = outbox + relayed
    assert [e["type"] for e in events] == ["job.failed"]
    assert events[0]["data"]["error"]["type"] == "JobLost"
    assert events[0]["data"]["subject"] == {"integrationId": "int-lost"}
