"""6. Capacity: the capacity model (``ops/capacity``) against a run of the real stack.

Two phases on one database and one pair of platform workers (a ``sync`` worker, threads x8, and a
``default`` worker, prefork x2, as deployed), the fake providers ``provider_latency_ms`` late:

1. **Per-job costs**, round after round, each in a measurement window: a burst of fresh, never
   synced integrations' ``integration.sync_files`` (as the simulation's first syncs are), then
   ``integration.health_check`` and ``integration.refresh_token`` (forced) of the same ones, all
   enqueued at once from the bench process: wall time a job holds a worker slot (the burst's first
   ``createdAt`` to last ``finishedAt`` x concurrency ÷ jobs), worker CPU, Redis and MongoDB commands per job. ``mwap capacity`` reads the
   health and token rows of a published run.
2. **Simulation**: ``capacity_integrations`` integrations, none synced yet, the sync dispatcher
   (``tasks.dispatch.dispatch_integrations``, called here at beat's times: every
   ``capacity_interval`` seconds, which is also the sync interval) enqueueing onto the one sync
   worker several times what it can serve: the backlog (``LLEN`` of the sync queue's lists, sampled) is
   compared with ``ops.capacity.model.backlog_curve`` fed phase 1's median slot time — measured on
   other integrations, in other windows, before the simulation starts; nothing is fitted to it.

The judged error is relative to what the model says the queue *drained* by then, not to the
backlog's level (which is mostly the first tick's burst, right by construction): just before the
tick at one interval or half-way when the run is shorter, and at the end. The quick run (800
integrations, every 15 s for 40 s) also passes the ticks at one and two intervals, each of which
re-enqueues what finished more than half an interval before it (the due rule's half-tick
tolerance, ``ops.capacity.model.period``) and is not queued again; the full run (10,000, every 120 s for 110 s) has one tick only: the
stand-in answers the next tick's lease re-check of ~9,000 queued jobs (``_id: {$in: [...]}``
per chunk) by scanning the ledger, minutes of a blocked server where MongoDB reads an index.

With MWAP_MONGO_URL unset this runs on the fast stand-in (``ops.bench.fast_standin``), as dispatch
does: seeding 10,000 integrations through the stock one would take far too long. No projects are
linked, so listed files are not stored: the stand-in answers non-``_id`` queries by scanning the
collection, and a per-sync project lookup over 10,000 projects would make the stand-in, not the
platform, the bottleneck (against MongoDB it is one indexed read).
"""

import statistics
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from bson import ObjectId

import tasks
from mwap.broker import queue_keys
from mwap.connections import redis_client
from mwap.enqueue import JobRequest
from mwap.indexes import ensure_indexes
from mwap.ledger import now
from mwap.services import Services
from mwap.settings import Settings
from ops import processes
from ops.bench import documents
from ops.bench.config import Run
from ops.bench.harness import CAPACITY_DB
from ops.bench.producer import Producer
from ops.bench.results import Metric, Scenario, Tally, cost_metrics
from ops.bench.sides import PLATFORM
from ops.capacity.model import backlog_curve, point_at
from ops.fake_providers.control import FakeAccount
from ops.processes import Child, wait_for
from tasks.dispatch import dispatch_integrations
from worker.app import create_celery_app

PROVIDER = "google-drive"
BATCH = 1000
SYNC, HEALTH, TOKEN = "integration.sync_files", "integration.health_check", "integration.refresh_token"
KINDS = {"sync": SYNC, "health": HEALTH, "token": TOKEN}
SAMPLE_EVERY = 0.25
POLL_EVERY = 0.5


@dataclass(frozen=True, slots=True)
class Seeded:
    tenant_id: ObjectId
    integration_id: ObjectId
    account: FakeAccount


def seed(run: Run, services: Services, count: int) -> list[Seeded]:
    """``count`` integrations on fake accounts, one tenant each, never synced nor checked."""
    h, config = run.harness, run.config
    assert h.fake is not None
    db, ring = services.db, services.ring
    provider = next(
        documents.converge_provider(db, ring, document)
        for document in h.fake.provider_documents()
        if document["slug"] == PROVIDER
    )
    moment = now()
    tenants, integrations, seeded = [], [], []
    for _ in range(count):
        account = h.fake.create_account(
            PROVIDER, generate_files=config.capacity_files, page_size=config.sync_page_size
        )
        tenant = documents.tenant(moment=moment)
        integration = documents.integration(
            ring,
            tenant["_id"],
            provider,
            access_token=account.access_token,
            refresh_token=account.refresh_token,
            expires_in=timedelta(seconds=account.expires_in),
            moment=moment,
        )
        tenants.append(tenant)
        integrations.append(integration)
        seeded.append(Seeded(tenant["_id"], integration["_id"], account))
    documents.insert_batched(db, "tenants", tenants, BATCH)
    documents.insert_batched(db, "cloudIntegrations", integrations, BATCH)
    return seeded


def _request(kind: str, item: Seeded) -> JobRequest:
    job_type = KINDS[kind]
    raw = {"force": True} if kind == "token" else {}
    params = tasks.load()[job_type].validate_params(raw)
    return JobRequest(job_type, item.tenant_id, {"integrationId": str(item.integration_id)}, params)


def cost_round(
    run: Run,
    producer: Producer,
    kind: str,
    *,
    worker: Child,
    items: list[Seeded],
    tally: Tally,
    concurrency: int,
) -> None:
    """A burst of ``kind`` jobs of ``items``, enqueued at once, until every one is final.

    The slot time comes from the ledger, not from the window: the burst's first ``createdAt`` to
    its last ``finishedAt``, x concurrency ÷ jobs. The bench looks at the ledger only twice a second
    (the stand-in serves one command at a time: a tight poll would slow the very jobs it times).
    """
    db = producer.db
    with run.meter.window({"worker": worker}, platform=True, local=producer.stats) as cost:
        ids = [job["_id"] for job in producer.enqueue([_request(kind, item) for item in items])]
        wait_for(
            lambda: (
                db["jobs"].count_documents({"_id": {"$in": ids}, "status": {"$in": ["succeeded", "failed"]}})
                == len(ids)
            ),
            timeout=600,
            what=f"{kind} jobs final",
            interval=POLL_EVERY,
        )
    docs = list(
        db["jobs"].find({"_id": {"$in": ids}}, {"status": 1, "error": 1, "createdAt": 1, "finishedAt": 1})
    )
    failed = [doc for doc in docs if doc["status"] == "failed"]
    if failed:
        raise RuntimeError(f"{len(failed)} {kind} jobs failed, e.g. {failed[0]['error']}")
    makespan = (max(d["finishedAt"] for d in docs) - min(d["createdAt"] for d in docs)).total_seconds()
    tally.add(cost, len(items), slot_seconds=makespan * concurrency / len(items))


def waiting(client: object, queue: str = "sync") -> int:
    """Messages waiting in ``queue`` (every priority list), not yet taken by a worker."""
    pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
    for key in queue_keys(queue):
        pipe.llen(key)
    return int(sum(pipe.execute()))


def simulate(run: Run, services: Services, app: object) -> tuple[list[tuple[float, int]], list[dict]]:
    """The dispatcher at beat's times from t=0 while the sync worker drains; the sampled backlog
    ``[(t, waiting)]`` and the ticks ``[{at, seconds, enqueued}]``."""
    config = run.config
    interval, until = config.capacity_interval, config.capacity_seconds
    client = redis_client(services.settings)
    ticks: list[dict] = []
    errors: list[BaseException] = []
    started = time.monotonic()

    def dispatcher() -> None:
        k = 0
        while k * interval < until:
            delay = started + k * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            begun = time.monotonic()
            try:
                result = dispatch_integrations(services, app, SYNC)
            except BaseException as error:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(error)
                return
            ticks.append({"at": begun - started, "seconds": time.monotonic() - begun, **result})
            run.log("capacity: tick", at=f"{begun - started:.1f}s", **result)
            k += 1

    thread = threading.Thread(target=dispatcher, daemon=True)
    thread.start()
    samples = []
    while (elapsed := time.monotonic() - started) <= until:
        samples.append((elapsed, waiting(client)))
        time.sleep(SAMPLE_EVERY)
    thread.join()
    client.close()
    if errors:
        raise errors[0]
    return samples, ticks


def run(run: Run) -> Scenario:
    h, config = run.harness, run.config
    assert h.fake is not None
    scenario = Scenario("capacity", "6. Capacity model vs a simulation")
    standin: Child | None = None
    if run.external_mongo or config.standin == "fast":
        url = h.env["MWAP_MONGO_URL"]
    else:
        standin, url = h.start_fast_standin(
            "mongo-capacity", {k: v for k, v in h.env.items() if not k.startswith("MWAP_")}
        )
    name = f"{h.settings.mongo_db}_capacity"
    interval = config.capacity_interval
    settings: Settings = h.settings.model_copy(
        update={
            "mongo_url": url,
            "mongo_db": name,
            "redis_url": h.redis_url(CAPACITY_DB),
            "sync_interval": interval,
        }
    )
    env = {
        **h.env,
        "MWAP_MONGO_URL": url,
        "MWAP_MONGO_DB": name,
        "MWAP_REDIS_URL": h.redis_url(CAPACITY_DB),
        "MWAP_SYNC_INTERVAL": str(interval),
    }
    sync_c, default_c = config.sync_concurrency, config.worker_concurrency
    producer = Producer.open(settings)
    workers: list[Child] = []
    tallies = {kind: {PLATFORM: Tally()} for kind in KINDS}
    try:
        ensure_indexes(producer.db, settings)
        probes_per_round = config.capacity_probe_jobs
        began = time.monotonic()
        probes = seed(run, producer.services, probes_per_round * config.rounds)
        population = seed(run, producer.services, config.capacity_integrations)
        run.log(
            "capacity: seeded",
            integrations=len(population),
            probes=len(probes),
            seconds=f"{time.monotonic() - began:.1f}",
        )
        workers = h.parallel(
            lambda: h.add(
                processes.start_worker(
                    env=env,
                    log_dir=h.log_dir,
                    name="worker-capacity-sync",
                    queues="sync",
                    pool="threads",
                    concurrency=sync_c,
                )
            ),
            lambda: h.add(
                processes.start_worker(
                    env=env,
                    log_dir=h.log_dir,
                    name="worker-capacity-default",
                    queues="default",
                    pool="prefork",
                    concurrency=default_c,
                )
            ),
        )
        sync_worker, default_worker = workers
        h.fake.set_latency(config.provider_latency_ms)
        # Phase 1: per-job costs, on integrations the simulation never touches.
        for n in range(config.rounds):
            items = probes[n * probes_per_round : (n + 1) * probes_per_round]
            for kind, worker, concurrency in (
                ("sync", sync_worker, sync_c),
                ("health", default_worker, default_c),
                ("token", default_worker, default_c),
            ):
                cost_round(
                    run,
                    producer,
                    kind,
                    worker=worker,
                    items=items,
                    tally=tallies[kind][PLATFORM],
                    concurrency=concurrency,
                )
            run.log(
                f"capacity: costs round {n + 1} slot seconds",
                **{kind: f"{t[PLATFORM].extra['slot_seconds'][-1]:.3f}" for kind, t in tallies.items()},
            )
        # Out of the simulated population: the dispatcher would otherwise re-sync the probes too.
        producer.db["cloudIntegrations"].update_many(
            {"_id": {"$in": [p.integration_id for p in probes]}}, {"$set": {"status": "inactive"}}
        )
        slot = statistics.median(tallies["sync"][PLATFORM].extra["slot_seconds"])
        # The prediction, made before the simulation starts.
        until = config.capacity_seconds
        curve = backlog_curve(
            len(population), interval=interval, tick=interval, slots=sync_c, slot_seconds=slot, until=until
        )
        # Phase 2: the simulation.
        app = create_celery_app(settings, include_tasks=False)
        try:
            samples, ticks = simulate(run, producer.services, app)
        finally:
            app.close()
    finally:
        h.fake.set_latency(0)
        for worker in workers:
            h.stop(worker)
        producer.close()
        if standin is not None:
            h.stop(standin)
    _report(run, scenario, tallies, slot=slot, curve=curve, samples=samples, ticks=ticks, n=len(population))
    return scenario


def _measured_at(samples: list[tuple[float, int]], at: float, span: float = 1.0) -> float:
    """The median of the samples within ``span`` seconds before ``at`` (a tick's burst excluded)."""
    near = [w for t, w in samples if at - span <= t < at]
    if not near:
        raise RuntimeError(f"no backlog sample near {at:.1f}s")
    return float(statistics.median(near))


def _report(
    run: Run,
    scenario: Scenario,
    tallies: dict[str, dict[str, Tally]],
    *,
    slot: float,
    curve: list,
    samples: list[tuple[float, int]],
    ticks: list[dict],
    n: int,
) -> None:
    config = run.config
    concurrency = {"sync": config.sync_concurrency, "health": config.worker_concurrency}
    concurrency["token"] = config.worker_concurrency
    for kind, side_tallies in tallies.items():
        label = f"{KINDS[kind]}, {config.capacity_probe_jobs} at once on x{concurrency[kind]}"
        scenario.add(
            Metric(
                f"costs.{kind}.slot_seconds",
                f"{label}: wall time per job in a worker slot",
                "s",
                "lower",
                {PLATFORM: side_tallies[PLATFORM].extra["slot_seconds"]},
                reference=None,
                how="the burst's first createdAt to its last finishedAt (ledger) x concurrency ÷ jobs; "
                "enqueued at once from the bench process",
            )
        )
        for metric in cost_metrics(
            f"costs.{kind}",
            label,
            side_tallies,
            {"worker": ("worker",)},
            per="job",
            mongo_sides=(PLATFORM,),
            reference=PLATFORM,
        ):
            metric.reference = None
            scenario.add(metric)
    interval, until = config.capacity_interval, config.capacity_seconds
    rows = []
    errors = []
    # Just before the tick at one interval (before its re-enqueued burst; half-way when the run is
    # shorter), and at the end.
    checkpoints = (("interval", interval) if interval < until else ("middle", until / 2), ("end", until))
    for label, at in checkpoints:
        model = point_at(curve, at - 0.5)
        measured = _measured_at(samples, at)
        drained = model.enqueued - model.waiting  # what the model says left the queue by then
        error = abs(measured - model.waiting) / drained
        errors.append(error)
        rows.append((label, at, measured, model.waiting, drained, error))
        for suffix, value, what in (
            ("measured", measured, "measured: LLEN of the sync queue, median of the last second's samples"),
            ("model", model.waiting, "ops.capacity.model.backlog_curve with phase 1's median slot time"),
        ):
            scenario.add(
                Metric(
                    f"sim.waiting.{label}.{suffix}",
                    f"simulation: jobs waiting at {at:g} s, {suffix}",
                    "jobs",
                    "lower",
                    {PLATFORM: [value]},
                    reference=None,
                    how=what,
                    zero_ok=True,
                )
            )
    scenario.add(
        Metric(
            "sim.error",
            "simulation: largest |measured - model| backlog ÷ what the model drained by then",
            "x",
            "lower",
            {PLATFORM: [max(errors)]},
            reference=None,
            how="at the tick at one interval and at the end; the model's inputs are phase 1's costs",
            zero_ok=True,
        )
    )
    enqueued = sum(t["enqueued"] for t in ticks)
    scenario.extra = {
        "integrations": n,
        "intervalSeconds": interval,
        "simulationSeconds": until,
        "syncConcurrency": config.sync_concurrency,
        "slotSeconds": slot,
        "serviceRate": config.sync_concurrency / slot,
        "ticks": ticks,
        "enqueued": enqueued,
        "checkpoints": [
            {"label": r[0], "at": r[1], "measured": r[2], "model": r[3], "modelDrained": r[4], "error": r[5]}
            for r in rows
        ],
        "samples": [[round(t, 2), w] for t, w in samples[:: max(1, int(2 / SAMPLE_EVERY))]],
        "modelCurve": [[p.at, round(p.waiting, 1)] for p in curve[:: max(1, round(2 / 0.05))]],
    }
    scenario.notes += [
        f"{n} {PROVIDER} accounts of {config.capacity_files} files, pages of {config.sync_page_size}, every "
        f"provider call {config.provider_latency_ms} ms late; one sync worker (threads x{config.sync_concurrency}); "
        f"the sync dispatcher every {interval:g} s (also the sync interval) for {until:g} s",
        f"model: {config.sync_concurrency} slots ÷ {slot:.3f} s per sync (phase 1's median) = "
        f"{config.sync_concurrency / slot:.2f} syncs/s; "
        + "; ".join(
            f"{r[0]} ({r[1]:g} s): measured {r[2]:.0f}, model {r[3]:.0f} waiting, error {r[5]:.1%} "
            f"of {r[4]:.0f} drained"
            for r in rows
        ),
    ]
