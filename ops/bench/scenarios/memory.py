"""5. Memory: RSS of a worker's pool process after 10,000 jobs against after 1,000 (``--quick``:
1,000 against 200), for the platform's prefork worker and the baseline's, one pool process each
so that one process runs every job.

Jobs go in chunks, alternating between the two sides; a platform chunk's ledger documents are
deleted once final (the stand-in's inserts slow down with the collection's size, and the
worker's memory does not depend on them).
"""

import time

from celery import Celery

from ops.bench.config import Run
from ops.bench.harness import DEAD_PLATFORM_DB, child_pids, rss_kib
from ops.bench.mongo import per_job, server_ops
from ops.bench.replica import Monitored, echo_chunk, echo_request
from ops.bench.results import Metric, Scenario, Target
from ops.processes import Child, wait_for


def pool_rss(worker: Child) -> int:
    """VmRSS (KiB) of the worker's one pool process."""
    children = child_pids(worker.pid)
    if len(children) != 1:
        raise RuntimeError(f"{worker.name}: expected one pool process, found {children}")
    return rss_kib(children[0])


def platform_chunk(run: Run, producer: Monitored, jobs: int) -> float:
    db = run.harness.db
    started = time.perf_counter()
    ids = [job["_id"] for job in producer.enqueue([echo_request() for _ in range(jobs)])]
    wait_for(
        lambda: db["jobs"].count_documents({"_id": {"$in": ids}, "status": "succeeded"}) == len(ids),
        timeout=600,
        what="memory chunk",
        interval=0.05,
    )
    seconds = time.perf_counter() - started
    db["jobs"].delete_many({"_id": {"$in": ids}})
    return seconds


def baseline_chunk(app: Celery, jobs: int) -> float:
    started = time.perf_counter()
    results = [app.send_task("baseline.echo", args=[{}]) for _ in range(jobs)]
    for result in results:
        result.get(timeout=600)
        result.forget()
    return time.perf_counter() - started


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
        lambda: h.baseline_worker("baseline-worker-memory", ["-c", "1"]),
    )
    producer = Monitored.open(h.settings, h.redis(0))
    app = h.baseline_client()
    rss: dict[str, dict[int, int]] = {"platform": {}, "baseline": {}}
    seconds: dict[str, float] = {"platform": 0.0, "baseline": 0.0}
    ops_before = server_ops(h.db)
    try:
        done = 0
        while done < late:
            size = min(chunk, late - done)
            seconds["platform"] += platform_chunk(run, producer, size)
            seconds["baseline"] += baseline_chunk(app, size)
            done += size
            if done in (early, late):
                rss["platform"][done] = pool_rss(platform_worker)
                rss["baseline"][done] = pool_rss(baseline_worker)
                run.log(
                    f"memory after {done} jobs",
                    platform_kib=rss["platform"][done],
                    baseline_kib=rss["baseline"][done],
                )
        ops = sum((server_ops(h.db) - ops_before).values())
    finally:
        producer.close()
        app.close()
        h.stop(platform_worker)
        h.stop(baseline_worker)
        h.clear_jobs()

    growth = {side: (values[late] - values[early]) / values[early] for side, values in rss.items()}
    scenario.add(
        Metric(
            "rss.early",
            f"pool process RSS after {early:,} jobs",
            "MiB",
            "lower",
            platform=[rss["platform"][early] / 1024],
            baseline=[rss["baseline"][early] / 1024],
            how="VmRSS of the worker's only pool process (/proc/<pid>/status), concurrency 1",
        )
    )
    scenario.add(
        Metric(
            "rss.late",
            f"pool process RSS after {late:,} jobs",
            "MiB",
            "lower",
            platform=[rss["platform"][late] / 1024],
            baseline=[rss["baseline"][late] / 1024],
        )
    )
    scenario.add(
        Metric(
            "rss.growth",
            f"RSS growth {early:,} → {late:,} jobs",
            "%",
            "lower",
            platform=[growth["platform"] * 100],
            baseline=[growth["baseline"] * 100],
        )
    )
    scenario.add(
        Metric(
            "throughput",
            f"{late:,} jobs through one pool process",
            "jobs/s",
            "higher",
            platform=[late / seconds["platform"]],
            baseline=[late / seconds["baseline"]],
            how="enqueued in chunks of "
            f"{chunk} from this process (mwap.enqueue.enqueue / send_task), waited for; not a throughput "
            "benchmark, shown for scale",
        )
    )
    replica = Monitored.open(h.settings_on(DEAD_PLATFORM_DB), h.redis(DEAD_PLATFORM_DB))
    try:
        usage = echo_chunk(replica, chunk)
    finally:
        replica.close()
        h.clear_jobs()
    scenario.mongo.append(
        {
            "path": f"system.echo, enqueued {chunk} at a time",
            **per_job(usage, chunk),
            "serverOpsPerJob": ops / late,
            "how": f"in-process replica of one chunk: mwap.enqueue.enqueue of {chunk} jobs, then "
            "ledger.start and ledger.succeed of each; server ops: serverStatus opcounters over the "
            "scenario (also the bench's waiting and clean-up reads and deletes)",
        }
    )
    scenario.targets.append(
        Target(
            f"worker RSS growth {early:,} → {late:,} jobs",
            "< 10%",
            "raw",
            growth["platform"] * 100,
            growth["platform"] < 0.10,
            f"baseline {growth['baseline'] * 100:.1f}%",
        )
    )
    scenario.notes.append(
        f"one run per side, not rounds: chunks of {chunk} jobs alternate between the platform and the baseline"
    )
    return scenario
