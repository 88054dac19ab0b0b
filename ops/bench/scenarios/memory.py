"""5. Memory: RSS of a worker's pool process after 10,000 jobs against after 1,000 (``--quick``:
1,000 against 200), for the platform's prefork worker and plain Celery's, one pool process each
so that one process runs every job; and what each job cost meanwhile.

Jobs go in chunks sent from the bench process, alternating between the two sides, each chunk a
measurement window with the other side's worker frozen. A side's chunk is done when every job
succeeded in the ledger (platform) or every result is stored (plain Celery, counted with INFO
keyspace): the bench reads no result through either side. Between chunks the ledger documents
and stored results go (the stand-in's inserts slow down with the collection's size, and the
worker's memory does not depend on them).
"""

from celery import Celery

from ops.bench.config import Run
from ops.bench.harness import BASELINE_BACKEND_DB, child_pids, rss_kib
from ops.bench.producer import Producer, echo_request
from ops.bench.results import Metric, Scenario, Tally, cost_metrics
from ops.bench.sides import CELERY, PLATFORM
from ops.processes import Child, wait_for


def pool_rss(worker: Child) -> int:
    """VmRSS (KiB) of the worker's one pool process."""
    children = child_pids(worker.pid)
    if len(children) != 1:
        raise RuntimeError(f"{worker.name}: expected one pool process, found {children}")
    return rss_kib(children[0])


def platform_chunk(run: Run, producer: Producer, worker: Child, jobs: int, tally: Tally) -> None:
    db = run.harness.db
    with run.meter.window({"worker": worker}, platform=True, local=producer.stats) as cost:
        ids = [job["_id"] for job in producer.enqueue([echo_request() for _ in range(jobs)])]
        wait_for(
            lambda: db["jobs"].count_documents({"_id": {"$in": ids}, "status": "succeeded"}) == len(ids),
            timeout=600,
            what="memory chunk",
            interval=0.05,
        )
    tally.add(cost, jobs)


def baseline_chunk(run: Run, app: Celery, worker: Child, jobs: int, tally: Tally) -> None:
    with run.meter.window({"worker": worker}) as cost:
        for _ in range(jobs):
            app.send_task("baseline.echo", args=[{}])
        wait_for(
            lambda: run.meter.keys(BASELINE_BACKEND_DB) >= jobs,
            timeout=600,
            what="baseline memory chunk",
            interval=0.05,
        )
    tally.add(cost, jobs)


def run(run: Run) -> Scenario:
    h, config = run.harness, run.config
    scenario = Scenario("memory", "5. Worker memory")
    early, late = config.memory_marks
    chunk = config.memory_chunk
    if early % chunk or late % chunk:
        raise ValueError(f"memory marks {early} and {late} must be multiples of the chunk ({chunk})")
    h.clear_jobs()
    platform_worker, baseline_worker = h.parallel(
        lambda: h.platform_worker("worker-memory", queues="default", pool="prefork", concurrency=1),
        lambda: h.baseline_worker("baseline-worker-memory", pool="prefork", concurrency=1),
    )
    both = [platform_worker, baseline_worker]
    producer = Producer.open(h.settings)
    app = h.baseline_client()
    rss: dict[str, dict[int, int]] = {PLATFORM: {}, CELERY: {}}
    tallies = {PLATFORM: Tally(), CELERY: Tally()}
    try:
        done = 0
        while done < late:
            size = min(chunk, late - done)
            h.clear_jobs()
            h.run_only([platform_worker], both)
            platform_chunk(run, producer, platform_worker, size, tallies[PLATFORM])
            h.clear_jobs()
            h.run_only([baseline_worker], both)
            baseline_chunk(run, app, baseline_worker, size, tallies[CELERY])
            done += size
            if done in (early, late):
                rss[PLATFORM][done] = pool_rss(platform_worker)
                rss[CELERY][done] = pool_rss(baseline_worker)
                run.log(f"memory after {done} jobs KiB", **{side: rss[side][done] for side in rss})
    finally:
        producer.close()
        app.close()
        h.resume(*both)
        h.stop(platform_worker)
        h.stop(baseline_worker)
        h.clear_jobs()

    growth = {side: (values[late] - values[early]) / values[early] * 100 for side, values in rss.items()}
    scenario.add(
        Metric(
            "rss.early",
            f"pool process RSS after {early:,} jobs",
            "MiB",
            "lower",
            {side: [values[early] / 1024] for side, values in rss.items()},
            how="VmRSS of the worker's only pool process (/proc/<pid>/status), concurrency 1",
        )
    )
    scenario.add(
        Metric(
            "rss.late",
            f"pool process RSS after {late:,} jobs",
            "MiB",
            "lower",
            {side: [values[late] / 1024] for side, values in rss.items()},
        )
    )
    scenario.add(
        Metric(
            f"rss.growth.{early}-{late}",
            f"RSS growth {early:,} → {late:,} jobs",
            "%",
            "lower",
            {side: [value] for side, value in growth.items()},
            reference=None,  # a ratio of two small percentages says nothing
            zero_ok=True,
        )
    )
    # One value per side: the whole run, every chunk's window added up.
    totals = {side: _total(tally) for side, tally in tallies.items()}
    scenario.add(
        Metric(
            "rate",
            f"{late:,} jobs through one pool process",
            "jobs/s",
            "higher",
            {side: tally.rate() for side, tally in totals.items()},
            how=f"sent in chunks of {chunk} from the bench process, until done; not a throughput "
            "benchmark, shown for scale",
        )
    )
    for metric in cost_metrics(
        "all", f"{late:,} jobs", totals, {"worker": ("worker",)}, mongo_sides=(PLATFORM,)
    ):
        scenario.add(metric)
    scenario.notes.append(
        f"one run per side, not rounds: chunks of {chunk} jobs alternate between the platform and "
        "plain Celery; platform MongoDB commands include the bench's enqueue (role bench)"
    )
    return scenario


def _total(tally: Tally) -> Tally:
    total = Tally()
    cost = tally.costs[0]
    for more in tally.costs[1:]:
        cost = cost + more
    total.add(cost, sum(tally.jobs))
    return total
