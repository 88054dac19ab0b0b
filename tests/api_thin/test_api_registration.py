"""Registration (tenants, providers, integrations) and the read endpoints for integrations, files
and usage, in seed 000's shapes: ids are 24-hex strings, stored as ObjectIds."""

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import factories
import pytest
from api_support import assert_problem, tenant_with_key
from bson import ObjectId
from flask.testing import FlaskClient
from pymongo.database import Database

from mwap.crypto import integration_binding, provider_binding
from mwap.ids import HEX_PATTERN as HEX


def is_hex_id(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(HEX, value) is not None


def integration_body(tenant_id: Any, **fields: Any) -> dict[str, Any]:
    return {
        "tenantId": str(tenant_id),
        "providerSlug": "google-drive",
        "authData": {
            "accessToken": "secret-access-" + factories.uid("t"),
            "refreshToken": "secret-refresh-" + factories.uid("t"),
            "expiresAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            "scope": ["drive.readonly"],
        },
        "userInfo": {"email": "a@example.com", "name": "A User", "providerId": factories.uid("acct")},
        **fields,
    }


def tenant_body(**fields: Any) -> dict[str, Any]:
    return {
        "name": factories.uid("Acme"),
        "ownerId": factories.uid("auth0|owner"),
        "description": "The Acme tenant",
        "settings": {
            "allowPublicProjects": True,
            "maxProjects": 25,
            "retentionDays": 30,
            "features": {"cloudIntegrations": True, "advancedSecurity": True, "customBranding": False},
        },
        "subscription": {
            "plan": "pro",
            "status": "active",
            "expiresAt": "2030-01-01T00:00:00Z",
            "features": ["sso"],
        },
        **fields,
    }


def test_admin_registers_a_tenant_with_seed_fields(
    client: FlaskClient, db: Database, admin_headers: dict
) -> None:
    body = tenant_body()
    response = client.post("/v1/tenants", json=body, headers=admin_headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    tenant = response.get_json()
    assert is_hex_id(tenant["id"])
    assert response.headers["Location"] == f"/v1/tenants/{tenant['id']}"
    assert "status" not in tenant
    assert (tenant["name"], tenant["ownerId"], tenant["description"], tenant["archived"]) == (
        body["name"],
        body["ownerId"],
        "The Acme tenant",
        False,
    )
    assert tenant["settings"] == body["settings"]
    assert tenant["subscription"]["plan"] == "pro"
    assert tenant["subscription"]["features"] == ["sso"]
    assert datetime.fromisoformat(tenant["subscription"]["expiresAt"]) == datetime(2030, 1, 1, tzinfo=UTC)
    assert tenant["metadata"]["totalProjects"] == 0
    assert client.get(response.headers["Location"], headers=admin_headers).get_json() == tenant

    stored = db["tenants"].find_one({"_id": ObjectId(tenant["id"])})
    assert stored is not None
    assert (stored["ownerId"], stored["archived"]) == (body["ownerId"], False)
    assert "status" not in stored
    assert db["auditLogs"].count_documents({"action": "tenant.created", "target.id": tenant["id"]}) == 1

    # The owner is unique: a second tenant of the same owner is a 409 and writes nothing.
    tenants_before = db["tenants"].count_documents({})
    audits_before = db["auditLogs"].count_documents({"action": "tenant.created"})
    twin = tenant_body(ownerId=body["ownerId"])
    conflict = assert_problem(client.post("/v1/tenants", json=twin, headers=admin_headers), 409, "conflict")
    assert conflict["title"] == "Tenant exists"
    assert db["tenants"].count_documents({}) == tenants_before
    assert db["tenants"].find_one({"name": twin["name"]}) is None
    assert db["auditLogs"].count_documents({"action": "tenant.created"}) == audits_before


def test_tenant_defaults_and_invalid_tenant_bodies(client: FlaskClient, admin_headers: dict) -> None:
    minimal = {"name": factories.uid("Min"), "ownerId": factories.uid("auth0|min")}
    response = client.post("/v1/tenants", json=minimal, headers=admin_headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    tenant = response.get_json()
    assert tenant["settings"] == {
        "allowPublicProjects": False,
        "maxProjects": 10,
        "retentionDays": 90,
        "features": {"cloudIntegrations": True, "advancedSecurity": False, "customBranding": False},
    }
    assert tenant.get("subscription") is None
    for bad, pointer in [
        ({"name": "X"}, "/ownerId"),
        ({**minimal, "ownerId": factories.uid("o"), "id": "x"}, "/id"),
        ({**minimal, "ownerId": factories.uid("o"), "status": "active"}, "/status"),
        ({**minimal, "ownerId": factories.uid("o"), "settings": {"retentionDays": 30, "$where": 1}}, None),
        ({**minimal, "ownerId": factories.uid("o"), "settings": {"maxProjects": 0}}, "/settings/maxProjects"),
        ({**minimal, "ownerId": factories.uid("o"), "subscription": {"plan": "gold"}}, None),
    ]:
        problem = assert_problem(client.post("/v1/tenants", json=bad, headers=admin_headers), 422)
        if pointer is not None:
            assert pointer in [e.get("pointer") for e in problem["errors"]], problem


def test_registration_needs_the_admin_key(client: FlaskClient, db: Database) -> None:
    _, headers = tenant_with_key(db)
    assert_problem(client.post("/v1/tenants", json=tenant_body(), headers=headers), 403, "forbidden")
    assert_problem(client.post("/v1/providers", json={}, headers=headers), 403, "forbidden")


def provider_body(**fields: Any) -> dict[str, Any]:
    return {
        "slug": "onedrive",
        "name": factories.uid("OneDrive"),
        "authUrl": "https://login.example/authorize",
        "tokenUrl": "https://login.example/token",
        "clientId": "client",
        "clientSecret": "very-secret-value",
        "scopes": ["Files.Read"],
        "apiBaseUrl": "https://graph.example/v1.0",
        **fields,
    }


@pytest.fixture
def free_onedrive(db: Database) -> Any:
    """The onedrive slug freed for the test; the session's onedrive provider is put back after."""
    slugs = {"slug": {"$in": ["onedrive", "onedrive-old"]}}
    saved = db["cloudProviders"].find_one({"slug": "onedrive"})
    db["cloudProviders"].delete_many(slugs)
    yield
    db["cloudProviders"].delete_many(slugs)
    if saved is not None:
        db["cloudProviders"].insert_one(saved)


def test_admin_registers_a_provider_whose_secret_never_comes_back(
    client: FlaskClient, db: Database, ring: Any, admin_headers: dict, free_onedrive: None
) -> None:
    body = provider_body()
    response = client.post("/v1/providers", json=body, headers=admin_headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    provider = response.get_json()
    assert is_hex_id(provider["id"])
    assert (provider["slug"], provider["name"], provider["clientSecret"]) == (
        "onedrive",
        body["name"],
        "[REDACTED]",
    )
    assert (provider["authUrl"], provider["tokenUrl"], provider["scopes"]) == (
        "https://login.example/authorize",
        "https://login.example/token",
        ["Files.Read"],
    )
    assert (provider["grantType"], provider["tokenMethod"]) == ("authorization_code", "POST")
    assert provider["metadata"] == {"apiBaseUrl": "https://graph.example/v1.0"}
    assert "status" not in provider
    assert "very-secret-value" not in response.get_data(as_text=True)
    stored = db["cloudProviders"].find_one({"_id": ObjectId(provider["id"])})
    assert stored["slug"] == "onedrive"
    assert stored["clientSecret"] != "very-secret-value"
    assert ring.decrypt(stored["clientSecret"], provider_binding(stored["_id"])) == "very-secret-value"
    assert stored["metadata"] == {"apiBaseUrl": "https://graph.example/v1.0"}

    # The slug is unique, and so is the name: both are 409 and write nothing.
    before = db["cloudProviders"].count_documents({})
    same_slug = provider_body()
    assert_problem(client.post("/v1/providers", json=same_slug, headers=admin_headers), 409, "conflict")
    assert db["cloudProviders"].find_one({"name": same_slug["name"]}) is None
    # Free the slug (the registered provider keeps its name): the name alone collides.
    db["cloudProviders"].update_one({"_id": stored["_id"]}, {"$set": {"slug": "onedrive-old"}})
    same_name = provider_body(name=body["name"], clientSecret="another-secret")
    assert_problem(client.post("/v1/providers", json=same_name, headers=admin_headers), 409, "conflict")
    assert db["cloudProviders"].find_one({"slug": "onedrive"}) is None
    assert db["cloudProviders"].count_documents({}) == before

    assert_problem(client.post("/v1/providers", json={**body, "slug": "icloud"}, headers=admin_headers), 422)
    legacy = {**body, "metadata": {"apiBaseUrl": "https://x.example"}}
    assert_problem(client.post("/v1/providers", json=legacy, headers=admin_headers), 422)


def test_tenant_key_registers_an_integration_for_itself(client: FlaskClient, db: Database, ring: Any) -> None:
    provider = factories.provider(db, ring)
    tenant, headers = tenant_with_key(db)
    body = integration_body(tenant["_id"])
    response = client.post("/v1/integrations", json=body, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    integration = response.get_json()
    assert is_hex_id(integration["id"])
    assert response.headers["Location"] == f"/v1/integrations/{integration['id']}"
    text = response.get_data(as_text=True)
    assert body["authData"]["accessToken"] not in text
    assert body["authData"]["refreshToken"] not in text
    assert (
        integration["tenantId"],
        integration["providerId"],
        integration["providerSlug"],
        integration["status"],
    ) == (str(tenant["_id"]), str(provider["_id"]), "google-drive", "active")
    assert "name" not in integration
    assert integration["authData"] == {
        "accessToken": "[REDACTED]",
        "refreshToken": "[REDACTED]",
        "expiresAt": integration["authData"]["expiresAt"],
        "scope": ["drive.readonly"],
    }
    expires = datetime.fromisoformat(body["authData"]["expiresAt"])
    assert abs(datetime.fromisoformat(integration["authData"]["expiresAt"]) - expires) < timedelta(seconds=1)
    assert integration["userInfo"] == body["userInfo"]
    assert integration["health"]["status"] == "healthy"
    assert integration["usage"]["totalRequests"] == 0
    assert (integration["lastSyncAt"], integration["statusReason"]) == (None, None)

    stored = db["cloudIntegrations"].find_one({"_id": ObjectId(integration["id"])})
    assert (stored["tenantId"], stored["providerId"]) == (tenant["_id"], provider["_id"])
    assert "providerSlug" not in stored
    assert "name" not in stored
    assert stored["authData"]["scope"] == ["drive.readonly"]
    sealed = stored["authData"]["accessToken"]
    assert sealed != body["authData"]["accessToken"]
    binding = integration_binding(tenant["_id"], stored["_id"], "authData.accessToken")
    assert ring.decrypt(sealed, binding) == body["authData"]["accessToken"]

    shown = client.get(response.headers["Location"], headers=headers)
    assert shown.get_json() == integration

    # One integration per (tenant, provider): by slug or by id, a second is a 409 and writes nothing.
    before = db["cloudIntegrations"].count_documents({"tenantId": tenant["_id"]})
    again = client.post("/v1/integrations", json=body, headers=headers)
    assert_problem(again, 409, "conflict")
    by_id = integration_body(tenant["_id"], providerId=str(provider["_id"]))
    del by_id["providerSlug"]
    assert_problem(client.post("/v1/integrations", json=by_id, headers=headers), 409, "conflict")
    assert db["cloudIntegrations"].count_documents({"tenantId": tenant["_id"]}) == before == 1


def test_integration_with_projects_links_them(client: FlaskClient, db: Database, ring: Any) -> None:
    factories.provider(db, ring, "dropbox")
    tenant, headers = tenant_with_key(db)
    projects = [factories.project(db, tenant["_id"]) for _ in range(2)]
    body = integration_body(
        tenant["_id"],
        providerSlug="dropbox",
        projectIds=[str(p["_id"]) for p in projects],
        createdBy="auth0|someone",
    )
    response = client.post("/v1/integrations", json=body, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    integration = response.get_json()
    assert integration["createdBy"] == "auth0|someone"
    for project in projects:
        links = db["projects"].find_one({"_id": project["_id"]})["integrations"]
        assert links == [{"integrationId": ObjectId(integration["id"]), "enabled": True}]


def test_integration_registration_errors(
    client: FlaskClient, db: Database, ring: Any, admin_headers: dict
) -> None:
    factories.provider(db, ring)
    tenant, headers = tenant_with_key(db)
    other = factories.tenant(db)

    def post(body: dict[str, Any], caller: dict[str, str] = headers) -> Any:
        return client.post("/v1/integrations", json=body, headers=caller)

    assert_problem(post(integration_body(other["_id"])), 404)  # another tenant's
    assert_problem(post(integration_body(ObjectId()), admin_headers), 404)  # no such tenant
    archived = factories.tenant(db, archived=True)
    assert_problem(post(integration_body(archived["_id"]), admin_headers), 404)
    unknown_provider = integration_body(tenant["_id"], providerId=str(ObjectId()))
    del unknown_provider["providerSlug"]
    assert_problem(post(unknown_provider), 404)
    both = integration_body(tenant["_id"], providerId=str(ObjectId()))
    assert_problem(post(both), 422)
    neither = integration_body(tenant["_id"])
    del neither["providerSlug"]
    assert_problem(post(neither), 422)
    assert_problem(post(integration_body("ten-missing"), admin_headers), 422)  # not an id at all

    def auth(**fields: Any) -> dict[str, Any]:
        body = integration_body(tenant["_id"])
        return {**body, "authData": {**body["authData"], **fields}}

    naive = assert_problem(post(auth(expiresAt="2030-01-01T00:00:00")), 422)
    assert naive["errors"][0]["pointer"] == "/authData/expiresAt"
    assert assert_problem(post(auth(scope="drive.readonly")), 422)["errors"][0]["pointer"] == (
        "/authData/scope"
    )
    assert_problem(post(auth(accessToken="")), 422)
    assert_problem(post(integration_body(tenant["_id"], userInfo={"$set": {"a": 1}})), 422)
    assert_problem(post(integration_body(tenant["_id"], userInfo={"email": "a@b", "providerId": 2**70})), 422)
    assert_problem(post(integration_body(tenant["_id"], status="broken")), 422)
    assert_problem(post(integration_body(tenant["_id"], name="legacy")), 422)
    assert_problem(post(integration_body(tenant["_id"], projectIds=["prj-missing"])), 422)
    assert_problem(post(integration_body(tenant["_id"], projectIds=[str(ObjectId())])), 404)
    foreign_project = factories.project(db, other["_id"])
    assert_problem(post(integration_body(tenant["_id"], projectIds=[str(foreign_project["_id"])])), 404)
    assert db["cloudIntegrations"].count_documents({"tenantId": tenant["_id"]}) == 0


def test_listing_integrations_is_tenant_scoped(
    client: FlaskClient, db: Database, ring: Any, admin_headers: dict
) -> None:
    tenant, headers = tenant_with_key(db)
    docs = [
        factories.integration(db, ring, tenant["_id"], slug=slug)
        for slug in ("google-drive", "dropbox", "onedrive")
    ]
    mine = [str(i) for i in sorted(doc["_id"] for doc in docs)]
    other = factories.tenant(db)
    theirs = str(factories.integration(db, ring, other["_id"])["_id"])

    page = client.get("/v1/integrations?limit=2", headers=headers).get_json()
    assert [i["id"] for i in page["items"]] == mine[:2]
    rest = client.get(f"/v1/integrations?limit=2&cursor={page['nextCursor']}", headers=headers).get_json()
    assert [i["id"] for i in rest["items"]] == mine[2:]
    assert rest["nextCursor"] is None
    for item in page["items"] + rest["items"]:
        assert is_hex_id(item["id"])
        assert item["tenantId"] == str(tenant["_id"])
        assert item["authData"]["accessToken"] == "[REDACTED]"
        assert item["health"]["status"] == "healthy"
        assert item["authData"]["expiresAt"]
        assert "name" not in item
    assert {item["providerSlug"] for item in page["items"] + rest["items"]} == {
        "google-drive",
        "dropbox",
        "onedrive",
    }

    by_admin = client.get(f"/v1/integrations?tenantId={other['_id']}", headers=admin_headers).get_json()
    assert [i["id"] for i in by_admin["items"]] == [theirs]
    db["cloudIntegrations"].update_one({"_id": docs[1]["_id"]}, {"$set": {"health.status": "degraded"}})
    db["cloudIntegrations"].update_one({"_id": docs[2]["_id"]}, {"$set": {"status": "error"}})
    listed = client.get("/v1/integrations?health=degraded", headers=headers).get_json()["items"]
    assert [i["id"] for i in listed] == [str(docs[1]["_id"])]
    listed = client.get("/v1/integrations?status=error", headers=headers).get_json()["items"]
    assert [i["id"] for i in listed] == [str(docs[2]["_id"])]
    listed = client.get(f"/v1/integrations?providerId={docs[0]['providerId']}", headers=headers)
    assert [i["id"] for i in listed.get_json()["items"]] == [str(docs[0]["_id"])]
    assert_problem(client.get("/v1/integrations?providerSlug=dropbox", headers=headers), 422)
    assert_problem(client.get("/v1/integrations?tenantId=not-an-id", headers=admin_headers), 422)
    assert_problem(client.get(f"/v1/integrations?tenantId={other['_id']}", headers=headers), 404)


def test_deleting_an_integration(client: FlaskClient, db: Database, ring: Any) -> None:
    tenant, headers = tenant_with_key(db)
    project = factories.project(db, tenant["_id"])
    integration = factories.integration(db, ring, tenant["_id"], project_ids=[project["_id"]])
    kept = factories.integration(db, ring, tenant["_id"], slug="dropbox", project_ids=[project["_id"]])
    files = [factories.virtual_file(db, integration, p) for p in ("/a.txt", "/b/c.txt")]
    other_file = factories.virtual_file(db, kept, "/a.txt")
    response = client.delete(f"/v1/integrations/{integration['_id']}", headers=headers)
    assert response.status_code == 204
    assert response.get_data() == b""
    assert db["cloudIntegrations"].find_one({"_id": integration["_id"]}) is None
    # Its files go with it (no soft delete); the other integration's stay.
    assert db["virtualFiles"].count_documents({"_id": {"$in": [f["_id"] for f in files]}}) == 0
    assert db["virtualFiles"].find_one({"_id": other_file["_id"]}) is not None
    links = db["projects"].find_one({"_id": project["_id"]})["integrations"]
    assert [link["integrationId"] for link in links] == [kept["_id"]]
    assert (
        db["auditLogs"].count_documents(
            {"action": "integration.deleted", "target.id": str(integration["_id"])}
        )
        == 1
    )
    assert_problem(client.get(f"/v1/integrations/{integration['_id']}", headers=headers), 404)
    assert_problem(client.delete(f"/v1/integrations/{integration['_id']}", headers=headers), 404)


def test_admin_deletes_any_integration(
    client: FlaskClient, db: Database, ring: Any, admin_headers: dict
) -> None:
    integration = factories.integration(db, ring, factories.tenant(db)["_id"])
    assert client.delete(f"/v1/integrations/{integration['_id']}", headers=admin_headers).status_code == 204
    assert db["cloudIntegrations"].find_one({"_id": integration["_id"]}) is None


@pytest.mark.parametrize(
    ("method", "path", "title"),
    [
        ("GET", "/v1/integrations/not-an-id", "No such integration"),
        ("DELETE", "/v1/integrations/not-an-id", "No such integration"),
        ("GET", "/v1/integrations/not-an-id/files", "No such integration"),
        ("POST", "/v1/integrations/not-an-id/sync", "No such integration"),
        ("GET", "/v1/integrations/6b1028139a8f09ca7861d8c", "No such integration"),  # 23 hex digits
        ("GET", "/v1/tenants/xyz", "No such tenant"),
        ("GET", "/v1/tenants/xyz/usage", "No such tenant"),
        ("POST", "/v1/tenants/xyz/aggregate", "No such tenant"),
        ("GET", "/v1/jobs/xyz", "No such job"),
    ],
)
def test_a_malformed_id_in_a_path_is_404(
    client: FlaskClient, admin_headers: dict, method: str, path: str, title: str
) -> None:
    body = assert_problem(client.open(path, method=method, headers=admin_headers), 404, "not-found")
    assert body["title"] == title


def test_an_unknown_valid_id_is_404(client: FlaskClient, db: Database, admin_headers: dict) -> None:
    tenant, headers = tenant_with_key(db)
    unknown = str(ObjectId())
    for caller in (admin_headers, headers):
        for path, title in [
            (f"/v1/integrations/{unknown}", "No such integration"),
            (f"/v1/integrations/{unknown}/files", "No such integration"),
            (f"/v1/tenants/{unknown}", "No such tenant"),
            (f"/v1/tenants/{unknown}/usage", "No such tenant"),
            (f"/v1/jobs/{unknown}", "No such job"),
        ]:
            assert assert_problem(client.get(path, headers=caller), 404, "not-found")["title"] == title
        assert_problem(client.delete(f"/v1/integrations/{unknown}", headers=caller), 404, "not-found")
    # Upper-case hex names the same document.
    shown = client.get(f"/v1/tenants/{str(tenant['_id']).upper()}", headers=admin_headers)
    assert shown.status_code == 200, shown.get_data(as_text=True)
    assert shown.get_json()["id"] == str(tenant["_id"])
    own = client.get(f"/v1/tenants/{tenant['_id']}", headers=headers).get_json()
    assert (own["id"], own["ownerId"]) == (str(tenant["_id"]), tenant["ownerId"])


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


FILE_FIELDS = {
    "id",
    "projectId",
    "integrationId",
    "providerId",
    "providerFileId",
    "name",
    "path",
    "type",
    "size",
    "modifiedTime",
    "metadata",
    "syncStatus",
    "createdAt",
    "updatedAt",
}


def test_files_list_by_folder_in_path_order(client: FlaskClient, db: Database, ring: Any) -> None:
    tenant, headers = tenant_with_key(db)
    integration = factories.integration(db, ring, tenant["_id"])
    other = factories.integration(db, ring, tenant["_id"], slug="dropbox")
    project = factories.project(db, tenant["_id"])
    for path in (
        "/Docs/b.txt",
        "/Docs/a.txt",
        "/Docs/Sub/c.txt",
        "/Docsy/x.txt",
        "/root.txt",
    ):
        factories.virtual_file(db, integration, path)
    photo = factories.virtual_file(
        db,
        integration,
        "/Photos/p.jpg",
        projectId=project["_id"],
        type="image/jpeg",
        metadata={"downloadUrl": "https://dl.example/p", "permissions": ["read"], "checksum": "abc"},
        mwapTasks={"pathLower": "/photos/p.jpg", "isFolder": False, "docHash": "h", "seenRun": "r"},
    )
    factories.virtual_file(db, other, "/Docs/elsewhere.txt")
    base = f"/v1/integrations/{integration['_id']}/files"

    assert _paths(client, f"{base}?path=/Docs&limit=1", headers) == [
        "/Docs/Sub/c.txt",
        "/Docs/a.txt",
        "/Docs/b.txt",
    ]
    assert _paths(client, f"{base}?path=/Docs/", headers) == ["/Docs/Sub/c.txt", "/Docs/a.txt", "/Docs/b.txt"]
    assert len(_paths(client, f"{base}?path=/&limit=2", headers)) == 6
    [first] = client.get(f"{base}?path=/Photos", headers=headers).get_json()["items"]
    assert set(first) == FILE_FIELDS  # seed fields only: no tenantId, mwapTasks, deletedAt, mimeType
    assert (first["id"], first["name"], first["type"], first["syncStatus"]["status"]) == (
        str(photo["_id"]),
        "p.jpg",
        "image/jpeg",
        "synced",
    )
    assert (first["integrationId"], first["projectId"], first["providerId"]) == (
        str(integration["_id"]),
        str(project["_id"]),
        str(integration["providerId"]),
    )
    assert first["metadata"] == {
        "downloadUrl": "https://dl.example/p",
        "thumbnailUrl": None,
        "permissions": ["read"],
        "checksum": "abc",
    }
    # Deleted files are gone from the store, so there is nothing to include.
    assert_problem(client.get(f"{base}?includeDeleted=true", headers=headers), 422)
    db["virtualFiles"].delete_one({"_id": photo["_id"]})
    assert client.get(f"{base}?path=/Photos", headers=headers).get_json()["items"] == []
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
    assert (usage["tenantId"], usage["from"], usage["to"]) == (str(tenant["_id"]), "2026-01-02", "2026-01-31")
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
