"""4. Dispatch scale: ``tasks.dispatch.dispatch_integrations`` over 1,000 / 10,000 / 100,000
integrations of which 10% are due, called in this process with a monitored client and a producer
publishing to a Redis database nobody consumes: time, the bench process's CPU, MongoDB commands
(pymongo command monitoring of that very client) and Redis commands per dispatched job.

The baseline: the naive dispatcher — read every integration, test it in Python, ``apply_async``
each due one on a plain Celery app (Redis broker and result backend), no ledger.

With MWAP_MONGO_URL unset this runs on a second stand-in without the per-insert collection scans
(``ops.bench.fast_standin``): seeding 100,000 documents through the stock one would take a day.
"""

import contextlib
import functools
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from celery import Celery
from pymongo.database import Database

from mwap.connections import key_ring
from mwap.crypto import KeyRing
from mwap.indexes import ensure_indexes
from mwap.ledger import now
from mwap.services import Services
from ops.bench import documents
from ops.bench.config import Run
from ops.bench.harness import DEAD_BASELINE_DB, DEAD_PLATFORM_DB
from ops.bench.meter import Cost
from ops.bench.mongo import CommandStats, Usage, monitored_client
from ops.bench.results import Metric, Scenario, Tally, cost_metrics
from ops.bench.sides import CELERY, PLATFORM
from ops.fake_providers.documents import provider_documents
from ops.processes import Child
from tasks.dispatch import dispatch_integrations, last_run_cutoff
from worker.app import create_celery_app
from worker.schedule import build_schedule

JOB_TYPE = "integration.health_check"
UNREACHABLE = "http://127.0.0.1:9"  # the providers' URLs: nothing here calls a provider


def seed(db: Database, ring: KeyRing, size: int, due_fraction: float, batch: int) -> float:
    """``size`` active, seed-shaped integrations (``tests/factories.py``'s shapes, ObjectIds), every
    ``1/due_fraction``-th never health-checked by the platform (due), the others checked now.

    A tenant holds one integration per provider (the seed's unique index), so the integrations
    go round the three providers and every tenant holds three. Written with ``insert_many``."""
    moment = now()
    every = round(1 / due_fraction)
    started = time.perf_counter()
    providers = [
        documents.converge_provider(db, ring, {**document, "clientSecret": "bench-secret"})
        for document in provider_documents(UNREACHABLE)
    ]
    tenants = [documents.tenant(moment=moment) for _ in range(math.ceil(size / len(providers)))]
    documents.insert_batched(db, "tenants", tenants, batch)

    def integrations() -> Iterator[dict]:
        for n in range(size):
            state = {"lastSyncAt": moment, "lastRefreshAt": moment}
            if n % every != 0:
                state["healthCheckedAt"] = moment
            yield documents.integration(
                ring,
                tenants[n // len(providers)]["_id"],
                providers[n % len(providers)],
                expires_in=timedelta(days=1),
                moment=moment,
                mwapTasks=state,
            )

    documents.insert_batched(db, "cloudIntegrations", integrations(), batch)
    return time.perf_counter() - started


def naive_dispatch(db: Database, app: Celery, cutoff: datetime) -> int:
    """Every integration read and tested here (the platform's due rule); one apply_async per due one."""
    sent = 0
    for doc in db["cloudIntegrations"].find(
        {}, {"_id": 1, "tenantId": 1, "status": 1, "health.lastCheck": 1, "mwapTasks.healthCheckedAt": 1}
    ):
        last = (doc.get("health") or {}).get("lastCheck")
        checked = (doc.get("mwapTasks") or {}).get("healthCheckedAt")
        if doc.get("status") == "active" and (checked is None or last is None or last < cutoff):
            app.send_task("baseline.health_check", args=[str(doc["_id"])])
            sent += 1
    return sent


def _measure[T](run: Run, stats: CommandStats, work: Callable[[], T]) -> tuple[Cost, Usage, T]:
    """``work()`` in a window: Redis from INFO, MongoDB from ``stats``, CPU of this process."""
    before = stats.snapshot()
    with run.meter.window({}) as cost:
        cpu = time.process_time()
        result = work()
        cpu = time.process_time() - cpu
    usage = stats.snapshot() - before
    cost.cpu = {"bench": cpu}
    cost.mongo = Counter({f"bench:{name}": count for name, count in usage.commands.items()})
    return cost, usage, result


def measure_size(run: Run, size: int, url: str) -> tuple[dict[str, Tally], float]:
    """Seed ``size`` integrations in a database of their own, then dispatch them round by round,
    platform and naive baseline in turn; the windows per side and the seeding time."""
    h, config = run.harness, run.config
    name = f"{h.settings.mongo_db}_dispatch_{size}"
    settings = h.settings.model_copy(
        update={"mongo_url": url, "mongo_db": name, "redis_url": h.redis_url(DEAD_PLATFORM_DB)}
    )
    dead, dead_baseline = h.redis(DEAD_PLATFORM_DB), h.redis(DEAD_BASELINE_DB)
    stats = CommandStats()
    client = monitored_client(url, stats)
    producer = create_celery_app(settings, include_tasks=False)
    baseline = Celery(
        "baseline-dispatch", broker=h.redis_url(DEAD_BASELINE_DB), backend=h.redis_url(DEAD_BASELINE_DB)
    )
    tallies = {PLATFORM: Tally(), CELERY: Tally()}
    try:
        db = client[name]
        ensure_indexes(db, settings)
        seeding = seed(db, key_ring(settings), size, config.dispatch_due, config.dispatch_insert_batch)
        run.log(f"dispatch: seeded {size} integrations", seconds=f"{seeding:.1f}")
        services = Services(settings, db, dead, key_ring(settings))
        expected = round(size * config.dispatch_due)
        for n in range(config.rounds):
            db["jobs"].drop()
            ensure_indexes(db, settings)
            dead.flushdb()
            dead_baseline.flushdb()
            # The platform's due rule: the health interval less half the health dispatcher's tick.
            tick = build_schedule(settings)[f"dispatch.{JOB_TYPE}"]["schedule"]
            cutoff = last_run_cutoff(now(), settings.health_check_interval, tick)
            cost, usage, result = _measure(
                run, stats, lambda: dispatch_integrations(services, producer, JOB_TYPE)
            )
            if result["enqueued"] != expected:
                raise RuntimeError(f"dispatch of {size} integrations: {result}, expected {expected} enqueued")
            tallies[PLATFORM].add(cost, expected, documents=usage.documents / expected)
            b_cost, b_usage, sent = _measure(
                run, stats, functools.partial(naive_dispatch, db, baseline, cutoff)
            )
            if sent != expected:
                raise RuntimeError(f"naive dispatch of {size} integrations sent {sent}, expected {expected}")
            tallies[CELERY].add(b_cost, sent, documents=b_usage.documents / sent)
            run.log(
                f"dispatch {size} round {n + 1}",
                platform=f"{cost.seconds:.2f}s ({usage.total} MongoDB, {cost.redis_total} Redis commands)",
                naive=f"{b_cost.seconds:.2f}s ({b_usage.total} MongoDB, {b_cost.redis_total} Redis commands)",
            )
    finally:
        with contextlib.suppress(Exception):
            client.drop_database(name)
        client.close()
        producer.close()
        baseline.close()
        dead.flushdb()
        dead_baseline.flushdb()
    return tallies, seeding


def run(run: Run) -> Scenario:
    h, config = run.harness, run.config
    scenario = Scenario("dispatch_scale", "4. Dispatch scale")
    standin: Child | None = None
    if run.external_mongo or run.config.standin == "fast":
        url = h.env["MWAP_MONGO_URL"]
    else:
        env = {k: v for k, v in h.env.items() if not k.startswith("MWAP_")}
        standin, url = h.start_fast_standin("mongo-dispatch", env)
    seeding: dict[str, float] = {}
    per_size: dict[int, dict[str, Tally]] = {}
    try:
        for size in config.dispatch_sizes:
            per_size[size], seeding[str(size)] = measure_size(run, size, url)
    finally:
        if standin is not None:
            h.stop(standin)
    for size, tallies in per_size.items():
        _report(run, scenario, size, tallies)
    scenario.extra = {
        "seedingSeconds": seeding,
        "mongo": "MWAP_MONGO_URL" if run.external_mongo else "the fast stand-in",
    }
    _notes(run, scenario)
    return scenario


def _report(run: Run, scenario: Scenario, size: int, tallies: dict[str, Tally]) -> None:
    due = round(size * run.config.dispatch_due)
    label = f"{size:,} integrations ({due:,} due)"
    scenario.add(
        Metric(
            f"{size}.seconds",
            f"{label}: dispatch time",
            "s",
            "lower",
            {side: [cost.seconds for cost in tally.costs] for side, tally in tallies.items()},
            how="dispatch_integrations (plain Celery: the naive dispatcher) called in this process",
        )
    )
    for metric in cost_metrics(
        str(size),
        label,
        tallies,
        {"dispatcher (bench process)": ("bench",)},
        per="dispatched job",
        mongo_sides=(PLATFORM, CELERY),
    ):
        if metric.id.endswith(".mongo"):
            metric.reference = CELERY
            metric.how = "pymongo command monitoring of the dispatcher's own client, both sides"
        scenario.add(metric)
    scenario.add(
        Metric(
            f"{size}.documents",
            f"{label}: documents read per dispatched job",
            "docs",
            "lower",
            {side: tally.extra["documents"] for side, tally in tallies.items()},
        )
    )


def _notes(run: Run, scenario: Scenario) -> None:
    config = run.config
    if not run.external_mongo and run.config.standin == "stock":
        scenario.notes.append(
            "runs on a second stand-in without mongoeco's per-insert scans of the collection (the _id "
            "payload check, unique indexes of several fields: answered from an index, "
            "ops/bench/fast_standin.py); the other scenarios use the stock stand-in"
        )
    if not run.external_mongo:
        scenario.notes.append(
            "the platform's dispatch time includes the stand-in's: about 1 ms per ledger document "
            "inserted, and the due query (status and an $or of three branches) answered by a scan of "
            "the whole collection where MongoDB would use the indexes"
        )
        scenario.notes.append(
            "the stand-in answers a find with its whole result in the first batch, so the naive "
            "dispatcher's read of every integration is one command here (MongoDB would add a getMore "
            "per 16 MB); documents read per job is the fairer comparison"
        )
    scenario.notes.append(
        "seed 000-shaped documents (ObjectIds; three providers, one integration per provider per "
        f"tenant) inserted with insert_many in batches of {config.dispatch_insert_batch:,}; "
        f"{config.dispatch_due:.0%} due; the ledger and both dead-letter Redis databases are emptied "
        "before each round"
    )
