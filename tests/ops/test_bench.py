"""`mwap bench --quick` as a user runs it: every scenario reported, platform and baseline side by side.

No timing is asserted: only that each number exists, is positive and has its baseline beside it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = {"enqueue_http", "end_to_end", "io_sync", "dispatch_scale", "memory"}


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


def test_every_scenario_is_reported(quick_run) -> None:
    results, _, _ = quick_run
    assert {s["id"] for s in results["scenarios"]} == SCENARIOS
    assert all(s["status"] == "ok" for s in results["scenarios"]), [
        (s["id"], s["reason"]) for s in results["scenarios"] if s["status"] != "ok"
    ]
    meta = results["meta"]
    assert meta["quick"] is True
    assert meta["rounds"] >= 3
    assert meta["machine"]["nproc"] >= 1


def test_numbers_are_positive_with_a_baseline_per_round(quick_run) -> None:
    results, _, _ = quick_run
    rounds = results["meta"]["rounds"]
    for scenario in results["scenarios"]:
        for metric in scenario["metrics"]:
            if metric["skipped"]:  # e.g. POST /v1/jobs/batch not deployed yet: the reason is kept
                assert "batch" in metric["id"], metric
                continue
            where = f"{scenario['id']}/{metric['id']}"
            assert metric["platform"], where
            assert metric["baseline"], f"{where}: no baseline"
            assert len(metric["baseline"]) == len(metric["platform"]), where
            if scenario["id"] != "memory":  # memory: one run per side, chunks interleaved
                assert len(metric["platform"]) == rounds, where
            values = metric["platform"] + metric["own"] + metric["baseline"]
            if metric["unit"] == "%":  # RSS growth may be zero or even shrink
                assert all(v > -100 for v in values), where
            else:
                assert all(v > 0 for v in values), f"{where}: {values}"
            assert len(metric["ratio"]) == len(metric["platform"]), where


def test_mongodb_use_and_targets_are_reported(quick_run) -> None:
    results, markdown, done = quick_run
    by_id = {s["id"]: s for s in results["scenarios"]}
    enqueue = by_id["enqueue_http"]["mongo"][0]
    assert enqueue["commandsPerJob"] == pytest.approx(1.0)  # one insert per POST /v1/jobs
    assert enqueue["mongoMsPerJob"] > 0
    dispatch = by_id["dispatch_scale"]["mongo"][0]
    assert 0 < dispatch["commandsPerJob"] < 1  # a find and one insert_many per chunk
    targets = [t for s in results["scenarios"] for t in s["targets"]]
    assert len(targets) >= 6
    assert all(t["met"] in (True, False, None) for t in targets)
    assert "| scenario | metric |" in markdown
    assert "### Targets" in markdown
    assert markdown in done.stdout  # the table is printed too
