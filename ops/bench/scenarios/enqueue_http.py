"""1. Enqueue over HTTP: ``POST /v1/jobs`` and ``POST /v1/jobs/batch`` under gunicorn, loaded by a
separate process, against the baseline's Flask route calling ``apply_async``.

No worker consumes during the loads (both sides only enqueue); the ledger and the queues are
emptied before each load so every round starts from the same state. After each platform load
the in-process replica enqueues the same number of jobs into an emptied ledger: its MongoDB
time is what the API spent inside MongoDB during that load.
"""

import json
import os
import statistics
from dataclasses import dataclass
from typing import Any

from ops.bench.config import Run
from ops.bench.harness import DEAD_PLATFORM_DB, group_cpu_seconds, run_loader
from ops.bench.mongo import Usage, per_job, server_ops
from ops.bench.replica import ECHO_PARAMS, Monitored, enqueue_echo
from ops.bench.results import Metric, Scenario, Target, caveat, own_rate

KINDS = ("single", "batch")
CPUS = len(os.sched_getaffinity(0))


@dataclass
class Load:
    """One load of one endpoint: the loader's result and what it cost per job."""

    result: dict[str, Any]
    jobs: int
    cpu_ms_per_job: float
    server_ops_per_job: float | None = None
    mongo: Usage | None = None

    def own(self) -> tuple[float, bool]:
        """Jobs per second with the load's MongoDB time (from the replica) taken out, within the
        CPU bound; and whether the bound set it."""
        assert self.mongo is not None
        return own_rate(
            self.jobs,
            self.result["seconds"],
            self.mongo.seconds / self.jobs,
            self.cpu_ms_per_job / 1000,
            CPUS,
        )


def _body(batch: int) -> str:
    job = {"type": "system.echo", "params": {}}
    return json.dumps({"jobs": [job] * batch} if batch > 1 else job)


def batch_unavailable(run: Run) -> str | None:
    """Why ``POST /v1/jobs/batch`` cannot be measured, or None when it answers 202."""
    status, body = run.harness.api().json("POST", "/v1/jobs/batch", {"jobs": [{"type": "system.echo"}]})
    if status == 202:
        return None
    return f"POST /v1/jobs/batch answered {status}: {json.dumps(body)[:200]}"


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


def platform_load(run: Run, replica: Monitored, path: str, batch: int) -> Load:
    h = run.harness
    h.clear_jobs()
    ops, cpu = server_ops(h.db), group_cpu_seconds(h.api_child)
    result = _run_loader(run, h.api_url + path, _body(batch), h.admin_headers, run.config.http_seconds)
    jobs = result["requests"] * batch
    load = Load(
        result,
        jobs,
        (group_cpu_seconds(h.api_child) - cpu) * 1000 / jobs,
        sum((server_ops(h.db) - ops).values()) / jobs,
    )
    h.clear_jobs()
    load.mongo = enqueue_echo(replica, jobs, batch)
    h.clear_jobs()
    return load


def baseline_load(run: Run, path: str, batch: int) -> Load:
    h = run.harness
    h.clear_jobs()
    cpu = group_cpu_seconds(h.baseline_api_child)
    result = _run_loader(run, h.baseline_url + path, _body(batch), {}, run.config.http_seconds)
    jobs = result["requests"] * batch
    return Load(result, jobs, (group_cpu_seconds(h.baseline_api_child) - cpu) * 1000 / jobs)


def run(run: Run) -> Scenario:
    h, config = run.harness, run.config
    scenario = Scenario("enqueue_http", "1. Enqueue over HTTP")
    skipped = batch_unavailable(run)
    sizes = {"single": ("/v1/jobs", 1), "batch": ("/v1/jobs/batch", config.batch_size)}
    kinds = [kind for kind in KINDS if not (kind == "batch" and skipped)]
    for kind in kinds:  # warm-up: connections, imports, first-request work
        path, batch = sizes[kind]
        _run_loader(run, h.api_url + path, _body(batch), h.admin_headers, 0.2)
        _run_loader(run, h.baseline_url + path, _body(batch), {}, 0.2)
    loads: dict[str, list[Load]] = {f"{side}-{kind}": [] for side in "pb" for kind in KINDS}
    replica = Monitored.open(h.settings_on(DEAD_PLATFORM_DB), h.redis(DEAD_PLATFORM_DB))
    try:
        for n in range(config.rounds):
            for kind in kinds:
                path, batch = sizes[kind]
                platform = platform_load(run, replica, path, batch)
                baseline = baseline_load(run, path, batch)
                loads[f"p-{kind}"].append(platform)
                loads[f"b-{kind}"].append(baseline)
                run.log(
                    f"enqueue {kind} round {n + 1}",
                    platform=f"{platform.jobs / platform.result['seconds']:.0f} jobs/s",
                    own=f"{platform.own()[0]:.0f}",
                    baseline=f"{baseline.jobs / baseline.result['seconds']:.0f} jobs/s",
                )
    finally:
        replica.close()
        h.clear_jobs()

    for kind in kinds:
        _metrics(scenario, kind, loads[f"p-{kind}"], loads[f"b-{kind}"], sizes[kind])
    if skipped:
        scenario.add(Metric("batch.jobs_per_s", "POST /v1/jobs/batch", "jobs/s", "higher", skipped=skipped))
        scenario.notes.append(f"batch skipped: {skipped}")
    _targets(run, scenario, skipped, loads)
    scenario.notes += [
        f"params stored per job: {json.dumps(ECHO_PARAMS)}; loader: {loads['p-single'][0].result['loader']} "
        f"(batches: {loads['p-batch'][0].result['loader'] if loads['p-batch'] else '-'}), "
        f"{config.http_concurrency} connections ({config.batch_concurrency} for batches), "
        f"{config.http_seconds:g}s per load; no worker consumes",
        "latency under load is shown raw only: on the stand-in it is mostly waiting for other "
        "requests' MongoDB commands, which no subtraction of one request's own MongoDB time removes",
    ]
    return scenario


def _metrics(scenario: Scenario, kind: str, p: list[Load], b: list[Load], size: tuple[str, int]) -> None:
    path, batch = size
    label = f"POST {path}" if batch == 1 else f"POST {path} ({batch} jobs)"
    if batch == 1:
        rate = Metric("single.rps", label, "req/s", "higher")
        rate.how = (
            "separate loader process, keep-alive connections, 2xx answers per second; own = requests / "
            "(time - MongoDB time of the replica enqueueing as many jobs into an emptied ledger), at most "
            f"{CPUS} CPUs / API CPU per request"
        )
    else:
        rate = Metric("batch.jobs_per_s", label, "jobs/s", "higher")
        rate.how = "baseline: the same body to a route looping apply_async per item"
    rate.platform = [load.jobs / load.result["seconds"] for load in p]
    rate.own = [load.own()[0] for load in p]
    rate.baseline = [load.jobs / load.result["seconds"] for load in b]
    scenario.add(rate)
    for pct in ("p50", "p99"):
        scenario.add(
            Metric(
                f"{kind}.{pct}",
                f"{label} {pct} under load",
                "ms",
                "lower",
                platform=[load.result["latencyMs"][pct] for load in p],
                baseline=[load.result["latencyMs"][pct] for load in b],
            )
        )
    scenario.add(
        Metric(
            f"{kind}.cpu",
            f"{label}: API CPU per job",
            "ms",
            "lower",
            platform=[load.cpu_ms_per_job for load in p],
            baseline=[load.cpu_ms_per_job for load in b],
            how="user+system CPU of the gunicorn master and workers (/proc) over the load ÷ jobs; the "
            "MongoDB server's CPU is not in it, the driver's is",
        )
    )
    usage = sum((load.mongo for load in p if load.mongo is not None), Usage.zero())
    scenario.mongo.append(
        {
            "path": label,
            **per_job(usage, sum(load.jobs for load in p)),
            "serverOpsPerJob": statistics.median(load.server_ops_per_job or 0.0 for load in p),
            "how": f"in-process replica after each platform load: mwap.enqueue.enqueue of as many jobs, "
            f"{batch} per call, into an emptied ledger, pymongo command monitoring; server ops: "
            "serverStatus opcounters around each platform load",
        }
    )


def mongo_share(loads: list[Load]) -> float:
    """The median share of a platform load's time that its replica spent inside MongoDB."""
    return statistics.median(
        (load.mongo.seconds if load.mongo else 0.0) / load.result["seconds"] for load in loads
    )


def _caveat(loads: list[Load]) -> tuple[str, bool]:
    return caveat(mongo_share(loads), sum(load.own()[1] for load in loads), len(loads))


def _targets(run: Run, scenario: Scenario, skipped: str | None, loads: dict[str, list[Load]]) -> None:
    basis = run.basis
    single = scenario.metric("single.rps")
    baseline_rate = statistics.median(single.baseline)
    value = statistics.median(single.own if basis == "own" else single.platform) / baseline_rate
    cpu = scenario.metric("single.cpu")
    text, uncertain = _caveat(loads["p-single"])
    scenario.targets.append(
        Target(
            "enqueue single: platform req/s / baseline req/s",
            ">= 0.7",
            basis,
            value,
            value >= 0.7,
            f"raw ratio {statistics.median(single.platform) / baseline_rate:.2f}; {text}; API CPU per "
            f"request platform / baseline {statistics.median(cpu.platform) / statistics.median(cpu.baseline):.2f}",
            uncertain=uncertain and basis == "own",
        )
    )
    name = "enqueue batch: platform jobs/s / baseline single-route jobs/s"
    if skipped:
        scenario.targets.append(Target(name, ">= 5", basis, None, None, skipped))
        return
    batch = scenario.metric("batch.jobs_per_s")
    chosen = statistics.median(batch.own if basis == "own" else batch.platform)
    value = chosen / baseline_rate
    cpu = scenario.metric("batch.cpu")
    single_cpu = statistics.median(scenario.metric("single.cpu").baseline)
    text, uncertain = _caveat(loads["p-batch"])
    scenario.targets.append(
        Target(
            name,
            ">= 5",
            basis,
            value,
            value >= 5,
            f"raw ratio {statistics.median(batch.platform) / baseline_rate:.2f}; {text}; against the "
            f"baseline's looping batch route {chosen / statistics.median(batch.baseline):.2f}; API CPU per "
            f"job: baseline single route / platform batch {single_cpu / statistics.median(cpu.platform):.2f}",
            uncertain=uncertain and basis == "own",
        )
    )
