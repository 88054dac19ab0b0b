"""What a scenario reports: metrics per round for the platform and the baseline, MongoDB usage,
targets met or not, and how each number was obtained. Serialised as ``bench-results.json``."""

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


def spread(values: list[float]) -> dict[str, float] | None:
    """Median, min and max of the rounds (None without values)."""
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def ratios(platform: list[float], baseline: list[float]) -> list[float]:
    """platform ÷ baseline, round by round."""
    return [p / b for p, b in zip(platform, baseline, strict=False) if b]


def own_seconds(raw: float, jobs: int, mongo_seconds_per_job: float) -> float:
    """Raw time minus the MongoDB time of ``jobs`` jobs, which the stand-in serves one command at
    a time; never below 5% of the raw time (the subtraction is an estimate)."""
    return max(raw - jobs * mongo_seconds_per_job, raw * 0.05)


def own_rate(
    jobs: int, seconds: float, mongo_per_job: float, cpu_per_job: float, cpus: int
) -> tuple[float, bool]:
    """Jobs per second with the MongoDB time taken out, but never more than the platform's own
    processes could do on every CPU of the machine (``cpus`` / CPU seconds per job): where the
    stand-in took nearly all the time, the subtraction alone extrapolates without bound.
    Returns the rate and whether the CPU bound set it."""
    subtracted = jobs / own_seconds(seconds, jobs, mongo_per_job)
    bound = cpus / cpu_per_job if cpu_per_job > 0 else float("inf")
    return min(subtracted, bound), bound < subtracted


def caveat(share: float, bound_rounds: int, rounds: int) -> tuple[str, bool]:
    """What to say about an own figure whose runs spent ``share`` of their time in MongoDB and
    were set by the CPU bound in ``bound_rounds`` of ``rounds``; and whether it is uncertain."""
    text = f"MongoDB took {share:.0%} of the raw time"
    if bound_rounds:
        text += f"; own set by the CPU bound (CPUs / CPU per job) in {bound_rounds} of {rounds} rounds"
    uncertain = share > 0.8 and bound_rounds * 2 < rounds
    if uncertain:
        text += " (the stand-in was the bottleneck: the own figure is an unsteady extrapolation)"
    return text, uncertain


@dataclass
class Metric:
    """One measured quantity: per-round values of each side; ``own`` is the platform's value with
    the time inside MongoDB calls taken out."""

    id: str
    name: str
    unit: str
    better: str  # "higher" or "lower"
    platform: list[float] = field(default_factory=list)
    own: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    skipped: str | None = None
    how: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            platformStats=spread(self.platform),
            ownStats=spread(self.own),
            baselineStats=spread(self.baseline),
            ratio=ratios(self.platform, self.baseline),
            ratioOwn=ratios(self.own, self.baseline),
        )
        return data


@dataclass
class Target:
    """A goal from the issue, judged on ``basis`` (``own`` on the stand-in, ``raw`` on MongoDB)."""

    name: str
    goal: str
    basis: str
    value: float | None
    met: bool | None  # None: could not be judged (skipped)
    detail: str = ""
    uncertain: bool = False  # the figure it is judged on is an unsteady estimate


@dataclass
class Scenario:
    id: str
    title: str
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    seconds: float = 0.0
    metrics: list[Metric] = field(default_factory=list)
    mongo: list[dict[str, Any]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
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
            "mongo": self.mongo,
            "targets": [asdict(t) for t in self.targets],
            "notes": self.notes,
            **({"extra": self.extra} if self.extra else {}),
        }
