"""2. End to end, trivial jobs: from ``POST /v1/jobs`` until ``GET /v1/jobs/{id}`` says succeeded,
against the baseline's route and ``result.get()``; jobs/s for a burst, and the latency of one job
at a time.

Workers: the platform's prefork worker on ``default`` and the baseline's default worker, both
with two processes (the baseline's default is one per CPU; this machine's count is in the run's
meta).
"""

import itertools
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from ops.bench.config import Run
from ops.bench.harness import DEAD_PLATFORM_DB, group_cpu_seconds
from ops.bench.loader import Http, percentile
from ops.bench.mongo import per_job, server_ops
from ops.bench.replica import Monitored, echo_lifecycle
from ops.bench.results import Metric, Scenario, Target, caveat, own_rate
from ops.processes import Child

ECHO = {"type": "system.echo", "params": {}}
CPUS = len(os.sched_getaffinity(0))
READ_TIMEOUT = 120  # seconds a job may take to succeed before the bench gives up on it


class Burst:
    """``jobs`` jobs posted by ``concurrency`` threads while as many threads read them back."""

    def __init__(self, jobs: int, concurrency: int) -> None:
        self.jobs, self.concurrency = jobs, concurrency
        self.ids: list[list[str]] = [[] for _ in range(concurrency)]
        self.posted = threading.Condition()
        self.reads_by = [0] * concurrency
        self.errors: list[str] = []
        self._tickets = itertools.count()

    def post_all(self, post: Any, n: int) -> None:
        while next(self._tickets) < self.jobs:
            job_id = post()
            with self.posted:
                self.ids[n].append(job_id)
                self.posted.notify_all()

    def next_id(self, n: int, index: int, done_posting: threading.Event) -> str | None:
        """Reader ``n``'s ``index``-th id (readers take the ids of one poster each, in order)."""
        with self.posted:
            while index >= len(self.ids[n]):
                if done_posting.is_set():
                    return None
                self.posted.wait(0.05)
            return self.ids[n][index]

    def run(self, post_factory: Any, read_factory: Any) -> float:
        done_posting = threading.Event()

        def poster(n: int) -> None:
            try:
                self.post_all(post_factory(), n)
            except Exception as error:  # noqa: BLE001 - reported with the result
                self.errors.append(repr(error))

        def reader(n: int) -> None:
            read = read_factory()
            index = 0
            try:
                while (job_id := self.next_id(n, index, done_posting)) is not None:
                    self.reads_by[n] += read(job_id)
                    index += 1
            except Exception as error:  # noqa: BLE001 - reported with the result
                self.errors.append(repr(error))

        started = time.perf_counter()
        # Daemons, so that Ctrl-C (raised in this thread only) does not wait for them.
        posters = [threading.Thread(target=poster, args=(n,), daemon=True) for n in range(self.concurrency)]
        readers = [threading.Thread(target=reader, args=(n,), daemon=True) for n in range(self.concurrency)]
        for thread in posters + readers:
            thread.start()
        try:
            for thread in posters:
                thread.join()
        finally:
            done_posting.set()
        for thread in readers:
            thread.join()
        elapsed = time.perf_counter() - started
        if self.errors:
            raise RuntimeError(f"burst failed: {self.errors[:3]}")
        return elapsed

    @property
    def reads(self) -> int:
        return sum(self.reads_by)


def _platform_post(run: Run) -> Any:
    client = run.harness.api()

    def post() -> str:
        status, doc = client.json("POST", "/v1/jobs", ECHO)
        if status != 202:
            raise RuntimeError(f"POST /v1/jobs answered {status}: {doc}")
        return doc["id"]

    return post


def _platform_read(run: Run, poll: float) -> Any:
    """Reads one job every ``poll`` seconds until it succeeded; returns how many GETs it took."""
    client = run.harness.api()

    def read(job_id: str) -> int:
        deadline = time.monotonic() + READ_TIMEOUT
        for reads in itertools.count(1):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} not succeeded after {READ_TIMEOUT}s")
            status, doc = client.json("GET", f"/v1/jobs/{job_id}")
            if status != 200:
                raise RuntimeError(f"GET /v1/jobs/{job_id} answered {status}: {doc}")
            if doc["status"] == "succeeded":
                return reads
            if doc["status"] == "failed":
                raise RuntimeError(f"job {job_id} failed: {doc['error']}")
            time.sleep(poll)
        raise AssertionError("unreachable")

    return read


def _baseline_post(run: Run) -> Any:
    client = Http(run.harness.baseline_url)

    def post() -> str:
        status, doc = client.json("POST", "/v1/jobs", ECHO)
        if status != 202:
            raise RuntimeError(f"baseline POST answered {status}: {doc}")
        return doc["id"]

    return post


def _baseline_read(app: Celery) -> Any:
    def read(job_id: str) -> int:
        app.AsyncResult(job_id).get(timeout=READ_TIMEOUT)
        return 1

    return read


class BaselineReaders:
    """One Celery client per reading thread: the Redis backend's result consumer is not thread-safe."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.apps: list[Celery] = []

    def __call__(self) -> Any:
        app = self.run.harness.baseline_client()
        self.apps.append(app)
        return _baseline_read(app)

    def close(self) -> None:
        for app in self.apps:
            app.close()


def _latencies(samples: int, post: Any, wait: Any) -> list[float]:
    values = []
    for _ in range(samples):
        started = time.perf_counter()
        wait(post())
        values.append((time.perf_counter() - started) * 1000)
    return values


@dataclass
class Rounds:
    """Per round: burst seconds, API + worker CPU per job, GETs per job, server ops per job, and
    the latencies of one job at a time."""

    seconds: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)
    server_ops: list[float] = field(default_factory=list)
    latencies: list[list[float]] = field(default_factory=list)


def _burst(run: Run, rounds: Rounds, processes: tuple[Child | None, ...], post: Any, read: Any) -> None:
    h, jobs = run.harness, run.config.e2e_jobs
    h.clear_jobs()
    burst = Burst(jobs, run.config.e2e_concurrency)
    ops, cpu = server_ops(h.db), group_cpu_seconds(*processes)
    rounds.seconds.append(burst.run(post, read))
    rounds.cpu_ms.append((group_cpu_seconds(*processes) - cpu) * 1000 / jobs)
    rounds.server_ops.append(sum((server_ops(h.db) - ops).values()) / jobs)
    rounds.reads.append(burst.reads / jobs)


def measure(run: Run) -> tuple[Rounds, Rounds]:
    """Bursts and single-job latencies, platform and baseline in turn, round by round."""
    h, config = run.harness, run.config
    workers = h.parallel(
        lambda: h.platform_worker(
            "worker-e2e", queues="default", pool="prefork", concurrency=config.worker_concurrency
        ),
        lambda: h.baseline_worker("baseline-worker-e2e", ["-c", str(config.worker_concurrency)]),
    )
    platform, baseline = Rounds(), Rounds()
    readers = BaselineReaders(run)
    baseline_wait = readers()
    try:
        # Warm-up: every pool process has run a job, every connection is open.
        Burst(20, config.e2e_concurrency).run(
            lambda: _platform_post(run), lambda: _platform_read(run, config.burst_poll_interval)
        )
        Burst(20, config.e2e_concurrency).run(lambda: _baseline_post(run), readers)
        for n in range(config.rounds):
            _burst(
                run,
                platform,
                (h.api_child, workers[0]),
                lambda: _platform_post(run),
                lambda: _platform_read(run, config.burst_poll_interval),
            )
            _burst(run, baseline, (h.baseline_api_child, workers[1]), lambda: _baseline_post(run), readers)
            h.clear_jobs()
            platform.latencies.append(
                _latencies(
                    config.latency_samples, _platform_post(run), _platform_read(run, config.poll_interval)
                )
            )
            baseline.latencies.append(_latencies(config.latency_samples, _baseline_post(run), baseline_wait))
            run.log(
                f"end-to-end round {n + 1}",
                platform=f"{config.e2e_jobs / platform.seconds[-1]:.0f} jobs/s",
                baseline=f"{config.e2e_jobs / baseline.seconds[-1]:.0f} jobs/s",
                p50=f"{statistics.median(platform.latencies[-1]):.1f}/"
                f"{statistics.median(baseline.latencies[-1]):.1f} ms",
            )
    finally:
        readers.close()
        for worker in workers:
            h.stop(worker)
        h.clear_jobs()
    return platform, baseline


def run(run: Run) -> Scenario:
    h, config = run.harness, run.config
    jobs = config.e2e_jobs
    scenario = Scenario("end_to_end", "2. End to end, trivial jobs")
    platform, baseline = measure(run)

    reads_per_job = statistics.median(platform.reads)
    replica = Monitored.open(h.settings_on(DEAD_PLATFORM_DB), h.redis(DEAD_PLATFORM_DB))
    try:
        everything, critical = echo_lifecycle(replica, jobs, round(reads_per_job))
    finally:
        replica.close()
        h.clear_jobs()
    m_job = everything.seconds / jobs
    m_critical = critical.seconds / jobs
    owns = [
        own_rate(jobs, t, m_job, cpu / 1000, CPUS)
        for t, cpu in zip(platform.seconds, platform.cpu_ms, strict=True)
    ]

    scenario.add(
        Metric(
            "throughput",
            f"{jobs} jobs, enqueue → result readable",
            "jobs/s",
            "higher",
            platform=[jobs / t for t in platform.seconds],
            own=[own[0] for own in owns],
            baseline=[jobs / t for t in baseline.seconds],
            how=f"{config.e2e_concurrency} threads post while {config.e2e_concurrency} read each job back "
            f"(platform: GET /v1/jobs/{{id}} every {config.burst_poll_interval * 1000:g} ms until succeeded; "
            "baseline: AsyncResult.get()); own = jobs / (time - jobs x MongoDB time per job of the "
            f"replica), at most {CPUS} CPUs / API + worker CPU per job",
        )
    )
    scenario.add(
        Metric(
            "cpu",
            f"{jobs} jobs: API + worker CPU per job",
            "ms",
            "lower",
            platform=platform.cpu_ms,
            baseline=baseline.cpu_ms,
            how="user+system CPU of the gunicorn and celery process groups (/proc) over the burst / jobs; "
            "the MongoDB server's CPU is not in it, the driver's is",
        )
    )
    for pct, fraction in (("p50", 0.5), ("p99", 0.99)):
        scenario.add(
            Metric(
                f"latency.{pct}",
                f"one job at a time, {pct}",
                "ms",
                "lower",
                platform=[percentile(r, fraction) for r in platform.latencies],
                own=[max(percentile(r, fraction) - m_critical * 1000, 0.0) for r in platform.latencies],
                baseline=[percentile(r, fraction) for r in baseline.latencies],
                how=f"{config.latency_samples} sequential jobs per round: POST, then (platform) GET every "
                f"{config.poll_interval * 1000:g} ms until succeeded, (baseline) result.get(); own = latency - "
                "MongoDB time of the "
                "critical path (insert, start, succeed, one read) of the replica",
            )
        )
    scenario.mongo.append(
        {
            "path": "enqueue + worker + reads",
            **per_job(everything, jobs),
            "criticalPathMsPerJob": m_critical * 1000,
            "readsPerJob": reads_per_job,
            "serverOpsPerJob": statistics.median(platform.server_ops),
            "how": f"in-process replica per job: mwap.enqueue.enqueue, ledger.start, ledger.succeed and "
            f"{round(reads_per_job)} ledger.get (the median GETs per job of the bursts); server ops: "
            "serverStatus opcounters around each platform burst (API and worker together)",
        }
    )
    share = statistics.median(m_job * jobs / t for t in platform.seconds)
    _targets(run, scenario, caveat(share, sum(bound for _, bound in owns), len(owns)))
    scenario.notes.append(
        "every platform result is persisted in the ledger and read back through the API; the "
        "baseline's result lives in Redis"
    )
    return scenario


def _targets(run: Run, scenario: Scenario, caveat_of_own: tuple[str, bool]) -> None:
    basis = run.basis
    throughput = scenario.metric("throughput")
    values = throughput.own if basis == "own" else throughput.platform
    ratio = statistics.median(values) / statistics.median(throughput.baseline)
    raw = statistics.median(throughput.platform) / statistics.median(throughput.baseline)
    cpu = scenario.metric("cpu")
    cpu_ratio = statistics.median(cpu.platform) / statistics.median(cpu.baseline)
    scenario.targets.append(
        Target(
            "end-to-end jobs/s: platform / baseline",
            ">= 1",
            basis,
            ratio,
            ratio >= 1,
            f"raw ratio {raw:.2f}; {caveat_of_own[0]}; API + worker CPU per job platform / baseline {cpu_ratio:.2f}",
            uncertain=caveat_of_own[1] and basis == "own",
        )
    )
    p50 = scenario.metric("latency.p50")
    values = p50.own if basis == "own" else p50.platform
    ratio = statistics.median(values) / statistics.median(p50.baseline)
    raw = statistics.median(p50.platform) / statistics.median(p50.baseline)
    scenario.targets.append(
        Target(
            "one job p50 latency: platform / baseline result.get()",
            "<= 1",
            basis,
            ratio,
            ratio <= 1,
            f"raw ratio {raw:.2f}",
        )
    )
