"""Values a client can send that Python parses but MongoDB or date arithmetic cannot hold: 422.

``9999-12-31T23:59:59-14:00`` is valid ISO 8601, and pydantic's ``AwareDatetime`` takes it, but
its UTC instant lies in year 10000: pymongo's encoder raises OverflowError and the request was a
500 (and a Sentry event) instead of a 422. Each test below shows the value doing that first, then
every endpoint that takes a date refusing it with a problem document and writing nothing. Depth
and integer bounds of JSON bodies in general are covered by tests/api_thin/test_api_guards.py; here are
the int64 edges of the endpoints it does not reach.
"""

import base64
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import bson
import factories
import pytest
from api_support import assert_problem
from flask.testing import FlaskClient
from pydantic import AwareDatetime, TypeAdapter
from pymongo.database import Database

from mwap.bson_dates import MAX_INSTANT, MIN_INSTANT

# Valid ISO 8601 whose UTC instant is outside Python's datetime range: pymongo cannot encode them.
OVERFLOWING = [
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59.999999-00:01",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00+00:01",
]
# Representable, but outside the bounds (before the Unix epoch, or at the year-1 edge).
BEFORE_EPOCH = ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59.999Z", "1970-01-01T00:59:59+01:00"]
# Never valid datetimes: out-of-range fields and offsets, int64 edges and floats as timestamps.
MALFORMED = [
    "10000-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "2030-01-01T00:00:00+24:00",
    "2030-02-30T00:00:00Z",
    2**63,
    -(2**63) - 1,
    1e300,
    -1e300,
    "nan",
]
HOSTILE = OVERFLOWING + BEFORE_EPOCH + MALFORMED


@pytest.mark.parametrize("value", OVERFLOWING)
def test_the_overflowing_values_parse_but_cannot_be_stored(value: str) -> None:
    moment = TypeAdapter(AwareDatetime).validate_python(value)  # what the models took
    with pytest.raises(OverflowError):
        bson.encode({"expiresAt": moment})  # what pymongo then did, inside the request
    with pytest.raises(OverflowError):
        moment.astimezone(UTC)


def ids(values: list[Any]) -> list[str]:
    return [str(value)[:32] for value in values]


@pytest.fixture
def tenant(db: Database) -> dict[str, Any]:
    return factories.tenant(db)


@pytest.fixture
def provider(db: Database, ring: Any) -> dict[str, Any]:
    return factories.provider(db, ring, "google-drive")


def integration_body(tenant_id: Any, expires_at: Any) -> dict[str, Any]:
    return {
        "tenantId": str(tenant_id),
        "providerSlug": "google-drive",
        "authData": {"accessToken": "at-" + factories.uid("t"), "expiresAt": expires_at, "scope": []},
    }


def tenant_body(owner: str, expires_at: Any) -> dict[str, Any]:
    return {
        "name": factories.uid("Hostile"),
        "ownerId": owner,
        "subscription": {"plan": "pro", "status": "active", "expiresAt": expires_at},
    }


@pytest.mark.usefixtures("provider")
@pytest.mark.parametrize("value", HOSTILE, ids=ids(HOSTILE))
def test_an_integration_expiring_out_of_range_is_422_and_not_stored(
    client: FlaskClient, db: Database, admin_headers: dict, tenant: dict[str, Any], value: Any
) -> None:
    response = client.post(
        "/v1/integrations", json=integration_body(tenant["_id"], value), headers=admin_headers
    )
    problem = assert_problem(response, 422, "validation-error")
    assert [item["pointer"] for item in problem["errors"]] == ["/authData/expiresAt"]
    assert db["cloudIntegrations"].count_documents({"tenantId": tenant["_id"]}) == 0


@pytest.mark.parametrize("value", HOSTILE, ids=ids(HOSTILE))
def test_a_subscription_expiring_out_of_range_is_422_and_not_stored(
    client: FlaskClient, db: Database, admin_headers: dict, value: Any
) -> None:
    owner = factories.uid("auth0|hostile")
    response = client.post("/v1/tenants", json=tenant_body(owner, value), headers=admin_headers)
    problem = assert_problem(response, 422, "validation-error")
    assert [item["pointer"] for item in problem["errors"]] == ["/subscription/expiresAt"]
    assert db["tenants"].count_documents({"ownerId": owner}) == 0


@pytest.mark.parametrize("parameter", ["createdFrom", "createdTo"])
@pytest.mark.parametrize("value", HOSTILE, ids=ids(HOSTILE))
def test_a_job_listing_between_out_of_range_dates_is_422(
    client: FlaskClient, admin_headers: dict, parameter: str, value: Any
) -> None:
    response = client.get("/v1/jobs", query_string={parameter: str(value)}, headers=admin_headers)
    problem = assert_problem(response, 422, "validation-error")
    assert [item["parameter"] for item in problem["errors"]] == [parameter]


def test_a_usage_window_before_year_one_is_422(
    client: FlaskClient, admin_headers: dict, tenant: dict[str, Any]
) -> None:
    # The default window is `to` - 29 days: near year 1 that arithmetic overflowed (a 500).
    with pytest.raises(OverflowError):
        date(1, 1, 5) - timedelta(days=29)
    usage = f"/v1/tenants/{tenant['_id']}/usage"
    for query in (
        {"to": "0001-01-05"},
        {"from": "0001-01-01", "to": "0001-01-01"},
        {"from": "1969-12-31", "to": "1970-01-01"},
        {"to": "10000-01-01"},
        {"from": str(2**63)},
    ):
        problem = assert_problem(client.get(usage, query_string=query, headers=admin_headers), 422)
        assert {item["parameter"] for item in problem["errors"]} <= {"from", "to"}, query
    # The bounds themselves still answer (an empty window is not an error).
    for query in ({"to": "1970-01-01"}, {"from": "9999-12-31", "to": "9999-12-31"}, {"to": "9999-12-31"}):
        response = client.get(usage, query_string=query, headers=admin_headers)
        assert response.status_code == 200, (query, response.get_data(as_text=True))
        assert response.get_json()["days"] == []


def test_an_aggregation_window_is_bounded_even_without_to(
    client: FlaskClient, db: Database, admin_headers: dict, tenant: dict[str, Any]
) -> None:
    # {"from": "1970-01-01"} alone would have rolled up ~20,000 days in one job: one request's worth.
    aggregate = f"/v1/tenants/{tenant['_id']}/aggregate"
    before = db["jobs"].count_documents({"tenantId": tenant["_id"]})
    for body in ({"from": "1970-01-01"}, {"from": "2000-01-01", "to": "2026-01-01"}, {"from": "9999-12-31"}):
        problem = assert_problem(client.post(aggregate, json=body, headers=admin_headers), 422)
        assert problem["errors"], body
    assert db["jobs"].count_documents({"tenantId": tenant["_id"]}) == before
    response = client.post(aggregate, json={"from": date.today().isoformat()}, headers=admin_headers)
    assert response.status_code in (200, 202), response.get_data(as_text=True)


@pytest.mark.usefixtures("provider")
@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("9999-12-31T23:59:59.999999Z", MAX_INSTANT),  # "never expires", to the millisecond
        ("9999-12-31T23:59:59+14:00", datetime(9999, 12, 31, 9, 59, 59, tzinfo=UTC)),
        ("1970-01-01T01:00:00+01:00", MIN_INSTANT),
        ("2030-01-01T00:00:00.123456-23:59", datetime(2030, 1, 1, 23, 59, 0, 123000, tzinfo=UTC)),
    ],
)
def test_edge_values_are_kept_as_mongodb_keeps_them(
    client: FlaskClient, db: Database, admin_headers: dict, tenant: dict[str, Any], sent: str, kept: datetime
) -> None:
    created = client.post(
        "/v1/integrations", json=integration_body(tenant["_id"], sent), headers=admin_headers
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    answered = datetime.fromisoformat(created.get_json()["authData"]["expiresAt"])
    stored = db["cloudIntegrations"].find_one({"tenantId": tenant["_id"]})["authData"]["expiresAt"]
    read = client.get(f"/v1/integrations/{created.get_json()['id']}", headers=admin_headers).get_json()
    assert answered == stored.replace(tzinfo=stored.tzinfo or UTC) == kept
    assert datetime.fromisoformat(read["authData"]["expiresAt"]) == kept

    owner = factories.uid("auth0|edge")
    assert client.post("/v1/tenants", json=tenant_body(owner, sent), headers=admin_headers).status_code == 201
    listed = client.get(
        "/v1/jobs", query_string={"createdFrom": sent, "createdTo": sent}, headers=admin_headers
    )
    assert listed.status_code == 200
    assert listed.get_json()["items"] == []


# --- integers at and beyond int64, on the endpoints test_api_guards.py does not reach --------------


def cursor(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("number", [2**63, 2**64, -(2**63) - 1, 10**30])
def test_integers_beyond_int64_are_refused(
    client: FlaskClient, db: Database, admin_headers: dict, tenant: dict[str, Any], number: int
) -> None:
    with pytest.raises(OverflowError):
        bson.encode({"n": number})  # what MongoDB would be handed
    for path in ("/v1/jobs", "/v1/integrations", f"/v1/tenants/{tenant['_id']}/usage"):
        query = {"from": str(number)} if path.endswith("/usage") else {"limit": str(number)}
        assert_problem(client.get(path, query_string=query, headers=admin_headers), 422)
    jobs_cursor = cursor({"k": "jobs", "t": number, "id": "0" * 24})
    assert_problem(client.get("/v1/jobs", query_string={"cursor": jobs_cursor}, headers=admin_headers), 400)

    owner = factories.uid("auth0|int64")
    for settings in ({"maxProjects": number}, {"retentionDays": number}):
        body = {"name": "Int64", "ownerId": owner, "settings": settings}
        problem = assert_problem(client.post("/v1/tenants", json=body, headers=admin_headers), 422)
        assert [item["pointer"] for item in problem["errors"]] == [f"/settings/{next(iter(settings))}"]
    for params in ({"dryRun": number}, {"from": number}):
        kind = "retention" if "dryRun" in params else "aggregate"
        response = client.post(f"/v1/tenants/{tenant['_id']}/{kind}", json=params, headers=admin_headers)
        assert_problem(response, 422)
    assert db["tenants"].count_documents({"ownerId": owner}) == 0
    assert db["jobs"].count_documents({"subject.tenantId": {"$in": [tenant["_id"], str(tenant["_id"])]}}) == 0


def test_booleans_are_not_numbers(client: FlaskClient, db: Database, admin_headers: dict) -> None:
    owner = factories.uid("auth0|bool")
    for settings in ({"maxProjects": True}, {"retentionDays": True}, {"retentionDays": 30.0}):
        body = {"name": "Bool", "ownerId": owner, "settings": settings}
        assert_problem(client.post("/v1/tenants", json=body, headers=admin_headers), 422)
    assert db["tenants"].count_documents({"ownerId": owner}) == 0
