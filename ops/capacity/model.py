"""The capacity model: pure functions from measured per-job costs and a workload to what it needs.

Nothing here is measured or fitted: every cost comes in (``Costs``, from a ``mwap bench`` results
file), every workload figure comes in (``Workload``), and the answer follows from three rules:

- **How often each job runs.** A dispatcher ticks every ``tick`` seconds and enqueues the items
  whose last run finished more than ``interval - tick / 2`` ago (the due rule of ``tasks/*.py``,
  ``tasks.dispatch.last_run_cutoff``: half a tick of tolerance for the job finishing after its
  tick). A job that finishes soon after the tick that dispatched it is due again at the first tick
  at least ``interval - tick / 2`` after that tick: every ``tick * (floor((interval - tick / 2) /
  tick) + 1)`` seconds (``period``), the interval rounded to ticks. The sync dispatcher ticks every
  sync interval, so each integration syncs every interval; health ticks every ``min(interval,
  new-integration bound)``, 5 minutes, so a 15-minute interval is kept exactly.
- **Little's law per queue.** Busy worker slots = jobs/s x seconds a job holds a slot (its measured
  wall time, the provider latency in it rescaled per provider call); processes = busy slots ÷
  (slots per process x target utilisation), and at least what the CPU per job needs (a thread-pool
  process runs on one CPU, a prefork one on one per pool process).
- **Operations add up.** Redis and MongoDB commands per second = Σ jobs/s x commands per job
  (enqueue included: the bench enqueues inside its measurement windows), plus the API's requests.

``backlog_curve`` is the same model run forward in time for one queue (the fluid limit: jobs
leave at the service rate while any wait), which the bench's capacity scenario checks against a
real run.
"""

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class JobCost:
    """One job type's measured costs: the wall time a job holds a worker slot (``slot_seconds``,
    a burst's duration x concurrency ÷ jobs, measured with ``calls`` provider calls per job each
    ``latency_ms`` late), worker CPU, Redis and MongoDB commands per job."""

    slot_seconds: float
    cpu_ms: float
    redis: float
    mongo: float
    calls: float = 1.0
    latency_ms: float = 0.0

    def slot_seconds_at(self, latency_ms: float, calls: float | None = None) -> float:
        """Slot time with another provider latency (and number of calls): what is not the
        provider's latency is assumed to be a cost per call (a page is listed, then written)."""
        measured_calls = max(self.calls, 1e-9)
        overhead_per_call = max(self.slot_seconds / measured_calls - self.latency_ms / 1000, 0.0)
        calls = self.calls if calls is None else calls
        return calls * (latency_ms / 1000 + overhead_per_call)


@dataclass(frozen=True, slots=True)
class ApiCost:
    """One API request as the bench measures it: a job posted and its result read once."""

    cpu_ms: float
    redis: float
    mongo: float
    worker_cpu_ms: float  # the trivial job it runs on the default queue
    worker_slot_seconds: float


@dataclass(frozen=True, slots=True)
class Costs:
    sync: JobCost
    health: JobCost
    token: JobCost
    api: ApiCost
    sync_files: int  # the sync's measured shape: files per account, files per provider page
    sync_page_size: int
    sources: dict[str, str] = field(default_factory=dict)  # cost -> where it was measured

    def fixed_sync_calls(self) -> float:
        """Provider calls of a sync beside its listing pages (account, token…), as measured."""
        return max(self.sync.calls - math.ceil(self.sync_files / self.sync_page_size), 0.0)


@dataclass(frozen=True, slots=True)
class Workload:
    integrations: int
    sync_interval: float = 15 * 60
    health_interval: float = 15 * 60
    new_integration_check_within: float = 5 * 60
    token_refresh_interval: float = 3600
    token_lifetime: float = 3600  # the provider's access-token lifetime
    token_lookahead: float = 3600 + 15 * 60
    token_max_age: float = 24 * 3600
    files: int | None = None  # per integration; None: the measured shape
    page_size: int | None = None
    latency_ms: float = 100.0
    sync_concurrency: int = 8  # threads of one sync worker process (as deployed)
    sync_pool: str = "threads"
    default_concurrency: int = 2  # prefork pool processes of one default-queue worker
    default_pool: str = "prefork"
    utilisation: float = 0.7  # target busy fraction of every worker slot and CPU
    api_rps: float = 0.0  # jobs posted (and read back once) per second through the API
    api_cpus_per_replica: float = 0.5  # one API pod's CPU limit
    api_min_replicas: int = 2


@dataclass(frozen=True, slots=True)
class QueuePlan:
    queue: str
    jobs_per_second: float
    busy_slots: float
    cpu_cores: float
    processes: int
    concurrency: int
    pool: str


@dataclass(frozen=True, slots=True)
class Plan:
    workload: Workload
    rates: dict[str, float]  # job type -> jobs/s
    queues: list[QueuePlan]
    api_replicas: int
    api_cpu_cores: float
    redis_ops: float
    mongo_ops: float
    assumptions: list[str]


def period(interval: float, tick: float) -> float:
    """Seconds between two runs of one item: ``k`` ticks, ``k`` the first with ``k * tick - d >
    interval - tick / 2``, ``d`` (>= 0) how long after its tick the last run finished (the due
    query's ``$lt``: strict). For a small ``d`` that is ``floor((interval - tick / 2) / tick) + 1``:
    on the boundary (``interval - tick / 2`` a whole number of ticks) the tick exactly there is
    missed, so ``ceil`` would be one tick short; at least one tick. It holds while the job is done
    within ``k * tick - (interval - tick / 2)`` of its dispatch (half a tick when ``tick ==
    interval``)."""
    if interval <= 0 or tick <= 0:
        raise ValueError("interval and tick must be positive")
    return tick * max(math.floor((interval - tick / 2) / tick) + 1, 1)


def token_period(workload: Workload) -> float:
    """Seconds between two refreshes of one integration: due at the first hourly tick where the
    token expires within the look-ahead, or when it was refreshed longer ago than the max age."""
    tick = workload.token_refresh_interval
    by_expiry = tick * (max(math.floor((workload.token_lifetime - workload.token_lookahead) / tick), 0) + 1)
    return min(by_expiry, period(workload.token_max_age, tick))


def job_rates(workload: Workload) -> dict[str, float]:
    """Scheduled jobs per second by job type, in the steady state."""
    n = workload.integrations
    health_tick = min(workload.health_interval, workload.new_integration_check_within)
    return {
        "integration.sync_files": n / period(workload.sync_interval, workload.sync_interval),
        "integration.health_check": n / period(workload.health_interval, health_tick),
        "integration.refresh_token": n / token_period(workload),
    }


def sync_slot_seconds(costs: Costs, workload: Workload) -> float:
    """Seconds one sync holds a slot at the workload's latency and files per page."""
    files = costs.sync_files if workload.files is None else workload.files
    page = costs.sync_page_size if workload.page_size is None else workload.page_size
    calls = costs.fixed_sync_calls() + math.ceil(files / max(page, 1))
    return costs.sync.slot_seconds_at(workload.latency_ms, calls)


def processes_for(
    rate: float, slot_seconds: float, cpu_ms: float, *, concurrency: int, pool: str, utilisation: float
) -> tuple[float, float, int]:
    """(busy slots, CPU cores, worker processes) for ``rate`` jobs/s on one queue."""
    if not 0 < utilisation <= 1:
        raise ValueError("utilisation must be in (0, 1]")
    busy = rate * slot_seconds
    cores = rate * cpu_ms / 1000
    cpus_per_process = concurrency if pool == "prefork" else 1  # threads share one interpreter
    needed = max(busy / concurrency, cores / cpus_per_process) / utilisation
    return busy, cores, math.ceil(needed - 1e-9) if rate > 0 else 0


def plan(workload: Workload, costs: Costs) -> Plan:
    """What ``workload`` needs, given ``costs``."""
    rates = job_rates(workload)
    sync_rate = rates["integration.sync_files"]
    default_rate = rates["integration.health_check"] + rates["integration.refresh_token"]
    lat = workload.latency_ms
    default_slots = (
        rates["integration.health_check"] * costs.health.slot_seconds_at(lat)
        + rates["integration.refresh_token"] * costs.token.slot_seconds_at(lat)
        + workload.api_rps * costs.api.worker_slot_seconds
    )
    default_cpu = (
        rates["integration.health_check"] * costs.health.cpu_ms
        + rates["integration.refresh_token"] * costs.token.cpu_ms
        + workload.api_rps * costs.api.worker_cpu_ms
    )
    default_jobs = default_rate + workload.api_rps
    queues = []
    s_slots = sync_slot_seconds(costs, workload)
    busy, cores, procs = processes_for(
        sync_rate,
        s_slots,
        costs.sync.cpu_ms,
        concurrency=workload.sync_concurrency,
        pool=workload.sync_pool,
        utilisation=workload.utilisation,
    )
    queues.append(
        QueuePlan("sync", sync_rate, busy, cores, procs, workload.sync_concurrency, workload.sync_pool)
    )
    busy, cores, procs = processes_for(
        default_jobs,
        default_slots / default_jobs if default_jobs else 0.0,
        default_cpu / default_jobs if default_jobs else 0.0,
        concurrency=workload.default_concurrency,
        pool=workload.default_pool,
        utilisation=workload.utilisation,
    )
    queues.append(
        QueuePlan(
            "default", default_jobs, busy, cores, procs, workload.default_concurrency, workload.default_pool
        )
    )
    api_cores = workload.api_rps * costs.api.cpu_ms / 1000
    replicas = max(
        workload.api_min_replicas,
        math.ceil(api_cores / (workload.api_cpus_per_replica * workload.utilisation) - 1e-9),
    )
    per_job = {
        "integration.sync_files": costs.sync,
        "integration.health_check": costs.health,
        "integration.refresh_token": costs.token,
    }
    redis_ops = sum(rates[t] * c.redis for t, c in per_job.items()) + workload.api_rps * costs.api.redis
    mongo_ops = sum(rates[t] * c.mongo for t, c in per_job.items()) + workload.api_rps * costs.api.mongo
    health_tick = min(workload.health_interval, workload.new_integration_check_within)
    assumptions = [
        f"sync: each integration every {period(workload.sync_interval, workload.sync_interval):g} s "
        f"(the dispatcher ticks every sync interval, {workload.sync_interval:g} s, and an integration "
        "is due at the first tick at least the interval less half a tick after its last sync)",
        f"health: every {period(workload.health_interval, health_tick):g} s (ticks every {health_tick:g} s); "
        f"token refresh: every {token_period(workload):g} s (access tokens living {workload.token_lifetime:g} s, "
        f"look-ahead {workload.token_lookahead:g} s)",
        f"a sync holds a slot {s_slots:.3g} s at {lat:g} ms per provider call (measured "
        f"{costs.sync.slot_seconds:.3g} s with {costs.sync.calls:.3g} calls {costs.sync.latency_ms:g} ms late; "
        "the rest taken as a cost per call)",
        "health and token jobs make one provider call each; API load is jobs posted and read back once "
        "(the bench's trivial job), run on the default queue",
        f"worker slots and CPUs busy at most {workload.utilisation:.0%} on average; jobs done within half "
        "a dispatcher tick of their dispatch (else they run less often than the period above)",
        "the dispatchers' own due queries (a few commands per tick) and the reconciler are left out",
    ]
    return Plan(workload, rates, queues, replicas, api_cores, redis_ops, mongo_ops, assumptions)


@dataclass(frozen=True, slots=True)
class BacklogPoint:
    at: float  # seconds since the first tick
    waiting: float  # jobs enqueued and not yet started
    enqueued: float  # jobs the dispatcher enqueued so far
    done: float  # jobs finished so far


def backlog_curve(
    integrations: int,
    *,
    interval: float,
    tick: float,
    slots: int,
    slot_seconds: float,
    until: float,
    step: float = 0.05,
) -> list[BacklogPoint]:
    """One queue run forward from a first tick at which every one of ``integrations`` is due:
    every ``tick`` the dispatcher enqueues what is due (finished more than ``interval - tick / 2``
    before it, the due rule of ``period``; not queued or running), ``slots`` run jobs of ``slot_seconds`` each while any wait (a fluid:
    ``slots ÷ slot_seconds`` jobs/s). A point every ``step`` seconds."""
    if slots <= 0 or slot_seconds <= 0:
        raise ValueError("slots and slot_seconds must be positive")
    rate = slots / slot_seconds
    outstanding = 0.0  # enqueued, not finished (waiting + running)
    enqueued = done = 0.0
    finished: list[tuple[float, float]] = []  # (time, jobs) finished and not re-enqueued yet
    points = []
    next_tick = 0.0
    age = interval - tick / 2  # due when finished longer ago than this (``period``)
    steps = math.ceil(until / step - 1e-9)
    for n in range(steps + 1):
        now = n * step
        if now >= next_tick - 1e-9:
            due = integrations if next_tick == 0 else sum(j for t, j in finished if t + age < next_tick)
            finished = [(t, j) for t, j in finished if not t + age < next_tick] if next_tick else []
            outstanding += due
            enqueued += due
            next_tick += tick
        points.append(BacklogPoint(now, max(outstanding - slots, 0.0), enqueued, done))
        served = min(outstanding, rate * step)
        outstanding -= served
        done += served
        finished.append((now + step, served))
    return points


def point_at(points: list[BacklogPoint], at: float) -> BacklogPoint:
    """The point nearest ``at``."""
    return min(points, key=lambda p: abs(p.at - at))
