"""Health, readiness, authentication and bad input: every error is problem+json, never a 500."""

import pytest
from bson import ObjectId
from flask.testing import FlaskClient


def assert_problem(response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["type"].endswith("/" + slug)
    assert body["title"]
    return body


def test_health_is_ok(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_checks_redis_and_mongo(client: FlaskClient) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"redis": "ok", "mongo": "ok"}


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Basic abc", "Bearer not-a-key-at-all-0000000"]
)
def test_missing_or_wrong_key_is_401(client: FlaskClient, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client.post("/v1/jobs", json={"type": "system.echo"}, headers=headers)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_job_type_is_422_naming_the_field(client: FlaskClient, admin_headers: dict) -> None:
    response = client.post("/v1/jobs", json={"type": "system.nope"}, headers=admin_headers)
    body = assert_problem(response, 422, "unknown-job-type")
    assert body["errors"][0]["pointer"] == "/type"


def test_malformed_json_is_400(client: FlaskClient, admin_headers: dict) -> None:
    response = client.post(
        "/v1/jobs", data=b'{"type": "system.echo",', content_type="application/json", headers=admin_headers
    )
    assert_problem(response, 400, "malformed-json")


def test_missing_body_is_400(client: FlaskClient, admin_headers: dict) -> None:
    response = client.post("/v1/jobs", content_type="application/json", headers=admin_headers)
    assert_problem(response, 400, "missing-body")


def test_wrong_content_type_is_415(client: FlaskClient, admin_headers: dict) -> None:
    response = client.post("/v1/jobs", data="type=system.echo", headers=admin_headers)
    assert_problem(response, 415, "unsupported-media-type")


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"type": "system.echo", "params": {"failTimes": 99}}, None),
        ({"type": "system.echo", "extra": 1}, "/extra"),
        ({"type": {"$gt": ""}}, "/type"),
        ([1, 2], None),
    ],
)
def test_invalid_body_is_422(
    client: FlaskClient, admin_headers: dict, body: object, pointer: str | None
) -> None:
    response = client.post("/v1/jobs", json=body, headers=admin_headers)
    problem = assert_problem(response, 422, "validation-error")
    if pointer:
        assert [e["pointer"] for e in problem["errors"]] == [pointer]


def test_oversized_body_is_413(client: FlaskClient, admin_headers: dict) -> None:
    payload = b'{"type": "system.echo", "params": {"message": "' + b"x" * (2 * 1024 * 1024) + b'"}}'
    response = client.post("/v1/jobs", data=payload, content_type="application/json", headers=admin_headers)
    assert_problem(response, 413, "payload-too-large")


def test_unknown_job_is_404(client: FlaskClient, admin_headers: dict) -> None:
    malformed = assert_problem(client.get("/v1/jobs/does-not-exist", headers=admin_headers), 404, "not-found")
    unknown = assert_problem(client.get(f"/v1/jobs/{ObjectId()}", headers=admin_headers), 404, "not-found")
    assert malformed["title"] == unknown["title"] == "No such job"


def test_wrong_method_is_405(client: FlaskClient, admin_headers: dict) -> None:
    response = client.delete("/v1/jobs", headers=admin_headers)
    assert_problem(response, 405, "method-not-allowed")
    assert "POST" in response.headers["Allow"]


def test_unknown_route_is_404_problem(client: FlaskClient) -> None:
    assert_problem(client.get("/nope"), 404, "not-found")
