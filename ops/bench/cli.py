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
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click

SCENARIOS = ("enqueue_http", "end_to_end", "io_sync", "dispatch_scale", "memory", "capacity", "console")
TITLES = {
    "enqueue_http": "1. Enqueue over HTTP",
    "end_to_end": "2. End to end, trivial jobs",
    "io_sync": "3. I/O-bound sync",
    "dispatch_scale": "4. Dispatch scale",
    "memory": "5. Worker memory",
    "capacity": "6. Capacity model vs a simulation",
    "console": "7. Console pages",
}

GLOBAL_NOTES = [
    "Every figure is measured, none estimated: rates and latencies end to end; CPU per job from "
    "/proc (user + system of each process group: the API's gunicorn, a worker and its pool, beat); "
    "Redis commands and bytes from INFO on the one Redis all sides share; the platform's MongoDB "
    "commands from the counters its own processes keep (mwap_mongo_commands_total, read through "
    "the API's GET /metrics), and the bench's from its own client's command monitoring.",
    "One side at a time: while a side is measured, every other side's workers and beat are frozen "
    "(SIGSTOP), and the bench's probes (INFO, /metrics scrapes, its reads of the ledger to see jobs "
    "done) count as nobody's commands.",
    "The MongoDB server's own CPU is in no column; a driver's is, in the process that runs it.",
    "platform ÷ ref: the platform's median over the reference side's; above 1 is better for rates, "
    "below 1 for times, latencies, CPU and counts.",
    "Every process competes for the same CPUs: the load average before the run shows other work on "
    "the machine (the one after includes the bench's own processes).",
    "Plain Celery (ops/bench/baseline.py): its defaults (prefetch 4, ack on receipt) with the "
    "platform worker's pool and concurrency in every scenario, Redis broker and result backend, "
    "Flask routes under gunicorn with the platform API's workers and threads. Dramatiq "
    "(ops/bench/dramatiq_peer.py): its defaults, Redis broker, Results middleware on Redis; "
    "reported, not a target.",
]


def _mongo_description(external: str | None, standin: str) -> str:
    if external:
        return "MWAP_MONGO_URL (a real MongoDB)"
    if standin == "fast":
        return (
            "the stand-in without its per-insert scans of the collection (ops/bench/fast_standin.py, "
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
    from ops.bench import scenarios, verdicts  # noqa: PLC0415
    from ops.bench.config import Run  # noqa: PLC0415
    from ops.bench.publish import code_hash  # noqa: PLC0415
    from ops.bench.results import Scenario  # noqa: PLC0415

    external = os.environ.get("MWAP_MONGO_URL")
    harness = harness_module.Harness(work_dir, mongo_url_from_env=external, standin=config.standin)
    started_at, started, load_before = datetime.now(UTC), time.monotonic(), os.getloadavg()
    results: list[Scenario] = []
    previous = signal.signal(signal.SIGTERM, _interrupt)
    run = Run(harness, config, external_mongo=bool(external))
    try:
        run.log("starting Redis, MongoDB, fake providers, the three HTTP APIs", logs=str(harness.log_dir))
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
        run.close()
        harness.drop_database()
        harness.close()
        signal.signal(signal.SIGTERM, previous)
    measured = {f"{s.id}/{m.id}": m.values for s in results for m in s.metrics}
    return {
        "meta": {
            "startedAt": started_at.isoformat(),
            "durationSeconds": time.monotonic() - started,
            "quick": config.quick,
            "only": list(only),
            "rounds": config.rounds,
            "loader": config.loader,
            "machine": harness_module.machine(),
            # Other work on the machine skews every number: the load average before and after.
            "loadAverage": {"before": load_before, "after": os.getloadavg()},
            "mongo": _mongo_description(external, config.standin),
            "benchHash": code_hash(),
            "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
            "notes": GLOBAL_NOTES,
        },
        "verdicts": [asdict(verdict) for verdict in verdicts.judge(measured)],
        "scenarios": [scenario.to_json() for scenario in results],
    }


@click.command("bench")
@click.option("--quick", is_flag=True, help="Smoke run: small sizes, about four minutes.")
@click.option(
    "--publish",
    is_flag=True,
    help="Write ops/bench/results/latest.{json,md} and the README's table (a full run on a quiet machine).",
)
@click.option("--force", is_flag=True, help="With --publish: publish even though the machine was busy.")
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
    help="Without MWAP_MONGO_URL: the stand-in as ops/run starts it, or without its O(n) insert scans.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep logs here (default: a temporary directory, removed unless a scenario failed).",
)
def bench_command(
    *,
    quick: bool,
    publish: bool,
    force: bool,
    out: Path,
    markdown_path: Path | None,
    rounds: int | None,
    only: tuple[str, ...],
    loader: str,
    standin: str,
    work_dir: Path | None,
) -> None:
    """Benchmark the platform against plain Celery and Dramatiq, side by side, in one run."""
    from ops.bench import publish as published  # noqa: PLC0415 - heavy: only when running
    from ops.bench.config import Config  # noqa: PLC0415
    from ops.bench.report import render  # noqa: PLC0415
    from ops.processes import StartupError  # noqa: PLC0415

    if publish and (quick or only):
        raise click.UsageError("--publish writes the full run's results: not with --quick or --only")
    cpus = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    if publish and published.busy(load, cpus) and not force:
        raise click.ClickException(
            f"the machine is busy (load average {load:.2f} on {cpus} CPUs, above "
            f"{published.BUSY_LOAD_PER_CPU} per CPU): its numbers would not be this code's; "
            "wait for a quiet machine, or --force"
        )
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
    # Published although the machine was busy at the start: said in the results themselves.
    results["meta"]["forcedWhileBusy"] = publish and published.busy(load, cpus)
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
    if publish:
        published.publish(results)
        click.echo(f"mwap bench: published {published.LATEST_JSON} and the README's table", err=True)
    if work_dir is None:
        shutil.rmtree(run_dir, ignore_errors=True)
