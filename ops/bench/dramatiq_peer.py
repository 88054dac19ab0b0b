"""Dramatiq, the second peer `mwap bench` reports beside plain Celery (not a target).

Dramatiq with its defaults (default middleware, Redis broker) plus its ``Results`` middleware on a
Redis result backend; Flask routes that send the job and read its result back, as the baseline's
do. Started by the bench as

    dramatiq ops.bench.dramatiq_peer --processes N --threads 1
    gunicorn ops.bench.dramatiq_peer:web

with ``BENCH_DRAMATIQ_BROKER`` and ``BENCH_DRAMATIQ_RESULTS`` in the environment, read at import
time as plain Dramatiq apps do.
"""

import os
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message
from dramatiq.results import ResultMissing, Results, ResultTimeout
from dramatiq.results.backends.redis import RedisBackend
from flask import Flask, jsonify, request

QUEUE = "default"
ECHO = "bench.echo"


def connect(broker_url: str, results_url: str) -> tuple[RedisBroker, RedisBackend]:
    backend = RedisBackend(url=results_url)
    broker = RedisBroker(url=broker_url)
    broker.add_middleware(Results(backend=backend))
    return broker, backend


broker, backend = connect(
    os.environ.get("BENCH_DRAMATIQ_BROKER", "redis://127.0.0.1:6379/4"),
    os.environ.get("BENCH_DRAMATIQ_RESULTS", "redis://127.0.0.1:6379/5"),
)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name=ECHO, queue_name=QUEUE, store_results=True)
def echo(params: dict[str, Any]) -> dict[str, Any]:
    """The peer's ``system.echo``: hand the params back as the result."""
    return {"message": params.get("message", ""), "retries": 0}


def message_for(message_id: str) -> Message[Any]:
    """Enough of a sent echo message to find its result (the backend keys results by queue, actor
    and message id)."""
    return Message(queue_name=QUEUE, actor_name=ECHO, args=(), kwargs={}, options={}, message_id=message_id)


web = Flask(__name__)


@web.post("/v1/jobs")
def create_job() -> tuple[Any, int]:
    body = request.get_json(force=True)
    message = echo.send(body.get("params") or {})
    return jsonify(id=message.message_id, status="queued"), 202


@web.post("/v1/jobs/batch")
def create_jobs() -> tuple[Any, int]:
    """The naive batch: one ``send`` per item, in a loop."""
    body = request.get_json(force=True)
    ids = [echo.send(item.get("params") or {}).message_id for item in body["jobs"]]
    return jsonify(ids=ids), 202


@web.get("/v1/jobs/<job_id>")
def get_job(job_id: str) -> tuple[Any, int]:
    """The result from the Redis result backend; ``?wait=N`` blocks up to N seconds for it."""
    wait = float(request.args.get("wait", 0))
    try:
        result = backend.get_result(message_for(job_id), block=wait > 0, timeout=int(wait * 1000))
    except (ResultMissing, ResultTimeout):
        return jsonify(id=job_id, status="queued"), 200
    return jsonify(id=job_id, status="succeeded", result=result), 200


class Client:
    """The bench's own Dramatiq client: sends an echo and reads its result (readiness, one-job
    round trips), on the given broker and result backend."""

    def __init__(self, broker_url: str, results_url: str) -> None:
        self.broker, self.backend = connect(broker_url, results_url)

    def send(self) -> str:
        message: Message[Any] = Message(queue_name=QUEUE, actor_name=ECHO, args=({},), kwargs={}, options={})
        return self.broker.enqueue(message).message_id

    def result(self, message_id: str, *, timeout_ms: int) -> Any:
        return self.backend.get_result(message_for(message_id), block=True, timeout=timeout_ms)

    def round_trip(self, *, timeout_ms: int) -> bool:
        try:
            self.result(self.send(), timeout_ms=timeout_ms)
        except ResultTimeout:
            return False
        return True

    def close(self) -> None:
        for client in (self.broker.client, self.backend.client):
            if isinstance(client, redis.Redis):
                client.close()
