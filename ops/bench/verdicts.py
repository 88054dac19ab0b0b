"""The targets of issue 16, judged on measured numbers only: CPU per job from /proc, commands per
job from the processes' own counters and Redis's, raw times and latencies. Nothing here estimates
or subtracts: a target is met or not on medians of what the run measured, or not judged when the
run did not measure it.

Pure: ``judge`` takes ``{"scenario/metric": {side: [value per round]}}`` and returns verdicts; the
bench feeds it a run's metrics, a unit test feeds it synthetic numbers.
"""

import operator
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ops.bench.sides import CELERY, CELERY_ROUTE, PLATFORM

Measured = Mapping[str, Mapping[str, Sequence[float]]]

# The sizes the targets name; a --quick run measures smaller ones, which are reported, not judged.
DISPATCH_SMALL, DISPATCH_LARGE = 1_000, 100_000
MEMORY_GROWTH = "rss.growth.1000-10000"
# The operators' console: every page of a round within this many milliseconds over this many jobs.
CONSOLE_JOBS, CONSOLE_BUDGET_MS = 100_000, 1000


@dataclass(frozen=True, slots=True)
class Verdict:
    id: str
    name: str
    goal: str
    value: float | None
    met: bool | None  # None: the run did not measure what the target needs
    detail: str = ""


def median(measured: Measured, key: str, side: str) -> float | None:
    values = measured.get(key, {}).get(side)
    return statistics.median(values) if values else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


@dataclass(frozen=True, slots=True)
class Target:
    """``value = numerator ÷ denominator`` (or the numerator alone), compared with ``limit``."""

    id: str
    name: str
    numerator: tuple[str, str]  # (metric key, side)
    denominator: tuple[str, str] | None
    compare: Callable[[float, float], bool]
    limit: float
    goal: str
    also: tuple[tuple[str, tuple[str, str]], ...] = ()  # (label, (key, side)) shown in the detail

    def judge(self, measured: Measured) -> Verdict:
        top = median(measured, *self.numerator)
        bottom = median(measured, *self.denominator) if self.denominator else None
        shown = [f"{self._label(self.numerator)} {_fmt(top)}"]
        if self.denominator:
            shown.append(f"{self._label(self.denominator)} {_fmt(bottom)}")
        shown += [f"{label} {_fmt(median(measured, *ref))}" for label, ref in self.also]
        detail = "; ".join(shown)
        if top is None or (self.denominator is not None and not bottom):
            return Verdict(self.id, self.name, self.goal, None, None, f"not measured in this run ({detail})")
        value = top / bottom if self.denominator is not None and bottom else top
        return Verdict(self.id, self.name, self.goal, value, self.compare(value, self.limit), detail)

    @staticmethod
    def _label(ref: tuple[str, str]) -> str:
        key, side = ref
        return f"{side} {key.split('/', 1)[1]}"


TARGETS = (
    Target(
        "enqueue.single_cpu",
        "API CPU per POST /v1/jobs ÷ plain Celery's apply_async route",
        ("enqueue_http/single.cpu.api", PLATFORM),
        ("enqueue_http/single.cpu.api", CELERY),
        operator.le,
        1.3,
        "<= 1.3",
    ),
    Target(
        "enqueue.batch_cpu",
        "API CPU per job in a 100-job POST /v1/jobs/batch ÷ plain Celery's apply_async route per job",
        ("enqueue_http/batch.cpu.api", PLATFORM),
        ("enqueue_http/single.cpu.api", CELERY),
        operator.le,
        0.5,
        "<= 0.5",
        also=(("plain Celery's looping batch route", ("enqueue_http/batch.cpu.api", CELERY)),),
    ),
    Target(
        "end_to_end.cpu",
        "API + worker CPU per trivial job, result read back once through the API ÷ plain Celery "
        "(Redis result backend, read once through its route)",
        ("end_to_end/burst.cpu.api+worker", PLATFORM),
        ("end_to_end/burst.cpu.api+worker", CELERY_ROUTE),
        operator.le,
        1.5,
        "<= 1.5",
        also=(
            ("plain Celery read by result.get()", ("end_to_end/burst.cpu.api+worker", CELERY)),
            ("platform beat", ("end_to_end/burst.cpu.beat", PLATFORM)),
        ),
    ),
    Target(
        "end_to_end.mongo",
        "MongoDB commands per trivial job, enqueue to result read",
        ("end_to_end/burst.mongo", PLATFORM),
        None,
        operator.le,
        4,
        "<= 4",
    ),
    Target(
        "end_to_end.redis",
        "Redis commands per trivial job ÷ plain Celery's (read once through its route)",
        ("end_to_end/burst.redis", PLATFORM),
        ("end_to_end/burst.redis", CELERY_ROUTE),
        operator.le,
        1.0,
        "<= 1",
        also=(("plain Celery read by result.get()", ("end_to_end/burst.redis", CELERY)),),
    ),
    Target(
        "end_to_end.p50",
        "one-job round trip p50, GET /v1/jobs/{id}?wait=5 ÷ plain Celery's result.get()",
        ("end_to_end/one.p50", PLATFORM),
        ("end_to_end/one.p50", CELERY),
        operator.le,
        1.2,
        "<= 1.2",
    ),
    Target(
        "dispatch.time",
        f"dispatch of {DISPATCH_LARGE // 10:,} due of {DISPATCH_LARGE:,}: time ÷ the naive dispatcher's",
        (f"dispatch_scale/{DISPATCH_LARGE}.seconds", PLATFORM),
        (f"dispatch_scale/{DISPATCH_LARGE}.seconds", CELERY),
        operator.le,
        1.0,
        "<= 1",
    ),
    Target(
        "dispatch.flat",
        f"MongoDB commands per dispatched job, {DISPATCH_LARGE:,} ÷ {DISPATCH_SMALL:,} integrations",
        (f"dispatch_scale/{DISPATCH_LARGE}.mongo", PLATFORM),
        (f"dispatch_scale/{DISPATCH_SMALL}.mongo", PLATFORM),
        operator.le,
        1.1,
        "<= 1.1 (flat)",
    ),
    Target(
        "memory.rss",
        "worker RSS growth, 1,000 → 10,000 jobs (%)",
        (f"memory/{MEMORY_GROWTH}", PLATFORM),
        None,
        operator.lt,
        5.0,
        "< 5",
        also=(("plain Celery", (f"memory/{MEMORY_GROWTH}", CELERY)),),
    ),
    Target(
        "capacity.backlog",
        "simulated sync backlog vs the capacity model: |measured - model| ÷ what the model drained",
        ("capacity/sim.error", PLATFORM),
        None,
        operator.le,
        0.25,
        "<= 0.25",
        also=(
            ("measured at the end", ("capacity/sim.waiting.end.measured", PLATFORM)),
            ("model", ("capacity/sim.waiting.end.model", PLATFORM)),
        ),
    ),
    Target(
        "console.pages",
        f"the console's slowest page over {CONSOLE_JOBS:,} ledger jobs (ms)",
        (f"console/{CONSOLE_JOBS}.slowest.ms", PLATFORM),
        None,
        operator.le,
        CONSOLE_BUDGET_MS,
        f"<= {CONSOLE_BUDGET_MS}",
        also=(
            ("the jobs list", (f"console/{CONSOLE_JOBS}.jobs.ms", PLATFORM)),
            ("the overview", (f"console/{CONSOLE_JOBS}.overview.ms", PLATFORM)),
        ),
    ),
)


def judge(measured: Measured) -> list[Verdict]:
    """Every target's verdict on ``measured``."""
    return [target.judge(measured) for target in TARGETS]
