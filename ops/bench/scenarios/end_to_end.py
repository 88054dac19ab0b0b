"""2. End to end, trivial jobs: from the POST until the result is read back, for a burst of jobs
(jobs/s and what each job cost) and for one job at a time (latency).

Sides: the platform (``POST /v1/jobs``, then ``GET /v1/jobs/{id}?wait=5``: one request, no polling);
plain Celery through its Flask route, its result read by ``result.get()`` in the client
(``celery``) or through its own ``GET`` route waiting the same way (``celery-route``); Dramatiq
through its Flask routes (reported, not a target). Workers: the platform's prefork worker with two
processes and its beat; plain Celery's worker with the same pool and concurrency; Dramatiq's with
two processes of one thread. While one side is measured the others' workers and beat are frozen
(SIGSTOP), so each window sees one side's commands and CPU only.

Then the same three steps one by one, to say which step issues which command: enqueue (the
side's worker and beat frozen), run (the worker drains them), read (each result read once).
"""

import functools
import itertools
import statistics
import threading
import time
from collections.abc import Callable

from celery import Celery

from ops.bench.config import Run
from ops.bench.harness import BASELINE_BACKEND_DB, PLATFORM_DB
from ops.bench.loader import Http, percentile
from ops.bench.meter import Cost
from ops.bench.results import Metric, Scenario, Tally, cost_metrics
from ops.bench.sides import CELERY, CELERY_ROUTE, DRAMATIQ, PLATFORM
from ops.processes import Child, wait_for

ECHO = {"type": "system.echo", "params": {}}
READ_TIMEOUT = 120  # seconds a job may take to succeed before the bench gives up on it
SIDES = (PLATFORM, CELERY, CELERY_ROUTE, DRAMATIQ)
STEP_SIDES = (PLATFORM, CELERY)  # celery-route shares plain Celery's enqueue and run steps
# What each side's read answers once the job is done, and when it failed.
DONE = {PLATFORM: "succeeded", CELERY_ROUTE: "success", DRAMATIQ: "succeeded"}
FAILED = {PLATFORM: "failed", CELERY_ROUTE: "failure", DRAMATIQ: "failed"}

Post = Callable[[], str]
Read = Callable[[str], int]  # reads one job until done; the number of requests it took


class Burst:
    """``jobs`` jobs posted by ``concurrency`` threads while as many threads read them back."""

    def __init__(self, jobs: int, concurrency: int) -> None:
        self.jobs, self.concurrency = jobs, concurrency
        self.ids: list[list[str]] = [[] for _ in range(concurrency)]
        self.posted = threading.Condition()
        self.reads_by = [0] * concurrency
        self.errors: list[str] = []
        self._tickets = itertools.count()

    def post_all(self, post: Post, n: int) -> None:
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

    def run(self, post_factory: Callable[[], Post], read_factory: Callable[[], Read]) -> float:
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


class Sides:
    """Each side's routes, clients and processes for this scenario."""

    def __init__(self, run: Run, workers: dict[str, list[Child]]) -> None:
        self.run = run
        h = run.harness
        self.workers = workers  # side -> its background processes (worker first, then beat)
        self.everything = [child for children in workers.values() for child in children]
        self.urls = {
            PLATFORM: (h.api_url, h.admin_headers),
            CELERY: (h.baseline_url, {}),
            CELERY_ROUTE: (h.baseline_url, {}),
            DRAMATIQ: (h.dramatiq_url, {}),
        }
        self.apis = {
            PLATFORM: h.api_child,
            CELERY: h.baseline_api_child,
            CELERY_ROUTE: h.baseline_api_child,
            DRAMATIQ: h.dramatiq_api_child,
        }
        self._celery_clients: list[Celery] = []
        self._lock = threading.Lock()

    def only(self, side: str | None) -> None:
        """Let ``side``'s workers and beat run, freeze everyone else's (None: freeze all)."""
        self.run.harness.run_only(self.workers[side] if side else [], self.everything)

    def groups(self, side: str) -> dict[str, Child | None]:
        worker, *beat = self.workers[side]
        return {"api": self.apis[side], "worker": worker, **({"beat": beat[0]} if beat else {})}

    def post(self, side: str) -> Post:
        url, headers = self.urls[side]
        client = Http(url, headers)

        def post() -> str:
            status, doc = client.json("POST", "/v1/jobs", ECHO)
            if status != 202:
                raise RuntimeError(f"{side}: POST /v1/jobs answered {status}: {doc}")
            return doc["id"]

        return post

    def read(self, side: str) -> Read:
        """A reader for one thread: the side's GET ?wait=N (repeated only if it answers before the
        job is done), or plain Celery's ``result.get()`` on a client of this thread's own."""
        if side == CELERY:
            app = self.run.harness.baseline_client()
            with self._lock:
                self._celery_clients.append(app)

            def get(job_id: str) -> int:
                app.AsyncResult(job_id).get(timeout=READ_TIMEOUT)
                return 1

            return get
        url, headers = self.urls[side]
        client = Http(url, headers)
        path = f"/v1/jobs/{{}}?wait={self.run.config.wait_seconds}"

        def read(job_id: str) -> int:
            deadline = time.monotonic() + READ_TIMEOUT
            for reads in itertools.count(1):
                status, doc = client.json("GET", path.format(job_id))
                if status != 200:
                    raise RuntimeError(f"{side}: GET /v1/jobs/{job_id} answered {status}: {doc}")
                if doc["status"] == DONE[side]:
                    return reads
                if doc["status"] == FAILED[side] or time.monotonic() > deadline:
                    raise RuntimeError(f"{side}: job {job_id} not done: {doc}")
            raise AssertionError("unreachable")

        return read

    def close(self) -> None:
        for app in self._celery_clients:
            app.close()


def _latencies(samples: int, post: Post, read: Read) -> list[float]:
    values = []
    for _ in range(samples):
        started = time.perf_counter()
        read(post())
        values.append((time.perf_counter() - started) * 1000)
    return values


def _burst(run: Run, sides: Sides, side: str, tally: Tally) -> None:
    h, jobs = run.harness, run.config.e2e_jobs
    sides.only(side)
    h.clear_jobs()
    burst = Burst(jobs, run.config.e2e_concurrency)
    with run.meter.window(sides.groups(side), platform=side == PLATFORM) as cost:
        burst.run(lambda: sides.post(side), lambda: sides.read(side))
    extra = {"reads": burst.reads / jobs}
    if side == PLATFORM:
        extra["mongo_bytes"] = h.ledger_bytes() / jobs
    tally.add(cost, jobs, **extra)


def _steps(run: Run, sides: Sides) -> dict[str, dict[str, Tally]]:
    """Per step (enqueue, run, read) and side, one window over ``step_jobs`` jobs taken one by one."""
    h, meter, n = run.harness, run.meter, run.config.step_jobs
    steps: dict[str, dict[str, Tally]] = {step: {} for step in ("enqueue", "run", "read")}
    for side in STEP_SIDES:
        platform = side == PLATFORM
        sides.only(None)
        h.clear_jobs()
        keys_before = meter.lasting_keys(PLATFORM_DB)
        post = sides.post(side)
        with meter.window(sides.groups(side), platform=platform) as cost:
            ids = [post() for _ in range(n)]
        steps["enqueue"][side] = _one(cost, n)
        with meter.window(sides.groups(side), platform=platform) as cost:
            sides.only(side)
            _drained(run, side, ids, keys_before)
        sides.only(None)
        steps["run"][side] = _one(cost, n)
        for reader in (side, CELERY_ROUTE) if side == CELERY else (side,):
            read = sides.read(reader)
            with meter.window(sides.groups(side), platform=platform) as cost:
                for job_id in ids:
                    read(job_id)
            steps["read"][reader] = _one(cost, n)
    return steps


def _drained(run: Run, side: str, ids: list[str], keys_before: int) -> None:
    """Wait until the side's worker is done with ``ids``: for the platform, every job succeeded in
    the ledger and every message acked (its Redis database back to the keys without an expiry it
    had before the enqueue: a message is acked after its locks are let go); for plain Celery, every result stored. The probes count as none of the sides'
    commands: the bench's MongoDB client is not the platform's, and INFO is left out."""
    h, meter = run.harness, run.meter
    n = len(ids)
    if side == PLATFORM:
        wait_for(
            lambda: h.db["jobs"].count_documents({"_id": {"$in": ids}, "status": "succeeded"}) == n,
            timeout=READ_TIMEOUT,
            what="step jobs succeeded",
            interval=0.02,
        )
        try:
            wait_for(
                lambda: meter.lasting_keys(PLATFORM_DB) <= keys_before,
                timeout=READ_TIMEOUT,
                what="step messages acked",
                interval=0.02,
            )
        except TimeoutError as error:
            redis = h.redis(PLATFORM_DB)
            lasting = sorted(key.decode() for key in redis.scan_iter(count=1000) if redis.ttl(key) == -1)
            raise TimeoutError(
                f"{error}: {keys_before} keys without an expiry before, now {lasting}"
            ) from None
        return
    wait_for(
        lambda: meter.keys(BASELINE_BACKEND_DB) >= n, timeout=READ_TIMEOUT, what="step results", interval=0.02
    )


def _one(cost: Cost, jobs: int) -> Tally:
    tally = Tally()
    tally.add(cost, jobs)
    return tally


def measure(run: Run) -> tuple[dict[str, Tally], dict[str, list[list[float]]], dict[str, dict[str, Tally]]]:
    """Bursts and single-job latencies, every side in turn, round by round; then the steps."""
    h, config = run.harness, run.config
    platform_worker, beat, celery_worker, dramatiq_worker = h.parallel(
        lambda: h.platform_worker(
            "worker-e2e", queues="default", pool="prefork", concurrency=config.worker_concurrency
        ),
        h.platform_beat,
        lambda: h.baseline_worker(
            "baseline-worker-e2e", pool="prefork", concurrency=config.worker_concurrency
        ),
        lambda: h.dramatiq_worker("dramatiq-worker-e2e", processes_=config.worker_concurrency, threads=1),
    )
    sides = Sides(
        run,
        {
            PLATFORM: [platform_worker, beat],
            CELERY: [celery_worker],
            CELERY_ROUTE: [celery_worker],
            DRAMATIQ: [dramatiq_worker],
        },
    )
    tallies = {side: Tally() for side in SIDES}
    latencies: dict[str, list[list[float]]] = {side: [] for side in SIDES}
    try:
        for side in SIDES:  # warm-up: every pool process has run a job, every connection is open
            sides.only(side)
            Burst(20, config.e2e_concurrency).run(
                functools.partial(sides.post, side), functools.partial(sides.read, side)
            )
        for n in range(config.rounds):
            for side in SIDES:
                _burst(run, sides, side, tallies[side])
            for side in SIDES:
                sides.only(side)
                h.clear_jobs()
                latencies[side].append(_latencies(config.latency_samples, sides.post(side), sides.read(side)))
            run.log(
                f"end-to-end round {n + 1} jobs/s, p50 ms",
                **{
                    side: f"{tallies[side].rate()[-1]:.0f}, {statistics.median(latencies[side][-1]):.1f}"
                    for side in SIDES
                },
            )
        steps = _steps(run, sides)
    finally:
        sides.close()
        h.resume(*sides.everything)
        for child in (platform_worker, beat, celery_worker, dramatiq_worker):
            h.stop(child)
        h.clear_jobs()
    return tallies, latencies, steps


def run(run: Run) -> Scenario:
    config = run.config
    jobs = config.e2e_jobs
    scenario = Scenario("end_to_end", "2. End to end, trivial jobs")
    tallies, latencies, steps = measure(run)
    label = f"{jobs} jobs"
    scenario.add(
        Metric(
            "burst.rate",
            f"{label}, enqueue → result read",
            "jobs/s",
            "higher",
            {side: tally.rate() for side, tally in tallies.items()},
            reference=CELERY_ROUTE,
            how=f"{config.e2e_concurrency} threads post while {config.e2e_concurrency} read each job back "
            f"(platform, celery-route, dramatiq: GET /v1/jobs/{{id}}?wait={config.wait_seconds}, again only "
            "if it answered before the job was done; celery: result.get())",
        )
    )
    scenario.add(
        Metric(
            "burst.reads",
            f"{label}: GET requests per job",
            "requests",
            "lower",
            {side: tally.extra["reads"] for side, tally in tallies.items() if side != CELERY},
            reference=CELERY_ROUTE,
        )
    )
    groups = {"API": ("api",), "worker": ("worker",), "beat": ("beat",), "API + worker": ("api", "worker")}
    for metric in cost_metrics(
        "burst", label, tallies, groups, mongo_sides=(PLATFORM,), reference=CELERY_ROUTE
    ):
        scenario.add(metric)
    scenario.add(
        Metric(
            "burst.mongo_bytes",
            f"{label}: bytes stored in MongoDB per job",
            "B",
            "lower",
            {PLATFORM: tallies[PLATFORM].extra["mongo_bytes"]},
            reference=None,
            how="BSON size of the ledger documents the burst left, results included (the peers keep "
            "their results in Redis: counted in the bytes sent to Redis)",
        )
    )
    for pct, fraction in (("p50", 0.5), ("p99", 0.99)):
        scenario.add(
            Metric(
                f"one.{pct}",
                f"one job at a time, {pct}",
                "ms",
                "lower",
                {side: [percentile(r, fraction) for r in rounds] for side, rounds in latencies.items()},
                how=f"{config.latency_samples} sequential jobs per round: POST, then the read of the burst "
                "(one GET ?wait, or result.get())",
            )
        )
    for step, by_side in steps.items():
        for metric in cost_metrics(
            f"step.{step}",
            f"step {step}, {config.step_jobs} jobs one by one",
            by_side,
            {},
            mongo_sides=(PLATFORM,) if PLATFORM in by_side else (),
        ):
            metric.zero_ok = True  # a step may send no command of a kind at all
            scenario.add(metric)
    scenario.notes += [
        "every platform result is persisted in the ledger and read back through the API; plain "
        "Celery's and Dramatiq's results live in Redis",
        "steps: enqueue = the POSTs with the side's worker and beat frozen; run = the worker draining "
        "them (done when every result is stored and, for the platform, every message acked); read = "
        "each finished job read once (celery: result.get(); celery-route and platform: GET ?wait, "
        "answered at once). The burst's reads wait for running jobs (a pub/sub subscription each), "
        "so the steps need not add up to the burst",
        "a frozen worker's blocking BRPOP already at Redis may time out inside another side's window: "
        "at most one command per frozen worker per window",
    ]
    return scenario
