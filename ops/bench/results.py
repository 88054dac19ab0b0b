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


def caveat(share: float) -> str:
    """How far to trust an own-time figure whose load spent ``share`` of its time in MongoDB."""
    text = f"MongoDB took {share:.0%} of the raw time"
    if share > 0.8:
        text += " (the stand-in was the bottleneck: the own figure is an unsteady extrapolation)"
    return text


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
