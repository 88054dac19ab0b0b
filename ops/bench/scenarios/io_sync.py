"""3. I/O-bound: ``integration.sync_files`` of N integrations against the fake providers, every
provider call 100 ms late; wall time against the ideal (calls x latency ÷ concurrency), and what
each sync cost.

Per pool the platform offers (threads, as ops/run and compose deploy it, and prefork), a platform
worker on the ``sync`` queue and a plain Celery worker with the same pool and concurrency, each on
a Redis database of its own so that all four stay up; each round goes to one of them while the
other three are frozen (SIGSTOP). Plain Celery runs a task making the same number of provider
calls (nothing stored). Both sides' jobs are sent from the bench process, all at once.
"""

import statistics
from dataclasses import dataclass
from datetime import timedelta

from bson import ObjectId
from celery import Celery

from mwap import ledger
from mwap.enqueue import JobRequest
from ops.bench import documents
from ops.bench.config import Run
from ops.bench.harness import (
    BASELINE_BACKEND_DB,
    BASELINE_BROKER_DB,
    PLATFORM_DB,
    SECOND_BASELINE_DB,
    SECOND_PLATFORM_DB,
)
from ops.bench.producer import Producer
from ops.bench.results import Metric, Scenario, Tally, cost_metrics
from ops.bench.sides import CELERY, PLATFORM
from ops.fake_providers.control import FakeAccount
from ops.processes import Child, wait_for

ACTOR = {"type": "operator", "id": "mwap-bench"}
PROVIDER = "google-drive"
BATCH = 1000
# pool -> (the platform's Redis database, plain Celery's broker database)
POOLS = {"threads": (PLATFORM_DB, BASELINE_BROKER_DB), "prefork": (SECOND_PLATFORM_DB, SECOND_BASELINE_DB)}


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


def platform_round(
    run: Run, producer: Producer, worker: Child, seeded: list[Seeded], tally: Tally
) -> dict[str, int]:
    """Every sync enqueued at once, until every ledger document is final; the provider calls made."""
    _reset(run, seeded)
    db = run.harness.db
    with run.meter.window({"worker": worker}, platform=True, local=producer.stats) as cost:
        jobs = producer.enqueue([_sync_request(item) for item in seeded])
        ids = [job["_id"] for job in jobs]
        # The bench's own client, not the producer's: its reads count as none of the sides'.
        wait_for(
            lambda: (
                db["jobs"].count_documents({"_id": {"$in": ids}, "status": {"$in": ["succeeded", "failed"]}})
                == len(ids)
            ),
            timeout=600,
            what="sync jobs final",
            interval=0.05,
        )
    failed = list(db["jobs"].find({"_id": {"$in": ids}, "status": "failed"}, {"error": 1}))
    if failed:
        raise RuntimeError(f"{len(failed)} sync jobs failed, e.g. {failed[0]['error']}")
    # Every listed file lies in its linked project's folder: all of them are stored.
    stored = db["virtualFiles"].count_documents(
        {"integrationId": {"$in": [i.integration_id for i in seeded]}}
    )
    if stored != len(seeded) * run.config.sync_files:
        raise RuntimeError(f"{stored} virtual files stored, expected {len(seeded) * run.config.sync_files}")
    tally.add(cost, len(seeded))
    return _calls(run, seeded)


def baseline_round(
    run: Run, app: Celery, worker: Child, seeded: list[Seeded], *, calls: dict[str, int], tally: Tally
) -> None:
    """The same provider calls through plain Celery's task, all sent at once, until every result is
    stored (counted with INFO keyspace, which is none of the sides' commands)."""
    h = run.harness
    assert h.fake is not None
    url = f"{h.fake.base_url}/google/drive/v3/about"
    h.clear_jobs()
    with run.meter.window({"worker": worker}) as cost:
        results = [
            app.send_task("baseline.io_calls", args=[url, item.account.access_token, calls[item.account.id]])
            for item in seeded
        ]
        wait_for(
            lambda: run.meter.keys(BASELINE_BACKEND_DB) >= len(results),
            timeout=600,
            what="baseline syncs done",
            interval=0.05,
        )
    for result in results:
        result.get(timeout=60)  # raises the task's error, if any
    tally.add(cost, len(seeded))


def run(run: Run) -> Scenario:
    h, config = run.harness, run.config
    assert h.fake is not None
    scenario = Scenario("io_sync", "3. I/O-bound sync")
    latency = config.provider_latency_ms / 1000
    seeded = seed(run)
    h.fake.set_latency(config.provider_latency_ms)
    starters = []
    for pool, (platform_db, celery_db) in POOLS.items():
        starters += [
            lambda pool=pool, db=platform_db: h.platform_worker(
                f"worker-sync-{pool}",
                queues="sync",
                pool=pool,
                concurrency=config.sync_concurrency,
                redis_db=db,
            ),
            lambda pool=pool, db=celery_db: h.baseline_worker(
                f"baseline-worker-io-{pool}", pool=pool, concurrency=config.sync_concurrency, broker_db=db
            ),
        ]
    started = h.parallel(*starters)
    workers = {pool: {PLATFORM: started[2 * n], CELERY: started[2 * n + 1]} for n, pool in enumerate(POOLS)}
    everything = list(started)
    producers = {pool: Producer.open(h.settings_on(dbs[0])) for pool, dbs in POOLS.items()}
    clients = {pool: h.baseline_client(dbs[1]) for pool, dbs in POOLS.items()}
    tallies = {pool: {PLATFORM: Tally(), CELERY: Tally()} for pool in POOLS}
    calls_per_round: list[int] = []
    try:
        for n in range(config.rounds):
            for pool in POOLS:
                h.clear_jobs()
                h.run_only([workers[pool][PLATFORM]], everything)
                calls = platform_round(
                    run, producers[pool], workers[pool][PLATFORM], seeded, tallies[pool][PLATFORM]
                )
                calls_per_round.append(sum(calls.values()))
                h.run_only([workers[pool][CELERY]], everything)
                baseline_round(
                    run,
                    clients[pool],
                    workers[pool][CELERY],
                    seeded,
                    calls=calls,
                    tally=tallies[pool][CELERY],
                )
            run.log(
                f"io sync round {n + 1} seconds",
                **{
                    f"{pool}-{side}": f"{tallies[pool][side].costs[-1].seconds:.2f}"
                    for pool in POOLS
                    for side in (PLATFORM, CELERY)
                },
                calls=calls_per_round[-1],
            )
    finally:
        for producer in producers.values():
            producer.close()
        for client in clients.values():
            client.close()
        h.resume(*everything)
        for worker in everything:
            h.stop(worker)
        h.fake.set_latency(0)
        h.clear_jobs()

    total_calls = round(statistics.median(calls_per_round))
    jobs = len(seeded)
    ideal = total_calls * latency / config.sync_concurrency
    for pool in POOLS:
        label = f"{jobs} syncs, {pool} pool x{config.sync_concurrency}"
        seconds = {side: [cost.seconds for cost in tally.costs] for side, tally in tallies[pool].items()}
        scenario.add(
            Metric(
                f"{pool}.seconds",
                label,
                "s",
                "lower",
                seconds,
                how="every sync sent at once from the bench process, until every ledger document is final "
                "(plain Celery: every result stored)",
            )
        )
        scenario.add(
            Metric(
                f"{pool}.x_ideal",
                f"{pool} pool: wall time ÷ ideal",
                "x",
                "lower",
                {side: [t / ideal for t in values] for side, values in seconds.items()},
                how=f"ideal = {total_calls} calls x {latency * 1000:g} ms ÷ {config.sync_concurrency} "
                f"= {ideal:.2f}s, both sides",
            )
        )
        for metric in cost_metrics(
            pool, label, tallies[pool], {"worker": ("worker",)}, per="sync", mongo_sides=(PLATFORM,)
        ):
            scenario.add(metric)
    scenario.extra = {
        "integrations": jobs,
        "providerCalls": total_calls,
        "callsPerSync": total_calls / jobs,
        "latencyMs": config.provider_latency_ms,
        "concurrency": config.sync_concurrency,
        "idealSeconds": ideal,
    }
    scenario.notes += [
        f"{jobs} {PROVIDER} accounts of {config.sync_files} files, pages of {config.sync_page_size}, "
        f"{total_calls / jobs:.1f} provider calls per sync, each {latency * 1000:g} ms late; "
        "one tenant per integration (a tenant holds one integration per provider), each linked to "
        "a project whose folder (/) holds every file",
        "platform MongoDB commands: the worker's (role worker) and the enqueue the bench ran itself "
        "(role bench: leases, ledger insert, as mwap.enqueue.enqueue does for any producer); the bench's "
        "own waiting reads of the ledger are on another client and counted nowhere",
    ]
    return scenario
