"""The processes of one bench run: Redis, MongoDB, fake providers, the platform's API, workers and
beat, plain Celery's route and workers, Dramatiq's route and worker, each on a free port, all
stopped by ``Harness.close``.

One Redis serves every side (``INFO`` counts its commands), each side on databases of its own:
0 the platform, 3 a second platform broker (two sync workers with different pools stay up side by
side); 1 plain Celery's broker, 6 a second one, 2 its result backend; 4 and 5 Dramatiq's broker and
result backend; 7 the capacity scenario's platform broker; 9 and 10 brokers nobody consumes
(dispatch).
"""

import base64
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymongo
import redis
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from celery import Celery
from pymongo.database import Database

from mwap.connections import mongo_db, redis_client
from mwap.indexes import ensure_indexes
from mwap.jobtypes import Queue
from mwap.metrics import reset_multiprocess_dir
from mwap.settings import Settings
from ops import processes
from ops.bench.loader import Http
from ops.fake_providers.control import FakeProviders
from ops.processes import PYTHON, Child
from tasks.providers.outbound import DEV_LOOPBACK_ENV

BASELINE_APP = "ops.bench.baseline:app"
BASELINE_WEB = "ops.bench.baseline:web"
DRAMATIQ_MODULE = "ops.bench.dramatiq_peer"
DRAMATIQ_WEB = "ops.bench.dramatiq_peer:web"
PLATFORM_DB, BASELINE_BROKER_DB, BASELINE_BACKEND_DB, SECOND_PLATFORM_DB = 0, 1, 2, 3
DRAMATIQ_BROKER_DB, DRAMATIQ_RESULTS_DB, SECOND_BASELINE_DB = 4, 5, 6
CAPACITY_DB = 7
DEAD_PLATFORM_DB, DEAD_BASELINE_DB = 9, 10
PLATFORM_QUEUES = [queue.value for queue in Queue]
# Dramatiq's Redis broker keeps a queue as a list of message ids and a hash of the messages.
DRAMATIQ_QUEUE_KEYS = ("dramatiq:default", "dramatiq:default.msgs")
# The platform's beat entries (worker/schedule.py), as settings: hourly in the bench (see env).
BEAT_INTERVALS = (
    "MWAP_DEAD_WORKER_CHECK_INTERVAL",
    "MWAP_RECONCILE_INTERVAL",
    "MWAP_WEBHOOK_SWEEP_INTERVAL",
    "MWAP_HEALTH_CHECK_INTERVAL",
    "MWAP_SYNC_INTERVAL",
)
# The platform's gunicorn (api_thin/gunicorn_conf.py): gthread workers with 4 threads each.
API_THREADS = 4


@dataclass
class Harness:
    """Starts what a scenario asks for; remembers every child so ``close`` stops them all."""

    run_dir: Path
    mongo_url_from_env: str | None = None
    standin: str = "stock"  # the MongoDB started when mongo_url_from_env is None: "stock" or "fast"
    children: list[Child] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    redis_base: str = ""
    api_url: str = ""
    baseline_url: str = ""
    api_child: Child | None = None
    baseline_api_child: Child | None = None
    dramatiq_url: str = ""
    dramatiq_api_child: Child | None = None
    fake: FakeProviders | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False
    _settings: Settings | None = None

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    # -- lifecycle ------------------------------------------------------------------------------

    def add(self, child: Child) -> Child:
        """Remember ``child`` for ``close``; one that finished starting after ``close`` is stopped."""
        with self._lock:
            if not self._closed:
                self.children.append(child)
                return child
        child.stop()
        raise KeyboardInterrupt(f"{child.name} started while the bench was stopping")

    def stop(self, child: Child) -> None:
        child.stop()
        with self._lock:
            if child in self.children:
                self.children.remove(child)

    def close(self) -> None:
        """Stop every child, newest first; safe to call twice."""
        with self._lock:
            self._closed = True
        if self.fake is not None:
            self.fake.close()
            self.fake = None
        while self.children:
            with self._lock:
                child = self.children.pop()
            with contextlib.suppress(Exception):  # keep stopping the others whatever happens
                child.stop()

    def parallel(self, *starters: Callable[[], Any]) -> list[Any]:
        """Run the start functions side by side (starting is mostly waiting); re-raise the first error."""
        results: list[Any] = [None] * len(starters)
        errors: list[BaseException] = []

        def run(n: int, starter: Callable[[], Any]) -> None:
            try:
                results[n] = starter()
            except BaseException as error:  # noqa: BLE001 - handed to the calling thread below
                errors.append(error)

        threads = [threading.Thread(target=run, args=(n, s), daemon=True) for n, s in enumerate(starters)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:
            # Ctrl-C while processes start: let each starter finish (``add`` stops what it started
            # from now on), or a process spawned in its own session would outlive the bench.
            with self._lock:
                self._closed = True
            for thread in threads:
                thread.join()
            raise
        if errors:
            raise errors[0]
        return results

    # -- the shared servers ---------------------------------------------------------------------

    def start(self) -> None:
        """Redis, MongoDB (unless MWAP_MONGO_URL names one), the fake providers, the three HTTP APIs."""
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("MWAP_")}
        base_env["PYTHONUNBUFFERED"] = "1"
        redis_port, mongo_port, fake_port = (processes.free_port() for _ in range(3))

        def start_mongo() -> str:
            if self.mongo_url_from_env:
                return self.mongo_url_from_env
            if self.standin == "fast":
                return self.start_fast_standin("mongo-fast", base_env)[1]
            self.add(processes.start_mongo(mongo_port, sqlite_path=None, log_dir=self.log_dir, env=base_env))
            return processes.mongo_url(mongo_port)

        def start_fake() -> FakeProviders:
            self.add(processes.start_fake_providers(fake_port, env=base_env, log_dir=self.log_dir))
            return FakeProviders(f"http://127.0.0.1:{fake_port}")

        _, mongo_url, self.fake = self.parallel(
            lambda: self.add(
                processes.start_redis(redis_port, data_dir=None, log_dir=self.log_dir, env=base_env)
            ),
            start_mongo,
            start_fake,
        )
        self.redis_base = f"redis://127.0.0.1:{redis_port}"
        self.env = {
            **base_env,
            "MWAP_REDIS_URL": self.redis_url(PLATFORM_DB),
            "MWAP_MONGO_URL": mongo_url,
            "MWAP_MONGO_DB": f"mwap_bench_{secrets.token_hex(4)}",
            "MWAP_ENCRYPTION_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
            "MWAP_ADMIN_API_KEY": "bench-admin-" + secrets.token_urlsafe(24),
            "PROMETHEUS_MULTIPROC_DIR": str(reset_multiprocess_dir(self.run_dir / "metrics")),
            **DEV_LOOPBACK_ENV,  # the fake providers answer over http on loopback
            # The bench freezes (SIGSTOP) the side it is not measuring, for longer than the default
            # heartbeat TTL: a frozen worker would be judged dead and its heartbeat keys come and go
            # between a step's key counts. A heartbeat is a per-worker cost every few seconds, not a
            # per-job one; here it is made hourly so frozen workers stay alive.
            "MWAP_WORKER_HEARTBEAT_INTERVAL": "3600",
            "MWAP_WORKER_HEARTBEAT_TTL": "7200",
            # Beat's periodic work goes the same way: every entry runs once when beat starts, then
            # hourly. At the defaults (the dead-worker check every 5 s, the webhook sweep every 30 s,
            # the reconciler every minute) beat would drop a message into `maintenance` or
            # `webhooks`, queues no bench worker consumes, whenever a step's drain ran long: a key
            # without an expiry the step waits in vain to see go (and a per-time cost inside a
            # per-job window).
            **dict.fromkeys(BEAT_INTERVALS, "3600"),
        }
        ensure_indexes(self.db, self.settings)
        api_port, baseline_port, dramatiq_port = (processes.free_port() for _ in range(3))
        self.api_child, self.baseline_api_child, self.dramatiq_api_child = self.parallel(
            lambda: self.add(processes.start_api(env=self.env, log_dir=self.log_dir, port=api_port)),
            lambda: self.add(
                self._start_peer_api("baseline-api", BASELINE_WEB, baseline_port, self.baseline_env)
            ),
            lambda: self.add(
                self._start_peer_api("dramatiq-api", DRAMATIQ_WEB, dramatiq_port, self.dramatiq_env)
            ),
        )
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.baseline_url = f"http://127.0.0.1:{baseline_port}"
        self.dramatiq_url = f"http://127.0.0.1:{dramatiq_port}"
        # gunicorn listens before its workers have imported the app: wait for real answers.
        processes.wait_for(lambda: self.api().request("GET", "/health")[0] == 200, timeout=60, what="API")
        for url, what in ((self.baseline_url, "baseline route"), (self.dramatiq_url, "Dramatiq route")):
            processes.wait_for(functools.partial(_answers_404, url), timeout=60, what=what)

    def start_fast_standin(self, name: str, env: dict[str, str]) -> tuple[Child, str]:
        """``ops.bench.fast_standin`` on a free port, and its URL."""
        port = processes.free_port()
        argv = [PYTHON, "-m", "ops.bench.fast_standin", "--port", str(port)]
        child = processes.spawn(name, argv, env=env, log_dir=self.log_dir)
        url = processes.mongo_url(port)

        def pings() -> bool:
            client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
                url, serverSelectionTimeoutMS=500
            )
            with client:
                return client.admin.command("ping").get("ok") == 1

        processes.await_ready(child, pings, timeout=30)
        return self.add(child), url

    def redis_url(self, db: int) -> str:
        return f"{self.redis_base}/{db}"

    @property
    def settings(self) -> Settings:
        """The platform's settings, as its processes read them from ``env``."""
        if self._settings is None:
            values: dict[str, Any] = {
                k.removeprefix("MWAP_").lower(): v for k, v in self.env.items() if k.startswith("MWAP_")
            }
            self._settings = Settings(**values)
        return self._settings

    def settings_on(self, redis_db: int) -> Settings:
        return self.settings.model_copy(update={"redis_url": self.redis_url(redis_db)})

    @property
    def db(self) -> Database:
        return mongo_db(self.settings)

    def redis(self, db: int) -> redis.Redis:
        return redis_client(self.settings_on(db))

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.env['MWAP_ADMIN_API_KEY']}"}

    def api(self) -> Http:
        return Http(self.api_url, self.admin_headers)

    @property
    def _peer_env(self) -> dict[str, str]:
        # Not the platform's: no MWAP_ settings, and no metrics directory (its /metrics counts the
        # platform's processes only).
        return {
            k: v for k, v in self.env.items() if not k.startswith("MWAP_") and k != "PROMETHEUS_MULTIPROC_DIR"
        }

    def baseline_env_on(self, broker_db: int) -> dict[str, str]:
        return {
            **self._peer_env,
            "BENCH_BROKER_URL": self.redis_url(broker_db),
            "BENCH_RESULT_BACKEND": self.redis_url(BASELINE_BACKEND_DB),
        }

    @property
    def baseline_env(self) -> dict[str, str]:
        return self.baseline_env_on(BASELINE_BROKER_DB)

    @property
    def dramatiq_env(self) -> dict[str, str]:
        return {
            **self._peer_env,
            "BENCH_DRAMATIQ_BROKER": self.redis_url(DRAMATIQ_BROKER_DB),
            "BENCH_DRAMATIQ_RESULTS": self.redis_url(DRAMATIQ_RESULTS_DB),
        }

    def baseline_client(self, broker_db: int = BASELINE_BROKER_DB) -> Celery:
        """A client of the baseline app (send, read results) that needs no import-time settings."""
        return Celery(
            "baseline-client",
            broker=self.redis_url(broker_db),
            backend=self.redis_url(BASELINE_BACKEND_DB),
        )

    def _start_peer_api(self, name: str, app: str, port: int, env: dict[str, str]) -> Child:
        """A peer's Flask routes under gunicorn, with the platform API's workers and threads."""
        workers = str(self.settings.api_workers)
        argv = [PYTHON, "-m", "gunicorn", "-w", workers, "-k", "gthread", "--threads", str(API_THREADS)]
        argv += ["-b", f"127.0.0.1:{port}", app]
        child = processes.spawn(name, argv, env=env, log_dir=self.log_dir)
        processes.await_ready(child, lambda: processes.tcp_open(port), timeout=60)
        return child

    # -- workers --------------------------------------------------------------------------------

    def platform_worker(
        self, name: str, *, queues: str, pool: str, concurrency: int, redis_db: int = PLATFORM_DB
    ) -> Child:
        env = {**self.env, "MWAP_REDIS_URL": self.redis_url(redis_db)}
        return self.add(
            processes.start_worker(
                env=env, log_dir=self.log_dir, name=name, queues=queues, pool=pool, concurrency=concurrency
            )
        )

    def platform_beat(self) -> Child:
        """The platform's beat (RedBeat on the platform's Redis database), as deployed beside workers."""
        child = processes.start_beat(
            env=self.env, log_dir=self.log_dir, schedule_path=self.run_dir / "beat-schedule"
        )
        processes.await_ready(child, lambda: self.redis(PLATFORM_DB).exists("mwap:redbeat::lock"), timeout=60)
        return self.add(child)

    def baseline_worker(
        self, name: str, *, pool: str, concurrency: int, broker_db: int = BASELINE_BROKER_DB
    ) -> Child:
        """``celery -A ops.bench.baseline:app worker`` with the platform worker's pool and concurrency;
        everything else (prefetch 4, ack on receipt, gossip, mingle) Celery's defaults."""
        hostname = f"{name}-{os.getpid()}-{processes.free_port()}@localhost"
        argv = [PYTHON, "-m", "celery", "-A", BASELINE_APP, "worker", "-n", hostname, "-l", "WARNING"]
        argv += ["-P", pool, "-c", str(concurrency)]
        child = processes.spawn(name, argv, env=self.baseline_env_on(broker_db), log_dir=self.log_dir)
        client = self.baseline_client(broker_db)
        try:
            processes.await_ready(
                child, lambda: client.control.ping(destination=[hostname], timeout=0.5), timeout=60
            )
        finally:
            client.close()
        return self.add(child)

    def dramatiq_worker(self, name: str, *, processes_: int, threads: int) -> Child:
        """``dramatiq ops.bench.dramatiq_peer``: ready once it has run a job."""
        from ops.bench import dramatiq_peer  # noqa: PLC0415 - only the scenarios with Dramatiq need it

        argv = [PYTHON, "-m", "dramatiq", DRAMATIQ_MODULE, "--processes", str(processes_)]
        argv += ["--threads", str(threads), "--queues", dramatiq_peer.QUEUE]
        child = processes.spawn(name, argv, env=self.dramatiq_env, log_dir=self.log_dir)
        client = dramatiq_peer.Client(self.redis_url(DRAMATIQ_BROKER_DB), self.redis_url(DRAMATIQ_RESULTS_DB))
        try:
            processes.await_ready(child, lambda: client.round_trip(timeout_ms=1000), timeout=60)
        finally:
            client.close()
        return self.add(child)

    # -- one side at a time -----------------------------------------------------------------------

    @staticmethod
    def run_only(active: list[Child], others: list[Child]) -> None:
        """Let ``active`` run and freeze ``others`` (SIGSTOP to their process groups): a measurement
        window sees one side's processes only; a frozen worker keeps its messages and connections."""
        for child in others:
            if child not in active:
                child.signal(signal.SIGSTOP)
        for child in active:
            child.signal(signal.SIGCONT)

    @staticmethod
    def resume(*children: Child) -> None:
        for child in children:
            child.signal(signal.SIGCONT)

    # -- between measurements -------------------------------------------------------------------

    def clear_jobs(self) -> None:
        """Empty the ledger and the queues: each measurement starts from the same state.

        The stand-in's inserts cost O(documents in the collection), so a ledger left to grow
        would make every round slower than the one before it. Only the queue lists go: flushing
        the database would also drop kombu's bindings, and running workers would never see a
        message again.
        """
        self.db["jobs"].delete_many({})
        for db in (PLATFORM_DB, SECOND_PLATFORM_DB):
            self.redis(db).delete(*PLATFORM_QUEUES)
        for db in (BASELINE_BROKER_DB, SECOND_BASELINE_DB):
            with redis.Redis.from_url(self.redis_url(db)) as baseline:
                baseline.delete("celery")
        with redis.Redis.from_url(self.redis_url(DRAMATIQ_BROKER_DB)) as peer:
            peer.delete(*DRAMATIQ_QUEUE_KEYS)
        # Results nobody reads again (they would expire in a day): gone, so the next window starts
        # from the same state.
        for db in (BASELINE_BACKEND_DB, DRAMATIQ_RESULTS_DB):
            with redis.Redis.from_url(self.redis_url(db)) as results:
                results.flushdb()

    def ledger_bytes(self) -> int:
        """BSON bytes of every document in the platform's ledger (``jobs``), as stored."""
        raw = self.db.get_collection("jobs", codec_options=CodecOptions(document_class=RawBSONDocument))
        return sum(len(doc.raw) for doc in raw.find())

    def drop_database(self) -> None:
        with contextlib.suppress(Exception):  # the server may be gone already on Ctrl-C
            self.db.client.drop_database(self.settings.mongo_db)


def _answers_404(url: str) -> bool:
    """A peer's Flask app answers (404 for ``/``, which it has no route for)."""
    return Http(url).request("GET", "/")[0] == 404


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (a prefork worker's pool processes)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return sorted(found)


def groups_cpu_seconds(groups: Mapping[str, Child | None]) -> dict[str, float]:
    """User + system CPU seconds of every live process in each named child's process group (each
    child leads its own session: gunicorn and its workers, celery and its pool processes), in one
    pass over /proc."""
    leaders = {child.pid: name for name, child in groups.items() if child is not None}
    ticks = dict.fromkeys(leaders.values(), 0)
    if leaders:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                name = leaders.get(int(fields[2]))  # pgrp; utime and stime follow at 11 and 12
                if name is not None:
                    ticks[name] += int(fields[11]) + int(fields[12])
    hertz = os.sysconf("SC_CLK_TCK")
    return {name: count / hertz for name, count in ticks.items()}


def rss_kib(pid: int) -> int:
    """VmRSS of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for {pid}")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total_kib = next(
        (int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0
    )
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line), "")
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memoryGiB": round(total_kib / 1024 / 1024, 1),
        "arch": os.uname().machine,
        "cpu": model,
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "wrk": shutil.which("wrk") is not None,
    }


def run_loader(spec: dict[str, Any]) -> dict[str, Any]:
    """The loader in its own process (so it does not share the bench's interpreter)."""
    done = subprocess.run(
        [PYTHON, "-m", "ops.bench.loader", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        timeout=float(spec["seconds"]) + 300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loader failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout)


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` then ``t[0]`` holds the elapsed seconds."""
    box = [0.0]
    started = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - started
