"""The bench's verdicts, fed synthetic numbers: computed from the measured columns (medians of the
rounds), never from anything else; not judged when the run did not measure what a target needs.
No servers."""

import pytest

from ops.bench.sides import CELERY, CELERY_ROUTE, DRAMATIQ, PLATFORM
from ops.bench.verdicts import TARGETS, judge

FULL = {
    "enqueue_http/single.cpu.api": {PLATFORM: [2.0, 2.2, 9.0], CELERY: [2.0, 1.0, 3.0], DRAMATIQ: [0.1]},
    "enqueue_http/batch.cpu.api": {PLATFORM: [0.5, 0.4, 0.6], CELERY: [1.9, 2.0, 2.1]},
    "end_to_end/burst.cpu.api+worker": {PLATFORM: [6.0, 6.0, 6.0], CELERY_ROUTE: [3.0], CELERY: [2.0]},
    "end_to_end/burst.cpu.beat": {PLATFORM: [0.0, 0.0, 0.01]},
    "end_to_end/burst.mongo": {PLATFORM: [4.0, 4.0, 4.0]},
    "end_to_end/burst.redis": {PLATFORM: [20.0, 21.0, 19.0], CELERY_ROUTE: [18.0], CELERY: [16.0]},
    "end_to_end/one.p50": {PLATFORM: [10.0, 11.0, 12.0], CELERY: [10.0, 10.0, 10.0]},
    "dispatch_scale/1000.mongo": {PLATFORM: [0.02, 0.02, 0.02]},
    "dispatch_scale/100000.mongo": {PLATFORM: [0.004, 0.004, 0.004]},
    "dispatch_scale/100000.seconds": {PLATFORM: [3.0, 3.0, 3.0], CELERY: [2.0, 2.0, 2.0]},
    "memory/rss.growth.1000-10000": {PLATFORM: [3.0], CELERY: [0.5]},
    "console/100000.slowest.ms": {PLATFORM: [900.0, 1200.0, 800.0, 950.0, 5000.0]},
}


def by_id(measured: dict) -> dict:
    return {verdict.id: verdict for verdict in judge(measured)}


def test_every_target_is_judged_on_the_medians_of_its_columns() -> None:
    verdicts = by_id(FULL)
    assert set(verdicts) == {target.id for target in TARGETS}
    expected = {
        "enqueue.single_cpu": (2.2 / 2.0, True),  # the outlier round (9.0) does not decide
        "enqueue.batch_cpu": (0.5 / 2.0, True),  # against plain Celery's single route per job
        "end_to_end.cpu": (6.0 / 3.0, False),  # against plain Celery read through its route
        "end_to_end.mongo": (4.0, True),
        "end_to_end.redis": (20.0 / 18.0, False),
        "end_to_end.p50": (11.0 / 10.0, True),
        "dispatch.time": (1.5, False),
        "dispatch.flat": (0.2, True),
        "memory.rss": (3.0, True),
        "console.pages": (950.0, True),  # the median round's slowest page, not the worst round
    }
    for target_id, (value, met) in expected.items():
        assert verdicts[target_id].value == pytest.approx(value), target_id
        assert verdicts[target_id].met is met, target_id


def test_the_detail_shows_what_the_verdict_was_computed_from() -> None:
    verdict = by_id(FULL)["end_to_end.cpu"]
    assert "platform burst.cpu.api+worker 6" in verdict.detail
    assert "celery-route burst.cpu.api+worker 3" in verdict.detail
    assert "plain Celery read by result.get() 2" in verdict.detail


def test_limits_are_inclusive_or_strict_as_the_issue_says() -> None:
    at_limit = {
        **FULL,
        "enqueue_http/single.cpu.api": {PLATFORM: [1.3], CELERY: [1.0]},
        "end_to_end/burst.mongo": {PLATFORM: [4.0]},
        "memory/rss.growth.1000-10000": {PLATFORM: [5.0]},
    }
    verdicts = by_id(at_limit)
    assert by_id({**FULL, "console/100000.slowest.ms": {PLATFORM: [1000.0]}})["console.pages"].met is True
    assert by_id({**FULL, "console/100000.slowest.ms": {PLATFORM: [1000.5]}})["console.pages"].met is False
    assert verdicts["enqueue.single_cpu"].met is True  # <= 1.3
    assert verdicts["end_to_end.mongo"].met is True  # <= 4
    assert verdicts["memory.rss"].met is False  # < 5%
    assert by_id({**FULL, "end_to_end/burst.mongo": {PLATFORM: [4.5]}})["end_to_end.mongo"].met is False


def test_what_a_run_did_not_measure_is_not_judged() -> None:
    quick = {
        key: value
        for key, value in FULL.items()
        if not key.startswith(("dispatch_scale/100000", "memory/rss.growth.1000"))
    }
    quick["dispatch_scale/1000.seconds"] = {PLATFORM: [0.1], CELERY: [0.2]}
    quick["memory/rss.growth.200-1000"] = {PLATFORM: [1.0], CELERY: [1.0]}
    verdicts = by_id(quick)
    for target_id in ("dispatch.time", "dispatch.flat", "memory.rss"):
        assert verdicts[target_id].met is None, target_id
        assert verdicts[target_id].value is None
        assert verdicts[target_id].detail.startswith("not measured in this run")
    assert verdicts["enqueue.single_cpu"].met is True


def test_a_zero_reference_is_not_judged() -> None:
    verdicts = by_id({**FULL, "end_to_end/one.p50": {PLATFORM: [10.0], CELERY: [0.0]}})
    assert verdicts["end_to_end.p50"].met is None


def test_nothing_measured_nothing_judged() -> None:
    assert all(verdict.met is None for verdict in judge({}))
