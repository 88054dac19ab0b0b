"""The naive baseline `mwap bench` compares the platform with: plain Celery and a plain Flask route.

Celery with its default settings (prefork, one process per CPU, prefetch 4, early ack), a Redis
broker and a Redis result backend; a Flask route that calls ``apply_async`` and answers the task
id. No ledger, no leases, no auth. Started by the bench as

    celery -A ops.bench.baseline:app worker
    gunicorn ops.bench.baseline:web

with ``BENCH_BROKER_URL`` and ``BENCH_RESULT_BACKEND`` in the environment, read at import time
as plain Celery apps do.
"""

import os
import time
from typing import Any

import requests
from celery import Celery
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
    result = echo.apply_async(args=[body.get("params") or {}])
    return jsonify(id=result.id, status="queued"), 202


@web.post("/v1/jobs/batch")
def create_jobs() -> tuple[Any, int]:
    """The naive batch: one ``apply_async`` per item, in a loop."""
    body = request.get_json(force=True)
    ids = [echo.apply_async(args=[item.get("params") or {}]).id for item in body["jobs"]]
    return jsonify(ids=ids), 202
