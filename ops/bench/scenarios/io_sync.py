"""3. I/O-bound: ``integration.sync_files`` of N integrations against the fake providers, every
provider call 100 ms late; wall time against the ideal (calls x latency ÷ concurrency).

Two platform workers on the ``sync`` queue, one per pool the platform offers (threads, as
ops/run and compose deploy it, and prefork), same concurrency, each on a Redis database of its
own so that both stay up and each round goes to one of them. The baseline: its default worker
running a task that makes the same number of provider calls (nothing stored).
"""

import math
import os
import statistics
import time
from dataclasses import dataclass
from datetime import timedelta

from bson import ObjectId

from mwap import ledger
from mwap.enqueue import JobRequest
from ops.bench import documents
from ops.bench.config import Run
from ops.bench.harness import DEAD_PLATFORM_DB, PLATFORM_DB, SECOND_PLATFORM_DB
from ops.bench.mongo import Usage, per_job
from ops.bench.replica import Monitored
from ops.bench.results import Metric, Scenario, Target, own_seconds
from ops.fake_providers.control import FakeAccount
from ops.processes import wait_for
from tasks import sync

ACTOR = {"type": "operator", "id": "mwap-bench"}
PROVIDER = "google-drive"
BATCH = 1000
POOLS = (("threads", PLATFORM_DB), ("prefork", SECOND_PLATFORM_DB))


@dataclass(frozen=True, slots=True)
class Seeded:
    tenant_id: ObjectId
    integration_id: ObjectId
    account: FakeAccount


def seed(run: Run) -> list[Seeded]:
    """Providers pointing at the fake; per fake account a tenant, its integration and a project
    linked to it whose folder (``/``) holds every file, so each listed file is stored. Seed
    000-shaped documents with ObjectIds, as ``tests/factories.py`` writes them, each collection
    written with one ``insert_many``."""
    h, config = run.harness, run.config
    assert h.fake is not None
    db, ring = h.db, h.settings.key_ring()
    providers = {
        document["slug"]: documents.converge_provider(db, ring, document)
        for document in h.fake.provider_documents()
    }
    moment = ledger.now()
    tenants, integrations, projects, seeded = [], [], [], []
    for _ in range(config.sync_integrations):
        account = h.fake.create_account(
            PROVIDER, generate_files=config.sync_files, page_size=config.sync_page_size
        )
        tenant = documents.tenant(moment=moment)
        integration = documents.integration(
            ring,
            tenant["_id"],
            providers[PROVIDER],
            access_token=account.access_token,
            refresh_token=account.refresh_token,
            expires_in=timedelta(seconds=account.expires_in),
            moment=moment,
        )
        tenants.append(tenant)
        integrations.append(integration)
        projects.append(
            documents.project(
                tenant["_id"], folder_path="/", integration_ids=[integration["_id"]], moment=moment
            )
        )
        seeded.append(Seeded(tenant["_id"], integration["_id"], account))
    for collection, docs in (
        ("tenants", tenants),
        ("cloudIntegrations", integrations),
        ("projects", projects),
    ):
        documents.insert_batched(db, collection, docs, BATCH)
    return seeded


def _sync_request(item: Seeded) -> JobRequest:
    return JobRequest(
        "integration.sync_files", item.tenant_id, {"integrationId": str(item.integration_id)}, {"full": True}
    )


def _reset(run: Run, seeded: list[Seeded]) -> None:
    """Same work every round: no files stored yet, provider counters at zero."""
    assert run.harness.fake is not None
    run.harness.db["virtualFiles"].delete_many({})
    for item in seeded:
        run.harness.fake.reset_stats(item.account.id)


def _calls(run: Run, seeded: list[Seeded]) -> dict[str, int]:
    assert run.harness.fake is not None
    return {item.account.id: int(run.harness.fake.stats(item.account.id)["total"]) for item in seeded}


def platform_round(run: Run, producer: Monitored, seeded: list[Seeded]) -> tuple[float, dict[str, int]]:
    """Enqueue every sync at once; seconds until every ledger document is final."""
    _reset(run, seeded)
    db = run.harness.db
    started = time.perf_counter()
    jobs = producer.enqueue([_sync_request(item) for item in seeded])
    ids = [job["_id"] for job in jobs]
    wait_for(
        lambda: (
            db["jobs"].count_documents({"_id": {"$in": ids}, "status": {"$in": ["succeeded", "failed"]}})
            == len(ids)
        ),
        timeout=600,
        what="sync jobs final",
        interval=0.05,
    )
    seconds = time.perf_counter() - started
    failed = list(db["jobs"].find({"_id": {"$in": ids}, "status": "failed"}, {"error": 1}))
    if failed:
        raise RuntimeError(f"{len(failed)} sync jobs failed, e.g. {failed[0]['error']}")
    # Every listed file lies in its linked project's folder: all of them are stored.
    stored = db["virtualFiles"].count_documents(
        {"integrationId": {"$in": [i.integration_id for i in seeded]}}
    )
    if stored != len(seeded) * run.config.sync_files:
        raise RuntimeError(f"{stored} virtual files stored, expected {len(seeded) * run.config.sync_files}")
    return seconds, _calls(run, seeded)


def baseline_round(run: Run, seeded: list[Seeded], calls: dict[str, int]) -> float:
    """The same provider calls through the baseline's plain task, all sent at once."""
    h = run.harness
    assert h.fake is not None
    app = h.baseline_client()
    url = f"{h.fake.base_url}/google/drive/v3/about"
    try:
        started = time.perf_counter()
        results = [
            app.send_task("baseline.io_calls", args=[url, item.account.access_token, calls[item.account.id]])
            for item in seeded
        ]
        for result in results:
            result.get(timeout=600)
        return time.perf_counter() - started
    finally:
        app.close()


def replica_syncs(run: Run, seeded: list[Seeded]) -> Usage:
    """Every sync job's MongoDB work in this process, one after the other, from an emptied
    ``virtualFiles`` as in a round (the stand-in's upserts cost O(collection size)): enqueue,
    start, the sync itself, succeed. The provider answers without latency meanwhile: it does not
    change what MongoDB is asked."""
    h = run.harness
    assert h.fake is not None
    h.fake.set_latency(0)
    _reset(run, seeded)
    replica = Monitored.open(h.settings_on(DEAD_PLATFORM_DB), h.redis(DEAD_PLATFORM_DB))

    def work() -> None:
        for item in seeded:
            [job] = replica.enqueue([_sync_request(item)])
            started = ledger.start(replica.db, job["_id"], worker="bench-replica")
            assert started is not None
            outcome = sync.sync(
                replica.services, item.tenant_id, item.integration_id, job_id=job["_id"], full=True
            )
            ledger.succeed(replica.db, job["_id"], outcome.summary(), started_at=started["startedAt"])

    try:
        return replica.measure(work)
    finally:
        replica.close()
        h.redis(DEAD_PLATFORM_DB).flushdb()


def run(run: Run) -> Scenario:
    h, config = run.harness, run.config
    assert h.fake is not None
    scenario = Scenario("io_sync", "3. I/O-bound sync")
    latency = config.provider_latency_ms / 1000
    seeded = seed(run)
    h.fake.set_latency(config.provider_latency_ms)
    workers = h.parallel(
        *(
            (
                lambda pool=pool, db=db: h.platform_worker(
                    f"worker-sync-{pool}",
                    queues="sync",
                    pool=pool,
                    concurrency=config.sync_concurrency,
                    redis_db=db,
                )
            )
            for pool, db in POOLS
        ),
        lambda: h.baseline_worker("baseline-worker-io"),
    )
    producers = {pool: Monitored.open(h.settings_on(db), h.redis(db)) for pool, db in POOLS}
    wall: dict[str, list[float]] = {"threads": [], "prefork": [], "baseline": []}
    calls_per_round: list[int] = []
    try:
        for n in range(config.rounds):
            calls: dict[str, int] = {}
            for pool, _ in POOLS:
                h.clear_jobs()
                seconds, calls = platform_round(run, producers[pool], seeded)
                wall[pool].append(seconds)
                calls_per_round.append(sum(calls.values()))
                if pool == "threads":
                    wall["baseline"].append(baseline_round(run, seeded, calls))
            run.log(
                f"io sync round {n + 1}",
                threads=f"{wall['threads'][-1]:.2f}s",
                prefork=f"{wall['prefork'][-1]:.2f}s",
                baseline=f"{wall['baseline'][-1]:.2f}s",
                calls=sum(calls.values()),
            )
        usage = replica_syncs(run, seeded)
    finally:
        for producer in producers.values():
            producer.close()
        for worker in workers:
            h.stop(worker)
        h.fake.set_latency(0)
        h.clear_jobs()

    total_calls = round(statistics.median(calls_per_round))
    jobs = len(seeded)
    ideal = total_calls * latency / config.sync_concurrency
    baseline_concurrency = os.cpu_count() or 1  # celery's default: one pool process per CPU
    baseline_ideal = total_calls * latency / baseline_concurrency
    m_job = usage.seconds / jobs
    waves = math.ceil(jobs / config.sync_concurrency)

    def own(seconds: float) -> float:
        # Syncs overlap each other's MongoDB calls with their provider waits: take out only one
        # chain's MongoDB time per wave of syncs (an upper bound: waiting behind the other syncs'
        # commands at the stand-in stays in).
        return own_seconds(seconds, waves, m_job)

    for pool, _ in POOLS:
        scenario.add(
            Metric(
                f"{pool}.seconds",
                f"{jobs} syncs, {pool} pool x{config.sync_concurrency}",
                "s",
                "lower",
                platform=wall[pool],
                own=[own(t) for t in wall[pool]],
                baseline=wall["baseline"],
                how="all syncs enqueued at once, until every ledger document is final; own = time - "
                f"{waves} wave(s) x MongoDB time of one sync (replica)",
            )
        )
        scenario.add(
            Metric(
                f"{pool}.x_ideal",
                f"{pool} pool: wall time / ideal",
                "x",
                "lower",
                platform=[t / ideal for t in wall[pool]],
                own=[own(t) / ideal for t in wall[pool]],
                baseline=[t / baseline_ideal for t in wall["baseline"]],
                how=f"ideal = {total_calls} calls x {latency * 1000:g} ms / {config.sync_concurrency} "
                f"= {ideal:.2f}s (baseline: / {baseline_concurrency}, its default concurrency, "
                f"= {baseline_ideal:.2f}s)",
            )
        )
    scenario.mongo.append(
        {
            "path": "integration.sync_files",
            **per_job(usage, jobs),
            "how": f"in-process replica of the {jobs} sync jobs of a round, one after the other from an "
            f"emptied virtualFiles (enqueue, ledger.start, tasks.sync.sync relisting {config.sync_files} "
            f"files in pages of {config.sync_page_size}, ledger.succeed), pymongo command monitoring",
        }
    )
    for pool, _ in POOLS:
        metric = scenario.metric(f"{pool}.x_ideal")
        value = statistics.median(metric.own if run.basis == "own" else metric.platform)
        serial = statistics.median(own_seconds(t, jobs, m_job) / ideal for t in wall[pool])
        scenario.targets.append(
            Target(
                f"I/O-bound sync, {pool} pool: wall time / ideal",
                "<= 2",
                run.basis,
                value,
                value <= 2,
                f"raw {statistics.median(metric.platform):.2f}; with all {jobs} syncs' MongoDB time "
                f"taken out (a lower bound) {serial:.2f}",
            )
        )
    scenario.extra = {
        "integrations": jobs,
        "providerCalls": total_calls,
        "callsPerSync": total_calls / jobs,
        "latencyMs": config.provider_latency_ms,
        "concurrency": config.sync_concurrency,
        "idealSeconds": ideal,
        "baselineConcurrency": baseline_concurrency,
    }
    scenario.notes.append(
        f"{jobs} {PROVIDER} accounts of {config.sync_files} files, pages of {config.sync_page_size}, "
        f"{total_calls / jobs:.1f} provider calls per sync, each {latency * 1000:g} ms late; "
        "one tenant per integration (a tenant holds one integration per provider), each linked to "
        "a project whose folder (/) holds every file"
    )
    return scenario
