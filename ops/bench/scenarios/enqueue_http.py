"""1. Enqueue over HTTP: ``POST /v1/jobs`` and ``POST /v1/jobs/batch`` under gunicorn, loaded by a
separate process, against plain Celery's Flask route calling ``apply_async`` and Dramatiq's
calling ``send`` (each with a naive batch route looping over the items).

No worker runs (every side only enqueues); the ledger and the queues are emptied before each
load so that every round starts from the same state. Each load is one measurement window: the
loader's rate and latencies, the API's CPU, Redis and MongoDB commands, bytes.
"""

import json
from typing import Any

from ops.bench.config import Run
from ops.bench.harness import run_loader
from ops.bench.producer import ECHO_PARAMS
from ops.bench.results import Metric, Scenario, Tally, cost_metrics
from ops.bench.sides import CELERY, DRAMATIQ, PLATFORM
from ops.processes import Child

KINDS = ("single", "batch")
SIDES = (PLATFORM, CELERY, DRAMATIQ)


def _body(batch: int) -> str:
    job = {"type": "system.echo", "params": {}}
    return json.dumps({"jobs": [job] * batch} if batch > 1 else job)


def _run_loader(run: Run, url: str, body: str, headers: dict[str, str], seconds: float) -> dict[str, Any]:
    config = run.config
    batch = url.endswith("/batch")
    result = run_loader(
        {
            "url": url,
            "method": "POST",
            "headers": headers,
            "body": body,
            "concurrency": config.batch_concurrency if batch else config.http_concurrency,
            "seconds": seconds,
            # wrk counts whole seconds, and drops the requests in flight at its deadline although the
            # server ran them: fine for 5 ms requests, not for 1 s batches whose cost is counted per job.
            "loader": config.loader if seconds >= 1 and not batch else "python",
        }
    )
    if result["requests"] == 0 or result["errors"] > result["requests"] * 0.01:
        raise RuntimeError(
            f"load of {url}: {result['errors']} errors for {result['requests']} answers: {result}"
        )
    return result


def _side(run: Run, side: str) -> tuple[str, dict[str, str], Child | None]:
    h = run.harness
    return {
        PLATFORM: (h.api_url, h.admin_headers, h.api_child),
        CELERY: (h.baseline_url, {}, h.baseline_api_child),
        DRAMATIQ: (h.dramatiq_url, {}, h.dramatiq_api_child),
    }[side]


def load(run: Run, side: str, path: str, batch: int, tally: Tally) -> dict[str, Any]:
    """One load of one side's endpoint, measured; the loader's result."""
    h = run.harness
    url, headers, api = _side(run, side)
    h.clear_jobs()
    with run.meter.window({"api": api}, platform=side == PLATFORM) as cost:
        result = _run_loader(run, url + path, _body(batch), headers, run.config.http_seconds)
    jobs = result["requests"] * batch
    # The loader's own clock: requests in flight at its deadline finish and count.
    cost.seconds = result["seconds"]
    extra = {"p50": result["latencyMs"]["p50"], "p99": result["latencyMs"]["p99"]}
    if side == PLATFORM:
        extra["mongo_bytes"] = h.ledger_bytes() / jobs
    tally.add(cost, jobs, **extra)
    h.clear_jobs()
    return result


def run(run: Run) -> Scenario:
    h, config = run.harness, run.config
    scenario = Scenario("enqueue_http", "1. Enqueue over HTTP")
    sizes = {"single": ("/v1/jobs", 1), "batch": ("/v1/jobs/batch", config.batch_size)}
    for kind in KINDS:  # warm-up: connections, imports, first-request work
        path, batch = sizes[kind]
        for side in SIDES:
            url, headers, _ = _side(run, side)
            _run_loader(run, url + path, _body(batch), headers, 0.2)
    tallies = {kind: {side: Tally() for side in SIDES} for kind in KINDS}
    loaders: set[str] = set()
    try:
        for n in range(config.rounds):
            for kind in KINDS:
                path, batch = sizes[kind]
                rates = {}
                for side in SIDES:
                    result = load(run, side, path, batch, tallies[kind][side])
                    loaders.add(result["loader"])
                    rates[side] = f"{tallies[kind][side].rate()[-1]:.0f}"
                run.log(f"enqueue {kind} round {n + 1} jobs/s", **rates)
    finally:
        h.clear_jobs()

    for kind in KINDS:
        _metrics(scenario, kind, sizes[kind], tallies[kind])
    scenario.notes += [
        f"params stored per job: {json.dumps(ECHO_PARAMS)}; loader: {', '.join(sorted(loaders))}; "
        f"{config.http_concurrency} connections ({config.batch_concurrency} for batches), "
        f"{config.http_seconds:g}s per load; no worker runs",
        "plain Celery and Dramatiq: the same JSON bodies to their own Flask routes under gunicorn with the "
        "platform API's workers and threads; their batch routes loop over the items",
    ]
    return scenario


def _metrics(scenario: Scenario, kind: str, size: tuple[str, int], tallies: dict[str, Tally]) -> None:
    path, batch = size
    label = f"POST {path}" if batch == 1 else f"POST {path} ({batch} jobs)"
    scenario.add(
        Metric(
            f"{kind}.rate",
            label,
            "req/s" if batch == 1 else "jobs/s",
            "higher",
            {side: tally.rate() for side, tally in tallies.items()},
            how="separate loader process, keep-alive connections; 2xx answers (x jobs per answer) per second",
        )
    )
    for pct in ("p50", "p99"):
        scenario.add(
            Metric(
                f"{kind}.{pct}",
                f"{label}: {pct} under load",
                "ms",
                "lower",
                {side: tally.extra[pct] for side, tally in tallies.items()},
            )
        )
    for metric in cost_metrics(kind, label, tallies, {"API": ("api",)}, mongo_sides=(PLATFORM,)):
        scenario.add(metric)
    scenario.add(
        Metric(
            f"{kind}.mongo_bytes",
            f"{label}: bytes stored in MongoDB per job",
            "B",
            "lower",
            {PLATFORM: tallies[PLATFORM].extra["mongo_bytes"]},
            reference=None,
            how="BSON size of the ledger documents the load left (the other sides store nothing in MongoDB)",
        )
    )
