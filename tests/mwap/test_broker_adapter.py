"""``mwap.broker`` against the pinned kombu: a real redis-server, the platform's Celery producer
and a kombu consumer that takes messages without acknowledging them, as a worker does."""

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import redis
from celery import signals
from kombu.transport import redis as kombu_redis

from mwap import broker
from mwap.settings import Settings
from worker.app import create_celery_app

BROKER_DB = 13  # this module's own database: no worker consumes it
QUEUES = ["default", "sync", "maintenance"]
HOUR = 3600.0


@pytest.fixture
def broker_settings(settings: Settings) -> Iterator[Settings]:
    url = settings.redis_url.rsplit("/", 1)[0] + f"/{BROKER_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield settings.model_copy(update={"redis_url": url})
    client.flushdb()
    client.close()


@pytest.fixture
def client(broker_settings: Settings) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(broker_settings.redis_url) as connection:
        yield connection


def test_kombu_transport_is_what_the_adapter_was_written_for(broker_settings: Settings) -> None:
    # A kombu upgrade that moves any of these changes where messages live: review mwap/broker.py.
    assert kombu_redis.PRIORITY_STEPS == [0, 3, 6, 9]
    assert kombu_redis.Channel.sep == "\x06\x16"
    assert (kombu_redis.Channel.unacked_key, kombu_redis.Channel.unacked_index_key) == (
        "unacked",
        "unacked_index",
    )
    # And the channel the platform's app opens (its transport options applied) names the same keys.
    app = create_celery_app(broker_settings, include_tasks=False)
    try:
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            assert isinstance(channel, kombu_redis.Channel)
            assert tuple(channel.priority_steps) == broker.PRIORITY_STEPS
            assert (channel.unacked_key, channel.unacked_index_key) == (
                broker.UNACKED_KEY,
                broker.UNACKED_INDEX_KEY,
            )
            for queue in QUEUES:
                expected = [channel._q_for_pri(queue, step) for step in channel.priority_steps]
                assert broker.queue_keys(queue) == expected
    finally:
        app.close()


def test_depth_age_waiting_and_held_jobs(
    broker_settings: Settings, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: dict[str, dict[str, Any]] = {}

    def record(headers: dict[str, Any] | None = None, **_: Any) -> None:
        assert headers is not None
        published[headers["id"]] = dict(headers)

    signals.after_task_publish.connect(record, weak=False)
    app = create_celery_app(broker_settings, include_tasks=False)
    try:
        for job_id, queue, options in [
            ("s1", "sync", {}),
            ("s2", "sync", {"priority": 4}),  # priority step 3
            ("s3", "sync", {"priority": 9}),  # priority step 9
            ("m1", "maintenance", {"countdown": HOUR}),  # an ETA: a worker holds it until then
            ("m2", "maintenance", {"priority": 7}),  # priority step 6
            ("d1", "default", {}),
            ("d2", "default", {}),
        ]:
            app.send_task("system.echo", args=[job_id], task_id=job_id, queue=queue, **options)
    finally:
        signals.after_task_publish.disconnect(record)
    sent = {job_id: headers[broker.SENT_AT_HEADER] for job_id, headers in published.items()}
    eta = datetime.fromisoformat(published["m1"]["eta"]).timestamp()
    assert eta > sent["m1"] + HOUR - 60

    # kombu put the priority messages in lists of their own; the adapter sums them.
    assert [client.llen(key) for key in broker.queue_keys("sync")] == [1, 1, 0, 1]

    try:
        with app.connection_for_read() as connection:
            channel = connection.default_channel
            before = time.time()
            taken = [channel.basic_get("maintenance"), channel.basic_get("default")]
            after = time.time()
            # Step 0 first, oldest first: the ETA message and the first default one, unacknowledged.
            assert [message.headers["id"] for message in taken] == ["m1", "d1"]
            assert client.hlen(broker.UNACKED_KEY) == 2

            stats = broker.queue_stats(client, [*QUEUES, "idle"])
            assert stats == {
                "default": (1, sent["d2"]),
                "sync": (3, sent["s1"]),
                "maintenance": (1, sent["m2"]),
                "idle": (0, None),
            }
            now = sent["d2"] + 42.5
            assert stats["sync"].oldest_age(now) == now - sent["s1"]
            assert stats["idle"].oldest_age(now) == 0.0

            assert broker.waiting_job_ids(client, QUEUES) == {"s1", "s2", "s3", "m2", "d2"}
            held = {message.job_id: message for message in broker.held_messages(client)}
            assert set(held) == {"m1", "d1"}
            assert (held["m1"].eta, held["d1"].eta) == (eta, None)
            for message in held.values():
                assert message.delivered_at is not None
                assert before <= message.delivered_at <= after

            # Held counts while recently delivered, or while its ETA is ahead.
            assert broker.held_job_ids(client, held_for=HOUR) == {"m1", "d1"}
            assert broker.held_job_ids(client, held_for=0, now=after + 1) == {"m1"}
            assert broker.held_job_ids(client, held_for=60, now=eta + 1) == set()

            every = {"s1", "s2", "s3", "m2", "d2", "m1", "d1"}
            assert broker.broker_job_ids(client, held_for=HOUR) == every
            monkeypatch.setattr(broker, "SCAN_LIMIT", len(every))
            assert broker.broker_job_ids(client, held_for=HOUR) == every
            monkeypatch.setattr(broker, "SCAN_LIMIT", len(every) - 1)
            assert broker.broker_job_ids(client, held_for=HOUR) is None
    finally:
        app.close()
