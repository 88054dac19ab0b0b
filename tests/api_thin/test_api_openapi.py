"""The OpenAPI document matches the server: schemathesis drives every operation of the live app.

Runs against its own MongoDB database and Redis database (so the jobs it enqueues reach no worker
and its data stays out of the other tests' listings), seeded so that listings and the ids it
substitutes return real documents whose answers are checked against the response schemas.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import factories
import hypothesis
import pytest
import schemathesis
from api_support import forget_offline, offline_redis_url
from flask import Flask
from hypothesis import HealthCheck
from hypothesis import strategies as st
from pymongo.database import Database
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api_thin.routes import ENDPOINTS
from api_thin.routing import Endpoint
from mwap import ledger
from mwap.connections import mongo_db
from mwap.indexes import ensure_indexes
from mwap.settings import Settings

# positive_data_acceptance is left out on purpose: some valid-looking requests are refused by
# rules a JSON schema cannot state (an opaque cursor, `from` after `to`, an unknown provider).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
MAX_EXAMPLES = 40
SCHEMA_REDIS_DB = 15


@pytest.fixture(scope="module")
def isolated(settings: Settings) -> Iterator[Settings]:
    update: dict[str, Any] = {
        "mongo_db": f"{settings.mongo_db}_schema",
        "redis_url": offline_redis_url(settings, SCHEMA_REDIS_DB),
        "rate_limit_per_minute": 0,
    }
    isolated = settings.model_copy(update=update)
    yield isolated
    forget_offline(settings, SCHEMA_REDIS_DB)
    mongo_db(isolated).client.drop_database(isolated.mongo_db)


@pytest.fixture(scope="module")
def seeded(isolated: Settings, ring: Any) -> dict[str, str]:
    """A tenant with a project, an integration linked to it, files, usage and a job; the (24-hex) ids
    the test substitutes."""
    db: Database = mongo_db(isolated)
    ensure_indexes(db, isolated)
    tenant = factories.tenant(db)
    project = factories.project(db, tenant["_id"], folderPath="/Docs")
    integration = factories.integration(db, ring, tenant["_id"], project_ids=[project["_id"]])
    for path in ("/Docs/a.txt", "/Docs/b.txt", "/Photos/c.jpg"):
        factories.virtual_file(db, integration, path, projectId=project["_id"])
    factories.virtual_file(db, integration, "/Docs/Sub", type="inode/directory", size=None)
    today = datetime.now(UTC).date()
    for back in range(3):
        factories.usage_day(
            db,
            tenant["_id"],
            today - timedelta(days=back),
            apiRequests=back,
            jobs={"system_echo": {"succeeded": 1}},
        )
    _, key = factories.api_key(db, tenant["_id"])
    return {
        "tenantId": str(tenant["_id"]),
        "integrationId": str(integration["_id"]),
        "projectId": str(project["_id"]),
        "tenantKey": key,
    }


@pytest.fixture(scope="module")
def schema_app(isolated: Settings, seeded: dict[str, str], admin_headers: dict[str, str]) -> Flask:
    from api_thin import create_app  # noqa: PLC0415

    app = create_app(isolated)
    app.testing = False
    response = app.test_client().post(
        "/v1/jobs",
        json={"type": "tenant.aggregate_usage", "tenantId": seeded["tenantId"]},
        headers=admin_headers,
    )
    assert response.status_code == 202
    seeded["jobId"] = job_id = response.get_json()["id"]
    # Finished, as a worker would leave it: GET ?wait=N on it answers at once (a queued job held
    # every drawn wait to its end, ~20 s per caller) and its result and times get checked too.
    db = mongo_db(isolated)
    started = ledger.start(db, job_id, worker="schema-test")
    assert started is not None
    assert ledger.succeed(db, job_id, {"tenants": 1}, started_at=started["startedAt"]) is not None
    return app


@pytest.fixture(scope="module")
def api_schema(schema_app: Flask) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict({"generation": {"mode": "all", "max-examples": MAX_EXAMPLES}})
    return schemathesis.openapi.from_wsgi("/openapi.json", schema_app, config=config)


def _label(endpoint: Endpoint) -> str:
    return f"{endpoint.method} {endpoint.path}"


@pytest.mark.parametrize("caller", ["admin", "tenant"])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=_label)
def test_operation_matches_its_description(
    endpoint: Endpoint,
    caller: str,
    api_schema: schemathesis.BaseSchema,
    seeded: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    """With the admin key, and with the seeded tenant's key (whose ids the substitution uses)."""
    headers = admin_headers if caller == "admin" else {"Authorization": f"Bearer {seeded['tenantKey']}"}
    operation = api_schema.find_operation_by_label(_label(endpoint))
    if operation is None:
        pytest.skip(f"{_label(endpoint)} is not served by this app")
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
    )

    @hypothesis.given(case=strategy)
    # Derandomized: the same examples on every run, so a CI run never fails on a draw the last one
    # did not make (two such draws were schemathesis false positives: a negative case whose only
    # violations were the Authorization header this test supplies and a query name the WSGI layer
    # drops). Widen the search by hand with --hypothesis-seed and derandomize off.
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)
        positive = case.meta is None or case.meta.generation.mode.is_positive
        if case.path_parameters and positive and endpoint.method != "DELETE":
            # Drawn ids rarely exist: ask again for the seeded ones, so real answers get checked too.
            case.path_parameters = {
                name: seeded.get(name, value) for name, value in case.path_parameters.items()
            }
            case.call_and_validate(headers=headers, checks=CHECKS)

    conforms()
