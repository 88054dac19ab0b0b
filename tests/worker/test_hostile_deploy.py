"""Hostile input against the deployment: forged task messages, weak Flower passwords, and links
planted where ``ops/run`` keeps its secrets.

The compose file's defaults (no port on all interfaces, Redis and MongoDB with passwords, Redis
never evicting) are checked statically in tests/ops/test_compose.py.
"""

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import factories
import pytest
from bson import ObjectId
from celery import Celery
from pydantic import ValidationError
from pymongo.database import Database

from mwap import jobtypes, ledger
from mwap.connections import redis_client
from mwap.settings import Settings, describe_errors
from ops import processes, stack
from ops.processes import Child, wait_for
from worker.app import create_celery_app

# --- a forged task name (a Flower user, or anyone who can publish to the broker) ------------------


@pytest.fixture(scope="module")
def producer(settings: Settings) -> Iterator[Celery]:
    """A bare producer, as Flower's "apply task" or any broker client is: it names a task and an
    argument, and nothing checks them before the worker."""
    app = create_celery_app(settings, include_tasks=False)
    yield app
    app.close()


def forge(producer: Celery, task: str, argument: Any, task_id: str | None = None) -> None:
    queue = jobtypes.job_types()[task].queue.value  # where that task's messages go
    producer.send_task(task, args=[argument], task_id=task_id, queue=queue)


def refusals(log_dir: Path, needle: str) -> int:
    log = log_dir / "worker.log"
    return log.read_text(errors="replace").count(needle) if log.exists() else 0


def untouched(db: Database, job: dict[str, Any]) -> bool:
    doc = db[ledger.COLLECTION].find_one({"_id": job["_id"]})
    return (doc["status"], doc["attempts"], doc["startedAt"], doc["result"]) == ("queued", 0, None, None)


def test_a_task_never_runs_a_ledger_job_of_another_type(
    worker: Child, producer: Celery, db: Database, settings: Settings, log_dir: Path
) -> None:
    tenant_id = factories.tenant(db)["_id"]
    # Written to the ledger without a message: only the forged messages below name them.
    sync_job = factories.job_document(
        db, "integration.sync_files", tenant_id, {"integrationId": str(ObjectId())}
    )
    echo_job = factories.job_document(db, "system.echo", None)

    # In spirit: system.echo marks the job it is handed succeeded. Sent with the id of a tenant's
    # sync job, it would record a sync that never ran; integration.sync_files sent with an echo
    # job's id would run a sync on whatever that job's subject holds; and an argument that is a
    # query operator instead of an id would pick some open job of the ledger.
    refused_before = refusals(log_dir, "refused a ")
    forge(producer, "system.echo", sync_job["_id"], task_id=sync_job["_id"])
    forge(producer, "integration.sync_files", echo_job["_id"])
    forge(producer, "integration.sync_files", {"$ne": None})
    # Another shape: two arguments would fail in Celery's call before any check, and its failure
    # hook would then have recorded the sync job failed.
    producer.send_task(
        "integration.sync_files",
        args=[sync_job["_id"], "extra"],
        queue=jobtypes.job_types()["integration.sync_files"].queue.value,
    )

    wait_for(
        lambda: refusals(log_dir, "refused a ") >= refused_before + 4,
        timeout=60,
        what="the worker to refuse the four forged messages",
    )
    assert refusals(log_dir, "delivery: it must carry exactly one job id") >= 1
    assert refusals(log_dir, f"refused a system.echo delivery for job {sync_job['_id']}") == 1
    assert refusals(log_dir, f"refused a integration.sync_files delivery for job {echo_job['_id']}") == 1
    # Neither body ran; the ledger jobs are as they were queued, and nothing holds their locks.
    assert untouched(db, sync_job)
    assert untouched(db, echo_job)
    redis = redis_client(settings)
    assert not redis.exists(f"mwap:exec:{sync_job['_id']}", f"mwap:exec:{echo_job['_id']}")

    # The job's own message still runs it: a refusal drops the forgery, not the job.
    forge(producer, "system.echo", echo_job["_id"], task_id=echo_job["_id"])
    assert factories.wait_final(db, echo_job["_id"])["status"] == "succeeded"
    assert untouched(db, sync_job)


# --- Flower's password -------------------------------------------------------------------------


def settings_with(settings: Settings, **values: Any) -> Settings:
    return Settings(**{**settings.model_dump(), **values})


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("operator:pw", "at least 16 characters"),
        ("operator:" + "a" * 32, "8 distinct characters"),
        ("operator:" + "ab" * 16, "8 distinct characters"),
        ("admin:xxadminxx-K3v9QpL2", "does not contain the user name"),
        ("operator", "a user name and a colon"),
        (":Zx8-qP2_vLm9wR4tYk7s", "a user name and a colon"),
        ("ops:Zx8-qP2_vLm9wR4tYk7s,guest:guest", "at least 16 characters"),  # every pair counts
    ],
)
def test_a_weak_flower_password_stops_the_process(settings: Settings, value: str, rule: str) -> None:
    with pytest.raises(ValidationError) as raised:
        settings_with(settings, flower_basic_auth=value)
    message = describe_errors(raised.value)
    assert "MWAP_FLOWER_BASIC_AUTH" in message
    assert rule in message
    secret = value.partition(":")[2]
    assert not secret or secret not in message  # the message names the rule, never the password


def test_a_strong_flower_password_passes_and_ops_run_generates_one(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings_with(settings, flower_basic_auth="operator:Zx8-qP2_vLm9wR4tYk7s").flower_basic_auth
    data = stack.private_dir(tmp_path / "data")
    # A weak password left by an older run is replaced; a generated one is accepted and kept.
    stack._write_private(data / "credentials.json", {"flower": {"user": "operator", "password": "pw"}})
    creds = stack.load_credentials(data)
    flower = creds["flower"]
    assert flower["password"] != "pw"
    pair = f"{flower['user']}:{flower['password']}"
    assert settings_with(settings, flower_basic_auth=pair).flower_basic_auth.get_secret_value() == pair
    assert stack.load_credentials(data)["flower"] == flower


# --- .data/ and the secrets in it ------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_data_directory_is_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # a usual umask would give 0755
    try:
        created = stack.private_dir(tmp_path / "fresh")
        loose = tmp_path / "loose"
        loose.mkdir(mode=0o755)
        stack.private_dir(loose)
    finally:
        os.umask(old_umask)
    assert mode(created) == 0o700
    assert mode(loose) == 0o700  # an existing directory is tightened
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "linked").symlink_to(elsewhere)
    with pytest.raises(processes.StartupError, match="symbolic link"):
        stack.private_dir(tmp_path / "linked")


def test_secret_files_are_0600_from_creation_whatever_the_umask(tmp_path: Path) -> None:
    data = stack.private_dir(tmp_path / "data")
    old_umask = os.umask(0)  # with os.open(..., 0o600) alone this is still 0600; chmod-after is not
    try:
        creds = stack.load_credentials(data)
    finally:
        os.umask(old_umask)
    path = data / "credentials.json"
    assert mode(path) == 0o600
    assert json.loads(path.read_text()) == creds
    assert not [p for p in data.iterdir() if p.name.endswith(".tmp")]  # no temporary left behind


def test_a_link_planted_at_the_credentials_path_is_never_followed(tmp_path: Path) -> None:
    data = stack.private_dir(tmp_path / "data")
    target = tmp_path / "victim.txt"  # a file the attacker wants overwritten (or read)
    target.write_text("precious\n")
    target.chmod(0o644)
    link = data / "credentials.json"
    link.symlink_to(target)

    # In spirit: the old writer (open with O_CREAT|O_TRUNC, then chmod) follows the link. Shown
    # on a scratch copy: it truncates the link's target and makes it 0600.
    scratch = tmp_path / "scratch.txt"
    scratch.write_text("precious\n")
    scratch_link = tmp_path / "scratch-link"
    scratch_link.symlink_to(scratch)
    os.close(os.open(scratch_link, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    assert scratch.read_text() == ""

    # Reading secrets through the link is refused, with a message saying what to do.
    with pytest.raises(processes.StartupError, match="symbolic link"):
        stack.load_credentials(data)
    # Writing replaces the link itself; its target is neither written nor re-moded.
    stack._write_private(link, {"adminApiKey": "k"})
    assert target.read_text() == "precious\n"
    assert mode(target) == 0o644
    assert not link.is_symlink()
    assert mode(link) == 0o600
    assert json.loads(link.read_text()) == {"adminApiKey": "k"}
