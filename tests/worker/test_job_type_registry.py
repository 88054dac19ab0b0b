"""Adding a job type is one module and nothing else.

A throwaway type is declared in a module of its own (its params, schedule, due query with its
index, and retry policy beside its body) and dropped into the ``tasks`` package of fresh, unmodified
processes — a real Celery worker, gunicorn serving the API, the ``mwap`` command — with no other
file touched. The API accepts and validates it, the worker runs it under its declared retry policy,
its dispatcher and beat entry exist, and ``mwap db init`` creates its index.
"""

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import factories
import pytest
import requests
from bson import ObjectId
from pymongo import MongoClient

import tasks
from ops import processes
from ops.processes import wait_for

THROWAWAY = '''
"""tenant.throwaway: exists only for tests/worker/test_job_type_registry.py."""

from datetime import datetime
from typing import Any

from pymongo import ASCENDING

from mwap.indexes import Index
from mwap.jobtypes import JobType, Params, Queue, Retry, Schedule, Scope
from mwap.settings import Settings
from worker.base import Job, JobTask, job_task


class Flaky(Exception):
    """Raised on the first attempt: the declared policy retries it."""


class ThrowawayParams(Params):
    word: str = "hello"


def due(settings: Settings, moment: datetime) -> dict[str, Any]:
    return {"archived": {"$ne": True}, "name": {"$regex": "^throwaway-"}}


THROWAWAY = JobType(
    "tenant.throwaway",
    Scope.TENANT,
    Queue.MAINTENANCE,
    ThrowawayParams,
    "A throwaway job type.",
    schedule=Schedule(
        interval="retention_interval",
        due=due,
        index=Index("tenants", "mwap_due_throwaway", [("name", ASCENDING)]),
    ),
    retry=Retry(on=(Flaky,), max_retries=2, backoff=1, jitter=False),
)


@job_task(THROWAWAY)
def throwaway(self: JobTask, job: Job) -> dict[str, Any]:
    if job.retries < 1:
        raise Flaky("first attempt")
    return {"word": ThrowawayParams.model_validate(job.params).word, "retries": job.retries}
'''

# A second module: a job whose first deliveries meet a storage outage (as pymongo reports one), then
# one retryable error of its own; it may spend one retry.
OUTAGE_PROBE = '''
"""system.outage_probe: exists only for tests/worker/test_job_type_registry.py."""

from typing import Any

from pymongo.errors import AutoReconnect

from mwap.jobtypes import JobType, NoParams, Queue, Retry, Scope
from worker.base import Job, JobTask, job_task

OUTAGES = 3


class Flaky(Exception):
    pass


OUTAGE_PROBE = JobType(
    "system.outage_probe",
    Scope.SYSTEM,
    Queue.DEFAULT,
    NoParams,
    "Meets a storage outage, then one retryable error.",
    retry=Retry(on=(Flaky,), max_retries=1, backoff=1, jitter=False),
)


@job_task(OUTAGE_PROBE)
def outage_probe(self: JobTask, job: Job) -> dict[str, Any]:
    delivery = self.services().redis.incr(f"outage-probe:{job.id}")
    if delivery <= OUTAGES:
        raise AutoReconnect("storage unreachable")
    if job.retries < 1:
        raise Flaky("once")
    return {"deliveries": delivery, "retries": job.retries}
'''

# Puts the throwaway module's folder on the ``tasks`` package's path at interpreter start, the
# same as a module file inside tasks/ (the processes' entry points are the production ones).
SITECUSTOMIZE = """
import os
import tasks

tasks.__path__.append(os.environ["THROWAWAY_TASKS_DIR"])
"""


@pytest.fixture(scope="module")
def throwaway_stack(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, log_dir: Path
) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("throwaway")
    (root / "jobs").mkdir()
    (root / "jobs" / "throwaway.py").write_text(textwrap.dedent(THROWAWAY))
    (root / "jobs" / "outage_probe.py").write_text(textwrap.dedent(OUTAGE_PROBE))
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    redis_port, mongo_port, api_port = processes.free_port(), processes.free_port(), processes.free_port()
    redis = processes.start_redis(redis_port, data_dir=None, log_dir=log_dir, env=stack_env)
    mongo = processes.start_mongo(mongo_port, sqlite_path=None, log_dir=log_dir, env=stack_env)
    env = {
        **stack_env,
        "MWAP_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "MWAP_MONGO_URL": processes.mongo_url(mongo_port),
        "THROWAWAY_TASKS_DIR": str(root / "jobs"),
        "PYTHONPATH": str(root / "site"),
    }
    children = [redis, mongo]
    try:
        children.append(processes.start_api(env=env, log_dir=log_dir, port=api_port))
        children.append(processes.start_worker(env=env, log_dir=log_dir, name="throwaway", concurrency=1))
        client: MongoClient = MongoClient(env["MWAP_MONGO_URL"], tz_aware=True)
        yield {"env": env, "url": f"http://127.0.0.1:{api_port}", "db": client[env["MWAP_MONGO_DB"]]}
        client.close()
    finally:
        for child in reversed(children):
            child.stop()


def run_python(env: dict[str, str], code: str) -> Any:
    """Run ``code`` in a fresh interpreter of the throwaway stack; its stdout parsed as JSON."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_session_registry_never_saw_the_throwaway_type() -> None:
    assert "tenant.throwaway" not in tasks.load()  # only the throwaway stack's processes load it


def named_tenant(db: Any, name: str) -> ObjectId:
    tenant_id = factories.tenant(db)["_id"]
    db["tenants"].update_one({"_id": tenant_id}, {"$set": {"name": name}})
    return tenant_id


def test_the_api_accepts_validates_and_documents_it(
    throwaway_stack: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    url, db = throwaway_stack["url"], throwaway_stack["db"]
    tenant_id = named_tenant(db, "throwaway-a")

    refused = requests.post(
        f"{url}/v1/jobs",
        json={"type": "tenant.throwaway", "tenantId": str(tenant_id), "params": {"nope": 1}},
        headers=admin_headers,
        timeout=10,
    )
    assert refused.status_code == 422, refused.text  # its params model, enforced by the API
    assert db["jobs"].count_documents({"type": "tenant.throwaway"}) == 0

    accepted = requests.post(
        f"{url}/v1/jobs",
        json={"type": "tenant.throwaway", "tenantId": str(tenant_id), "params": {"word": "hi"}},
        headers=admin_headers,
        timeout=10,
    )
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]

    # Run by the worker under the declared policy: one retry, then success.
    done = factories.wait_final(db, job_id)
    assert done["status"] == "succeeded", done
    assert done["result"] == {"word": "hi", "retries": 1}
    assert [entry["error"]["type"] for entry in done["retries"]] == ["Flaky"]
    assert done["queue"] == "maintenance"

    spec = requests.get(f"{url}/openapi.json", timeout=10).json()
    assert "tenant.throwaway" in json.dumps(spec)


def test_its_dispatcher_schedule_route_and_index_are_derived(throwaway_stack: dict[str, Any]) -> None:
    env, db = throwaway_stack["env"], throwaway_stack["db"]
    derived = run_python(
        env,
        """
        import json
        from mwap import jobtypes
        from mwap.settings import get_settings
        from worker.app import create_celery_app

        app = create_celery_app(get_settings())
        print(json.dumps({
            "routes": jobtypes.routes()["tenant.throwaway"],
            "schedule": app.conf.beat_schedule["dispatch.tenant.throwaway"],
            "retention_interval": get_settings().retention_interval,
            "tasks": sorted(name for name in app.tasks if "throwaway" in name or "probe" in name),
        }))
        """,
    )
    assert derived["routes"] == {"queue": "maintenance"}
    assert derived["schedule"]["task"] == "dispatch.tenant.throwaway"
    assert derived["schedule"]["schedule"] == derived["retention_interval"]
    assert derived["tasks"] == ["dispatch.tenant.throwaway", "system.outage_probe", "tenant.throwaway"]

    init = subprocess.run(
        [sys.executable, "-m", "mwap_cli", "db", "init"], env=env, capture_output=True, text=True, check=False
    )
    assert init.returncode == 0, init.stderr
    assert "mwap_due_throwaway" in db["tenants"].index_information()

    # Its dispatcher, sent by name to the real worker, enqueues it for the tenants its query selects.
    due_tenant, other_tenant = named_tenant(db, "throwaway-due"), named_tenant(db, "someone-else")
    run_python(
        env,
        """
        import json
        from mwap.settings import get_settings
        from worker.app import create_celery_app

        create_celery_app(get_settings(), include_tasks=False).send_task(
            "dispatch.tenant.throwaway", queue="maintenance"
        )
        print(json.dumps(True))
        """,
    )
    job = wait_for(
        lambda: db["jobs"].find_one(
            {"type": "tenant.throwaway", "tenantId": due_tenant, "status": "succeeded"}
        ),
        timeout=60,
        what="the dispatched throwaway job to succeed",
    )
    assert job["subject"] == {"tenantId": str(due_tenant)}
    assert job["result"] == {"word": "hello", "retries": 1}
    assert db["jobs"].count_documents({"type": "tenant.throwaway", "tenantId": other_tenant}) == 0


def test_storage_outages_do_not_spend_the_retry_budget(
    throwaway_stack: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    url, db = throwaway_stack["url"], throwaway_stack["db"]
    accepted = requests.post(
        f"{url}/v1/jobs", json={"type": "system.outage_probe"}, headers=admin_headers, timeout=10
    )
    assert accepted.status_code == 202, accepted.text
    done = factories.wait_final(db, accepted.json()["id"])
    # Three deliveries met the outage and were retried by JobTask on its own; the type's budget of
    # one retry was still whole for its own error, so the job succeeded on the fifth delivery.
    assert done["status"] == "succeeded", done
    assert done["result"] == {"deliveries": 5, "retries": 1}
    assert [entry["error"]["type"] for entry in done["retries"]] == ["Flaky"]
