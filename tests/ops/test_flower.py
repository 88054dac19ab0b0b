"""Flower as ops/run runs it (ops.processes.start_flower, persistent, started before the worker)
over a Redis database of its own with a real worker: it lists every job by its type and by whom
it is for, through a worker's requeue and a Celery retry, and a Flower restarted on the same
``--db`` still lists what it saw before."""

import ast
import dbm
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import factories
import pytest
import requests
from celery import Celery
from pymongo.database import Database
from redis import Redis

from mwap import leases
from mwap.enqueue import JobRequest, enqueue
from mwap.services import Services
from mwap.settings import Settings
from ops import processes
from ops.processes import Child, wait_for
from worker.app import create_celery_app, publisher

REDIS_DB = 11  # no other test's database: this Flower sees this test's jobs only
USER = "operator"


@dataclass
class FlowerStack:
    services: Services  # the session's MongoDB, this test's Redis database
    producer: Celery
    env: dict[str, str]
    log_dir: Path
    db_file: Path
    password: str
    flower: Child | None = None
    url: str = ""

    def start_flower(self) -> None:
        port = processes.free_port()
        self.flower = processes.start_flower(
            env=self.env,
            log_dir=self.log_dir,
            port=port,
            basic_auth=f"{USER}:{self.password}",
            db=self.db_file,
        )
        self.url = f"http://127.0.0.1:{port}"

    def stop_flower(self) -> None:
        assert self.flower is not None
        self.flower.stop()  # SIGTERM, as ops/run and Kubernetes stop it: Flower saves its state

    def enqueue(
        self, job_type: str, tenant: str | None, subject: dict[str, str], **params: Any
    ) -> dict[str, Any]:
        """Create a job as the API does (ledger, lease, the one publisher) on this Redis database."""
        [outcome] = enqueue(
            self.services.db,
            self.services.redis,
            publisher(self.producer),
            [JobRequest(job_type, tenant, subject, params)],
            lease_ttl=leases.job_lease_ttl(self.services.settings),
        )
        return outcome.job

    def get(self, path: str, **params: str) -> Any:
        response = requests.get(f"{self.url}{path}", params=params, auth=(USER, self.password), timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def flower_stack(
    stack_env: dict[str, str], settings: Settings, services: Services, log_dir: Path, tmp_path: Path
) -> Iterator[FlowerStack]:
    """Flower first, then a worker (task events on, as ops/run and compose run them; one running
    job per tenant, so a tenant's second job is requeued)."""
    url = f"{stack_env['MWAP_REDIS_URL'].rsplit('/', 1)[0]}/{REDIS_DB}"
    redis = Redis.from_url(url)
    redis.flushdb()
    env = {
        **stack_env,
        "MWAP_REDIS_URL": url,
        "MWAP_WORKER_TASK_EVENTS": "true",
        "MWAP_TENANT_MAX_RUNNING_JOBS": "1",
    }
    own = settings.model_copy(update={"redis_url": url, "tenant_max_running_jobs": 1})
    stack = FlowerStack(
        Services(own, services.db, redis, services.ring),
        create_celery_app(own, include_tasks=False),
        env,
        log_dir,
        tmp_path / "flower" / "flower.db",
        "Fl0wer-" + secrets.token_urlsafe(18),
    )
    worker: Child | None = None
    try:
        stack.start_flower()
        worker = processes.start_worker(env=env, log_dir=log_dir, name="worker-flower", concurrency=2)
        yield stack
    finally:
        if worker is not None:
            worker.stop()
        if stack.flower is not None:
            stack.flower.stop()
        stack.producer.close()
        redis.flushdb()
        redis.close()


def shown(task: dict[str, Any]) -> dict[str, str]:
    """Whom a task is for, as Flower lists it (a dict literal, as Flower's search parses it)."""
    return ast.literal_eval(task["kwargs"])


def test_flower_lists_jobs_by_whom_they_are_for_and_keeps_them_across_a_restart(
    flower_stack: FlowerStack, db: Database
) -> None:
    tenant = str(factories.tenant(db)["_id"])
    # Three jobs of one tenant with room for one at a time: the others are requeued by the worker.
    echoes = [
        flower_stack.enqueue("system.echo", tenant, {}, sleepSeconds=1, message=f"e{n}") for n in range(3)
    ]
    usage = flower_stack.enqueue("tenant.aggregate_usage", tenant, {"tenantId": tenant})
    # A system job that fails once: Celery's retry sends its message again.
    retried = flower_stack.enqueue("system.echo", None, {}, failTimes=1, message="again")
    jobs = [*echoes, usage, retried]
    done = {job["_id"]: factories.wait_final(db, job["_id"]) for job in jobs}
    assert {doc["status"] for doc in done.values()} == {"succeeded"}
    assert sum(done[job["_id"]].get("deferrals", 0) for job in echoes) > 0  # requeued at the cap
    assert done[retried["_id"]]["result"]["retries"] == 1

    expected = {
        **{job["_id"]: {"type": "system.echo", "tenantId": tenant} for job in echoes},
        usage["_id"]: {"type": "tenant.aggregate_usage", "tenantId": tenant},
        retried["_id"]: {"type": "system.echo"},
    }

    # Flower keeps the arguments of a task's last message: a requeue's or a retry's must still say
    # whom the job is for (Celery's defaults would show "{}").
    seen: dict[str, Any] = {}

    def listed() -> bool:
        tasks = flower_stack.get("/api/tasks")
        seen.update({job_id: tasks.get(job_id) for job_id in expected})
        return all(
            task and task.get("state") == "SUCCESS" and shown(task) == expected[job_id]
            for job_id, task in seen.items()
        )

    try:
        wait_for(listed, timeout=30, what="every job in Flower")
    except TimeoutError:
        pytest.fail(f"Flower lists {seen}, not every job succeeded with {expected}")
    before: dict[str, dict[str, Any]] = dict(seen)
    for job_id, task in before.items():
        assert (task["name"], task["args"]) == (expected[job_id]["type"], f"['{job_id}']")
    by_tenant = flower_stack.get("/api/tasks", search=f"kwargs:tenantId={tenant}")
    assert set(by_tenant) == {job["_id"] for job in [*echoes, usage]}

    flower_stack.stop_flower()
    with dbm.open(str(flower_stack.db_file), "r") as saved:  # Flower's shelve: its keys, nothing unpickled
        assert b"events" in saved
    flower_stack.start_flower()
    # At once: what it lists now was read from the file, not heard again (these jobs are over).
    for job_id, task in before.items():
        again = flower_stack.get(f"/api/task/info/{job_id}")
        assert (again["name"], again["state"], shown(again)) == (task["name"], "SUCCESS", expected[job_id])
    assert set(flower_stack.get("/api/tasks", search=f"kwargs:tenantId={tenant}")) == set(by_tenant)
