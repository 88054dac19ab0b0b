"""Sentry: events and breadcrumbs leave without secrets; retries are not errors, a final failure is one.

Events are captured in-process by a Transport subclass: nothing goes over the network. The job
test runs a real Celery worker (solo pool, in a thread of this process, consuming real Redis) so
the Celery integration sees the job exactly as in production; no eager mode.
"""

import json
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from bson import ObjectId
from celery.app import trace as celery_trace
from celery.contrib.testing.worker import start_worker
from celery.worker.consumer import consumer as celery_consumer
from kombu import Queue as KombuQueue
from pymongo.database import Database
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from mwap import ledger, sentry
from mwap.sentry import before_breadcrumb, before_send, init_sentry
from mwap.settings import Settings
from ops.processes import wait_for
from worker.app import create_celery_app
from worker.base import Job, JobTask

LEAKY_JOB = "test.sentry_leaky"


class CapturingTransport(Transport):
    """Keeps every envelope the SDK would have sent."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [item.payload.json for env in self.envelopes for item in env.items if item.type == "event"]

    def everything(self) -> str:
        return "\n".join(
            item.payload.get_bytes().decode(errors="replace") for env in self.envelopes for item in env.items
        )


@pytest.fixture
def sentry_events(settings: Settings) -> Iterator[CapturingTransport]:
    transport = CapturingTransport()
    reporting = settings.model_copy(update={"sentry_dsn": "https://public@sentry.invalid/1"})
    assert init_sentry(reporting, "test", transport=transport)
    assert not sentry_sdk.scope.should_send_default_pii()
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)
    sentry_sdk.get_global_scope().remove_tag("component")


class ProviderAuthError(Exception):
    pass


class ProviderUnavailableError(Exception):
    pass


def new_secrets() -> dict[str, str]:
    """Fresh credentials; "bearer_token" has no recognisable shape, so only names and context hide it."""
    return {
        "access_token": "ya29." + secrets.token_urlsafe(32),
        "refresh_token": "1//0" + secrets.token_urlsafe(32),
        "bearer_token": secrets.token_urlsafe(24),
        "client_secret": secrets.token_urlsafe(24),
        "api_key": "mwap_tenant_" + secrets.token_urlsafe(24),
    }


def test_exception_event_and_breadcrumbs_carry_no_secret(sentry_events: CapturingTransport) -> None:
    leak = new_secrets()
    logging.getLogger("tasks.providers").warning("refreshing with refresh_token=%s", leak["refresh_token"])
    sentry_sdk.add_breadcrumb(
        category="http",
        message=f"POST https://oauth.example/token?client_secret={leak['client_secret']}",
        data={
            "headers": {"Authorization": f"Bearer {leak['bearer_token']}"},
            "refresh_token": leak["refresh_token"],
        },
    )
    sentry_sdk.set_extra("provider_response", {"access_token": leak["access_token"], "expires_in": 3599})
    sentry_sdk.set_context("integration", {"apiKey": leak["api_key"], "providerSlug": "google-drive"})

    def call_provider(access_token: str) -> None:
        headers = {"Authorization": f"Bearer {access_token}"}
        raise ProviderAuthError(f"401 from provider for {headers}")

    try:
        call_provider(leak["bearer_token"])
    except ProviderAuthError:
        sentry_sdk.capture_exception()

    [event] = sentry_events.events
    sent = sentry_events.everything()
    for name, secret in leak.items():
        assert secret not in sent, f"{name} leaked"
    frame = next(
        f for f in event["exception"]["values"][0]["stacktrace"]["frames"] if f["function"] == "call_provider"
    )
    assert frame["vars"]["access_token"] == "[Filtered]"
    assert event["contexts"]["integration"]["providerSlug"] == "google-drive"
    crumbs = event["breadcrumbs"]["values"]
    assert any(c.get("message") == "refreshing with refresh_token=[Filtered]" for c in crumbs)
    http = next(c for c in crumbs if c.get("category") == "http")
    assert http["data"]["headers"]["Authorization"] == "[Filtered]"
    assert http["data"]["refresh_token"] == "[Filtered]"


def test_scrubbers_cover_header_pairs_and_nested_values() -> None:
    token = secrets.token_urlsafe(24)
    event = {
        "request": {"headers": [["Authorization", f"Bearer {token}"], ["Accept", "application/json"]]},
        "extra": {"deep": [{"config": {"client_secret": token}}, f"Bearer {token}"]},
        "logentry": {"message": "url %s", "params": [f"https://h/cb?access_token={token}"]},
    }
    scrubbed = before_send(event, {})
    assert token not in json.dumps(scrubbed)
    assert scrubbed["request"]["headers"][1] == ["Accept", "application/json"]
    crumb = before_breadcrumb({"message": f"Authorization: Basic {token}", "data": {"x-api-key": token}}, {})
    assert token not in json.dumps(crumb)


def test_api_error_event_has_no_credentials_and_carries_request_id(
    sentry_events: CapturingTransport, settings: Settings
) -> None:
    from api_thin import create_app  # noqa: PLC0415 - a fresh app, so a failing route can be added

    app = create_app(settings)

    @app.post("/test-boom")
    def boom() -> str:
        raise RuntimeError("kaboom")

    key = "mwap_tenant_" + secrets.token_urlsafe(24)
    opaque = secrets.token_urlsafe(24)  # a body field with an innocent name: bodies are never sent
    response = app.test_client().post(
        "/test-boom",
        json={"accessToken": opaque, "note": opaque},
        headers={"Authorization": f"Bearer {key}", "X-Request-ID": "req-sentry-api", "Cookie": f"s={opaque}"},
    )
    assert response.status_code == 500

    [event] = sentry_events.events
    sent = sentry_events.everything()
    assert key not in sent
    assert opaque not in sent
    assert event["request"]["headers"]["Authorization"] == "[Filtered]"
    assert event["tags"]["request_id"] == "req-sentry-api"
    assert event["tags"]["component"] == "test"


def test_job_retry_is_not_reported_and_final_failure_is_reported_once(
    sentry_events: CapturingTransport, settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sentry instruments tasks by wrapping celery.app.trace.build_tracer. A worker process imports
    # the consumer (which keeps its own reference to it) after celeryd_init, where we start
    # Sentry; in this test process celery.contrib.testing imported it at collection, earlier.
    monkeypatch.setattr(celery_consumer, "build_tracer", celery_trace.build_tracer)
    leak = new_secrets()
    app = create_celery_app(settings)
    queue = f"test-sentry-{secrets.token_hex(4)}"  # the session's worker does not consume it
    app.conf.task_queues = [*app.conf.task_queues, KombuQueue(queue, routing_key=queue)]

    @app.task(
        bind=True,
        base=JobTask,
        name=LEAKY_JOB,
        autoretry_for=(ProviderUnavailableError,),
        max_retries=1,
        default_retry_delay=0,
    )
    def leaky(self: JobTask, job: Job) -> None:
        access_token = leak["bearer_token"]  # what a provider call holds in scope
        logging.getLogger("tasks.providers").warning("GET /files with Authorization: Bearer %s", access_token)
        if self.request.retries == 0:
            raise ProviderUnavailableError(f"503 for access_token={access_token}")
        raise ProviderAuthError(f"401 for Bearer {access_token}")

    tenant_id, integration_id = ObjectId(), ObjectId()
    job = ledger.new_job(
        LEAKY_JOB,
        tenant_id=tenant_id,
        subject={"integrationId": str(integration_id)},
        queue=queue,
        request_id="req-sentry-job",
    )
    db[ledger.COLLECTION].insert_one(job)
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue], shutdown_timeout=30):
        app.send_task(LEAKY_JOB, args=[job["_id"]], task_id=job["_id"], queue=queue)
        done = wait_for(
            lambda: (
                (doc := db[ledger.COLLECTION].find_one({"_id": job["_id"]}))["status"] == "failed" and doc
            ),
            timeout=30,
            what="the leaky job to fail",
        )
    assert done["attempts"] == 2
    assert len(done["retries"]) == 1

    errors = [e for e in sentry_events.events if e.get("exception")]
    assert [e["exception"]["values"][-1]["type"] for e in errors] == ["ProviderAuthError"]
    [event] = errors
    assert event["tags"]["job_type"] == LEAKY_JOB
    assert event["tags"]["job_id"] == job["_id"]
    assert event["tags"]["tenant_id"] == str(tenant_id)
    assert event["tags"]["integration_id"] == str(integration_id)
    assert event["tags"]["request_id"] == "req-sentry-job"
    assert leak["bearer_token"] not in sentry_events.everything()
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert next(f for f in frames if f["function"] == "leaky")["vars"]["access_token"] == "[Filtered]"
    crumbs = event["breadcrumbs"]["values"]
    assert any(c.get("message") == "GET /files with Authorization: Bearer [Filtered]" for c in crumbs)


def test_identical_500s_send_one_event_per_cause_per_interval(
    sentry_events: CapturingTransport, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api_thin import create_app  # noqa: PLC0415 - a fresh app, so failing routes can be added

    clock = [1000.0]
    monkeypatch.setattr(sentry._throttle, "clock", lambda: clock[0])
    app = create_app(settings)

    @app.get("/test-same-boom")
    def same_boom() -> str:
        raise RuntimeError(f"kaboom {secrets.token_hex(4)}")  # the message differs, the cause does not

    @app.get("/test-other-boom")
    def other_boom() -> str:
        raise KeyError("elsewhere")

    client = app.test_client()
    # In spirit: without the throttle every failing request is an event (a flood costs quota and
    # buries other errors): 50 requests would be 50 events.
    assert all(client.get("/test-same-boom").status_code == 500 for _ in range(50))
    assert len(sentry_events.events) == 1
    assert client.get("/test-other-boom").status_code == 500
    assert [e["exception"]["values"][-1]["type"] for e in sentry_events.events] == [
        "RuntimeError",
        "KeyError",
    ]

    clock[0] += settings.sentry_dedupe_seconds + 1  # the next interval: the cause reports again
    assert client.get("/test-same-boom").status_code == 500
    assert len(sentry_events.events) == 3
    assert sentry_events.events[-1]["extra"]["suppressed"] == 49


def test_the_throttle_forgets_the_oldest_causes_first() -> None:
    throttle = sentry.Throttle(window=60, clock=lambda: 0.0)
    for n in range(sentry.MAX_CAUSES + 10):
        assert throttle.admit(("exception", str(n))) == 0
    assert len(throttle._seen) == sentry.MAX_CAUSES  # bounded however many causes a client makes
    assert throttle.admit(("exception", "0")) == 0  # forgotten: sent again
    assert throttle.admit(("exception", str(sentry.MAX_CAUSES + 9))) is None  # recent: still dropped


def test_a_token_in_local_variables_never_leaves_by_name_or_by_value(
    sentry_events: CapturingTransport,
) -> None:
    token = secrets.token_urlsafe(32)  # no recognisable shape: only names and values can hide it
    key = "mwap_" + secrets.token_urlsafe(32)

    def refresh(refresh_token: str) -> None:
        value = refresh_token  # an innocent name holding the same token
        parts = [value, "grant_type=refresh_token"]
        headers = {"X-Api-Key": key}
        body = f"grant={value}"
        raise ProviderAuthError(f"refused {len(parts)} parts, {len(headers)} headers, {len(body)} bytes")

    def caller() -> None:
        held = token
        refresh(held)

    try:
        caller()
    except ProviderAuthError:
        sentry_sdk.capture_exception()

    [event] = sentry_events.events
    sent = sentry_events.everything()
    assert token not in sent
    assert key not in sent
    frames = {f["function"]: f for f in event["exception"]["values"][0]["stacktrace"]["frames"]}
    assert frames["refresh"]["vars"]["refresh_token"] == "[Filtered]"  # by name
    assert "[Filtered]" in frames["refresh"]["vars"]["value"]  # by value
    assert "[Filtered]" in frames["caller"]["vars"]["held"]
    assert frames["refresh"]["vars"]["headers"]["X-Api-Key"] == "[Filtered]"
