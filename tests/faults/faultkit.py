"""The fault suite's kit: a private stack per test, process surgery, ledger checks and the summary rows.

Every fault test runs against its own redis-server and MongoDB stand-in on free ports (so killing,
stopping or wiping them never touches the session fixtures), its own workers, beat, API and fake
providers, all real processes. ``Stack`` stops every one of them on exit, whatever happened.
"""

import base64
import contextlib
import json
import os
import re
import secrets
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import batched
from pathlib import Path
from typing import Any

import factories
import pymongo
import redis
import requests
from pymongo.database import Database

from mwap.enqueue import JobRequest, enqueue
from mwap.indexes import ensure_indexes
from mwap.metrics import reset_multiprocess_dir
from mwap.settings import Settings
from ops import processes
from ops.fake_providers.control import FakeProviders
from ops.processes import Child, wait_for
from tasks.providers.outbound import DEV_LOOPBACK_ENV
from worker.app import create_celery_app, publisher

FINAL = ("succeeded", "failed", "cancelled")
BEAT_LOCK = "mwap:redbeat::lock"  # redbeat_key_prefix + ":lock"
# Every token the fake providers issue starts with one of these (ops/fake_providers/store.py).
ISSUED_TOKEN = re.compile(
    r"(ya29\.fake-|1//fake-|sl\.fake-|fake-dbx-rt-|EwB\.fake-|M\.R3_fake-)[A-Za-z0-9_-]{8,}"
)


# -- the summary table -----------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the fault table: what was injected and what it cost."""

    fault: str
    trials: int = 0
    jobs: int = 0
    lost: int = 0
    duplicated: int = 0
    server_errors: int = 0
    leaked: int = 0
    seconds: float = 0.0
    note: str = ""

    def assert_clean(self) -> None:
        """Loss, duplicated effects and leaked secrets must all be zero."""
        assert (self.lost, self.duplicated, self.leaked) == (0, 0, 0), self


ROWS: list[Row] = []


def record(row: Row, *, check: bool = True) -> Row:
    """Add ``row`` to the table printed at the end of the run, then (``check``) assert it is clean."""
    ROWS.append(row)
    if check:
        row.assert_clean()
    return row


# -- processes -------------------------------------------------------------------------------------


def kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class Stack:
    """Redis, MongoDB and whatever platform processes a test starts, on free ports, torn down on exit."""

    root: Path
    redis_persist: bool = False
    mongo_sqlite: bool = False
    overrides: dict[str, str] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.logs = self.root / "logs"
        self.redis_port = processes.free_port()
        self.mongo_port = processes.free_port()
        self.redis_child: Child | None = None
        self.mongo_child: Child | None = None
        self.admin_key = "faults-admin-" + secrets.token_urlsafe(24)
        self.encryption_keys = "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MWAP_")}
        self.env.update(
            MWAP_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            MWAP_MONGO_URL=processes.mongo_url(self.mongo_port),
            MWAP_MONGO_DB=f"faults_{secrets.token_hex(4)}",
            MWAP_ENCRYPTION_KEYS=self.encryption_keys,
            MWAP_ADMIN_API_KEY=self.admin_key,
            PYTHONUNBUFFERED="1",
            PROMETHEUS_MULTIPROC_DIR=str(reset_multiprocess_dir(self.root / "metrics")),
            **DEV_LOOPBACK_ENV,  # the fake providers answer over http on loopback
        )
        self.env.update(self.overrides)
        values = {k.removeprefix("MWAP_").lower(): v for k, v in self.env.items() if k.startswith("MWAP_")}
        self.settings = Settings(**values)
        self.ring = self.settings.key_ring()
        self._mongo: pymongo.MongoClient | None = None
        self._redis: redis.Redis | None = None
        self._producer: Any = None
        self._fake: FakeProviders | None = None
        self.api_url: str | None = None
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.admin_key}"

    # -- lifecycle

    def __enter__(self) -> "Stack":
        try:
            self.start_redis()
            self.start_mongo()
            ensure_indexes(self.db, self.settings)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop(timeout=10)
        for child in (self.mongo_child, self.redis_child):
            if child is not None:
                child.stop(timeout=10)
        if self._fake is not None:
            self._fake.close()
        if self._producer is not None:
            self._producer.close()
        if self._mongo is not None:
            self._mongo.close()
        if self._redis is not None:
            self._redis.close()
        self.http.close()

    def start_redis(self, *, persist: bool | None = None) -> Child:
        persist = self.redis_persist if persist is None else persist
        self.redis_child = processes.start_redis(
            self.redis_port, data_dir=self.root / "redis", log_dir=self.logs, env=self.env, persist=persist
        )
        return self.redis_child

    def start_mongo(self) -> Child:
        path = self.root / "mongo.sqlite3" if self.mongo_sqlite else None
        self.mongo_child = processes.start_mongo(
            self.mongo_port, sqlite_path=path, log_dir=self.logs, env=self.env
        )
        return self.mongo_child

    def parallel[T](self, *starts: Callable[[], T]) -> list[T]:
        """Run several ``start`` calls at once (each waits for its process to be ready)."""
        with ThreadPoolExecutor(max_workers=len(starts)) as pool:
            futures = [pool.submit(start) for start in starts]
            return [future.result() for future in futures]

    def spawn(self, child: Child) -> Child:
        self.children.append(child)
        return child

    def worker(
        self, name: str = "worker", *, concurrency: int = 2, pool: str = "prefork", queues: str | None = None
    ) -> Child:
        kwargs: dict[str, Any] = {"queues": queues} if queues else {}
        child = processes.start_worker(
            env=self.env, log_dir=self.logs, name=name, concurrency=concurrency, pool=pool, **kwargs
        )
        return self.spawn(child)

    def beat(self, name: str = "beat", *, leader: bool = True) -> Child:
        """A beat process; with ``leader``, wait until it (or another beat) holds the leader lock."""
        child = self.spawn(
            processes.start_beat(
                env=self.env, log_dir=self.logs, schedule_path=self.root / f"{name}-schedule", name=name
            )
        )
        if leader:
            processes.await_ready(child, lambda: self.redis.exists(BEAT_LOCK), timeout=60)
        return child

    def api(self) -> Child:
        port = processes.free_port()
        env = {**self.env, "MWAP_API_WORKERS": self.env.get("MWAP_API_WORKERS", "2")}
        child = processes.start_api(env=env, log_dir=self.logs, port=port)
        self.api_url = f"http://127.0.0.1:{port}"
        return self.spawn(child)

    def fake(self) -> FakeProviders:
        """The fake providers as a subprocess, registered as this stack's three cloudProviders."""
        port = processes.free_port()
        self.spawn(processes.start_fake_providers(port, env=os.environ, log_dir=self.logs))
        self._fake = FakeProviders(f"http://127.0.0.1:{port}")
        return self.use_fake(self._fake)

    def use_fake(self, fake: FakeProviders) -> FakeProviders:
        """Register ``fake`` (possibly another stack's) as this stack's three cloudProviders."""
        for document in fake.provider_documents():
            factories.point_provider_at(self.db, self.ring, document)
        return fake

    # -- clients

    @property
    def mongo(self) -> pymongo.MongoClient:
        if self._mongo is None:
            self._mongo = pymongo.MongoClient(
                self.settings.mongo_url, tz_aware=True, serverSelectionTimeoutMS=3000, socketTimeoutMS=60_000
            )
        return self._mongo

    @property
    def db(self) -> Database:
        return self.mongo[self.settings.mongo_db]

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(
                self.settings.redis_url, socket_timeout=3, socket_connect_timeout=3
            )
        return self._redis

    def enqueue(self, requests_: Iterable[JobRequest]) -> list[dict[str, Any]]:
        """Create jobs as the API does (ledger, lease, publish) without HTTP."""
        if self._producer is None:
            self._producer = create_celery_app(self.settings, include_tasks=False)
        outcomes = enqueue(
            self.db,
            self.redis,
            publisher(self._producer),
            list(requests_),
            lease_ttl=self.settings.broker_visibility_timeout,
        )
        return [outcome.job for outcome in outcomes]

    def echo(self, n: int = 1, **params: Any) -> list[dict[str, Any]]:
        return self.enqueue(JobRequest("system.echo", None, {}, params) for _ in range(n))

    def integration_job(self, job_type: str, integration: dict[str, Any], **params: Any) -> dict[str, Any]:
        subject = {"integrationId": str(integration["_id"])}  # ledger subjects hold hex strings
        [job] = self.enqueue([JobRequest(job_type, integration["tenantId"], subject, params)])
        return job

    # -- documents (seed 000 shapes, ObjectIds, written as the MWAP backend writes them)

    def integration_for(self, account: Any, **kwargs: Any) -> dict[str, Any]:
        """An integration holding the tokens the fake issued to ``account``, in a tenant of its own
        (one integration per provider per tenant), linked (enabled) to a project of that tenant
        whose folder is the whole drive ("/"): every file of the account is a virtual file."""
        tenant_id = factories.tenant(self.db)["_id"]
        project = factories.project(self.db, tenant_id, folderPath="/")
        return factories.integration_for(
            self.db, self.ring, tenant_id, account, project_ids=[project["_id"]], **kwargs
        )

    def virtual_files(self, integration: dict[str, Any]) -> list[dict[str, Any]]:
        """Every ``virtualFiles`` document of ``integration`` (deleted files are hard-deleted)."""
        return list(self.db["virtualFiles"].find({"integrationId": integration["_id"]}))

    # -- the ledger

    def job(self, job_id: str) -> dict[str, Any] | None:
        return self.db["jobs"].find_one({"_id": job_id})

    def wait_status(self, job_id: str, *statuses: str, timeout: float) -> dict[str, Any]:
        return wait_for(
            lambda: (doc := self.job(job_id)) and doc["status"] in statuses and doc,
            timeout=timeout,
            what=f"job {job_id} {'|'.join(statuses)}",
            interval=0.1,
        )

    def wait_final(self, job_id: str, *, timeout: float) -> dict[str, Any]:
        return self.wait_status(job_id, *FINAL, timeout=timeout)

    def wait_all_final(self, job_ids: Iterable[str], *, timeout: float, what: str = "jobs final") -> None:
        ids = list(job_ids)

        def open_count() -> bool:
            return (
                self.db["jobs"].count_documents({"_id": {"$in": ids}, "status": {"$nin": list(FINAL)}}) == 0
            )

        wait_for(open_count, timeout=timeout, what=what, interval=0.5)

    def statuses(self, job_ids: Iterable[str]) -> Counter[str]:
        """How many of the jobs are in each status (read in chunks: the stand-in is slow on big $in)."""
        counts: Counter[str] = Counter()
        for chunk in batched(job_ids, 1000, strict=False):
            counts.update(
                doc["status"] for doc in self.db["jobs"].find({"_id": {"$in": list(chunk)}}, {"status": 1})
            )
        return counts

    def executor_pid(self, job_id: str) -> int | None:
        """The pid of the process holding the job's execution lock (``host:pid:tag``), if any."""
        holder = self.redis.get(f"mwap:exec:{job_id}")
        if holder is None:
            return None
        return int(holder.decode().split(":")[1])

    # -- HTTP

    def post(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        assert self.api_url is not None, "start the API first"
        return self.http.post(self.api_url + path, json=body, timeout=kwargs.pop("timeout", 30), **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        assert self.api_url is not None, "start the API first"
        return self.http.get(self.api_url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    # -- secrets

    def leaks(self, secrets_: Iterable[str], *, extra_text: str = "") -> int:
        """Secrets found in the platform's logs, the ledger and the audit log.

        ``secrets_`` (tokens the test knows), the stack's admin key and encryption key, and any
        token the fake providers ever issued (they carry fixed prefixes), so tokens minted by a
        refresh during the run and long since replaced count too.
        """
        needles = {s for s in secrets_ if s and len(s) >= 8}
        needles |= {self.admin_key, self.encryption_keys.split(":", 1)[1]}
        texts = [extra_text]
        if self.logs.exists():
            # The platform's own logs; the fake providers and the servers are not the platform.
            texts += [
                path.read_text(errors="replace")
                for path in self.logs.glob("*.log")
                if not path.name.startswith(("fake-providers", "redis", "mongo"))
            ]
        with contextlib.suppress(pymongo.errors.PyMongoError):
            for collection in ("jobs", "auditLogs"):
                texts += [json.dumps(doc, default=str) for doc in self.db[collection].find()]
        known = sum(text.count(needle) for text in texts for needle in needles)
        return known + sum(len(ISSUED_TOKEN.findall(text)) for text in texts)

    def completions(self) -> Counter[str]:
        """Executions that ran a job's body to its end and returned, per job id, from every worker's log.

        A redelivery that finds its job final, or steps aside, returns None and is not counted.
        """
        counts: Counter[str] = Counter()
        for path in self.logs.glob("*.log") if self.logs.exists() else ():
            for line in path.read_text(errors="replace").splitlines():
                if '"celery.app.trace"' not in line or "succeeded in" not in line:
                    continue
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    data = json.loads(line)["data"]
                    if data["return_value"] != "None":
                        counts[data["id"]] += 1
        return counts

    def tail(self, name: str, lines: int = 60) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def provider_secrets(fake: FakeProviders, *account_ids: str) -> list[str]:
    """Every token the fake ever issued to these accounts that it still reports, and client secrets."""
    found = [doc["clientSecret"] for doc in fake.provider_documents()]
    for account_id in account_ids:
        tokens = fake.tokens(account_id)
        found += tokens["access_tokens"] + tokens["refresh_tokens"]
    return found


@contextlib.contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    start = time.monotonic()
    yield lambda: time.monotonic() - start
