"""Jobs over HTTP: enqueue one, a batch, or through a trigger endpoint; read and list the ledger."""

import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import factories
import pymongo
import pytest
from api_support import assert_problem, offline_app, offline_redis_url, tenant_with_key
from bson import ObjectId
from flask import Flask
from flask.testing import FlaskClient
from pymongo import monitoring
from pymongo.database import Database
from redis import Redis

from mwap import connections
from mwap.ids import HEX_PATTERN as HEX
from mwap.settings import Settings


class CommandLog(monitoring.CommandListener):
    """MongoDB commands sent, as (command name, collection)."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in {"find", "insert", "update", "delete", "aggregate", "findAndModify"}:
            with self.lock:
                self.commands.append((event.command_name, str(event.command.get(event.command_name))))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture(scope="module")
def counted(
    settings: Settings, offline: Flask, monkeypatch_module: pytest.MonkeyPatch
) -> Iterator[tuple[Flask, CommandLog]]:
    """An app whose MongoClient reports every command it sends."""
    url = settings.mongo_url + ("&" if "?" in settings.mongo_url else "?") + "appname=mwap-api-counted"
    log = CommandLog()
    client = pymongo.MongoClient(url, tz_aware=True, event_listeners=[log], serverSelectionTimeoutMS=5000)
    monkeypatch_module.setitem(connections._mongo, (os.getpid(), url), client)
    yield offline_app(settings, mongo_url=url), log
    client.close()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_post_job_is_202_with_location_then_200_for_the_open_twin(
    api: FlaskClient, db: Database, admin_headers: dict
) -> None:
    tenant = factories.tenant(db)
    tenant_id = str(tenant["_id"])
    body = {"type": "tenant.apply_retention", "tenantId": tenant_id, "params": {"dryRun": True}}
    first = api.post("/v1/jobs", json=body, headers=admin_headers)
    assert first.status_code == 202
    job = first.get_json()
    assert first.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert re.fullmatch(HEX, job["id"])
    assert (job["type"], job["tenantId"], job["subject"]) == (
        "tenant.apply_retention",
        tenant_id,
        {"tenantId": tenant_id},
    )
    assert job["params"] == {"dryRun": True}
    assert db["jobs"].find_one({"_id": job["id"]})["status"] == "queued"

    again = api.post("/v1/jobs", json=body, headers=admin_headers)
    assert again.status_code == 200
    assert again.get_json()["id"] == job["id"]
    assert again.headers["Location"] == first.headers["Location"]


def test_tenant_key_enqueues_for_its_own_tenant_by_default(api: FlaskClient, db: Database) -> None:
    tenant, headers = tenant_with_key(db)
    response = api.post("/v1/jobs", json={"type": "tenant.aggregate_usage"}, headers=headers)
    assert response.status_code == 202
    assert response.get_json()["subject"] == {"tenantId": str(tenant["_id"])}
    job = api.get(response.headers["Location"], headers=headers).get_json()
    assert job["status"] == "queued"


def test_tenant_job_with_admin_key_needs_a_tenant(api: FlaskClient, admin_headers: dict) -> None:
    body = assert_problem(
        api.post("/v1/jobs", json={"type": "tenant.aggregate_usage"}, headers=admin_headers), 422
    )
    assert body["errors"][0]["pointer"] == "/tenantId"


def test_system_job_needs_the_admin_key(api: FlaskClient, db: Database) -> None:
    _, headers = tenant_with_key(db)
    assert_problem(api.post("/v1/jobs", json={"type": "system.echo"}, headers=headers), 403, "forbidden")


def test_integration_job_needs_an_integration(api: FlaskClient, admin_headers: dict) -> None:
    response = api.post("/v1/jobs", json={"type": "integration.sync_files"}, headers=admin_headers)
    body = assert_problem(response, 422, "validation-error")
    assert [e["pointer"] for e in body["errors"]] == ["/integrationId"]


def test_params_are_validated_per_type(api: FlaskClient, db: Database) -> None:
    _, headers = tenant_with_key(db)
    response = api.post(
        "/v1/jobs",
        json={"type": "tenant.aggregate_usage", "params": {"from": "2026-02-01", "to": "2026-01-01"}},
        headers=headers,
    )
    assert assert_problem(response, 422)["errors"][0]["pointer"] == "/params"
    response = api.post(
        "/v1/jobs", json={"type": "tenant.apply_retention", "params": {"dryRun": "maybe"}}, headers=headers
    )
    assert assert_problem(response, 422)["errors"][0]["pointer"] == "/params/dryRun"


def test_post_job_costs_one_mongodb_command_beyond_auth(
    counted: tuple[Flask, CommandLog], db: Database
) -> None:
    app, log = counted
    _, headers = tenant_with_key(db)
    log.commands.clear()
    response = app.test_client().post("/v1/jobs", json={"type": "tenant.apply_retention"}, headers=headers)
    assert response.status_code == 202
    # Auth reads the key and its tenant (an archived tenant's keys are refused); then one insert.
    assert log.commands == [("find", "apiKeys"), ("find", "tenants"), ("insert", "jobs")]


def test_batch_is_one_insert_and_one_lookup_with_results_in_order(
    counted: tuple[Flask, CommandLog], db: Database, ring: Any
) -> None:
    app, log = counted
    tenant, headers = tenant_with_key(db)
    # One integration per provider per tenant: three providers.
    integrations = [
        factories.integration(db, ring, tenant["_id"], slug=slug)
        for slug in ("google-drive", "dropbox", "onedrive")
    ]
    jobs = [
        {"type": "integration.sync_files", "integrationId": str(i["_id"]), "params": {"full": n == 0}}
        for n, i in enumerate(integrations)
    ]
    jobs += [
        {"type": "integration.health_check", "integrationId": str(integrations[0]["_id"])},
        {"type": "tenant.aggregate_usage", "params": {"from": "2026-01-01", "to": "2026-01-02"}},
        {"type": "integration.sync_files", "integrationId": str(integrations[1]["_id"])},  # repeats item 1
    ]
    log.commands.clear()
    response = app.test_client().post("/v1/jobs/batch", json={"jobs": jobs}, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    assert log.commands == [
        ("find", "apiKeys"),
        ("find", "tenants"),  # the key's tenant (auth)
        ("find", "cloudIntegrations"),
        ("find", "tenants"),  # the integrations' tenants are live (not archived)
        ("insert", "jobs"),
    ]

    items = response.get_json()["items"]
    assert [item["job"]["type"] for item in items] == [job["type"] for job in jobs]
    assert [item["status"] for item in items] == [202, 202, 202, 202, 202, 200]
    assert items[5]["job"]["id"] == items[1]["job"]["id"]
    assert items[0]["job"]["params"] == {"full": True}
    assert items[3]["job"]["subject"] == {"integrationId": str(integrations[0]["_id"])}
    assert items[4]["job"]["subject"] == {"tenantId": str(tenant["_id"])}
    for item in items:
        assert item["location"] == f"/v1/jobs/{item['job']['id']}"
    stored = {doc["_id"]: doc for doc in db["jobs"].find({"tenantId": tenant["_id"]})}
    assert set(stored) == {item["job"]["id"] for item in items}
    assert all(doc["status"] == "queued" for doc in stored.values())


def test_batch_is_all_or_nothing_naming_each_bad_item(api: FlaskClient, db: Database, ring: Any) -> None:
    tenant, headers = tenant_with_key(db)
    integration = factories.integration(db, ring, tenant["_id"])
    jobs = [
        {"type": "integration.sync_files", "integrationId": str(integration["_id"])},
        {"type": "integration.sync_files", "integrationId": str(integration["_id"]), "params": {"full": "x"}},
        {"type": "tenant.nope"},
        {"type": "tenant.apply_retention", "extra": 1},
    ]
    body = assert_problem(api.post("/v1/jobs/batch", json={"jobs": jobs}, headers=headers), 422)
    assert [e["pointer"] for e in body["errors"]] == ["/jobs/1/params/full", "/jobs/2/type", "/jobs/3/extra"]

    other = factories.tenant(db)
    other_integration = factories.integration(db, ring, other["_id"])
    jobs = [
        {"type": "tenant.apply_retention"},
        {"type": "integration.sync_files", "integrationId": str(other_integration["_id"])},
        {"type": "tenant.aggregate_usage", "tenantId": str(other["_id"])},
    ]
    body = assert_problem(api.post("/v1/jobs/batch", json={"jobs": jobs}, headers=headers), 404)
    assert [e["pointer"] for e in body["errors"]] == ["/jobs/1/integrationId", "/jobs/2/tenantId"]
    assert db["jobs"].count_documents({"tenantId": {"$in": [tenant["_id"], other["_id"]]}}) == 0


def test_batch_size_is_bounded(settings: Settings, db: Database) -> None:
    _, headers = tenant_with_key(db)
    client = offline_app(settings, api_batch_max=2).test_client()
    jobs = [{"type": "tenant.apply_retention"}] * 3
    body = assert_problem(client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=headers), 422)
    assert body["errors"][0]["pointer"] == "/jobs"
    assert_problem(client.post("/v1/jobs/batch", json={"jobs": []}, headers=headers), 422)
    spec = client.get("/openapi.json").get_json()["components"]["schemas"]["JobBatchCreate"]
    assert spec["properties"]["jobs"]["maxItems"] == 2


@pytest.mark.parametrize(
    ("path", "job_type", "body", "params"),
    [
        ("/v1/integrations/{integration}/sync", "integration.sync_files", {"full": True}, {"full": True}),
        ("/v1/integrations/{integration}/refresh", "integration.refresh_token", None, {"force": False}),
        ("/v1/integrations/{integration}/health-check", "integration.health_check", {}, {}),
        (
            "/v1/tenants/{tenant}/aggregate",
            "tenant.aggregate_usage",
            {"from": "2026-01-01", "to": "2026-01-31"},
            {"from": "2026-01-01", "to": "2026-01-31"},
        ),
        ("/v1/tenants/{tenant}/retention", "tenant.apply_retention", {"dryRun": True}, {"dryRun": True}),
    ],
)
def test_trigger_endpoints_enqueue_their_job(
    api: FlaskClient, db: Database, ring: Any, path: str, job_type: str, body: dict | None, params: dict
) -> None:
    tenant, headers = tenant_with_key(db)
    integration = factories.integration(db, ring, tenant["_id"])
    url = path.format(integration=integration["_id"], tenant=tenant["_id"])
    response = (
        api.post(url, json=body, headers=headers) if body is not None else api.post(url, headers=headers)
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    job = response.get_json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    stored = db["jobs"].find_one({"_id": job["id"]})
    assert (stored["type"], stored["tenantId"], stored["status"], stored["params"]) == (
        job_type,
        tenant["_id"],
        "queued",
        params,
    )
    subject = (
        {"integrationId": str(integration["_id"])}
        if "integrations" in path
        else {"tenantId": str(tenant["_id"])}
    )
    assert stored["subject"] == subject
    assert api.post(url, headers=headers).status_code == 200  # the open job, not a second one


def test_trigger_body_is_validated(api: FlaskClient, db: Database) -> None:
    tenant, headers = tenant_with_key(db)
    url = f"/v1/tenants/{tenant['_id']}/retention"
    assert (
        assert_problem(api.post(url, json={"dryRun": 3}, headers=headers), 422)["errors"][0]["pointer"]
        == "/dryRun"
    )
    assert_problem(api.post(url, data="dryRun=1", headers=headers), 415)
    response = api.post(
        f"/v1/tenants/{tenant['_id']}/aggregate",
        json={"from": "2026-03-01", "to": "2026-01-01"},
        headers=headers,
    )
    assert_problem(response, 422)


def test_get_job_reads_the_ledger(api: FlaskClient, db: Database) -> None:
    tenant, headers = tenant_with_key(db)
    doc = factories.job_document(
        db, "tenant.aggregate_usage", tenant["_id"], {"tenantId": str(tenant["_id"])}, status="succeeded"
    )
    job = api.get(f"/v1/jobs/{doc['_id']}", headers=headers).get_json()
    assert (job["id"], job["tenantId"], job["status"], job["subject"]) == (
        doc["_id"],
        str(tenant["_id"]),
        "succeeded",
        {"tenantId": str(tenant["_id"])},
    )
    assert_problem(api.get("/v1/jobs/nope", headers=headers), 404, "not-found")
    assert_problem(api.get(f"/v1/jobs/{ObjectId()}", headers=headers), 404, "not-found")


def _ids(client: FlaskClient, url: str, headers: dict) -> tuple[list[str], str | None]:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    page = response.get_json()
    return [job["id"] for job in page["items"]], page["nextCursor"]


def test_listing_pages_newest_first_stable_under_inserts(api: FlaskClient, db: Database) -> None:
    tenant, headers = tenant_with_key(db)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    # Two jobs share a creation time: the id breaks the tie.
    times = [
        start,
        start + timedelta(minutes=1),
        start + timedelta(minutes=1),
        start + timedelta(minutes=2),
        start + timedelta(minutes=3),
    ]
    docs = [factories.job_document(db, "tenant.apply_retention", tenant["_id"], created_at=t) for t in times]
    expected = [d["_id"] for d in sorted(docs, key=lambda d: (d["createdAt"], d["_id"]), reverse=True)]

    first, cursor = _ids(api, "/v1/jobs?limit=2", headers)
    assert first == expected[:2]
    # A job inserted meanwhile (newer than all) does not shift the next pages.
    factories.job_document(db, "tenant.apply_retention", tenant["_id"], created_at=start + timedelta(hours=1))
    second, cursor = _ids(api, f"/v1/jobs?limit=2&cursor={cursor}", headers)
    assert second == expected[2:4]
    third, cursor = _ids(api, f"/v1/jobs?limit=2&cursor={cursor}", headers)
    assert third == expected[4:]
    assert cursor is None


def test_listing_filters(api: FlaskClient, db: Database, ring: Any) -> None:
    tenant, headers = tenant_with_key(db)
    integration = factories.integration(db, ring, tenant["_id"])
    start = datetime(2026, 2, 1, tzinfo=UTC)
    sync = factories.job_document(
        db,
        "integration.sync_files",
        tenant["_id"],
        {"integrationId": str(integration["_id"])},
        created_at=start,
        status="failed",
    )
    usage = factories.job_document(
        db,
        "tenant.aggregate_usage",
        tenant["_id"],
        {"tenantId": str(tenant["_id"])},
        created_at=start + timedelta(days=1),
    )
    assert _ids(api, "/v1/jobs?type=integration.sync_files", headers)[0] == [sync["_id"]]
    assert _ids(api, "/v1/jobs?status=failed", headers)[0] == [sync["_id"]]
    assert _ids(api, f"/v1/jobs?subject={integration['_id']}", headers)[0] == [sync["_id"]]
    assert _ids(api, f"/v1/jobs?subject={tenant['_id']}", headers)[0] == [usage["_id"]]
    assert _ids(api, "/v1/jobs?createdFrom=2026-02-01T12:00:00Z", headers)[0] == [usage["_id"]]
    assert _ids(api, "/v1/jobs?createdTo=2026-02-01T12:00:00Z", headers)[0] == [sync["_id"]]


def test_admin_lists_every_tenant_or_one(api: FlaskClient, db: Database, admin_headers: dict) -> None:
    a, b = factories.tenant(db), factories.tenant(db)
    job_a = factories.job_document(db, "tenant.apply_retention", a["_id"], {"tenantId": str(a["_id"])})
    job_b = factories.job_document(db, "tenant.apply_retention", b["_id"], {"tenantId": str(b["_id"])})
    assert _ids(api, f"/v1/jobs?tenantId={a['_id']}", admin_headers)[0] == [job_a["_id"]]
    newest = _ids(api, "/v1/jobs?limit=200", admin_headers)[0]
    assert {job_a["_id"], job_b["_id"]} <= set(newest)


@pytest.mark.parametrize(
    ("query", "status", "slug"),
    [
        ("limit=0", 422, "validation-error"),
        ("limit=201", 422, "validation-error"),
        ("limit=99999999999999999999999999", 422, "validation-error"),
        ("status=done", 422, "validation-error"),
        ("type=nope", 422, "validation-error"),
        ("createdFrom=yesterday", 422, "validation-error"),
        ("subject[$ne]=x", 422, "validation-error"),
        ("subject=%24ne", 422, "validation-error"),
        ("limit=5&limit=6", 400, "repeated-parameter"),
        ("cursor=not-a-cursor", 400, "invalid-cursor"),
        ("cursor=eyJrIjoiZmlsZXMiLCJwIjoiLyIsImlkIjoiMSJ9", 400, "invalid-cursor"),  # a files cursor
        ("cursor=eyJrIjoiam9icyIsInQiOjFlMzAwLCJpZCI6IngifQ", 400, "invalid-cursor"),  # t is a float
        ("cursor=eyJrIjoiam9icyIsInQiOjk5OTk5OTk5OTk5OTk5OTk5OTk5OSwiaWQiOiJ4In0", 400, "invalid-cursor"),
    ],
)
def test_bad_listing_queries_are_problems(
    api: FlaskClient, admin_headers: dict, query: str, status: int, slug: str
) -> None:
    assert_problem(api.get(f"/v1/jobs?{query}", headers=admin_headers), status, slug)


def test_tenant_key_lists_only_its_jobs(api: FlaskClient, db: Database) -> None:
    tenant, headers = tenant_with_key(db)
    other = factories.tenant(db)
    factories.job_document(db, "tenant.apply_retention", other["_id"], {"tenantId": str(other["_id"])})
    mine = factories.job_document(
        db, "tenant.apply_retention", tenant["_id"], {"tenantId": str(tenant["_id"])}
    )
    assert _ids(api, "/v1/jobs", headers)[0] == [mine["_id"]]
    assert _ids(api, f"/v1/jobs?subject={other['_id']}", headers)[0] == []
    assert_problem(api.get(f"/v1/jobs?tenantId={other['_id']}", headers=headers), 404)


# --- integration deletion and project sync ---------------------------------------------------


def test_deleting_an_integration_cancels_its_open_jobs(
    api: FlaskClient, db: Database, ring: Any, settings: Settings
) -> None:
    tenant, headers = tenant_with_key(db)
    doomed = factories.integration(db, ring, tenant["_id"], slug="google-drive")
    kept = factories.integration(db, ring, tenant["_id"], slug="dropbox")
    project = factories.project(db, tenant["_id"], folderPath="/Work")
    factories.link(db, project["_id"], doomed["_id"])
    base = f"/v1/integrations/{doomed['_id']}"
    open_ids = [
        api.post(f"{base}/sync", headers=headers).get_json()["id"],
        api.post(f"{base}/health-check", headers=headers).get_json()["id"],
        api.post(f"{base}/projects/{project['_id']}/sync", headers=headers).get_json()["id"],
    ]
    other_id = api.post(f"/v1/integrations/{kept['_id']}/sync", headers=headers).get_json()["id"]
    done = factories.job_document(
        db,
        "integration.refresh_token",
        tenant["_id"],
        {"integrationId": str(doomed["_id"])},
        status="succeeded",
    )
    leases = [db["jobs"].find_one({"_id": job_id})["leaseKey"] for job_id in open_ids]
    broker = Redis.from_url(offline_redis_url(settings))
    try:
        assert all(broker.exists(lease) for lease in leases)

        assert api.delete(base, headers=headers).status_code == 204

        for job_id in open_ids:
            job = api.get(f"/v1/jobs/{job_id}", headers=headers).get_json()
            assert job["status"] == "cancelled", job
            assert job["finishedAt"] is not None
            assert job["error"]["type"] == "Cancelled"
        assert not any(broker.exists(lease) for lease in leases)  # their leases are freed
    finally:
        broker.close()
    assert db["jobs"].find_one({"_id": other_id})["status"] == "queued"  # another integration's job
    assert db["jobs"].find_one({"_id": done["_id"]})["status"] == "succeeded"  # final stays final
    listed = _ids(api, f"/v1/jobs?status=cancelled&subject={doomed['_id']}", headers)[0]
    assert set(listed) == set(open_ids)  # the project job names the integration too
    assert {job["_id"] for job in db["jobs"].find({"status": "cancelled", "tenantId": tenant["_id"]})} == set(
        open_ids
    )


def test_project_sync_trigger_enqueues_a_project_job(api: FlaskClient, db: Database, ring: Any) -> None:
    tenant, headers = tenant_with_key(db)
    integration = factories.integration(db, ring, tenant["_id"])
    project = factories.project(db, tenant["_id"], folderPath="/Projects/Alpha")
    factories.link(db, project["_id"], integration["_id"])
    url = f"/v1/integrations/{integration['_id']}/projects/{project['_id']}/sync"

    response = api.post(url, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    job = response.get_json()
    assert re.fullmatch(HEX, job["id"])
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert (job["type"], job["tenantId"], job["subject"]) == (
        "project.sync_files",
        str(tenant["_id"]),
        {"projectId": str(project["_id"]), "integrationId": str(integration["_id"])},
    )
    stored = db["jobs"].find_one({"_id": job["id"]})
    assert (stored["type"], stored["tenantId"], stored["status"]) == (
        "project.sync_files",
        tenant["_id"],
        "queued",
    )
    assert stored["subject"] == {"projectId": str(project["_id"]), "integrationId": str(integration["_id"])}
    again = api.post(url, headers=headers)
    assert (again.status_code, again.get_json()["id"]) == (200, job["id"])  # the open job

    # The same job through POST /v1/jobs is that open job too.
    body = {
        "type": "project.sync_files",
        "integrationId": str(integration["_id"]),
        "projectId": str(project["_id"]),
    }
    same = api.post("/v1/jobs", json=body, headers=headers)
    assert (same.status_code, same.get_json()["id"]) == (200, job["id"])


def test_project_sync_of_an_unknown_or_foreign_project_is_404(
    api: FlaskClient, db: Database, ring: Any, admin_headers: dict
) -> None:
    tenant, headers = tenant_with_key(db)
    integration = factories.integration(db, ring, tenant["_id"])
    other = factories.tenant(db)
    foreign = factories.project(db, other["_id"])
    base = f"/v1/integrations/{integration['_id']}/projects"
    for project_id in (foreign["_id"], ObjectId(), "not-a-project"):
        for caller in (headers, admin_headers):
            body = assert_problem(api.post(f"{base}/{project_id}/sync", headers=caller), 404, "not-found")
            assert body["title"] in {"No such integration", "No such project"}
    assert db["jobs"].count_documents({"tenantId": {"$in": [tenant["_id"], other["_id"]]}}) == 0
    # Another tenant's integration with that tenant's own project: 404 for this tenant's key.
    other_integration = factories.integration(db, ring, other["_id"])
    url = f"/v1/integrations/{other_integration['_id']}/projects/{foreign['_id']}/sync"
    assert_problem(api.post(url, headers=headers), 404, "not-found")
    assert db["jobs"].count_documents({"tenantId": other["_id"]}) == 0
