"""The one publisher (worker.app.publisher) against the session's redis-server, on a database of
its own so no worker of the session consumes what it sends."""

import json
from collections.abc import Iterator

import pytest
from celery import Celery
from redis import Redis

from mwap.settings import Settings
from worker.app import create_celery_app, publisher

QUEUE = "maintenance"


@pytest.fixture
def isolated(settings: Settings) -> Iterator[tuple[Celery, Redis]]:
    base = settings.redis_url.rsplit("/", 1)[0]
    own = settings.model_copy(update={"redis_url": f"{base}/7"})
    app = create_celery_app(own)
    redis = Redis.from_url(own.redis_url)
    redis.flushdb()
    yield app, redis
    redis.flushdb()
    redis.close()
    app.close()


def waiting(redis: Redis) -> list[dict]:
    return [json.loads(raw) for raw in redis.lrange(QUEUE, 0, -1)]


def test_a_batch_is_held_until_its_block_ends_then_sent_whole(isolated: tuple[Celery, Redis]) -> None:
    app, redis = isolated
    publish = publisher(app)
    assert publisher(app) is publish  # one per app
    with publish.batch():
        for n in range(3):
            publish("system.echo", f"job-{n}", QUEUE, {"requestId": f"req-{n}"})
        assert redis.llen(QUEUE) == 0  # held: nothing has reached Redis yet
    messages = waiting(redis)
    assert sorted(m["headers"]["id"] for m in messages) == ["job-0", "job-1", "job-2"]
    for message in messages:
        assert message["headers"]["task"] == "system.echo"
        assert message["headers"]["requestId"] == message["headers"]["id"].replace("job", "req")


def test_outside_a_batch_each_message_goes_at_once(isolated: tuple[Celery, Redis]) -> None:
    app, redis = isolated
    publisher(app)("system.echo", "job-9", QUEUE, {})
    assert [m["headers"]["id"] for m in waiting(redis)] == ["job-9"]
