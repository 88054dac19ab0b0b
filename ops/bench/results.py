"""What a scenario reports: per metric, the values each side measured round by round, with the
breakdowns behind the counts; and how each number was obtained. Serialised as JSON."""

import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from ops.bench.meter import Cost
from ops.bench.sides import CELERY, PLATFORM


def spread(values: list[float]) -> dict[str, float] | None:
    """Median, min and max of the rounds (None without values)."""
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def per_job(counts: Counter[str], jobs: int) -> dict[str, float]:
    """Counts by name divided by ``jobs``, largest first."""
    return {name: count / jobs for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}


@dataclass
class Metric:
    """One measured quantity: per side, one value per round (``values[side]``), and for counts the
    per-job breakdown by command over every round (``breakdown[side]``). The ratio column divides
    the platform's median by the ``reference`` side's."""

    id: str
    name: str
    unit: str
    better: str  # "higher" or "lower"
    values: dict[str, list[float]] = field(default_factory=dict)
    reference: str | None = CELERY
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: str | None = None
    how: str = ""
    zero_ok: bool = False  # a true zero is a measurement (e.g. beat's CPU below /proc's 10 ms tick)

    def median(self, side: str) -> float | None:
        values = self.values.get(side)
        return statistics.median(values) if values else None

    def ratio(self) -> float | None:
        platform = self.median(PLATFORM)
        reference = self.median(self.reference) if self.reference else None
        if platform is None or not reference:
            return None
        return platform / reference

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["stats"] = {side: spread(values) for side, values in self.values.items()}
        data["ratio"] = self.ratio()
        return data


@dataclass
class Scenario:
    id: str
    title: str
    status: str = "ok"  # ok | failed
    reason: str = ""
    seconds: float = 0.0
    metrics: list[Metric] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def metric(self, metric_id: str) -> Metric:
        return next(m for m in self.metrics if m.id == metric_id)

    def add(self, metric: Metric) -> Metric:
        self.metrics.append(metric)
        return metric

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "reason": self.reason,
            "seconds": self.seconds,
            "metrics": [m.to_json() for m in self.metrics],
            "notes": self.notes,
            **({"extra": self.extra} if self.extra else {}),
        }


@dataclass
class Tally:
    """Windows of one side, one per round, with the jobs each carried: the per-round values and
    the per-job breakdowns of a scenario's cost metrics."""

    costs: list[Cost] = field(default_factory=list)
    jobs: list[int] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)

    def add(self, cost: Cost, jobs: int, **extra: float) -> None:
        if jobs <= 0:
            raise ValueError("a window without jobs has no cost per job")
        self.costs.append(cost)
        self.jobs.append(jobs)
        for key, value in extra.items():
            self.extra.setdefault(key, []).append(value)

    def rate(self) -> list[float]:
        return [jobs / cost.seconds for cost, jobs in zip(self.costs, self.jobs, strict=True)]

    def cpu_ms(self, *groups: str) -> list[float]:
        return [
            sum(cost.cpu.get(group, 0.0) for group in groups) * 1000 / jobs
            for cost, jobs in zip(self.costs, self.jobs, strict=True)
        ]

    def redis(self) -> list[float]:
        return [cost.redis_total / jobs for cost, jobs in zip(self.costs, self.jobs, strict=True)]

    def redis_bytes(self) -> list[float]:
        return [cost.redis_bytes / jobs for cost, jobs in zip(self.costs, self.jobs, strict=True)]

    def mongo(self, roles: tuple[str, ...] | None = None) -> list[float]:
        return [
            sum(n for key, n in cost.mongo.items() if roles is None or key.split(":")[0] in roles) / jobs
            for cost, jobs in zip(self.costs, self.jobs, strict=True)
        ]

    def redis_breakdown(self) -> dict[str, float]:
        return per_job(sum((cost.redis for cost in self.costs), Counter()), sum(self.jobs))

    def mongo_breakdown(self) -> dict[str, float]:
        return per_job(sum((cost.mongo for cost in self.costs), Counter()), sum(self.jobs))


def cost_metrics(
    prefix: str,
    label: str,
    tallies: dict[str, Tally],
    groups: dict[str, tuple[str, ...]],
    *,
    per: str = "job",
    mongo_sides: tuple[str, ...] = (),
    reference: str = CELERY,
) -> list[Metric]:
    """The cost rows every scenario reports for its windows: CPU per ``per`` of each process group
    (``groups``: row name -> groups summed, e.g. ``{"API": ("api",)}``), Redis commands and bytes,
    MongoDB commands (``mongo_sides`` only: the others send none)."""
    metrics = []
    for row, names in groups.items():
        values = {
            side: tally.cpu_ms(*names)
            for side, tally in tallies.items()
            if any(name in cost.cpu for cost in tally.costs for name in names)
        }
        metrics.append(
            Metric(
                f"{prefix}.cpu.{'+'.join(names)}",
                f"{label}: {row} CPU per {per}",
                "ms",
                "lower",
                values,
                reference=reference,
                how=f"user + system CPU of the {row} process group(s), /proc/<pid>/stat over the window, "
                f"÷ {per}s",
                zero_ok="beat" in names,
            )
        )
    metrics.append(
        Metric(
            f"{prefix}.redis",
            f"{label}: Redis commands per {per}",
            "commands",
            "lower",
            {side: tally.redis() for side, tally in tallies.items()},
            reference=reference,
            breakdown={side: tally.redis_breakdown() for side, tally in tallies.items()},
            how="INFO commandstats deltas of the shared Redis over the window (INFO itself left out)",
        )
    )
    metrics.append(
        Metric(
            f"{prefix}.redis_bytes",
            f"{label}: bytes sent to Redis per {per}",
            "B",
            "lower",
            {side: tally.redis_bytes() for side, tally in tallies.items()},
            reference=reference,
            how="INFO stats total_net_input_bytes delta: every byte clients sent to Redis (writes and "
            "the requests of reads)",
        )
    )
    if mongo_sides:
        metrics.append(
            Metric(
                f"{prefix}.mongo",
                f"{label}: MongoDB commands per {per}",
                "commands",
                "lower",
                {side: tallies[side].mongo() for side in mongo_sides},
                reference=None,
                breakdown={side: tallies[side].mongo_breakdown() for side in mongo_sides},
                how="mwap_mongo_commands_total{command,role} deltas from the API's GET /metrics (every "
                "platform process); role bench: commands the bench sent itself (its own listener)",
            )
        )
    return metrics
