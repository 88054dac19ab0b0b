"""``GET /metrics``: API and worker families from real processes, queue metrics from real Redis."""

import json
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from mwap import broker, logs, metrics
from mwap.connections import redis_client
from mwap.settings import Settings
from ops.processes import wait_for
from worker.app import create_celery_app

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
QUEUES = ["default", "sync", "maintenance"]


@pytest.fixture(autouse=True)
def _multiprocess_dir(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # The API under test runs inside pytest, which was not started with the variable; a real API
    # process has it in its environment like the workers do.
    monkeypatch.setenv(metrics.MULTIPROC_ENV, stack_env[metrics.MULTIPROC_ENV])


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return parse(response.get_data(as_text=True))


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def post_echo(client: FlaskClient, headers: dict[str, str], **params: object) -> str:
    response = client.post("/v1/jobs", json={"type": "system.echo", "params": params}, headers=headers)
    assert response.status_code == 202
    return response.get_json()["id"]


@pytest.mark.usefixtures("worker")
def test_metrics_show_api_requests_and_worker_jobs(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    before = scrape(client)
    echo = {"type": "system.echo"}
    post_echo(client, admin_headers, message="counted")
    post_echo(client, admin_headers, fail=True)
    retried = post_echo(client, admin_headers, failTimes=1)
    assert client.get(f"/v1/jobs/{retried}", headers=admin_headers).status_code == 200

    def grew(name: str, by: int, samples: Samples) -> bool:
        return value(samples, name, **echo) >= value(before, name, **echo) + by

    def counted() -> Samples | None:
        now = scrape(client)
        done = (
            grew("mwap_jobs_started_total", 4, now)  # the retried job starts twice
            and grew("mwap_jobs_succeeded_total", 2, now)
            and grew("mwap_jobs_failed_total", 1, now)
            and grew("mwap_jobs_retried_total", 1, now)
        )
        return now if done else None

    after = wait_for(counted, timeout=30, what="job counters from the worker")

    # Worker families, from the worker's multiprocess files.
    assert value(after, "mwap_job_duration_seconds_count", type="system.echo", outcome="succeeded") >= 2
    assert value(after, "mwap_job_duration_seconds_count", type="system.echo", outcome="failed") >= 1
    assert value(after, "mwap_job_queue_wait_seconds_count", type="system.echo") >= 4
    # API families, labelled by URL rule rather than raw path.
    post = {"route": "/v1/jobs", "method": "POST", "status": "202"}
    assert (
        value(after, "mwap_http_requests_total", **post)
        >= value(before, "mwap_http_requests_total", **post) + 3
    )
    job_reads = [
        dict(labels)
        for name, labels in after
        if name == "mwap_http_requests_total" and dict(labels)["route"].startswith("/v1/jobs/<")
    ]
    assert any(read["method"] == "GET" and read["status"] == "200" for read in job_reads)
    assert value(after, "mwap_http_request_duration_seconds_count", route="/v1/jobs", method="POST") >= 3
    assert not any(retried in dict(labels).get("route", "") for _, labels in after)
    # Queues, read from Redis at scrape time.
    assert value(after, "mwap_broker_up") == 1
    for queue in QUEUES:
        assert ("mwap_queue_depth", frozenset({("queue", queue)})) in after
    # Unbounded ids never become labels.
    label_names = {name for _, labels in after for name, _ in labels}
    assert not {name for name in label_names if "tenant" in name.lower() or "integration" in name.lower()}


def test_provider_and_scheduler_call_api(client: FlaskClient) -> None:
    metrics.provider_call("dropbox", "rate_limited")
    metrics.provider_call("dropbox", "something unexpected")  # folded, never a new series
    metrics.token_refresh("google-drive", "invalid_grant")
    metrics.breaker("onedrive", is_open=True)
    metrics.scheduler_dispatch("integration.sync_files", due=3)
    metrics.scheduler_leader("beat-host:123", is_leader=True)

    samples = scrape(client)
    assert value(samples, "mwap_provider_calls_total", provider="dropbox", outcome="rate_limited") >= 1
    assert value(samples, "mwap_provider_calls_total", provider="dropbox", outcome="error") >= 1
    assert not value(samples, "mwap_provider_calls_total", provider="dropbox", outcome="something unexpected")
    assert value(samples, "mwap_token_refreshes_total", provider="google-drive", outcome="invalid_grant") >= 1
    assert value(samples, "mwap_provider_breaker_open", provider="onedrive") == 1
    assert value(samples, "mwap_scheduler_due_items_total", type="integration.sync_files") >= 3
    assert value(samples, "mwap_scheduler_dispatches_total", type="integration.sync_files") >= 1
    last = value(samples, "mwap_scheduler_last_dispatch_timestamp_seconds", type="integration.sync_files")
    assert time.time() - 60 < last <= time.time()
    assert value(samples, "mwap_scheduler_leader", identity="beat-host:123") == 1


@pytest.fixture
def idle_broker_settings(settings: Settings) -> Iterator[Settings]:
    """Settings whose broker is another Redis database, where no worker consumes."""
    parts = urlsplit(settings.redis_url)
    idle = settings.model_copy(update={"redis_url": urlunsplit(parts._replace(path="/15"))})
    client = redis_client(idle)
    client.delete(*QUEUES)
    yield idle
    client.delete(*QUEUES, *client.keys("_kombu.binding.*"))


def test_queue_depth_and_oldest_message_age(idle_broker_settings: Settings) -> None:
    producer = create_celery_app(idle_broker_settings, include_tasks=False)
    try:
        sent = time.time()
        with logs.bound(requestId="req-queued"):
            producer.send_task("system.echo", args=["first"], queue="maintenance")
        producer.send_task("system.echo", args=["second"], queue="maintenance")
    finally:
        producer.close()
    # Every message carries its publish time; one sent during a request also carries its id.
    first = json.loads(redis_client(idle_broker_settings).lindex("maintenance", -1))
    assert first["headers"][broker.SENT_AT_HEADER] >= sent
    assert first["headers"]["mwap_request_id"] == "req-queued"

    stats = broker.queue_stats(redis_client(idle_broker_settings), QUEUES)
    assert stats["default"] == (0, None)
    depth, oldest = stats["maintenance"]
    assert depth == 2
    assert oldest is not None
    assert sent - 1 <= oldest <= time.time()

    body, _ = metrics.render(idle_broker_settings)
    samples = parse(body.decode())
    assert value(samples, "mwap_queue_depth", queue="maintenance") == 2
    assert value(samples, "mwap_queue_depth", queue="sync") == 0
    assert 0 <= value(samples, "mwap_queue_oldest_message_age_seconds", queue="maintenance") < 60


@pytest.mark.usefixtures("worker")
def test_mongo_commands_are_counted_by_command_and_process_role(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    commands = "mwap_mongo_commands_total"
    before = scrape(client)
    job_id = post_echo(client, admin_headers, message="commands")
    assert client.get(f"/v1/jobs/{job_id}?wait=10", headers=admin_headers).get_json()["status"] == "succeeded"

    def counted() -> Samples | None:
        now = scrape(client)
        grew = value(now, commands, command="findAndModify", role="worker") - value(
            before, commands, command="findAndModify", role="worker"
        )
        return now if grew >= 2 else None

    # The worker marked the job running, then final, with a findAndModify each; this process (the
    # API under test, which no entry point named) inserted its ledger document.
    after = wait_for(counted, timeout=30, what="the worker's MongoDB commands in the metrics")
    assert value(after, commands, command="insert", role="other") > value(
        before, commands, command="insert", role="other"
    )
    labels = {dict(key[1]).get("command") for key in after if key[0] == commands}
    assert labels <= set(metrics.MONGO_COMMANDS) | {"other"}
