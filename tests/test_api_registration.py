"""Registration (tenants, providers, integrations) and the read endpoints for integrations, files
and usage."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import factories
import pytest
from api_support import assert_problem, tenant_with_key
from flask.testing import FlaskClient
from pymongo.database import Database

from mwap.crypto import integration_binding


def integration_body(tenant_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "tenantId": tenant_id,
        "providerSlug": "google-drive",
        "accessToken": "secret-access-" + factories.uid("t"),
        "refreshToken": "secret-refresh-" + factories.uid("t"),
        "expiresAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        "scope": "drive.readonly",
        "userInfo": {"id": factories.uid("acct"), "email": "a@example.com"},
        **fields,
    }


def test_admin_registers_a_tenant(client: FlaskClient, admin_headers: dict) -> None:
    tenant_id = factories.uid("ten")
    body = {"id": tenant_id, "name": "Acme", "settings": {"retentionDays": 30}}
    response = client.post("/v1/tenants", json=body, headers=admin_headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.headers["Location"] == f"/v1/tenants/{tenant_id}"
    tenant = response.get_json()
    assert (tenant["id"], tenant["name"], tenant["status"]) == (tenant_id, "Acme", "active")
    assert tenant["settings"]["retentionDays"] == 30
    assert client.get(response.headers["Location"], headers=admin_headers).get_json() == tenant
    assert_problem(client.post("/v1/tenants", json=body, headers=admin_headers), 409, "conflict")
    body = {"name": "X", "settings": {"retentionDays": 30, "$where": 1}}
    assert_problem(client.post("/v1/tenants", json=body, headers=admin_headers), 422)


def test_registration_needs_the_admin_key(client: FlaskClient, db: Database) -> None:
    _, headers = tenant_with_key(db)
    assert_problem(client.post("/v1/tenants", json={"name": "X"}, headers=headers), 403, "forbidden")
    assert_problem(client.post("/v1/providers", json={}, headers=headers), 403, "forbidden")


def test_admin_registers_a_provider_whose_secret_never_comes_back(
    client: FlaskClient, db: Database, admin_headers: dict
) -> None:
    db["cloudProviders"].delete_many({"slug": "onedrive"})
    body = {
        "slug": "onedrive",
        "authUrl": "https://login.example/authorize",
        "tokenUrl": "https://login.example/token",
        "clientId": "client",
        "clientSecret": "very-secret-value",
        "scopes": ["Files.Read"],
        "metadata": {"apiBaseUrl": "https://graph.example/v1.0"},
    }
    response = client.post("/v1/providers", json=body, headers=admin_headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    provider = response.get_json()
    assert (provider["id"], provider["clientSecret"]) == ("onedrive", "[REDACTED]")
    assert provider["metadata"] == {"apiBaseUrl": "https://graph.example/v1.0"}
    assert "very-secret-value" not in response.get_data(as_text=True)
    assert db["cloudProviders"].find_one({"_id": "onedrive"})["clientSecret"] != "very-secret-value"
    assert_problem(client.post("/v1/providers", json=body, headers=admin_headers), 409, "conflict")
    assert_problem(client.post("/v1/providers", json={**body, "slug": "icloud"}, headers=admin_headers), 422)


def test_tenant_key_registers_an_integration_for_itself(client: FlaskClient, db: Database, ring: Any) -> None:
    factories.provider(db, ring)
    tenant, headers = tenant_with_key(db)
    body = integration_body(tenant["_id"])
    response = client.post("/v1/integrations", json=body, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    integration = response.get_json()
    assert response.headers["Location"] == f"/v1/integrations/{integration['id']}"
    text = response.get_data(as_text=True)
    assert body["accessToken"] not in text
    assert body["refreshToken"] not in text
    assert integration["authData"] == {
        "accessToken": "[REDACTED]",
        "refreshToken": "[REDACTED]",
        "expiresAt": integration["authData"]["expiresAt"],
        "scope": "drive.readonly",
    }
    stored = db["cloudIntegrations"].find_one({"_id": integration["id"]})
    sealed = stored["authData"]["accessToken"]
    assert sealed != body["accessToken"]
    binding = integration_binding(tenant["_id"], integration["id"], "authData.accessToken")
    assert ring.decrypt(sealed, binding) == body["accessToken"]

    shown = client.get(response.headers["Location"], headers=headers)
    assert shown.get_json() == integration
    again = client.post("/v1/integrations", json={**body, "id": integration["id"]}, headers=headers)
    assert_problem(again, 409, "conflict")


def test_integration_registration_errors(
    client: FlaskClient, db: Database, ring: Any, admin_headers: dict
) -> None:
    factories.provider(db, ring)
    tenant, headers = tenant_with_key(db)
    other = factories.tenant(db)
    assert_problem(client.post("/v1/integrations", json=integration_body(other["_id"]), headers=headers), 404)
    missing = integration_body("ten-missing")
    assert_problem(client.post("/v1/integrations", json=missing, headers=admin_headers), 404)
    naive = integration_body(tenant["_id"], expiresAt="2030-01-01T00:00:00")
    assert (
        assert_problem(client.post("/v1/integrations", json=naive, headers=headers), 422)["errors"][0][
            "pointer"
        ]
        == "/expiresAt"
    )
    odd = integration_body(tenant["_id"], userInfo={"$set": {"a": 1}})
    assert_problem(client.post("/v1/integrations", json=odd, headers=headers), 422)
    big = integration_body(tenant["_id"], userInfo={"n": 2**70})
    assert_problem(client.post("/v1/integrations", json=big, headers=headers), 422)
    no_project = integration_body(tenant["_id"], projectIds=["prj-missing"])
    assert_problem(client.post("/v1/integrations", json=no_project, headers=headers), 404)


def test_listing_integrations_is_tenant_scoped(
    client: FlaskClient, db: Database, ring: Any, admin_headers: dict
) -> None:
    tenant, headers = tenant_with_key(db)
    mine = sorted(factories.integration(db, ring, tenant["_id"])["_id"] for _ in range(3))
    other = factories.tenant(db)
    theirs = factories.integration(db, ring, other["_id"])["_id"]

    page = client.get("/v1/integrations?limit=2", headers=headers).get_json()
    assert [i["id"] for i in page["items"]] == mine[:2]
    rest = client.get(f"/v1/integrations?limit=2&cursor={page['nextCursor']}", headers=headers).get_json()
    assert [i["id"] for i in rest["items"]] == mine[2:]
    assert rest["nextCursor"] is None
    for item in page["items"]:
        assert item["authData"]["accessToken"] == "[REDACTED]"
        assert item["health"]["status"] == "unknown"
        assert item["authData"]["expiresAt"]

    by_admin = client.get(f"/v1/integrations?tenantId={other['_id']}", headers=admin_headers).get_json()
    assert [i["id"] for i in by_admin["items"]] == [theirs]
    assert client.get("/v1/integrations?health=healthy", headers=headers).get_json()["items"] == []
    assert_problem(client.get(f"/v1/integrations?tenantId={other['_id']}", headers=headers), 404)


def test_deleting_an_integration(client: FlaskClient, db: Database, ring: Any) -> None:
    tenant, headers = tenant_with_key(db)
    integration = factories.integration(db, ring, tenant["_id"])
    file = factories.virtual_file(db, integration, "/a.txt")
    response = client.delete(f"/v1/integrations/{integration['_id']}", headers=headers)
    assert response.status_code == 204
    assert response.get_data() == b""
    assert db["cloudIntegrations"].find_one({"_id": integration["_id"]}) is None
    assert db["virtualFiles"].find_one({"_id": file["_id"]})["deletedAt"] is not None
    assert_problem(client.get(f"/v1/integrations/{integration['_id']}", headers=headers), 404)
    assert_problem(client.delete(f"/v1/integrations/{integration['_id']}", headers=headers), 404)


def test_admin_deletes_any_integration(
    client: FlaskClient, db: Database, ring: Any, admin_headers: dict
) -> None:
    integration = factories.integration(db, ring, factories.tenant(db)["_id"])
    assert client.delete(f"/v1/integrations/{integration['_id']}", headers=admin_headers).status_code == 204


def _paths(client: FlaskClient, url: str, headers: dict) -> list[str]:
    paths, cursor = [], None
    while True:
        response = client.get(url + (f"&cursor={cursor}" if cursor else ""), headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        page = response.get_json()
        paths += [item["path"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            return paths


def test_files_list_by_folder_in_path_order(client: FlaskClient, db: Database, ring: Any) -> None:
    tenant, headers = tenant_with_key(db)
    integration = factories.integration(db, ring, tenant["_id"])
    other = factories.integration(db, ring, tenant["_id"])
    for path in (
        "/Docs/b.txt",
        "/Docs/a.txt",
        "/Docs/Sub/c.txt",
        "/Docsy/x.txt",
        "/Photos/p.jpg",
        "/root.txt",
    ):
        factories.virtual_file(db, integration, path)
    factories.virtual_file(db, integration, "/Docs/gone.txt", deletedAt=datetime.now(UTC))
    factories.virtual_file(db, other, "/Docs/elsewhere.txt")
    base = f"/v1/integrations/{integration['_id']}/files"

    assert _paths(client, f"{base}?path=/Docs&limit=1", headers) == [
        "/Docs/Sub/c.txt",
        "/Docs/a.txt",
        "/Docs/b.txt",
    ]
    assert _paths(client, f"{base}?path=/Docs/&includeDeleted=true", headers) == [
        "/Docs/Sub/c.txt",
        "/Docs/a.txt",
        "/Docs/b.txt",
        "/Docs/gone.txt",
    ]
    assert len(_paths(client, f"{base}?path=/&limit=2", headers)) == 6
    first = client.get(f"{base}?path=/Photos", headers=headers).get_json()["items"][0]
    assert (first["name"], first["integrationId"], first["syncStatus"]["status"]) == (
        "p.jpg",
        integration["_id"],
        "synced",
    )
    assert_problem(client.get(f"{base}?limit=0", headers=headers), 422)
    assert_problem(client.get(f"{base}?cursor=%7B%7D", headers=headers), 400, "invalid-cursor")


def test_usage_reads_the_daily_rollups(client: FlaskClient, db: Database) -> None:
    tenant, headers = tenant_with_key(db)
    for n in range(3):
        factories.usage_day(
            db,
            tenant["_id"],
            date(2026, 1, 1) + timedelta(days=n),
            apiRequests=10 * n,
            providerRequests=n,
            filesSynced=1,
            storageBytes=100 + n,
            jobs={"integration_sync_files": {"succeeded": 2, "failed": n}},
        )
    url = f"/v1/tenants/{tenant['_id']}/usage"
    usage = client.get(f"{url}?from=2026-01-02&to=2026-01-31", headers=headers).get_json()
    assert (usage["tenantId"], usage["from"], usage["to"]) == (tenant["_id"], "2026-01-02", "2026-01-31")
    assert [day["day"] for day in usage["days"]] == ["2026-01-02", "2026-01-03"]
    assert usage["days"][1]["storageBytes"] == 102
    assert usage["totals"] == {
        "jobs": {"integration_sync_files": {"succeeded": 4, "failed": 3}},
        "apiRequests": 30,
        "providerRequests": 3,
        "filesSynced": 2,
    }
    today = datetime.now(UTC).date()
    recent = client.get(url, headers=headers).get_json()
    assert (recent["from"], recent["to"]) == ((today - timedelta(days=29)).isoformat(), today.isoformat())


@pytest.mark.parametrize(
    "query",
    ["from=2026-02-01&to=2026-01-01", "from=2025-01-01&to=2026-01-02", "from=2026-13-01", "to=soon", "day=1"],
)
def test_bad_usage_ranges_are_422(client: FlaskClient, db: Database, query: str) -> None:
    tenant, headers = tenant_with_key(db)
    assert_problem(client.get(f"/v1/tenants/{tenant['_id']}/usage?{query}", headers=headers), 422)


def test_usage_range_may_span_366_days(client: FlaskClient, db: Database) -> None:
    tenant, headers = tenant_with_key(db)
    response = client.get(f"/v1/tenants/{tenant['_id']}/usage?from=2024-01-01&to=2024-12-31", headers=headers)
    assert response.status_code == 200
