"""``mwap bench``: the platform against plain Celery, side by side, in one run.

Everything it needs is started here on free ports and stopped at the end, also on Ctrl-C,
SIGTERM or an error. Heavy imports wait until the command runs, so ``mwap --help`` stays fast.
"""

import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click

SCENARIOS = ("enqueue_http", "end_to_end", "io_sync", "dispatch_scale", "memory")
TITLES = {
    "enqueue_http": "1. Enqueue over HTTP",
    "end_to_end": "2. End to end, trivial jobs",
    "io_sync": "3. I/O-bound sync",
    "dispatch_scale": "4. Dispatch scale",
    "memory": "5. Worker memory",
}

GLOBAL_NOTES = [
    "raw: measured end to end. own: the platform's raw number with the time spent inside MongoDB "
    "calls taken out (the baseline makes none). Where the code runs in the bench process (dispatch) "
    "that time comes from pymongo command monitoring of the measured call itself; for the API and "
    "the workers, which cannot be watched from outside, from an in-process replica of their MongoDB "
    "path (mwap.enqueue.enqueue, mwap.ledger, tasks.sync) on a monitored client, run against a "
    "ledger of the same size. The stand-in serves one command at a time, so a run's MongoDB time is "
    "taken as jobs x MongoDB time per job (never more than 95% of the raw time); a rate so obtained "
    "is capped at what the platform's own processes could do on every CPU of the machine (CPUs / "
    "their CPU per job, from /proc), since where the stand-in took nearly all the time the "
    "subtraction alone extrapolates without bound.",
    "server ops / job: the MongoDB server's serverStatus opcounters (insert, query, update, delete, "
    "getmore) over the platform's measurements, i.e. the API and the workers together.",
    "platform ÷ baseline: above 1 is better for rates, below 1 for times, latencies and counts.",
    "Every process competes for the same CPUs: the load average before the run shows other work on "
    "the machine (the one after includes the bench's own processes).",
    "The baseline (ops/bench/baseline.py): Celery with default settings, Redis broker and result "
    "backend; a Flask route calling apply_async under gunicorn with the platform API's worker count "
    "(2 gthread workers x 4 threads).",
]


def _mongo_description(external: str | None, standin: str) -> str:
    if external:
        return "MWAP_MONGO_URL (a real MongoDB: the raw numbers count)"
    if standin == "fast":
        return (
            "the stand-in without its per-insert scan of every stored _id (ops/bench/fast_standin.py, "
            "--standin fast; still far slower than MongoDB)"
        )
    return (
        "the stock stand-in (ops/mongo_server.py: mongoeco's wire server in memory, as ops/run and the "
        "tests use it; far slower than MongoDB, and each insert or new upsert scans its whole collection)"
    )


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def execute(config: Any, only: tuple[str, ...], work_dir: Path) -> dict[str, Any]:
    """Start the processes, run the scenarios, stop everything; the results as a dict."""
    from ops.bench import harness as harness_module  # noqa: PLC0415 - heavy: only when running
    from ops.bench import scenarios  # noqa: PLC0415
    from ops.bench.config import Run  # noqa: PLC0415
    from ops.bench.results import Scenario  # noqa: PLC0415

    external = os.environ.get("MWAP_MONGO_URL")
    harness = harness_module.Harness(work_dir, mongo_url_from_env=external, standin=config.standin)
    started_at, started, load_before = datetime.now(UTC), time.monotonic(), os.getloadavg()
    results: list[Scenario] = []
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        run = Run(harness, config, external_mongo=bool(external))
        run.log("starting Redis, MongoDB, fake providers, both HTTP APIs", logs=str(harness.log_dir))
        harness.start()
        for scenario_id in SCENARIOS:
            if only and scenario_id not in only:
                continue
            run.log(f"scenario {TITLES[scenario_id]}")
            begun = time.monotonic()
            module = scenarios.load(scenario_id)
            try:
                scenario = module.run(run)
            except Exception as error:  # noqa: BLE001 - one failed scenario must not hide the others
                traceback.print_exc(file=sys.stderr)
                scenario = Scenario(
                    scenario_id,
                    TITLES[scenario_id],
                    status="failed",
                    reason=f"{type(error).__name__}: {error}",
                )
            scenario.seconds = time.monotonic() - begun
            results.append(scenario)
    finally:
        harness.drop_database()
        harness.close()
        signal.signal(signal.SIGTERM, previous)
    return {
        "meta": {
            "startedAt": started_at.isoformat(),
            "durationSeconds": time.monotonic() - started,
            "quick": config.quick,
            "rounds": config.rounds,
            "loader": config.loader,
            "machine": harness_module.machine(),
            # Other work on the machine skews every number: the load average before and after.
            "loadAverage": {"before": load_before, "after": os.getloadavg()},
            "mongo": _mongo_description(external, config.standin),
            "basisNote": "Targets are judged on raw numbers."
            if external
            else "Targets on time are judged on the platform's own time (raw minus time inside MongoDB calls).",
            "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
            "notes": GLOBAL_NOTES,
        },
        "scenarios": [scenario.to_json() for scenario in results],
    }


@click.command("bench")
@click.option("--quick", is_flag=True, help="Smoke run: small sizes, under two minutes.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("bench-results.json"),
    show_default=True,
    help="Where to write the JSON results.",
)
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the table here.",
)
@click.option("--rounds", type=click.IntRange(3, 100), help="Rounds per scenario [3 with --quick, else 5].")
@click.option("--only", multiple=True, type=click.Choice(SCENARIOS), help="Run only these scenarios.")
@click.option(
    "--loader",
    type=click.Choice(["auto", "wrk", "python"]),
    default="auto",
    show_default=True,
    help="HTTP load generator: wrk when on PATH (auto), or the Python one.",
)
@click.option(
    "--standin",
    type=click.Choice(["stock", "fast"]),
    default="stock",
    show_default=True,
    help="Without MWAP_MONGO_URL: the stand-in as ops/run starts it, or without its O(n) insert scan.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep logs here (default: a temporary directory, removed unless a scenario failed).",
)
def bench_command(
    *,
    quick: bool,
    out: Path,
    markdown_path: Path | None,
    rounds: int | None,
    only: tuple[str, ...],
    loader: str,
    standin: str,
    work_dir: Path | None,
) -> None:
    """Benchmark the platform against plain Celery, side by side, in one run."""
    from ops.bench.config import Config  # noqa: PLC0415 - heavy: only when running
    from ops.bench.report import render  # noqa: PLC0415
    from ops.processes import StartupError  # noqa: PLC0415

    if loader == "auto":
        loader = "wrk" if shutil.which("wrk") else "python"
    elif loader == "wrk" and not shutil.which("wrk"):
        raise click.UsageError("--loader wrk: wrk is not on PATH")
    config = Config.for_run(quick=quick, rounds=rounds, loader=loader, standin=standin)
    run_dir = (work_dir or Path(tempfile.mkdtemp(prefix="mwap-bench-"))).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        results = execute(config, only, run_dir)
    except (StartupError, TimeoutError) as error:
        raise click.ClickException(
            f"could not start the bench: {error}\nlogs in {run_dir / 'logs'}"
        ) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    table = render(results)
    if markdown_path is not None:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(table)
    click.echo(table)
    failed = [s["id"] for s in results["scenarios"] if s["status"] == "failed"]
    if failed:
        click.echo(f"mwap bench: failed: {', '.join(failed)}; logs in {run_dir / 'logs'}", err=True)
        sys.exit(1)
    if work_dir is None:
        shutil.rmtree(run_dir, ignore_errors=True)
