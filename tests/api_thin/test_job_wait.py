"""``GET /v1/jobs/{id}?wait=N``: the request is held until the job ends, woken by the worker through
Redis, so a client needs no polling loop; bounded in time and in how many requests may wait."""

import time

import factories
import pytest
from flask.testing import FlaskClient
from pymongo.database import Database

from mwap.metrics.definitions import MONGO_COMMANDS_SENT
from mwap.settings import Settings

pytestmark = pytest.mark.usefixtures("worker")


def post_echo(client: FlaskClient, headers: dict[str, str], **params: object) -> str:
    response = client.post("/v1/jobs", json={"type": "system.echo", "params": params}, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["id"]


def finds_sent() -> float:
    """The ``find`` commands this process has sent (the API under test runs in it)."""
    return sum(
        sample.value
        for metric in MONGO_COMMANDS_SENT.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["command"] == "find"
    )


def test_one_request_answers_when_the_job_ends(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    job_id = post_echo(client, admin_headers, message="held", sleepSeconds=1)
    finds = finds_sent()
    started = time.monotonic()
    response = client.get(f"/v1/jobs/{job_id}?wait=10", headers=admin_headers)
    took = time.monotonic() - started
    # One read of the ledger: the job's end notice carries its final document.
    assert finds_sent() - finds == 1
    assert response.status_code == 200
    assert response.get_json()["status"] == "succeeded"
    assert response.get_json()["result"] == {"message": "held", "retries": 0}
    # Woken by the job's end, not by the deadline (the job sleeps 1 s; the wait would run 10 s).
    assert took < 8, f"answered after {took:.1f}s: the wait ran out instead of being woken"


def test_the_wait_is_bounded_and_answers_the_open_job(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    job_id = post_echo(client, admin_headers, sleepSeconds=4)
    response = client.get(f"/v1/jobs/{job_id}?wait=0.5", headers=admin_headers)
    assert response.status_code == 200
    assert response.get_json()["status"] in {"queued", "running"}


def test_a_final_job_answers_at_once_and_another_tenants_job_is_404(
    client: FlaskClient, admin_headers: dict[str, str], db: Database
) -> None:
    _, key = factories.api_key(db, factories.tenant(db)["_id"])
    tenant_headers = {"Authorization": f"Bearer {key}"}
    job_id = post_echo(client, admin_headers, message="done")
    final = client.get(f"/v1/jobs/{job_id}?wait=10", headers=admin_headers)
    assert final.get_json()["status"] == "succeeded"
    assert client.get(f"/v1/jobs/{job_id}?wait=10", headers=admin_headers).get_json() == final.get_json()
    # A tenant key waiting on a job that is not its own: 404, as without the wait.
    assert client.get(f"/v1/jobs/{job_id}?wait=5", headers=tenant_headers).status_code == 404


@pytest.mark.parametrize("wait", ["-1", "26", "soon", "nan"])
def test_a_bad_wait_is_a_problem(client: FlaskClient, admin_headers: dict[str, str], wait: str) -> None:
    job_id = post_echo(client, admin_headers)
    response = client.get(f"/v1/jobs/{job_id}?wait={wait}", headers=admin_headers)
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"


def test_with_no_waiting_slot_the_request_answers_at_once(
    settings: Settings, admin_headers: dict[str, str]
) -> None:
    from api_thin import create_app  # noqa: PLC0415

    no_waiting = create_app(settings.model_copy(update={"job_waiters_per_process": 0})).test_client()
    job_id = post_echo(no_waiting, admin_headers, sleepSeconds=4)
    response = no_waiting.get(f"/v1/jobs/{job_id}?wait=10", headers=admin_headers)
    assert response.status_code == 200
    assert response.get_json()["status"] in {"queued", "running"}  # answered before the job's end
