"""JSON log lines: their shape, the ids the API and the worker bind, and no secrets in them."""

import io
import json
import logging
import re
import secrets
from datetime import datetime
from pathlib import Path

import pytest
from bson import ObjectId
from flask.testing import FlaskClient
from pymongo.database import Database

from mwap import logs, redact
from mwap.settings import Settings
from ops.processes import wait_for


def capture() -> tuple[logging.Logger, io.StringIO]:
    """A private logger writing through the platform's JSON handler into a buffer."""
    stream = io.StringIO()
    logger = logging.getLogger(f"mwap.tests.{secrets.token_hex(4)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(logs.make_handler("test", stream))
    return logger, stream


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_line_is_one_json_object_with_bound_ids_and_exception() -> None:
    logger, stream = capture()
    # Ids as the platform binds them: the job id and the document ids in their 24-hex form.
    job_id = str(ObjectId())
    ids = {
        "jobId": job_id,
        "jobType": "integration.sync_files",
        "tenantId": str(ObjectId()),
        "integrationId": str(ObjectId()),
        "requestId": "r1",
    }
    with logs.bound(**ids):
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("job %s failed", job_id)
    logger.info("afterwards")

    failed, after = lines(stream)
    assert failed["level"] == "ERROR"
    assert failed["logger"] == logger.name
    assert failed["message"] == f"job {job_id} failed"
    assert failed["process"] == "test"
    assert {k: failed[k] for k in ids} == ids
    assert "ValueError: boom" in failed["exc"]
    assert failed["timestamp"].endswith("Z")
    assert datetime.fromisoformat(failed["timestamp"]).utcoffset().total_seconds() == 0
    assert not set(ids) & set(after), "ids leaked out of their context"


def test_bind_accepts_only_known_fields() -> None:
    with pytest.raises(ValueError, match="unknown log context fields"):
        logs.bind(userEmail="someone@example.com")


def test_secrets_never_reach_the_line() -> None:
    logger, stream = capture()
    access = "ya29." + secrets.token_urlsafe(32)
    refresh = "1//0" + secrets.token_urlsafe(32)
    opaque = secrets.token_urlsafe(24)  # a token with no recognisable shape
    client_secret = secrets.token_urlsafe(24)
    logger.info("GET /files with Authorization: Bearer %s", opaque)
    logger.info("token endpoint answered access_token=%s&refresh_token=%s", access, refresh)
    logger.warning(
        "provider payload",
        extra={"payload": {"accessToken": opaque, "client_secret": client_secret, "tokenUrl": "https://x/t"}},
    )
    try:
        raise RuntimeError(f"refresh failed for {refresh}")
    except RuntimeError:
        logger.exception("refresh with client_secret=%s failed", client_secret)

    text = stream.getvalue()
    for secret in (access, refresh, opaque, client_secret):
        assert secret not in text
    header, grant, payload, failure = lines(stream)
    assert header["message"] == "GET /files with Authorization: Bearer [Filtered]"
    assert grant["message"] == "token endpoint answered access_token=[Filtered]&refresh_token=[Filtered]"
    assert payload["payload"] == {
        "accessToken": "[Filtered]",
        "client_secret": "[Filtered]",
        "tokenUrl": "https://x/t",
    }
    assert "RuntimeError" in failure["exc"]


def test_configured_secret_values_are_redacted_verbatim(settings: Settings) -> None:
    redact.register_secrets(redact.settings_secrets(settings))
    logger, stream = capture()
    admin_key = settings.admin_api_key.get_secret_value()
    logger.info("someone pasted %s into a message", admin_key)
    assert admin_key not in stream.getvalue()
    assert lines(stream)[0]["message"] == "someone pasted [Filtered] into a message"


@pytest.mark.usefixtures("worker")
def test_worker_lines_carry_the_job_and_the_api_request_id(
    client: FlaskClient, admin_headers: dict[str, str], log_dir: Path
) -> None:
    request_id = "req-" + secrets.token_hex(8)
    response = client.post(
        "/v1/jobs",
        json={"type": "system.echo", "params": {"message": "log me"}},
        headers={**admin_headers, "X-Request-ID": request_id},
    )
    assert response.status_code == 202
    assert response.headers["X-Request-ID"] == request_id
    job_id = response.get_json()["id"]

    def job_lines() -> list[dict]:
        text = (log_dir / "worker.log").read_text(errors="replace")
        # Every line that mentions the job is a JSON object (json.loads raises otherwise).
        found = [json.loads(line) for line in text.splitlines() if job_id in line]
        done = any("succeeded" in entry["message"] and "jobId" in entry for entry in found)
        return found if done else []

    found = wait_for(job_lines, timeout=30, what=f"worker log lines of job {job_id}")
    in_task = [entry for entry in found if "jobId" in entry]
    assert in_task
    for entry in in_task:
        assert entry["jobId"] == job_id
        assert entry["jobType"] == "system.echo"
        assert entry["requestId"] == request_id
        assert entry["process"] == "worker"
        assert {"timestamp", "level", "logger", "message"} <= set(entry)


def test_request_id_is_generated_when_missing_or_unusable(
    client: FlaskClient, admin_headers: dict[str, str], db: Database
) -> None:
    response = client.post("/v1/jobs", json={"type": "system.echo", "params": {}}, headers=admin_headers)
    generated = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    # The ledger keeps the id the API settled on, so a job can be traced back to its request.
    assert db["jobs"].find_one({"_id": response.get_json()["id"]})["requestId"] == generated

    response = client.get("/health", headers={"X-Request-ID": "x" * 500})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
