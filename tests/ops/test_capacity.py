"""The capacity model (``ops/capacity``): its pure functions on synthetic costs, the README table
rendered from the published costs, and the model against a scaled-down simulation on the real stack.

The simulation is ``mwap bench --quick --only capacity`` (``ops/bench/scenarios/capacity.py``):
800 integrations, the sync dispatcher every 15 s for 40 s, one sync worker (threads x8), every
provider call 100 ms late. The model's one input there — the wall time a sync holds a worker
slot — is measured in that run's phase 1, on other integrations and in other windows, before the
simulation starts: on a machine loaded by other work it is as slow as the simulation will be,
yet it is not fitted to the simulation. The error is judged against what the model says the
queue drained, not against the backlog's level (mostly the first tick's burst).
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ops.bench import publish
from ops.capacity import table
from ops.capacity.model import (
    ApiCost,
    Costs,
    JobCost,
    Workload,
    backlog_curve,
    job_rates,
    period,
    plan,
    point_at,
    processes_for,
    sync_slot_seconds,
    token_period,
)

ROOT = Path(__file__).resolve().parents[2]

COSTS = Costs(
    sync=JobCost(slot_seconds=1.2, cpu_ms=30, redis=36, mongo=32, calls=6, latency_ms=100),
    health=JobCost(slot_seconds=0.2, cpu_ms=10, redis=15, mongo=4, calls=1, latency_ms=100),
    token=JobCost(slot_seconds=0.25, cpu_ms=12, redis=18, mongo=5, calls=1, latency_ms=100),
    api=ApiCost(cpu_ms=4, redis=15, mongo=4, worker_cpu_ms=3, worker_slot_seconds=0.02),
    sync_files=10,
    sync_page_size=2,
)


def test_an_item_runs_every_interval_rounded_to_ticks() -> None:
    # Due when finished more than interval - tick/2 ago: the first tick that far after its tick.
    assert period(900, 900) == 900  # the sync dispatcher ticks every sync interval: every tick
    assert period(900, 300) == 900  # health: ticks every 5 min
    assert period(1000, 300) == 900  # 1000 s rounds to 3 ticks of 300 s
    assert period(1100, 300) == 1200
    # On the boundary (interval - tick/2 a whole number of ticks) that tick is missed: the due
    # query's $lt is strict and the job finishes after its tick (floor + 1, not ceil).
    assert period(750, 300) == 900
    assert period(749, 300) == 600
    assert period(15, 10) == 20
    assert period(100, 300) == 300  # an interval under half a tick: every tick, not never
    with pytest.raises(ValueError, match="positive"):
        period(0, 10)


def test_the_period_is_the_simulated_due_rule() -> None:
    """``period`` against the rule itself: an item last run ``finish`` after tick 0 is due at the
    first tick ``at`` with ``finish < at - (interval - tick / 2)``."""
    for interval in (10, 14, 15, 16, 20, 25, 29, 30, 31, 45, 60, 100):
        for tick in (5, 10, 20, 30):
            for finish in (0.0, 0.001, 0.5):
                k = next(k for k in range(1, 1000) if finish < k * tick - (interval - tick / 2))
                assert period(interval, tick) == k * tick, (interval, tick, finish)


def test_tokens_refresh_every_tick_when_they_expire_within_the_lookahead() -> None:
    assert token_period(Workload(integrations=1)) == 3600  # 1 h tokens, 75 min look-ahead
    # Day-long tokens: due at the first tick within the look-ahead of expiry (23 h); endless ones
    # at the 24 h idle maximum (with the half-tick tolerance, the tick at 24 h itself).
    assert token_period(Workload(integrations=1, token_lifetime=86400)) == 23 * 3600
    assert token_period(Workload(integrations=1, token_lifetime=10**7)) == 24 * 3600


def test_job_rates_are_integrations_over_periods() -> None:
    rates = job_rates(Workload(integrations=1800))
    assert rates == {
        "integration.sync_files": 2.0,
        "integration.health_check": 2.0,
        "integration.refresh_token": 0.5,
    }


def test_sync_slot_time_rescales_the_latency_per_call() -> None:
    # measured: 1.2 s for 6 calls 100 ms late: 0.1 s of overhead per call.
    assert sync_slot_seconds(COSTS, Workload(integrations=1)) == pytest.approx(1.2)
    assert sync_slot_seconds(COSTS, Workload(integrations=1, latency_ms=300)) == pytest.approx(6 * 0.4)
    # 1 fixed call beside the 5 pages; 100 files in pages of 10: 11 calls.
    assert sync_slot_seconds(COSTS, Workload(integrations=1, files=100, page_size=10)) == pytest.approx(
        11 * 0.2
    )


def test_processes_follow_littles_law_and_the_cpu() -> None:
    # 10 jobs/s x 1.2 s = 12 busy slots; 8 per process at 75 %: 2 processes.
    busy, cores, procs = processes_for(10, 1.2, 30, concurrency=8, pool="threads", utilisation=0.75)
    assert busy == pytest.approx(12)
    assert cores == pytest.approx(0.3)
    assert procs == 2
    # CPU-bound in one thread-pool process (one interpreter, one CPU): the CPU decides.
    assert processes_for(10, 0.1, 200, concurrency=8, pool="threads", utilisation=1.0)[2] == 2
    # the same on prefork x2 (two CPUs a process)
    assert processes_for(10, 0.1, 200, concurrency=2, pool="prefork", utilisation=1.0)[2] == 1
    assert processes_for(0, 1, 1, concurrency=8, pool="threads", utilisation=0.7)[2] == 0
    with pytest.raises(ValueError, match="utilisation"):
        processes_for(1, 1, 1, concurrency=1, pool="threads", utilisation=0)


def test_plan_adds_up_operations_and_sizes_every_queue() -> None:
    workload = Workload(integrations=18_000, api_rps=100, utilisation=0.5)
    result = plan(workload, COSTS)
    sync, default = result.queues
    assert sync.jobs_per_second == pytest.approx(20)
    assert sync.processes == math.ceil(20 * 1.2 / 8 / 0.5)
    assert default.jobs_per_second == pytest.approx(20 + 5 + 100)
    assert default.busy_slots == pytest.approx(20 * 0.2 + 5 * 0.25 + 100 * 0.02)
    assert default.processes == math.ceil(default.busy_slots / 2 / 0.5)
    assert result.api_cpu_cores == pytest.approx(0.4)
    assert result.api_replicas == 2  # 0.4 cores ÷ (0.5 x 0.5) = 1.6, and at least 2
    assert result.redis_ops == pytest.approx(20 * 36 + 20 * 15 + 5 * 18 + 100 * 15)
    assert result.mongo_ops == pytest.approx(20 * 32 + 20 * 4 + 5 * 5 + 100 * 4)
    assert any("sync: each integration every 900 s" in line for line in result.assumptions)


def test_backlog_curve_drains_at_the_service_rate_and_re_enqueues_after_the_period() -> None:
    # 1,000 due, 8 slots of 0.5 s: 16 jobs/s; tick and interval 20 s.
    curve = backlog_curve(1000, interval=20, tick=20, slots=8, slot_seconds=0.5, until=50)
    assert point_at(curve, 0).waiting == pytest.approx(1000 - 8)
    assert point_at(curve, 10).done == pytest.approx(160, abs=1)
    # A job done within half a tick of its dispatch is due again one period later (a tick here);
    # one done later, at the first tick at least interval - tick/2 after it finished.
    first = period(20, 20)
    assert first == 20
    assert point_at(curve, first - 0.1).enqueued == 1000  # the first tick only
    # the tick at 20 s re-enqueues what finished in the first half tick (before 10 s)
    assert point_at(curve, first + 0.1).enqueued == pytest.approx(1000 + 16 * 10, abs=2)
    # the tick at 40 s what finished before 30 s since (10 s to 30 s)
    assert point_at(curve, 40.1).enqueued == pytest.approx(1000 + 16 * 10 + 16 * 20, abs=2)
    assert point_at(curve, 50).done == pytest.approx(800, abs=2)
    # Under-loaded: the queue empties, nothing waits.
    assert (
        point_at(backlog_curve(10, interval=20, tick=20, slots=8, slot_seconds=0.5, until=5), 5).waiting == 0
    )


def test_the_readme_table_is_the_models_answer_on_the_published_costs() -> None:
    if not publish.LATEST_JSON.exists():
        pytest.skip("no bench run published (tests/ops/test_bench_published.py checks the README says so)")
    latest = json.loads(publish.LATEST_JSON.read_text())
    assert table.readme_section(publish.README.read_text()) == table.readme_table(latest), (
        "README.md's capacity table is not the one ops/bench/results/latest.json gives: "
        "`mwap bench --publish` rewrites it"
    )


def test_the_readme_section_is_replaced_between_its_markers_only() -> None:
    text = f"a\n{table.START}\nold\n{table.END}\nb\n"
    assert table.with_section(text, "new\n") == f"a\n{table.START}\nnew\n{table.END}\nb\n"
    with pytest.raises(ValueError, match="markers"):
        table.with_section("none", "new")


def test_the_command_prints_the_plan(tmp_path: Path) -> None:
    results: dict[str, Any] = {
        "meta": {"startedAt": "2026-01-01T00:00:00", "config": {"sync_files": 10, "sync_page_size": 2}},
        "scenarios": [
            _scenario(
                "io_sync",
                {"threads.seconds": 4.8, "threads.cpu.worker": 30, "threads.redis": 36, "threads.mongo": 32},
                extra={"latencyMs": 100, "concurrency": 8, "integrations": 32, "callsPerSync": 6},
            ),
            _scenario(
                "capacity",
                {
                    f"costs.{k}.{m}": v
                    for k in ("health", "token")
                    for m, v in (("slot_seconds", 0.2), ("cpu.worker", 10), ("redis", 15), ("mongo", 4))
                },
            ),
            _scenario(
                "end_to_end", {"burst.cpu.api": 4, "burst.redis": 15, "burst.mongo": 4, "burst.cpu.worker": 3}
            ),
            _scenario("memory", {"rate": 50}),
        ],
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    argv = [sys.executable, "-m", "mwap_cli", "capacity", "--integrations", "18000", "--costs", str(path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MWAP_")}
    done = subprocess.run([*argv, "--json"], capture_output=True, text=True, cwd=ROOT, env=env, check=True)
    answer = json.loads(done.stdout)
    assert answer["jobsPerSecond"]["integration.sync_files"] == pytest.approx(20)
    assert answer["queues"][0]["processes"] == math.ceil(20 * 1.2 / 8 / 0.7)
    text = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, check=True).stdout
    assert "API replicas" in text
    assert "MongoDB ops/s" in text
    (tmp_path / "partial.json").write_text(
        json.dumps({**results, "scenarios": [x for x in results["scenarios"] if x["id"] != "capacity"]})
    )
    argv[-1] = str(tmp_path / "partial.json")
    failed = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert failed.returncode != 0
    assert "capacity/costs.health.slot_seconds" in failed.stderr


def _scenario(scenario_id: str, medians: dict[str, float], extra: dict | None = None) -> dict:
    metrics = [{"id": key, "values": {"platform": [value]}} for key, value in medians.items()]
    return {"id": scenario_id, "metrics": metrics, **({"extra": extra} if extra else {})}
