"""Starting, watching and stopping the platform's processes: shared by ops/run, tests and benchmarks."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PYTHON = sys.executable
CELERY_APP = "worker.entry:celery_app"


class StartupError(RuntimeError):
    """A process did not become ready in time; the message points at its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for[T](probe: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05) -> T:
    """Call ``probe`` until it returns a truthy value (exceptions count as not yet) or time runs out."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = probe()
        except Exception as error:  # noqa: BLE001 - "not ready yet" takes any shape while starting
            value, last_error = None, error
        if value:
            return value
        if time.monotonic() > deadline:
            reason = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s{reason}")
        time.sleep(interval)


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass
class Child:
    """A started process in its own session, so stopping it stops everything it spawned."""

    name: str
    popen: subprocess.Popen
    log_path: Path | None = None
    stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after ``timeout``."""
        if self.stopped:
            return
        self.stopped = True
        if self.alive():
            self.signal(signal.SIGCONT)  # a SIGSTOPped process cannot act on SIGTERM
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(5)
        # Children that outlived their leader (e.g. prefork pool processes) go too.
        self.signal(signal.SIGKILL)

    def tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def spawn(
    name: str,
    argv: list[str],
    *,
    env: Mapping[str, str],
    log_dir: Path | None,
    cwd: Path | None = None,
) -> Child:
    """Start ``argv`` in a new session with its output in ``log_dir/name.log`` (inherited if None)."""
    log_path = None
    output = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
        output = log_path.open("ab")
    try:
        popen = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
        )
    finally:
        if output is not None:
            output.close()
    return Child(name, popen, log_path)


def await_ready(child: Child, probe: Callable[[], object], *, timeout: float) -> None:
    """Wait for ``probe`` to succeed while the child lives; on failure stop it and show its log."""

    def ready() -> object:
        if not child.alive():
            raise StartupError(f"{child.name} exited with {child.popen.returncode}:\n{child.tail()}")
        return probe()

    try:
        wait_for(ready, timeout=timeout, what=child.name)
    except StartupError:
        child.stop()
        raise
    except TimeoutError as error:
        child.stop()
        raise StartupError(f"{error}\n{child.tail()}") from None


def start_redis(
    port: int, *, data_dir: Path | None, log_dir: Path | None, env: Mapping[str, str], persist: bool = False
) -> Child:
    """A ``redis-server`` on 127.0.0.1:port; with ``persist`` an append-only file in ``data_dir``."""
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    argv += ["--protected-mode", "yes", "--daemonize", "no"]
    if persist and data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec"]
    else:
        argv += ["--appendonly", "no"]
    child = spawn("redis", argv, env=env, log_dir=log_dir)
    await_ready(child, lambda: _redis_pings(port), timeout=20)
    return child


def _redis_pings(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


def start_mongo(
    port: int, *, sqlite_path: Path | None, log_dir: Path | None, env: Mapping[str, str]
) -> Child:
    """The mongoeco wire server on 127.0.0.1:port, in memory or on a SQLite file."""
    argv = [PYTHON, "-m", "ops.mongo_server", "--port", str(port)]
    if sqlite_path is not None:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        argv += ["--sqlite", str(sqlite_path)]
    child = spawn("mongo", argv, env=env, log_dir=log_dir)
    await_ready(child, lambda: _mongo_pings(port), timeout=30)
    return child


def _mongo_pings(port: int) -> bool:
    import pymongo  # noqa: PLC0415 - only the readiness probe needs the driver

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=500
    )
    with client:
        return client.admin.command("ping").get("ok") == 1


def mongo_url(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/?directConnection=true"


def start_worker(
    *,
    env: Mapping[str, str],
    log_dir: Path | None,
    name: str = "worker",
    queues: str = "default,sync,maintenance,webhooks",
    pool: str = "prefork",
    concurrency: int = 2,
    extra: list[str] | None = None,
) -> Child:
    """A Celery worker process; ready once it answers a broadcast ping."""
    hostname = f"{name}-{os.getpid()}-{free_port()}@localhost"
    argv = [PYTHON, "-m", "celery", "-A", CELERY_APP, "worker", "-n", hostname, "-Q", queues]
    argv += ["-P", pool, "-c", str(concurrency), "--without-gossip", "--without-mingle", "-l", "INFO"]
    argv += extra or []
    child = spawn(name, argv, env=env, log_dir=log_dir)
    child.hostname = hostname  # type: ignore[attr-defined]
    await_ready(child, lambda: _worker_pings(env, hostname), timeout=60)
    return child


def _worker_pings(env: Mapping[str, str], hostname: str) -> bool:
    from celery import Celery  # noqa: PLC0415 - a throwaway control client for the probe

    from mwap import redis_urls  # noqa: PLC0415 - as above

    url, options = redis_urls.celery_broker(
        env["MWAP_REDIS_URL"],
        env.get("MWAP_REDIS_SENTINEL_MASTER"),
        env.get("MWAP_REDIS_SENTINEL_PASSWORD"),
        timeout=5.0,
    )
    app = Celery(broker=url, broker_transport_options=options)
    try:
        return bool(app.control.ping(destination=[hostname], timeout=0.5))
    finally:
        app.close()


def start_beat(
    *, env: Mapping[str, str], log_dir: Path | None, schedule_path: Path, name: str = "beat"
) -> Child:
    schedule_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [PYTHON, "-m", "celery", "-A", CELERY_APP, "beat", "-s", str(schedule_path), "-l", "INFO"]
    return spawn(name, argv, env=env, log_dir=log_dir)


def start_api(*, env: Mapping[str, str], log_dir: Path | None, port: int) -> Child:
    argv = [PYTHON, "-m", "gunicorn", "-c", "python:api_thin.gunicorn_conf", "api_thin.wsgi:app"]
    child = spawn("api", argv, env={**env, "MWAP_API_PORT": str(port)}, log_dir=log_dir)
    await_ready(child, lambda: tcp_open(port), timeout=60)
    return child


# How often a persistent Flower writes its state (milliseconds); it also writes it when stopped.
FLOWER_STATE_SAVE_INTERVAL_MS = 10_000


def start_flower(
    *,
    env: Mapping[str, str],
    log_dir: Path | None,
    port: int,
    basic_auth: str,
    db: Path | None = None,
    state_save_interval_ms: int = FLOWER_STATE_SAVE_INTERVAL_MS,
) -> Child:
    """Flower on 127.0.0.1:port; with ``db``, persistent: it keeps its task history in that file
    (written every ``state_save_interval_ms`` and when stopped) and reads it back at start."""
    # Credentials travel in the environment (FLOWER_BASIC_AUTH), not argv, where `ps` would show them.
    argv = [PYTHON, "-m", "celery", "-A", CELERY_APP, "flower", f"--port={port}", "--address=127.0.0.1"]
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        argv += ["--persistent=True", f"--db={db}", f"--state_save_interval={state_save_interval_ms}"]
    # Flower is not ours to meter: keep its process metrics out of the platform's /metrics.
    flower_env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    child = spawn("flower", argv, env={**flower_env, "FLOWER_BASIC_AUTH": basic_auth}, log_dir=log_dir)
    await_ready(child, lambda: tcp_open(port), timeout=60)
    return child


def start_fake_providers(
    port: int, *, env: Mapping[str, str], log_dir: Path | None, extra: list[str] | None = None
) -> Child:
    """The fake Google Drive / Dropbox / Graph server on 127.0.0.1:port."""
    argv = [PYTHON, "-m", "ops.fake_providers", "--host", "127.0.0.1", "--port", str(port), *(extra or [])]
    child = spawn("fake-providers", argv, env=env, log_dir=log_dir)
    await_ready(child, lambda: _http_ok(f"http://127.0.0.1:{port}/_control/health"), timeout=30)
    return child


def _http_ok(url: str) -> bool:
    import urllib.request  # noqa: PLC0415 - only the readiness probe needs it

    with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback URL we built
        return response.status == 200
