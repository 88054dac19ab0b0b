"""A job travels from the HTTP API through Redis to a real worker and back out of MongoDB."""

import re

import pytest
from bson import ObjectId
from flask.testing import FlaskClient

from mwap.ids import HEX_PATTERN
from ops.processes import wait_for

pytestmark = pytest.mark.usefixtures("worker")


def post_echo(client: FlaskClient, headers: dict[str, str], **params: object) -> dict:
    response = client.post("/v1/jobs", json={"type": "system.echo", "params": params}, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    job = response.get_json()
    assert re.fullmatch(HEX_PATTERN, job["id"]), job["id"]  # a job id is 24-hex, like every id
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued"
    return job


def read_job(client: FlaskClient, headers: dict[str, str], job_id: str) -> dict:
    response = client.get(f"/v1/jobs/{job_id}", headers=headers)
    assert response.status_code == 200
    return response.get_json()


def wait_status(client: FlaskClient, headers: dict[str, str], job_id: str, status: str) -> dict:
    return wait_for(
        lambda: (job := read_job(client, headers, job_id))["status"] == status and job,
        timeout=30,
        what=f"job {job_id} {status}",
    )


def test_job_succeeds_with_result(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    job = post_echo(client, admin_headers, message="hello")
    done = wait_status(client, admin_headers, job["id"], "succeeded")
    assert done["result"] == {"message": "hello", "retries": 0}
    assert done["attempts"] == 1
    assert done["error"] is None
    assert done["startedAt"] <= done["finishedAt"]
    assert done["durationMs"] >= 0


def test_failing_job_ends_failed_with_error(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    job = post_echo(client, admin_headers, message="boom", fail=True)
    done = wait_status(client, admin_headers, job["id"], "failed")
    assert done["error"] == {"type": "EchoError", "message": "asked to fail: boom"}
    assert done["result"] is None


def test_retryable_error_shows_retrying_then_succeeded(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    job = post_echo(client, admin_headers, message="again", failTimes=1)
    retrying = wait_status(client, admin_headers, job["id"], "retrying")
    assert retrying["error"]["type"] == "EchoTransientError"
    done = wait_status(client, admin_headers, job["id"], "succeeded")
    assert done["attempts"] == 2
    assert len(done["retries"]) == 1
    assert done["result"] == {"message": "again", "retries": 1}


@pytest.mark.parametrize("job_id", ["not-a-job-id", str(ObjectId())])
def test_a_malformed_or_unknown_job_id_is_404(
    client: FlaskClient, admin_headers: dict[str, str], job_id: str
) -> None:
    response = client.get(f"/v1/jobs/{job_id}", headers=admin_headers)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/problem+json")
