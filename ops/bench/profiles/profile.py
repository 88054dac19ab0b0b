"""Profiles of the enqueue path, the worker path and the job read, with commands counted per job.

    python -m ops.bench.profiles.profile [--jobs N] [--out DIR] [--readme FILE --before DIR]

(``-m``, not the file's path: run as a script, this file would shadow the stdlib ``profile``
module that ``cProfile`` imports.)

Everything runs in this one process against a real ``redis-server`` and the MongoDB stand-in
(``ops/processes.py``), with the production settings' shape (``PROMETHEUS_MULTIPROC_DIR`` set,
JSON logging at INFO into a file, as the entry points configure it):

- **enqueue**: the real Flask app (``api_thin.create_app``) through its test client: ``N`` single
  ``POST /v1/jobs`` of ``system.echo`` with the admin key, then ``N/100`` ``POST /v1/jobs/batch``
  of 100 — authentication, validation, lease, ledger insert and publish included;
- **delivery**: a real Celery worker (``worker.app`` ``Worker``, solo pool, the production
  options otherwise) started in this process, consuming the jobs just enqueued from Redis: the
  whole delivery (kombu's fetch and ack, the request, ``JobTask.__call__`` with its refusal check,
  execution lock, ``ledger.start`` and fairness slot, the body, ``on_success``, the lease and lock
  releases, the end notification, signals, events and logs). The solo pool runs in one process
  what prefork splits between the main process (fetch, ack) and a pool process (the task);
- **read**: ``GET /v1/jobs/{id}`` of each single job, once it has succeeded.

Each step runs twice: once plain, where CPU per job (``time.process_time``, this process only:
the servers are other processes) and the commands are counted, and once under cProfile, whose
``cumulative`` and ``tottime`` tops are written to ``{api_enqueue,api_batch,worker,api_read}.txt``
(wall clock: the waits on the servers show as socket calls; cProfile records every thread, so a
CPU clock per thread cannot be used).
MongoDB commands are counted by a pymongo ``CommandListener``; Redis commands both as sent by
redis-py (every client of the process: the platform's, Celery's and kombu's) and as the server
counts them (``INFO commandstats`` deltas, which include the commands Lua scripts run).
``counts.json`` keeps every number; with ``--readme``, the tables of ``README.md`` are rendered
from it (and from ``--before DIR/counts.json``, an earlier run, for the before → after columns).
"""

import argparse
import base64
import cProfile
import hashlib
import io
import json
import os
import platform
import pstats
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
STEPS = ("api_enqueue", "api_batch", "worker", "api_read")
TITLES = {
    "api_enqueue": "enqueue: POST /v1/jobs (one job)",
    "api_batch": "enqueue: POST /v1/jobs/batch (per job, 100 a request)",
    "worker": "delivery: the worker runs the job",
    "api_read": "read: GET /v1/jobs/{id}",
}
BATCH = 100
WARMUP = 20
TOP = 45
ROUNDS = 5  # windows of the plain run: CPU per job is their median
ECHO = {"type": "system.echo", "params": {"message": "profile"}}


# --- counting ------------------------------------------------------------------------------------


class Tally:
    """Commands seen in this process: MongoDB by (command, collection), Redis by name as sent."""

    def __init__(self) -> None:
        self.mongo: Counter[str] = Counter()
        self.redis: Counter[str] = Counter()
        self.redis_round_trips = 0
        self.scripts: dict[str, str] = {}  # sha1 -> module.CONSTANT

    def snapshot(self) -> dict[str, Any]:
        return {"mongo": Counter(self.mongo), "redis": Counter(self.redis), "trips": self.redis_round_trips}


TALLY = Tally()


def install_counters() -> None:
    """A pymongo listener for every client made from now on; redis-py's connections patched to
    count each command they send (single commands and pipelines alike)."""
    from pymongo import monitoring  # noqa: PLC0415
    from redis.connection import AbstractConnection  # noqa: PLC0415

    class Listener(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            target = event.command.get(event.command_name)
            where = f" {target}" if isinstance(target, str) else ""
            TALLY.mongo[f"{event.command_name}{where}"] += 1

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    monitoring.register(Listener())

    send_command = AbstractConnection.send_command
    pack_commands = AbstractConnection.pack_commands

    def counted_send(self: Any, *args: Any, **kwargs: Any) -> Any:
        TALLY.redis[_redis_label(args)] += 1
        TALLY.redis_round_trips += 1
        return send_command(self, *args, **kwargs)

    def counted_pipeline(self: Any, commands: Any) -> Any:
        commands = list(commands)
        for command in commands:
            TALLY.redis[_redis_label(command)] += 1
        TALLY.redis_round_trips += 1
        return pack_commands(self, commands)

    AbstractConnection.send_command = counted_send  # type: ignore[method-assign]
    AbstractConnection.pack_commands = counted_pipeline  # type: ignore[method-assign]


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes | bytearray) else str(value)


_ID = re.compile(r"[0-9a-f]{24}|[0-9a-f]{8}-[0-9a-f-]{27}|\d+")


def _family(key: str) -> str:
    """A key or channel without its ids: ``mwap:exec:<id>`` -> ``mwap:exec``."""
    if key.startswith("mwap:"):
        return ":".join(key.split(":")[:2])
    if "celeryev" in key:
        return "celeryev (task events)"
    if "pidbox" in key:
        return "pidbox"
    return _ID.sub("<id>", key)[:40]


def _redis_label(args: Any) -> str:
    name = _text(args[0]).upper()
    if name in {"EVALSHA", "EVAL"} and len(args) > 1:
        body = _text(args[1])
        sha = body if name == "EVALSHA" else hashlib.sha1(body.encode()).hexdigest()  # noqa: S324 - Redis's own script id
        return f"{name} {TALLY.scripts.get(sha, sha[:8])}"
    if name in {"CLIENT", "CONFIG", "SCRIPT"} and len(args) > 1:
        return f"{name} {_text(args[1]).upper()}"
    if name in {"BRPOP", "MULTI", "EXEC", "PING", "TIME", "INFO", "HELLO"} or len(args) < 2:
        return name
    return f"{name} {_family(_text(args[1]))}"


def learn_scripts() -> None:
    """Name every Lua script a loaded module holds as a constant, by the sha1 EVALSHA sends."""
    prefixes = ("mwap", "api_thin", "worker", "tasks", "kombu", "celery", "redbeat")
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith(prefixes):
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, str) and "redis.call" in value:
                sha = hashlib.sha1(value.encode()).hexdigest()  # noqa: S324
                TALLY.scripts.setdefault(sha, f"{module_name}.{attr}")


def commandstats(redis: Any) -> Counter[str]:
    stats = redis.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()})


# --- the stack ---------------------------------------------------------------------------------


@contextmanager
def stack(work: Path) -> Iterator[dict[str, str]]:
    """Redis and the MongoDB stand-in on free ports; yields the platform's environment."""
    from ops import processes  # noqa: PLC0415

    logs = work / "logs"
    redis_port, mongo_port = processes.free_port(), processes.free_port()
    redis = processes.start_redis(redis_port, data_dir=None, log_dir=logs, env=os.environ)
    try:
        mongo = processes.start_mongo(mongo_port, sqlite_path=None, log_dir=logs, env=os.environ)
        try:
            yield {
                "MWAP_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "MWAP_MONGO_URL": processes.mongo_url(mongo_port),
                "MWAP_MONGO_DB": f"mwap_profile_{secrets.token_hex(4)}",
                "MWAP_ENCRYPTION_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
                "MWAP_ADMIN_API_KEY": "profile-admin-" + secrets.token_urlsafe(24),
            }
        finally:
            mongo.stop()
    finally:
        redis.stop()


# --- measuring ---------------------------------------------------------------------------------


class Step:
    """One step's measured numbers: CPU and commands of the plain run (in ``ROUNDS`` windows, whose
    median CPU per job is reported), the profile of the other run."""

    def __init__(self, name: str, jobs: int, requests: int) -> None:
        self.name, self.jobs, self.requests = name, jobs, requests
        self.cpu_rounds: list[float] = []  # seconds of CPU per job, one per window
        self.wall = 0.0
        self.mongo: Counter[str] = Counter()
        self.redis: Counter[str] = Counter()
        self.server: Counter[str] = Counter()
        self.trips = 0
        # Wall time: since 3.12 cProfile also records the process's other threads (pymongo's
        # monitors), and a per-thread CPU clock would then give nonsense.
        self.profile = cProfile.Profile()
        self._start: tuple[float, float, dict[str, Any], Counter[str]] | None = None

    @property
    def cpu(self) -> float:
        """Median CPU seconds per job over the windows."""
        return statistics.median(self.cpu_rounds)

    def begin(self, redis: Any) -> None:
        server = commandstats(redis)
        self._start = (time.process_time(), time.perf_counter(), TALLY.snapshot(), server)

    def end(self, redis: Any, jobs: int) -> None:
        """Close a window that ran ``jobs`` jobs."""
        cpu, wall = time.process_time(), time.perf_counter()
        after = TALLY.snapshot()
        server = commandstats(redis)
        assert self._start is not None
        cpu0, wall0, before, server0 = self._start
        self.cpu_rounds.append((cpu - cpu0) / jobs)
        self.wall += wall - wall0
        self.mongo += after["mongo"] - before["mongo"]
        self.redis += after["redis"] - before["redis"]  # the INFO calls fall outside the window
        self.trips += after["trips"] - before["trips"]
        served = server - server0
        served["info"] -= 1  # the server counts the first INFO in the second one's answer
        self.server += +served

    def as_dict(self) -> dict[str, Any]:
        per = 1 / self.jobs
        return {
            "jobs": self.jobs,
            "requests": self.requests,
            "cpu_ms_per_job": 1000 * self.cpu,
            "cpu_ms_per_job_rounds": [round(1000 * c, 4) for c in self.cpu_rounds],
            "wall_ms_per_job": 1000 * self.wall * per,
            "mongo_per_job": {k: v * per for k, v in sorted(self.mongo.items())},
            "redis_sent_per_job": {k: v * per for k, v in sorted(self.redis.items())},
            "redis_round_trips_per_job": self.trips * per,
            "redis_server_per_job": {k: v * per for k, v in sorted(self.server.items())},
        }


def _windows(total: int, rounds: int) -> list[int]:
    """``total`` calls split into ``rounds`` windows as even as can be."""
    rounds = max(1, min(rounds, total))
    size, extra = divmod(total, rounds)
    return [size + (1 if n < extra else 0) for n in range(rounds)]


def run(
    jobs: int, out: Path, command: str, code: str | None = None, raw: Path | None = None
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="mwap-profile-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(work / "metrics")
    (work / "metrics").mkdir()
    log_file = (work / "process.log").open("w")
    real_stdout = sys.stdout
    install_counters()
    load_before = os.getloadavg()
    with stack(work) as env:
        os.environ.update(env)
        sys.stdout = log_file  # the JSON log lines of the API and the worker go here, as to stdout
        try:
            steps = _measure(jobs, env)
        finally:
            sys.stdout = real_stdout
            log_file.close()
    shutil.rmtree(work)  # kept when a step failed: its logs say why
    load_after = os.getloadavg()
    learn_scripts()
    meta = {
        "command": command,
        "jobs": jobs,
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "code": code or _code_version(),
        "imported_from": _imported_from(),
    }
    out.mkdir(parents=True, exist_ok=True)
    for step in steps.values():
        _write_profile(step, out / f"{step.name}.txt", meta)
        if raw is not None:
            raw.mkdir(parents=True, exist_ok=True)
            step.profile.dump_stats(raw / f"{step.name}.prof")
    result = {"meta": meta, "steps": {name: step.as_dict() for name, step in steps.items()}}
    result = json.loads(_relabel(json.dumps(result)))  # scripts registered after learn_scripts ran
    (out / "counts.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _relabel(text: str) -> str:
    for sha, name in TALLY.scripts.items():
        text = text.replace(sha[:8], name)
    return text


def _imported_from() -> str:
    """The folder the platform's packages were imported from (a before/after run names another)."""
    import mwap  # noqa: PLC0415

    return str(Path(mwap.__file__).resolve().parents[1])


def _code_version() -> str:
    """Which code ran: the package path and its git commit (a dirty tree says so)."""
    import mwap  # noqa: PLC0415

    where = Path(mwap.__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head, dirty = "unknown", ""
    tree = "" if where == ROOT else f", code imported from {where}"
    return f"{head}{' + uncommitted changes' if dirty else ''}{tree}"


class Platform:
    """The API (the real Flask app, through its test client) and the worker app, in this process."""

    def __init__(self, env: dict[str, str]) -> None:
        import tasks  # noqa: PLC0415
        from api_thin import create_app  # noqa: PLC0415
        from mwap import logs, metrics  # noqa: PLC0415
        from mwap.connections import mongo_db, redis_client  # noqa: PLC0415
        from mwap.indexes import ensure_indexes  # noqa: PLC0415
        from mwap.settings import Settings  # noqa: PLC0415
        from worker.app import create_celery_app  # noqa: PLC0415

        tasks.load()
        settings = Settings(**{k.removeprefix("MWAP_").lower(): v for k, v in env.items()})
        ensure_indexes(mongo_db(settings), settings)
        self.redis = redis_client(settings)
        logs.configure_logging(settings, "api")  # as api_thin.wsgi does
        metrics.set_role("api")
        self.client = create_app(settings).test_client()
        self.worker_app = create_celery_app(settings)  # built now: every script is known before counting
        learn_scripts()
        self.headers = {"Authorization": f"Bearer {settings.admin_api_key.get_secret_value()}"}

    def post_one(self) -> str:
        response = self.client.post("/v1/jobs", json=ECHO, headers=self.headers)
        assert response.status_code == 202, response.get_data(as_text=True)
        return response.get_json()["id"]

    def post_batch(self) -> list[str]:
        response = self.client.post("/v1/jobs/batch", json={"jobs": [ECHO] * BATCH}, headers=self.headers)
        assert response.status_code == 202, response.get_data(as_text=True)
        return [item["job"]["id"] for item in response.get_json()["items"]]

    def read(self, job_id: str) -> None:
        response = self.client.get(f"/v1/jobs/{job_id}", headers=self.headers)
        assert response.status_code == 200
        assert response.get_json()["status"] == "succeeded", response.get_json()

    def twice(self, step: Step, call: Callable[[], Any], times: int, jobs_per_call: int = 1) -> list[Any]:
        """``times`` calls measured plain (in ``ROUNDS`` windows), then ``times`` more under the
        profiler."""
        results = []
        for window in _windows(times, ROUNDS):
            step.begin(self.redis)
            results += [call() for _ in range(window)]
            step.end(self.redis, window * jobs_per_call)
        step.profile.enable()
        results += [call() for _ in range(times)]
        step.profile.disable()
        return results

    def work(self, step: Step, *, skip: int, jobs: int) -> None:
        """A real Celery worker in this process (solo pool) runs ``skip`` jobs, then ``jobs``
        measured plain, then ``jobs`` under the profiler, and stops."""
        from celery import signals  # noqa: PLC0415
        from celery.worker import state  # noqa: PLC0415

        done = 0
        marks: dict[int, tuple[str, int]] = {skip: ("begin", 0)}
        edge = skip
        for window in _windows(jobs, ROUNDS):
            edge += window
            marks[edge] = ("end", window)
        marks[edge] = ("end-profile", marks[edge][1])
        marks[skip + 2 * jobs] = ("stop", 0)

        def on_postrun(**_: Any) -> None:
            nonlocal done
            done += 1
            mark, window = marks.get(done, ("", 0))
            if mark == "begin":
                step.begin(self.redis)
            elif mark == "end":
                step.end(self.redis, window)
                step.begin(self.redis)
            elif mark == "end-profile":
                step.end(self.redis, window)
                step.profile.enable()
            elif mark == "stop":
                step.profile.disable()
                state.should_stop = 0  # the worker's loop ends before its next fetch

        signals.task_postrun.connect(on_postrun, weak=False)
        state.should_stop = None
        try:
            self.worker_app.Worker(
                hostname=f"profile-{os.getpid()}@localhost",
                pool_cls="solo",
                concurrency=1,
                queues=["default"],
                without_gossip=True,  # as ops/processes.py starts workers
                without_mingle=True,
                loglevel="INFO",
                quiet=True,
            ).start()
        finally:
            signals.task_postrun.disconnect(on_postrun)
        assert done == skip + 2 * jobs, f"the worker ran {done} of {skip + 2 * jobs} jobs"


def _measure(jobs: int, env: dict[str, str]) -> dict[str, Step]:
    platform_ = Platform(env)
    steps = {
        "api_enqueue": Step("api_enqueue", jobs, jobs),
        "api_batch": Step("api_batch", jobs, jobs // BATCH),
        "worker": Step("worker", 2 * jobs, 2 * jobs),
        "api_read": Step("api_read", jobs, jobs),
    }
    warm = [platform_.post_one() for _ in range(WARMUP)] + platform_.post_batch()
    singles = platform_.twice(steps["api_enqueue"], platform_.post_one, jobs)
    platform_.twice(steps["api_batch"], platform_.post_batch, jobs // BATCH, jobs_per_call=BATCH)
    # Every job queued is run: the warm-up ones, then the single and batch ones (2 x 2 x N).
    platform_.work(steps["worker"], skip=len(warm), jobs=2 * jobs)
    for job_id in warm[:WARMUP]:
        platform_.read(job_id)
    reads = iter(singles)
    platform_.twice(steps["api_read"], lambda: platform_.read(next(reads)), jobs)
    return steps


# --- writing -----------------------------------------------------------------------------------

_PREFIXES = sorted(
    {sysconfig.get_paths()["purelib"] + "/", sysconfig.get_paths()["stdlib"] + "/", str(ROOT) + "/"},
    key=len,
    reverse=True,
)


def _stats_text(profile: cProfile.Profile, sort: str) -> str:
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    stats.sort_stats(sort).print_stats(TOP)
    text = stream.getvalue()
    for prefix in _PREFIXES:
        text = text.replace(prefix, "")
    import mwap  # noqa: PLC0415 - where the code came from (a before/after copy of the tree)

    text = text.replace(str(Path(mwap.__file__).resolve().parents[1]) + "/", "")
    lines = [line.rstrip() for line in text.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    return "\n".join(lines[start:]).rstrip() + "\n"


def _write_profile(step: Step, path: Path, meta: dict[str, Any]) -> None:
    per = 1000 / step.jobs
    header = [
        f"# {TITLES[step.name]}",
        f"# produced by: {meta['command']}",
        f"# {meta['when']}, Python {meta['python']}, {meta['cpus']} CPUs, load average"
        f" {meta['loadavg_before']} before, {meta['loadavg_after']} after; code: {meta['code']}",
        f"# profiled: {step.jobs} jobs in {step.requests} calls, after as many unprofiled ones"
        f" (CPU {1000 * step.cpu:.3f} ms/job, the median of {ROUNDS} windows, wall {step.wall * per:.3f}"
        " ms/job, in this process, without the profiler); the servers are other processes and not in"
        " the profile.",
        "# times below are cProfile's (wall clock) over the profiled run: the socket reads and writes"
        " at the top of the own-time list are the waits on Redis and MongoDB; its overhead inflates"
        " small calls.",
        "",
    ]
    body = [
        "## by cumulative time",
        _stats_text(step.profile, "cumulative"),
        "## by own time (tottime)",
        _stats_text(step.profile, "tottime"),
    ]
    path.write_text("\n".join(header + body))


def _fmt(value: float) -> str:
    return f"{value:.2f}" if value else "0"


def _breakdown(counts: dict[str, float]) -> str:
    items = [(k, v) for k, v in counts.items() if v >= 0.005]
    items.sort(key=lambda kv: (-kv[1], kv[0]))
    return "<br>".join(f"{_fmt(v)} `{k}`" for k, v in items) or "-"


def _cpu(step: dict[str, Any]) -> str:
    rounds = step.get("cpu_ms_per_job_rounds") or [step["cpu_ms_per_job"]]
    return f"{step['cpu_ms_per_job']:.3f} ({min(rounds):.3f}..{max(rounds):.3f})"


def _total(counts: dict[str, float]) -> float:
    return sum(counts.values())


BEGIN, END = "<!-- tables: rendered by profile.py --readme -->", "<!-- end of the rendered tables -->"


def update_readme(path: Path, after: dict[str, Any], before: dict[str, Any] | None) -> None:
    """Replace the rendered part of ``path`` (between the markers), keeping the text around it."""
    tables = f"{BEGIN}\n{render_tables(after, before)}\n{END}"
    text = (
        path.read_text()
        if path.exists()
        else f"# Profiles: where the platform spends per job\n\n{BEGIN}\n{END}\n"
    )
    head, found, rest = text.partition(BEGIN)
    if not found:
        raise SystemExit(f"{path} has no {BEGIN} marker")
    _, found, tail = rest.partition(END)
    if not found:
        raise SystemExit(f"{path} has no {END} marker")
    path.write_text(head + tables + tail)


def render_tables(after: dict[str, Any], before: dict[str, Any] | None) -> str:
    """The README's tables, from counts.json files (nothing here is typed in by hand)."""
    lines = [
        "Produced by `profile.py` in this folder (its docstring says exactly what runs):",
        "",
        "```bash",
        after["meta"]["command"],
        "```",
        "",
        "`api_enqueue.txt`, `api_batch.txt`, `worker.txt` and `api_read.txt` hold the cProfile tops",
        "(cumulative and own time) of each step; `counts.json` every number below. Everything ran in",
        "one process against a real Redis and the MongoDB stand-in, so CPU per job here is the",
        "platform's own code with its drivers (Flask, pydantic, pymongo, redis-py, Celery, kombu) and",
        "the kernel's share of its socket calls, the servers excluded. The machine is shared: CPU",
        "figures are indicative, command counts exact.",
        "",
        f"Run: {after['meta']['when']}, N = {after['meta']['jobs']}, code {after['meta']['code']},"
        f" load average {after['meta']['loadavg_before']} → {after['meta']['loadavg_after']}.",
    ]
    if before is not None:
        lines += [
            f"Before: {before['meta']['when']}, N = {before['meta']['jobs']}, code {before['meta']['code']},"
            f" load average {before['meta']['loadavg_before']} → {before['meta']['loadavg_after']}.",
        ]
    lines += ["", "## Per trivial job (`system.echo`, admin key), by step", ""]
    runs = [("before", before), ("after", after)] if before is not None else [("", after)]
    for label, data in runs:
        if label:
            lines += [f"### {label}", ""]
        lines += [
            "| step | CPU ms/job: median (min..max) of the windows | MongoDB commands/job | Redis commands sent/job (round trips) | Redis commands counted by the server/job |",
            "|---|---|---|---|---|",
        ]
        for name in STEPS:
            s = data["steps"][name]
            lines.append(
                f"| {TITLES[name]} | {_cpu(s)}"
                f" | **{_fmt(_total(s['mongo_per_job']))}**<br>{_breakdown(s['mongo_per_job'])}"
                f" | **{_fmt(_total(s['redis_sent_per_job']))}** ({_fmt(s['redis_round_trips_per_job'])})"
                f"<br>{_breakdown(s['redis_sent_per_job'])}"
                f" | **{_fmt(_total(s['redis_server_per_job']))}**<br>{_breakdown(s['redis_server_per_job'])} |"
            )
        lines += ["", *_trip_lines(data), ""]
    if before is not None:
        lines += ["## Before → after", "", "| | before | after |", "|---|---|---|"]
        for key, title in [
            ("mongo_per_job", "MongoDB commands"),
            ("redis_sent_per_job", "Redis commands sent"),
            ("redis_server_per_job", "Redis commands (server count)"),
        ]:
            for name in STEPS:
                b, a = _total(before["steps"][name][key]), _total(after["steps"][name][key])
                lines.append(f"| {title}, {TITLES[name]} | {_fmt(b)} | {_fmt(a)} |")
        for name in STEPS:
            b, a = before["steps"][name]["cpu_ms_per_job"], after["steps"][name]["cpu_ms_per_job"]
            lines.append(f"| CPU ms/job (median), {TITLES[name]} | {b:.3f} | {a:.3f} |")
        for title, fn in [("one job, enqueue → delivered → read once", _trip_totals)]:
            (bm, br, bs), (am, ar, as_) = fn(before), fn(after)
            lines += [
                f"| MongoDB commands, {title} | {_fmt(bm)} | {_fmt(am)} |",
                f"| Redis commands sent, {title} | {_fmt(br)} | {_fmt(ar)} |",
                f"| Redis commands (server count), {title} | {_fmt(bs)} | {_fmt(as_)} |",
            ]
        lines.append("")
    return "\n".join(lines)


def _trip_totals(data: dict[str, Any]) -> tuple[float, float, float]:
    names = ("api_enqueue", "worker", "api_read")
    return (
        sum(_total(data["steps"][n]["mongo_per_job"]) for n in names),
        sum(_total(data["steps"][n]["redis_sent_per_job"]) for n in names),
        sum(_total(data["steps"][n]["redis_server_per_job"]) for n in names),
    )


def _trip_lines(data: dict[str, Any]) -> list[str]:
    mongo, sent, server = _trip_totals(data)
    cpu = sum(data["steps"][n]["cpu_ms_per_job"] for n in ("api_enqueue", "worker", "api_read"))
    return [
        f"One job from a single POST to one read: **{_fmt(mongo)} MongoDB commands, {_fmt(sent)} Redis"
        f" commands sent ({_fmt(server)} counted by the server), {cpu:.2f} ms CPU**."
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="N: single POSTs, and jobs posted in batches")
    parser.add_argument("--out", type=Path, default=HERE, help="where the .txt profiles and counts.json go")
    parser.add_argument("--readme", type=Path, help="render the tables of this README.md from the counts")
    parser.add_argument("--before", type=Path, help="a folder holding an earlier run's counts.json")
    parser.add_argument("--code", help="what code ran, for the headers (default: its git commit)")
    parser.add_argument("--raw", type=Path, help="also dump each step's pstats data (.prof) here")
    args = parser.parse_args()
    if args.jobs < BATCH or args.jobs % BATCH:
        parser.error(f"--jobs must be a multiple of {BATCH}")
    command = "python -m ops.bench.profiles.profile " + shlex.join(sys.argv[1:])
    if os.environ.get("PYTHONPATH"):  # the code of another tree (a before/after comparison)
        command = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} {command}"
    after = run(args.jobs, args.out, command.strip(), args.code, args.raw)
    if args.readme is not None:
        before = json.loads((args.before / "counts.json").read_text()) if args.before else None
        update_readme(args.readme, after, before)
    print(json.dumps({n: round(s["cpu_ms_per_job"], 3) for n, s in after["steps"].items()}))


if __name__ == "__main__":
    main()
