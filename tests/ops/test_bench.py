"""`mwap bench --quick` as a user runs it: every scenario reported, every side it names measured.

No timing is asserted: only that each number exists and is positive, for every side a scenario
compares, and that the verdicts are the ones the measured columns give.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ops.bench.sides import CELERY, CELERY_ROUTE, DRAMATIQ, PLATFORM
from ops.bench.verdicts import TARGETS, judge

ROOT = Path(__file__).resolve().parents[2]
# Per scenario: the sides every one of its rate or latency rows measures, and the suffixes of the
# cost rows it must carry (CPU of a process group, Redis commands and bytes, MongoDB commands).
SCENARIOS = {
    "enqueue_http": ({PLATFORM, CELERY, DRAMATIQ}, ("cpu.api", "redis", "redis_bytes", "mongo")),
    "end_to_end": (
        {PLATFORM, CELERY, CELERY_ROUTE, DRAMATIQ},
        ("cpu.api", "cpu.worker", "cpu.beat", "cpu.api+worker", "redis", "redis_bytes", "mongo"),
    ),
    "io_sync": ({PLATFORM, CELERY}, ("cpu.worker", "redis", "redis_bytes", "mongo")),
    "dispatch_scale": ({PLATFORM, CELERY}, ("cpu.bench", "redis", "redis_bytes", "mongo")),
    "memory": ({PLATFORM, CELERY}, ("cpu.worker", "redis", "redis_bytes", "mongo")),
    "capacity": ({PLATFORM}, ("cpu.worker", "redis", "redis_bytes", "mongo")),
    "console": ({PLATFORM}, ()),
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("bench")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MWAP_")}
    argv = [sys.executable, "-m", "mwap_cli", "bench", "--quick", "--out", str(out / "results.json")]
    argv += ["--markdown", str(out / "results.md"), "--work-dir", str(out / "work")]
    done = subprocess.run(
        argv,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return json.loads((out / "results.json").read_text()), (out / "results.md").read_text(), done


def metrics_of(results: dict) -> dict[str, dict[str, dict]]:
    return {s["id"]: {m["id"]: m for m in s["metrics"]} for s in results["scenarios"]}


def test_every_scenario_is_reported(quick_run) -> None:
    results, _, _ = quick_run
    assert {s["id"] for s in results["scenarios"]} == set(SCENARIOS)
    assert all(s["status"] == "ok" for s in results["scenarios"]), [
        (s["id"], s["reason"]) for s in results["scenarios"] if s["status"] != "ok"
    ]
    meta = results["meta"]
    assert meta["quick"] is True
    assert meta["rounds"] >= 3
    assert meta["machine"]["nproc"] >= 1
    assert len(meta["loadAverage"]["before"]) == len(meta["loadAverage"]["after"]) == 3
    assert len(meta["benchHash"]) == 64


def test_every_side_and_cost_of_every_scenario_is_measured(quick_run) -> None:
    results, _, _ = quick_run
    rounds = results["meta"]["rounds"]
    for scenario_id, metrics in metrics_of(results).items():
        sides, costs = SCENARIOS[scenario_id]
        for suffix in costs:
            assert any(m.endswith(f".{suffix}") for m in metrics), f"{scenario_id}: no .{suffix} row"
        for metric in metrics.values():
            where = f"{scenario_id}/{metric['id']}"
            assert metric["skipped"] is None, where
            values = metric["values"]
            assert values, where
            if metric["unit"] in ("req/s", "jobs/s", "ms", "s") and not metric["id"].endswith(
                ("cpu.beat", "cpu.bench")
            ):
                assert set(values) >= sides, f"{where}: sides {set(values)}"
            for side, per_round in values.items():
                # One value per round; step counts, the memory run and the capacity simulation are
                # one window per side.
                single = scenario_id == "memory" or metric["id"].startswith(("step.", "sim."))
                assert len(per_round) == (1 if single else rounds), f"{where}/{side}"
                if metric["unit"] == "%":  # RSS growth may be zero or even shrink
                    assert all(v > -100 for v in per_round), where
                elif metric["zero_ok"]:
                    assert all(v >= 0 for v in per_round), f"{where}/{side}: {per_round}"
                else:
                    assert all(v > 0 for v in per_round), f"{where}/{side}: {per_round}"
            if metric["reference"] and PLATFORM in values and metric["reference"] in values:
                assert metric["ratio"] is not None, where


def test_commands_are_counted_where_they_are_sent(quick_run) -> None:
    results, _, _ = quick_run
    metrics = metrics_of(results)
    single = metrics["enqueue_http"]["single.mongo"]
    # One ledger insert per POST /v1/jobs, counted by the API processes themselves.
    assert single["breakdown"][PLATFORM]["api:insert"] == pytest.approx(1.0)
    burst = metrics["end_to_end"]["burst.mongo"]["breakdown"][PLATFORM]
    assert any(key.startswith("worker:") for key in burst)
    for side in (PLATFORM, CELERY, CELERY_ROUTE, DRAMATIQ):
        assert metrics["end_to_end"]["burst.redis"]["breakdown"][side], side
    assert "info" not in metrics["end_to_end"]["burst.redis"]["breakdown"][PLATFORM]  # the bench's probe
    for step in ("enqueue", "run", "read"):
        assert metrics["end_to_end"][f"step.{step}.redis"]["values"][PLATFORM], step
    dispatch = metrics["dispatch_scale"]["1000.mongo"]["values"][PLATFORM]
    assert all(0 < v < 1 for v in dispatch)  # a find and one insert_many per chunk


def test_verdicts_come_from_the_measured_columns(quick_run) -> None:
    results, markdown, done = quick_run
    measured = {
        f"{scenario['id']}/{metric['id']}": metric["values"]
        for scenario in results["scenarios"]
        for metric in scenario["metrics"]
    }
    stored = [(v["id"], v["value"], v["met"]) for v in results["verdicts"]]
    assert stored == [(v.id, v.value, v.met) for v in judge(measured)]
    assert {v["id"] for v in results["verdicts"]} == {t.id for t in TARGETS}
    judged = {v["id"] for v in results["verdicts"] if v["met"] is not None}
    # --quick measures too small a dispatch, memory run and ledger for those targets; every other is
    # judged.
    assert judged == {t.id for t in TARGETS} - {
        "dispatch.time",
        "dispatch.flat",
        "memory.rss",
        "console.pages",
    }
    assert "### Targets" in markdown
    assert "| scenario | metric | unit |" in markdown
    assert markdown in done.stdout  # the table is printed too


def test_the_capacity_model_predicts_the_simulated_backlog_within_25_percent(quick_run) -> None:
    """Scenario 6 scaled down (800 integrations, the sync dispatcher every 15 s): the measured sync
    backlog against the capacity model fed that run's separately measured costs (the full size,
    10,000 integrations, is `mwap bench`'s)."""
    results, _, _ = quick_run
    (scenario,) = [s for s in results["scenarios"] if s["id"] == "capacity"]
    checkpoints = scenario["extra"]["checkpoints"]
    verdict = next(v for v in results["verdicts"] if v["id"] == "capacity.backlog")
    assert verdict["met"], f"{verdict}\n{json.dumps(checkpoints, indent=1)}"
    assert checkpoints
    for point in checkpoints:
        assert abs(point["measured"] - point["model"]) <= 0.25 * point["modelDrained"], point


def test_the_console_scenario_times_every_page_over_a_seeded_ledger(quick_run) -> None:
    """Scenario 7 signs in, loads each console page every round over the ledger it seeded, and its
    slowest-page row is the largest of that round's page rows (what the console.pages verdict reads)."""
    results, _, _ = quick_run
    (scenario,) = [s for s in results["scenarios"] if s["id"] == "console"]
    size = results["meta"]["config"]["console_jobs"]
    rows = {m["id"]: m["values"][PLATFORM] for m in scenario["metrics"]}
    pages = {k: v for k, v in rows.items() if k != f"{size}.slowest.ms"}
    assert {
        f"{size}.{page}.ms" for page in ("overview", "jobs", "jobs_next", "dead_letters", "stuck", "job")
    } <= set(pages)
    slowest = rows[f"{size}.slowest.ms"]
    assert slowest == [max(values[n] for values in pages.values()) for n in range(len(slowest))]
    verdict = next(v for v in results["verdicts"] if v["id"] == "console.pages")
    assert verdict["met"] is None  # a quick run's ledger is not the size the budget names
