"""The baseline `mwap bench` compares the platform with: plain Celery and plain Flask routes.

Celery with its default settings (prefetch 4, ack on receipt; the bench gives its worker the
platform worker's pool and concurrency), a Redis broker and a Redis result backend; a Flask route
that calls ``apply_async`` and answers the task id, one that reads the result back. No ledger,
no leases, no auth. Started by the bench as

    celery -A ops.bench.baseline:app worker -P POOL -c N
    gunicorn ops.bench.baseline:web

with ``BENCH_BROKER_URL`` and ``BENCH_RESULT_BACKEND`` in the environment, read at import time
as plain Celery apps do.
"""

import contextlib
import os
import threading
import time
from typing import Any

import requests
from celery import Celery
from celery.exceptions import TimeoutError as ResultTimeout
from celery.result import AsyncResult
from flask import Flask, jsonify, request

app = Celery(
    "baseline",
    broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/1"),
    backend=os.environ.get("BENCH_RESULT_BACKEND", "redis://127.0.0.1:6379/2"),
)
app.conf.broker_connection_retry_on_startup = True  # only silences Celery 6's deprecation warning

web = Flask(__name__)


@app.task(name="baseline.echo")
def echo(params: dict[str, Any]) -> dict[str, Any]:
    """The baseline's ``system.echo``: hand the params back as the result."""
    return {"message": params.get("message", ""), "retries": 0}


@app.task(name="baseline.io_calls")
def io_calls(url: str, token: str, calls: int) -> dict[str, Any]:
    """The baseline's I/O-bound job: ``calls`` sequential provider requests, nothing stored."""
    started = time.monotonic()
    with requests.Session() as session:
        for _ in range(calls):
            response = session.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=(3.05, 30))
            response.raise_for_status()
    return {"calls": calls, "seconds": time.monotonic() - started}


@web.post("/v1/jobs")
def create_job() -> tuple[Any, int]:
    body = request.get_json(force=True)
    result = echo.apply_async(args=(body.get("params") or {},))
    return jsonify(id=result.id, status="queued"), 202


@web.post("/v1/jobs/batch")
def create_jobs() -> tuple[Any, int]:
    """The naive batch: one ``apply_async`` per item, in a loop."""
    body = request.get_json(force=True)
    ids = [echo.apply_async(args=(item.get("params") or {},)).id for item in body["jobs"]]
    return jsonify(ids=ids), 202


_local = threading.local()


def _reader() -> Celery:
    """This server thread's own client for reading results: Celery's Redis result consumer (one
    pub/sub connection per app) is not meant to be shared by threads waiting at the same time."""
    if not hasattr(_local, "app"):
        _local.app = Celery("baseline-reader", broker=app.conf.broker_url, backend=app.conf.result_backend)
    return _local.app


@web.get("/v1/jobs/<job_id>")
def get_job(job_id: str) -> tuple[Any, int]:
    """The task's state and result from the Redis result backend; ``?wait=N`` waits up to N seconds
    for it with ``result.get(timeout=N)``, as the platform's ``GET /v1/jobs/{id}?wait=N`` does."""
    result: AsyncResult = AsyncResult(job_id, app=_reader())
    wait = float(request.args.get("wait", 0))
    if wait > 0:
        with contextlib.suppress(ResultTimeout):  # not done in time: answer with the state it has
            result.get(timeout=wait, propagate=False)
    if result.ready():
        return jsonify(id=job_id, status=result.state.lower(), result=result.result), 200
    return jsonify(id=job_id, status=result.state.lower()), 200
