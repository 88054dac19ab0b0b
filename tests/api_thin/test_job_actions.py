"""Cancel and re-run one job (``POST /v1/jobs/{id}/cancel|rerun``, ``mwap.job_actions``): against the
real API, Redis, MongoDB and, where the claim is about a worker, a real Celery worker.

Jobs that must stay queued are sent through an app whose broker database no worker reads
(``offline_app``); a message is handed to the real worker on purpose when a test says so.
"""

from collections.abc import Iterator
from typing import Any

import factories
import pytest
from api_support import assert_problem, bearer, offline_redis_url
from bson import ObjectId
from flask import Flask
from flask.testing import FlaskClient
from pymongo.database import Database
from redis import Redis

from api_thin import context
from mwap import enqueue, job_actions, leases, ledger
from mwap.settings import Settings
from ops.processes import Child, wait_for
from worker.app import publisher

OPERATOR = {"type": "operator", "id": "ada", "via": "console"}


@pytest.fixture
def offline_redis(settings: Settings) -> Iterator[Redis]:
    client = Redis.from_url(offline_redis_url(settings))
    yield client
    client.close()


def tenant_key(db: Database) -> tuple[str, dict[str, str], dict[str, str]]:
    """A new tenant's id, the headers of a key of its own, and the audit actor of that key."""
    tenant = factories.tenant(db)
    key_doc, key = factories.api_key(db, tenant["_id"])
    return str(tenant["_id"]), bearer(key), {"type": "apiKey", "id": str(key_doc["_id"])}


def ended_job(
    db: Database,
    job_type: str,
    tenant_id: Any,
    subject: dict[str, str] | None = None,
    *,
    params: dict[str, Any] | None = None,
    status: str = "failed",
) -> dict[str, Any]:
    """A ledger job that has ended (as a worker leaves one: finished, with its error when failed)."""
    doc = ledger.new_job(job_type, tenant_id=tenant_id, subject=subject, params=params, queue="default")
    doc.update(status=status, attempts=1, finishedAt=ledger.now())
    if status == "failed":
        doc["error"] = {"type": "ConnectionError", "message": "provider unreachable"}
    db["jobs"].insert_one(doc)
    return doc


def ledger_job(db: Database, job_id: str) -> dict[str, Any]:
    doc = db["jobs"].find_one({"_id": job_id})
    assert doc is not None, job_id
    return doc


def audits(db: Database, job_id: str) -> list[dict[str, Any]]:
    return list(db["auditLogs"].find({"target.type": "job", "target.id": job_id}))


# --- cancel -------------------------------------------------------------------------------------


def test_cancel_a_queued_job_frees_its_lease_is_audited_and_its_message_does_nothing(
    api: FlaskClient, app: Flask, db: Database, offline_redis: Redis, worker: Child
) -> None:
    tenant_id, headers, actor = tenant_key(db)
    job = api.post(f"/v1/tenants/{tenant_id}/aggregate", headers=headers).get_json()
    queued = ledger_job(db, job["id"])
    assert queued["status"] == "queued"
    assert offline_redis.get(queued["leaseKey"]) == job["id"].encode()

    response = api.post(f"/v1/jobs/{job['id']}/cancel", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    body = response.get_json()
    assert (body["id"], body["status"], body["error"]["type"]) == (job["id"], "cancelled", "Cancelled")
    stored = ledger_job(db, job["id"])
    assert stored["status"] == "cancelled"
    assert stored["finishedAt"] is not None
    assert not offline_redis.exists(queued["leaseKey"])
    [entry] = audits(db, job["id"])
    assert (entry["action"], entry["actor"], entry["tenantId"]) == (
        job_actions.CANCELLED,
        actor,
        ObjectId(tenant_id),
    )

    # Its message reaches a real worker: the worker finds the job final and leaves it as it is.
    log = worker.log_path
    assert log is not None
    enqueue.resend(publisher(app.extensions["mwap_celery"]), stored["type"], job["id"], stored["queue"])
    wait_for(
        lambda: f"job {job['id']} is final or unknown".encode() in log.read_bytes(),
        timeout=30,
        what="the worker's refusal of the cancelled job",
    )
    assert db["jobs"].find_one({"_id": job["id"]}) == stored
    # The subject is free for a new job at once.
    again = api.post(f"/v1/tenants/{tenant_id}/aggregate", headers=headers)
    assert again.status_code == 202
    assert again.get_json()["id"] != job["id"]


def test_cancel_of_an_ended_job_is_409_and_changes_nothing(api: FlaskClient, db: Database) -> None:
    tenant_id, headers, _ = tenant_key(db)
    job_id = api.post(f"/v1/tenants/{tenant_id}/retention", headers=headers).get_json()["id"]
    assert api.post(f"/v1/jobs/{job_id}/cancel", headers=headers).status_code == 200
    cancelled = ledger_job(db, job_id)
    # Twice: the second finds it ended.
    body = assert_problem(api.post(f"/v1/jobs/{job_id}/cancel", headers=headers), 409, "job-final")
    assert "cancelled" in body["detail"]
    assert db["jobs"].find_one({"_id": job_id}) == cancelled
    assert len(audits(db, job_id)) == 1

    for status in ("succeeded", "failed"):
        done = ended_job(db, "tenant.apply_retention", tenant_id, {"tenantId": tenant_id}, status=status)
        assert_problem(api.post(f"/v1/jobs/{done['_id']}/cancel", headers=headers), 409, "job-final")
        assert db["jobs"].find_one({"_id": done["_id"]}) == done
        assert audits(db, done["_id"]) == []


def test_a_tenant_key_reaches_only_its_own_tenants_jobs(
    api: FlaskClient, db: Database, admin_headers: dict[str, str]
) -> None:
    tenant_id, headers, _ = tenant_key(db)
    other_id, other_headers, _ = tenant_key(db)
    theirs = api.post(f"/v1/tenants/{other_id}/aggregate", headers=other_headers).get_json()["id"]
    their_failed = ended_job(db, "tenant.aggregate_usage", other_id, {"tenantId": other_id})["_id"]
    system = api.post("/v1/jobs", json={"type": "system.echo"}, headers=admin_headers).get_json()["id"]
    system_failed = ended_job(db, "system.echo", None)["_id"]
    before = {doc["_id"]: doc for doc in db["jobs"].find({"_id": {"$in": [theirs, system]}})}

    for job_id in (theirs, system, str(ObjectId()), "not-a-job"):
        assert_problem(api.post(f"/v1/jobs/{job_id}/cancel", headers=headers), 404, "not-found")
    for job_id in (their_failed, system_failed, str(ObjectId())):
        assert_problem(api.post(f"/v1/jobs/{job_id}/rerun", headers=headers), 404, "not-found")
    after = {doc["_id"]: doc for doc in db["jobs"].find({"_id": {"$in": [theirs, system]}})}
    assert after == before
    assert db["jobs"].count_documents({"rerunOf": {"$in": [their_failed, system_failed]}}) == 0
    assert db["jobs"].count_documents({"tenantId": ObjectId(tenant_id)}) == 0
    for job_id in (theirs, system, their_failed, system_failed):
        assert audits(db, job_id) == []

    # The admin key reaches both.
    assert api.post(f"/v1/jobs/{theirs}/cancel", headers=admin_headers).status_code == 200
    assert api.post(f"/v1/jobs/{system}/cancel", headers=admin_headers).status_code == 200
    assert audits(db, system)[0]["actor"] == {"type": "admin", "id": "admin"}


def test_cancel_a_running_job_its_worker_drops_the_outcome(
    client: FlaskClient, db: Database, settings: Settings, admin_headers: dict[str, str], worker: Child
) -> None:
    response = client.post(
        "/v1/jobs", json={"type": "system.echo", "params": {"sleepSeconds": 2}}, headers=admin_headers
    )
    job_id = response.get_json()["id"]
    wait_for(
        lambda: db["jobs"].find_one({"_id": job_id, "status": "running"}), timeout=30, what="job running"
    )
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=admin_headers).status_code == 200
    redis = Redis.from_url(settings.redis_url)
    try:
        # The delivery's end lets go of its execution lock: the worker is done with the job.
        wait_for(
            lambda: not redis.exists(leases.exec_key(job_id)), timeout=30, what="the worker done with it"
        )
    finally:
        redis.close()
    stored = ledger_job(db, job_id)
    assert (stored["status"], stored["result"], stored["error"]["type"]) == ("cancelled", None, "Cancelled")


# --- rerun --------------------------------------------------------------------------------------


def test_rerun_a_failed_job_runs_again_as_a_new_linked_audited_job(
    client: FlaskClient, db: Database, admin_headers: dict[str, str], worker: Child
) -> None:
    failed = ended_job(db, "system.echo", None, params={"message": "again"})
    response = client.post(f"/v1/jobs/{failed['_id']}/rerun", headers=admin_headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    new = response.get_json()
    assert response.headers["Location"] == f"/v1/jobs/{new['id']}"
    assert new["id"] != failed["_id"]
    assert (new["type"], new["tenantId"], new["params"], new["rerunOf"]) == (
        "system.echo",
        None,
        {"message": "again", "failTimes": 0, "fail": False, "sleepSeconds": 0},
        failed["_id"],
    )

    done = client.get(f"/v1/jobs/{new['id']}?wait=10", headers=admin_headers).get_json()
    assert (done["status"], done["result"], done["rerunOf"]) == (
        "succeeded",
        {"message": "again", "retries": 0},
        failed["_id"],
    )
    assert ledger_job(db, new["id"])["rerunOf"] == failed["_id"]
    old = ledger_job(db, failed["_id"])
    assert (old["status"], old["lastRerun"]) == ("failed", new["id"])  # the old job stays as it was
    [entry] = audits(db, failed["_id"])
    assert (entry["action"], entry["actor"], entry["details"]["newJobId"]) == (
        job_actions.RERUN,
        {"type": "admin", "id": "admin"},
        new["id"],
    )

    # Once that rerun has ended, another is a new job again.
    second = client.post(f"/v1/jobs/{failed['_id']}/rerun", headers=admin_headers)
    assert second.status_code == 202
    assert second.get_json()["id"] not in {new["id"], failed["_id"]}
    assert len(audits(db, failed["_id"])) == 2


def test_rerun_twice_answers_the_open_rerun(
    api: FlaskClient, db: Database, admin_headers: dict[str, str]
) -> None:
    # A system job (no lease: the link to its rerun answers) and a tenant job with a tenant key.
    system = ended_job(db, "system.echo", None, status="cancelled")
    tenant_id, headers, actor = tenant_key(db)
    tenant_job = ended_job(db, "tenant.aggregate_usage", tenant_id, {"tenantId": tenant_id})
    for old, caller, who in (
        (system, admin_headers, {"type": "admin", "id": "admin"}),
        (tenant_job, headers, actor),
    ):
        first = api.post(f"/v1/jobs/{old['_id']}/rerun", headers=caller)
        assert first.status_code == 202, first.get_data(as_text=True)
        again = api.post(f"/v1/jobs/{old['_id']}/rerun", headers=caller)
        assert again.status_code == 200
        assert again.get_json()["id"] == first.get_json()["id"]
        assert again.headers["Location"] == first.headers["Location"]
        assert db["jobs"].count_documents({"rerunOf": old["_id"]}) == 1
        [entry] = audits(db, old["_id"])
        assert entry["actor"] == who
    assert first.get_json()["tenantId"] == tenant_id
    assert first.get_json()["subject"] == {"tenantId": tenant_id}


def test_rerun_when_another_job_of_its_subject_is_open_answers_that_job(
    api: FlaskClient, db: Database
) -> None:
    tenant_id, headers, _ = tenant_key(db)
    old = ended_job(db, "tenant.apply_retention", tenant_id, {"tenantId": tenant_id})
    open_id = api.post(f"/v1/tenants/{tenant_id}/retention", headers=headers).get_json()["id"]
    response = api.post(f"/v1/jobs/{old['_id']}/rerun", headers=headers)
    assert (response.status_code, response.get_json()["id"]) == (200, open_id)
    assert response.get_json()["rerunOf"] is None  # not a rerun of this job: said as it is
    assert audits(db, old["_id"]) == []
    assert "lastRerun" not in ledger_job(db, old["_id"])


def test_rerun_of_an_open_job_is_409(api: FlaskClient, db: Database) -> None:
    tenant_id, headers, _ = tenant_key(db)
    job_id = api.post(f"/v1/tenants/{tenant_id}/aggregate", headers=headers).get_json()["id"]
    for _ in range(2):
        body = assert_problem(api.post(f"/v1/jobs/{job_id}/rerun", headers=headers), 409, "job-open")
        assert "queued" in body["detail"]
    assert db["jobs"].count_documents({"tenantId": ObjectId(tenant_id)}) == 1
    assert audits(db, job_id) == []


@pytest.mark.parametrize("gone", ["type", "params", "tenant", "integration"])
def test_rerun_is_409_when_the_job_no_longer_fits(
    api: FlaskClient, db: Database, ring: Any, admin_headers: dict[str, str], gone: str
) -> None:
    tenant = factories.tenant(db)
    integration = factories.integration(db, ring, tenant["_id"])
    if gone == "type":
        old = ended_job(db, "system.echo", None)
        db["jobs"].update_one({"_id": old["_id"]}, {"$set": {"type": "system.retired"}})
        slug = "job-type-removed"
    elif gone == "params":
        old = ended_job(db, "system.echo", None, params={"message": "x", "colour": "blue"})
        slug = "job-type-changed"
    elif gone == "tenant":
        old = ended_job(db, "tenant.aggregate_usage", tenant["_id"], {"tenantId": str(tenant["_id"])})
        db["tenants"].update_one({"_id": tenant["_id"]}, {"$set": {"archived": True}})
        slug = "job-subject-gone"
    else:
        old = ended_job(
            db, "integration.health_check", tenant["_id"], {"integrationId": str(integration["_id"])}
        )
        db["cloudIntegrations"].delete_one({"_id": integration["_id"]})
        slug = "job-subject-gone"
    start = ledger.now()
    assert_problem(api.post(f"/v1/jobs/{old['_id']}/rerun", headers=admin_headers), 409, slug)
    assert db["jobs"].count_documents({"createdAt": {"$gte": start}, "tenantId": old["tenantId"]}) == 0
    assert "lastRerun" not in ledger_job(db, old["_id"])
    assert audits(db, old["_id"]) == []


def test_rerun_while_another_rerun_of_it_is_enqueued_is_409_with_retry_after(
    api: FlaskClient, db: Database, offline_redis: Redis, admin_headers: dict[str, str]
) -> None:
    old = ended_job(db, "system.echo", None)
    lock = leases.key(job_actions.RERUN_LOCK_KIND, old["_id"], None)
    assert leases.acquire(offline_redis, lock, "another request", 30)
    try:
        response = api.post(f"/v1/jobs/{old['_id']}/rerun", headers=admin_headers)
        assert_problem(response, 409, "rerun-in-progress")
        assert response.headers["Retry-After"] == "1"
    finally:
        leases.release(offline_redis, lock, "another request")
    assert api.post(f"/v1/jobs/{old['_id']}/rerun", headers=admin_headers).status_code == 202


# --- the shared path, as the console calls it -----------------------------------------------------


def test_the_console_path_audits_its_own_actor(offline: Flask, db: Database) -> None:
    tenant_id, _, _ = tenant_key(db)
    with offline.app_context():
        redis, publish = context.redis(), context.publish()
        queued = enqueue.enqueue(
            db,
            redis,
            publish,
            [enqueue.JobRequest("tenant.aggregate_usage", tenant_id, {"tenantId": tenant_id})],
            lease_ttl=60,
        )[0].job
        outcome = job_actions.cancel_job(db, redis, queued["_id"], tenant_id=None, actor=OPERATOR)
        assert outcome.changed
        assert outcome.job["status"] == "cancelled"
        again = job_actions.cancel_job(db, redis, queued["_id"], tenant_id=None, actor=OPERATOR)
        assert (again.changed, again.job["status"]) == (False, "cancelled")

        rerun = job_actions.rerun_job(
            db, redis, publish, queued["_id"], tenant_id=None, actor=OPERATOR, lease_ttl=60
        )
        assert rerun.created
        assert rerun.job["rerunOf"] == queued["_id"]
        with pytest.raises(job_actions.JobOpen):
            job_actions.rerun_job(
                db, redis, publish, rerun.job["_id"], tenant_id=None, actor=OPERATOR, lease_ttl=60
            )
        with pytest.raises(job_actions.NoSuchJob):
            job_actions.cancel_job(db, redis, {"$ne": None}, tenant_id=None, actor=OPERATOR)  # type: ignore[arg-type]
    entries = audits(db, queued["_id"])
    assert sorted(e["action"] for e in entries) == sorted([job_actions.CANCELLED, job_actions.RERUN])
    assert all(e["actor"] == OPERATOR and e["tenantId"] == ObjectId(tenant_id) for e in entries)
