"""What guards every request: rate limits, Idempotency-Key, security headers, CORS, answers when
Redis or MongoDB is down, and hostile input that must never produce a 500."""

import threading
from datetime import UTC, datetime
from typing import Any

import factories
import pytest
from api_support import (
    app_with,
    assert_problem,
    tenant_with_key,
)
from bson import ObjectId
from flask import Flask
from flask.testing import FlaskClient
from pymongo.database import Database

from api_thin import context
from mwap import usage
from mwap.connections import redis_client
from mwap.settings import Settings
from ops import processes

# --- rate limits -------------------------------------------------------------------------------


def test_a_key_over_its_budget_gets_429_with_retry_after(settings: Settings, db: Database) -> None:
    client = app_with(settings, rate_limit_per_minute=6, rate_limit_burst=2).test_client()
    tenant, headers = tenant_with_key(db)
    _, other = tenant_with_key(db)
    assert client.get("/v1/jobs", headers=headers).status_code == 200
    assert client.get("/v1/jobs", headers=headers).status_code == 200
    response = client.get("/v1/jobs", headers=headers)
    body = assert_problem(response, 429, "rate-limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 10
    assert "6 requests a minute" in body["detail"]
    assert client.get("/v1/jobs", headers=other).status_code == 200  # every key has its own bucket
    # Allowed requests count toward the tenant's daily API usage; the refused one does not.
    counter = usage.key(usage.API_REQUESTS, tenant["_id"], datetime.now(UTC).date())
    assert int(redis_client(settings).get(counter)) == 2


def test_the_admin_key_is_exempt_unless_given_a_budget(settings: Settings, admin_headers: dict) -> None:
    client = app_with(settings, rate_limit_per_minute=6, rate_limit_burst=1).test_client()
    assert all(client.get("/v1/jobs?limit=1", headers=admin_headers).status_code == 200 for _ in range(5))
    redis_client(settings).delete("mwap:ratelimit:admin")
    limited = app_with(settings, admin_rate_limit_per_minute=6, rate_limit_burst=1).test_client()
    assert limited.get("/v1/jobs?limit=1", headers=admin_headers).status_code == 200
    assert_problem(limited.get("/v1/jobs?limit=1", headers=admin_headers), 429, "rate-limited")
    redis_client(settings).delete("mwap:ratelimit:admin")


# --- Idempotency-Key ---------------------------------------------------------------------------


def test_a_replay_returns_the_first_answer_and_enqueues_nothing(api: FlaskClient, db: Database) -> None:
    tenant, headers = tenant_with_key(db)
    key = {**headers, "Idempotency-Key": factories.uid("idem")}
    body = {"type": "tenant.aggregate_usage", "params": {"from": "2026-01-01", "to": "2026-01-02"}}
    first = api.post("/v1/jobs", json=body, headers=key)
    assert first.status_code == 202
    replay = api.post("/v1/jobs", json=body, headers=key)
    assert (replay.status_code, replay.get_data(), replay.headers["Location"]) == (
        202,
        first.get_data(),
        first.headers["Location"],
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert db["jobs"].count_documents({"tenantId": tenant["_id"]}) == 1
    assert db["jobs"].find_one({"tenantId": tenant["_id"]})["idempotencyKey"] == key["Idempotency-Key"]

    changed = api.post("/v1/jobs", json={**body, "params": {}}, headers=key)
    assert_problem(changed, 409, "idempotency-key-reused")
    elsewhere = api.post(f"/v1/tenants/{tenant['_id']}/retention", headers=key)
    assert_problem(elsewhere, 409, "idempotency-key-reused")


def test_keys_are_scoped_per_tenant(api: FlaskClient, db: Database) -> None:
    key = factories.uid("shared")
    body = {"type": "tenant.apply_retention"}
    for _ in range(2):
        tenant, headers = tenant_with_key(db)
        response = api.post("/v1/jobs", json=body, headers={**headers, "Idempotency-Key": key})
        assert response.status_code == 202
        assert response.get_json()["tenantId"] == str(tenant["_id"])


def test_a_refused_request_leaves_the_key_free(api: FlaskClient, db: Database) -> None:
    _, headers = tenant_with_key(db)
    key = {**headers, "Idempotency-Key": factories.uid("idem")}
    assert_problem(api.post("/v1/jobs", json={"type": "tenant.nope"}, headers=key), 422)
    assert api.post("/v1/jobs", json={"type": "tenant.apply_retention"}, headers=key).status_code == 202


def test_a_duplicate_while_the_first_is_in_flight_is_409(
    api: FlaskClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, headers = tenant_with_key(db)
    key = {**headers, "Idempotency-Key": factories.uid("idem")}
    entered, release = threading.Event(), threading.Event()
    publisher = context.publish

    def slow_publisher() -> Any:
        real = publisher()

        def slow_publish(*args: Any, **kwargs: Any) -> None:
            entered.set()
            assert release.wait(10)
            real(*args, **kwargs)

        return slow_publish

    monkeypatch.setattr(context, "publish", slow_publisher)
    results: list[Any] = []
    body = {"type": "tenant.apply_retention"}
    first = threading.Thread(target=lambda: results.append(api.post("/v1/jobs", json=body, headers=key)))
    first.start()
    assert entered.wait(10)
    response = api.post("/v1/jobs", json=body, headers=key)
    assert_problem(response, 409, "idempotency-key-in-progress")
    assert response.headers["Retry-After"] == "1"
    release.set()
    first.join(10)
    assert results[0].status_code == 202
    replay = api.post("/v1/jobs", json=body, headers=key)
    assert replay.get_json()["id"] == results[0].get_json()["id"]


@pytest.mark.parametrize("value", ["", "x" * 256, "caf\u00e9", "two words"])
def test_malformed_idempotency_keys_are_400(api: FlaskClient, admin_headers: dict, value: str) -> None:
    headers = {**admin_headers, "Idempotency-Key": value.encode().decode("latin-1")}
    response = api.post("/v1/jobs", json={"type": "system.echo"}, headers=headers)
    assert_problem(response, 400, "invalid-idempotency-key")


# --- headers -----------------------------------------------------------------------------------

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


@pytest.mark.parametrize("path", ["/health", "/openapi.json", "/v1/jobs", "/nope"])
def test_security_headers_on_every_answer(client: FlaskClient, admin_headers: dict, path: str) -> None:
    response = client.get(path, headers=admin_headers if path == "/v1/jobs" else {})
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert ("Cache-Control" in response.headers) == (path == "/v1/jobs")
    assert "Access-Control-Allow-Origin" not in response.headers
    assert response.headers.get("Cache-Control", "no-store") == "no-store"


def test_unauthenticated_answers_to_api_calls_are_not_stored(client: FlaskClient) -> None:
    response = client.get("/v1/jobs", headers={"Authorization": "Bearer wrong-key-000000000000"})
    assert_problem(response, 401)
    assert response.headers["Cache-Control"] == "no-store"


def test_cors_is_off_unless_origins_are_configured(client: FlaskClient, settings: Settings) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    response = client.options("/v1/jobs", headers=preflight)
    assert "Access-Control-Allow-Origin" not in response.headers

    cors = app_with(settings, cors_origins="https://app.example, https://ops.example").test_client()
    allowed = cors.options("/v1/jobs", headers=preflight)
    assert allowed.status_code == 204
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    assert "Idempotency-Key" in allowed.headers["Access-Control-Allow-Headers"]
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    answer = cors.get("/health", headers={"Origin": "https://ops.example"})
    assert answer.headers["Access-Control-Allow-Origin"] == "https://ops.example"
    assert "Origin" in answer.headers["Vary"]
    stranger = cors.options("/v1/jobs", headers={**preflight, "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in stranger.headers
    assert (
        "Access-Control-Allow-Origin"
        not in cors.get("/health", headers={"Origin": "https://evil.example"}).headers
    )


# --- dependencies down -------------------------------------------------------------------------


def test_redis_down_is_503_with_retry_after(settings: Settings, db: Database, admin_headers: dict) -> None:
    client = app_with(
        settings, redis_url=f"redis://127.0.0.1:{processes.free_port()}/0", redis_timeout=0.5
    ).test_client()
    tenant, headers = tenant_with_key(db)
    for response in (
        client.get("/v1/jobs", headers=headers),  # the rate limit needs Redis
        client.post(
            "/v1/jobs",
            json={"type": "tenant.apply_retention", "tenantId": str(tenant["_id"])},
            headers=admin_headers,
        ),
    ):
        assert_problem(response, 503, "unavailable")
        assert response.headers["Retry-After"] == "5"
    assert db["jobs"].count_documents({"tenantId": tenant["_id"]}) == 0
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["redis"].startswith("unavailable")


def test_mongodb_down_is_503_with_retry_after(settings: Settings, admin_headers: dict) -> None:
    url = f"mongodb://127.0.0.1:{processes.free_port()}/?directConnection=true"
    client = app_with(settings, mongo_url=url, mongo_timeout_ms=300).test_client()
    for response in (
        client.get(f"/v1/jobs/{ObjectId()}", headers=admin_headers),
        client.get("/v1/jobs", headers={"Authorization": "Bearer some-tenant-key-0000000000"}),
        client.post("/v1/tenants", json={"name": "X", "ownerId": "auth0|x"}, headers=admin_headers),
    ):
        assert_problem(response, 503, "unavailable")
        assert response.headers["Retry-After"] == "5"


# --- hostile input -----------------------------------------------------------------------------

HOSTILE_BODIES = [
    (b'{"type": {"$gt": ""}}', 422),
    (b'{"type": "system.echo", "params": {"message": {"$ne": null}}}', 422),
    (b'{"type": "system.echo", "params": {"failTimes": 1' + b"0" * 400 + b"}}", 422),
    (b'{"type": "system.echo", "params": {"failTimes": ' + b"9" * 5000 + b"}}", 400),
    (b'{"type": "system.echo", "params": {"sleepSeconds": NaN}}', 400),
    (b'{"type": "system.echo", "params": {"message": "\\ud800"}}', 400),
    (b'{"type": "system.\xff\xfe"}', 400),
    (b"[" * 50 + b"]" * 50, 400),
    (b"[" * 100_000 + b"]" * 100_000, 400),
    (b'{"a":' * 40 + b"1" + b"}" * 40, 400),
    (b"null", 422),
    (b'"system.echo"', 422),
    (b'{"type": "system.echo", "type": "tenant.nope"}', 422),
]


@pytest.mark.parametrize(("raw", "status"), HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
def test_hostile_bodies_are_4xx(client: FlaskClient, admin_headers: dict, raw: bytes, status: int) -> None:
    response = client.post("/v1/jobs", data=raw, content_type="application/json", headers=admin_headers)
    assert_problem(response, status)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/%00",
        "/v1/jobs/$where",
        "/v1/jobs/%ff%fe",
        "/v1/jobs/..%2F..%2Fetc",
        "/v1/jobs/" + "a" * 500,
        "/v1/integrations/%E2%82%AC/files",
        "/v1/tenants/%7B%22%24gt%22%3A%22%22%7D/usage",
        "/v1/integrations/.hidden",
        "/v1/integrations/not-an-id",
        "/v1/tenants/xyz",
        "/v1/jobs/job_0123456789abcdef",  # not a 24-hex id
        "/v1/integrations/0123456789abcdef0123456",  # 23 hex digits
        "/v1/integrations/0123456789abcdef012345678/files",  # 25
    ],
)
def test_odd_ids_in_the_path_are_404(client: FlaskClient, admin_headers: dict, path: str) -> None:
    assert_problem(client.get(path, headers=admin_headers), 404, "not-found")


@pytest.mark.parametrize(
    "query",
    [
        "type=%ff",
        "subject=%00",
        "limit=-1",
        "limit=1e3",
        "createdFrom=99999-01-01",
        "cursor=%ff%ff",
        "&&&=",
        "limit",
    ],
)
def test_malformed_queries_are_4xx(client: FlaskClient, admin_headers: dict, query: str) -> None:
    response = client.get(f"/v1/jobs?{query}", headers=admin_headers)
    assert response.status_code in {400, 422}, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"


def test_odd_authorization_headers_are_401(client: FlaskClient) -> None:
    for value in ["Bearer \u00ff\u00fe", "Bearer " + "k" * 5000, "bearer  ", "Bearer\tx"]:
        assert_problem(client.get("/v1/jobs", headers={"Authorization": value}), 401)


def test_admin_only_operations_with_a_tenant_key_are_403(client: FlaskClient, db: Database) -> None:
    _, headers = tenant_with_key(db)
    assert_problem(client.post("/v1/tenants", json={"name": "X"}, headers=headers), 403, "forbidden")


@pytest.mark.parametrize(
    ("method", "path"), [("PUT", "/v1/jobs"), ("DELETE", "/v1/tenants/x"), ("POST", "/health")]
)
def test_wrong_methods_are_405_with_allow(
    client: FlaskClient, admin_headers: dict, method: str, path: str
) -> None:
    response = client.open(path, method=method, headers=admin_headers)
    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["Allow"]


def test_every_route_is_described(app: Flask, client: FlaskClient) -> None:
    document = client.get("/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearerKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A tenant API key or the admin key.",
    }
    described = {
        (path, method.upper()) for path, operations in document["paths"].items() for method in operations
    }
    served = {
        (rule.rule.replace("<", "{").replace(">", "}"), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and not rule.rule.startswith("/console")
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }
    # The operators' console (/console) is HTML for browsers, not part of the API's description.
    assert described == served
    post_job = document["paths"]["/v1/jobs"]["post"]
    assert set(post_job["responses"]) == {
        "200",
        "202",
        "400",
        "401",
        "403",
        "404",
        "409",
        "413",
        "415",
        "422",
        "429",
        "503",
    }
    assert post_job["responses"]["422"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/ProblemOut"
    }
