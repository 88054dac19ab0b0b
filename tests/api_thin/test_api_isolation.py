"""Tenant isolation: every endpoint that takes an id answers another tenant's id as a missing one."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import factories
import pytest
from api_support import assert_problem, tenant_with_key
from bson import ObjectId
from flask import Flask
from flask.testing import FlaskClient
from pymongo.database import Database

from mwap import apikeys


@dataclass(frozen=True)
class Case:
    method: str
    url: str  # {tenant}, {integration}, {project}, {job}: tenant B's ids (24-hex)
    body: dict[str, Any] | None = None
    admin_status: int = 200


CASES = [
    Case("GET", "/v1/jobs/{job}"),
    Case("GET", "/v1/jobs?tenantId={tenant}"),
    Case("POST", "/v1/jobs", {"type": "integration.sync_files", "integrationId": "{integration}"}, 202),
    Case("POST", "/v1/jobs", {"type": "tenant.aggregate_usage", "tenantId": "{tenant}"}, 202),
    Case(
        "POST",
        "/v1/jobs/batch",
        {"jobs": [{"type": "integration.health_check", "integrationId": "{integration}"}]},
        202,
    ),
    Case("GET", "/v1/integrations?tenantId={tenant}"),
    Case("GET", "/v1/integrations/{integration}"),
    Case("DELETE", "/v1/integrations/{integration}", admin_status=204),
    Case("GET", "/v1/integrations/{integration}/files"),
    Case("POST", "/v1/integrations/{integration}/sync", admin_status=202),
    Case("POST", "/v1/integrations/{integration}/refresh", {"force": True}, 202),
    Case("POST", "/v1/integrations/{integration}/health-check", admin_status=202),
    Case("POST", "/v1/integrations/{integration}/projects/{project}/sync", admin_status=202),
    Case(
        "POST",
        "/v1/jobs",
        {"type": "project.sync_files", "integrationId": "{integration}", "projectId": "{project}"},
        202,
    ),
    Case(
        "POST",
        "/v1/integrations",
        {
            "tenantId": "{tenant}",
            "providerSlug": "dropbox",  # tenant B's integration is google-drive's: one per provider
            "authData": {"accessToken": "at", "expiresAt": "2030-01-01T00:00:00Z", "scope": []},
        },
        201,
    ),
    Case("GET", "/v1/tenants/{tenant}"),
    Case("GET", "/v1/tenants/{tenant}/usage"),
    Case("POST", "/v1/tenants/{tenant}/aggregate", admin_status=202),
    Case("POST", "/v1/tenants/{tenant}/retention", {"dryRun": True}, 202),
]


def _hex(**ids: Any) -> dict[str, str]:
    """Ids as the API shows them: 24-hex strings."""
    return {name: str(value) for name, value in ids.items()}


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


def _call(client: FlaskClient, case: Case, ids: dict[str, str], headers: dict[str, str]) -> Any:
    kwargs: dict[str, Any] = {"headers": headers}
    if case.body is not None:
        kwargs["json"] = _fill(case.body, ids)
    return client.open(_fill(case.url, ids), method=case.method, **kwargs)


def _footprint(db: Database, tenant_id: ObjectId, integration_id: ObjectId) -> tuple[Any, ...]:
    """What a request about tenant B could change."""
    return (
        db["jobs"].count_documents({"tenantId": tenant_id}),
        db["jobs"].count_documents({"tenantId": tenant_id, "status": "cancelled"}),
        db["cloudIntegrations"].count_documents({"tenantId": tenant_id}),
        db["cloudIntegrations"].find_one({"_id": integration_id}, {"_id": 1}) is not None,
        db["virtualFiles"].count_documents({"tenantId": tenant_id}),
        db["projects"].count_documents({"tenantId": tenant_id, "integrations.integrationId": integration_id}),
        db["auditLogs"].count_documents({"tenantId": tenant_id}),
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.url}")
def test_another_tenants_ids_are_404_and_change_nothing(
    case: Case, offline: Flask, db: Database, ring: Any, admin_headers: dict[str, str]
) -> None:
    client = offline.test_client()
    factories.provider(db, ring)
    factories.provider(db, ring, "dropbox")
    tenant_a, headers_a = tenant_with_key(db)
    tenant_b = factories.tenant(db)
    project = factories.project(db, tenant_b["_id"])
    integration = factories.integration(db, ring, tenant_b["_id"], project_ids=[project["_id"]])
    factories.virtual_file(db, integration, "/b.txt", projectId=project["_id"])
    factories.usage_day(db, tenant_b["_id"], datetime.now(UTC).date() - timedelta(days=1))
    job = factories.job_document(
        db, "tenant.apply_retention", tenant_b["_id"], {"tenantId": str(tenant_b["_id"])}
    )
    ids = _hex(tenant=tenant_b["_id"], integration=integration["_id"], project=project["_id"], job=job["_id"])

    before = _footprint(db, tenant_b["_id"], integration["_id"])
    foreign = assert_problem(_call(client, case, ids, headers_a), 404, "not-found")
    assert _footprint(db, tenant_b["_id"], integration["_id"]) == before
    # Exactly the answer for an id that does not exist at all.
    missing = _hex(tenant=ObjectId(), integration=ObjectId(), project=ObjectId(), job=ObjectId())
    absent = assert_problem(_call(client, case, missing, headers_a), 404, "not-found")
    assert foreign["title"] == absent["title"]
    assert db["jobs"].count_documents({"tenantId": tenant_a["_id"]}) == 0

    key_id = apikeys.find_live(db, headers_a["Authorization"].removeprefix("Bearer "))["_id"]
    apikeys.revoke(db, key_id, actor=factories.ACTOR)
    assert_problem(_call(client, case, ids, headers_a), 401, "unauthorized")

    response = _call(client, case, ids, admin_headers)
    assert response.status_code == case.admin_status, response.get_data(as_text=True)


def test_tenant_key_still_works_on_its_own_ids(offline: Flask, db: Database, ring: Any) -> None:
    client = offline.test_client()
    factories.provider(db, ring, "dropbox")
    tenant, headers = tenant_with_key(db)
    project = factories.project(db, tenant["_id"])
    integration = factories.integration(db, ring, tenant["_id"], project_ids=[project["_id"]])
    job = factories.job_document(
        db, "tenant.apply_retention", tenant["_id"], {"tenantId": str(tenant["_id"])}
    )
    ids = _hex(tenant=tenant["_id"], integration=integration["_id"], project=project["_id"], job=job["_id"])
    for case in CASES:
        if case.method == "DELETE":
            continue
        response = _call(client, case, ids, headers)
        # 200: an earlier case already queued that job for this subject.
        expected = {case.admin_status, 200} if case.admin_status == 202 else {case.admin_status}
        assert response.status_code in expected, (case, response.get_data(as_text=True))


def test_an_archived_tenants_key_is_refused(
    offline: Flask, db: Database, ring: Any, admin_headers: dict[str, str]
) -> None:
    client = offline.test_client()
    tenant = factories.tenant(db)
    _, key = factories.api_key(db, tenant["_id"])
    headers = {"Authorization": f"Bearer {key}"}
    project = factories.project(db, tenant["_id"])
    integration = factories.integration(db, ring, tenant["_id"], project_ids=[project["_id"]])
    ids = _hex(tenant=tenant["_id"], integration=integration["_id"], project=project["_id"], job=ObjectId())
    own = Case("GET", "/v1/tenants/{tenant}")
    assert _call(client, own, ids, headers).status_code == 200

    db["tenants"].update_one({"_id": tenant["_id"]}, {"$set": {"archived": True}})
    for case in [own, *CASES]:
        assert_problem(_call(client, case, ids, headers), 401, "unauthorized")
    assert db["jobs"].count_documents({"tenantId": tenant["_id"]}) == 0
    # The admin gets no jobs for it either: an archived tenant is answered as a missing one.
    for case in CASES:
        if case.admin_status == 202:
            response = _call(client, case, ids, admin_headers)
            assert_problem(response, 404, "not-found")
    assert db["jobs"].count_documents({"tenantId": tenant["_id"]}) == 0

    db["tenants"].update_one({"_id": tenant["_id"]}, {"$set": {"archived": False}})
    assert _call(client, own, ids, headers).status_code == 200  # the same key, live again
