"""The `mwap` command against the test stack: every subcommand, its JSON, its errors."""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import factories
import pytest
from pymongo.database import Database

from ops.fake_providers.control import FakeProviders

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def mwap(stack_env: dict[str, str]):
    def run(*args: str, ok: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "mwap.cli", *args],
            env={**stack_env, **(env or {})},
            capture_output=True,
            text=True,
            check=False,
        )
        if ok:
            assert result.returncode == 0, result.stderr
        return result

    return run


def as_json(result: subprocess.CompletedProcess) -> object:
    return json.loads(result.stdout)


COMMANDS = [
    ["db", "init"],
    ["demo", "seed"],
    ["keys", "create"],
    ["keys", "revoke"],
    ["keys", "list"],
    ["keys", "rotate"],
    ["keys", "generate"],
    ["tenants", "add"],
    ["providers", "add"],
    ["integrations", "add"],
    ["integrations", "list"],
    ["integrations", "disable"],
    ["integrations", "reconnect"],
    ["jobs", "enqueue"],
    ["jobs", "show"],
    ["jobs", "list"],
    ["jobs", "retry"],
    ["queues"],
    ["retention", "run"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_subcommand_has_help(mwap, command: list[str]) -> None:
    result = mwap(*command, "--help")
    assert result.stdout.startswith("Usage: ")
    assert " ".join(command) in result.stdout.splitlines()[0]
    assert len(result.stdout.splitlines()) > 3


def test_db_init_is_idempotent(mwap, db: Database) -> None:
    assert as_json(mwap("--json", "db", "init")) == {"created": [], "missing": []}
    assert as_json(mwap("db", "init", "--json")) == {"created": [], "missing": []}


def test_registration_keys_and_jobs(mwap, db: Database, fake: FakeProviders) -> None:
    tenant = as_json(mwap("--json", "tenants", "add", "--name", "CLI Co", "--retention-days", "10"))
    tenant_id = tenant["_id"]
    assert db["tenants"].find_one({"_id": tenant_id})["settings"]["retentionDays"] == 10
    dup = mwap("tenants", "add", "--id", tenant_id, "--name", "again", ok=False)
    assert dup.returncode == 1
    assert "exists" in dup.stderr

    created = as_json(mwap("keys", "create", "--tenant", tenant_id, "--json"))
    assert created["key"].startswith("mwap_")
    listed = as_json(mwap("--json", "keys", "list", "--tenant", tenant_id))
    assert [k["_id"] for k in listed] == [created["id"]]
    assert created["key"] not in json.dumps(listed)
    assert as_json(mwap("--json", "keys", "revoke", created["id"]))["revoked"] is True
    assert mwap("keys", "revoke", created["id"], ok=False).returncode == 1

    account = fake.create_account("dropbox", files=["/a.txt"])
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    added = mwap(
        "--json",
        "integrations",
        "add",
        "--tenant",
        tenant_id,
        "--provider",
        "dropbox",
        "--expires-at",
        expires,
        env={
            "MWAP_INTEGRATION_ACCESS_TOKEN": account.access_token,
            "MWAP_INTEGRATION_REFRESH_TOKEN": account.refresh_token,
        },
    )
    integration = as_json(added)
    assert integration["authData"]["accessToken"] == "[REDACTED]"
    assert account.access_token not in added.stdout + added.stderr

    listing = as_json(mwap("--json", "integrations", "list", "--tenant", tenant_id))
    assert [i["id"] for i in listing] == [integration["id"]]

    enqueued = as_json(
        mwap("--json", "jobs", "enqueue", "integration.sync_files", "--integration", integration["id"])
    )
    job_id = enqueued["job"]["_id"]
    done = factories.wait_final(db, job_id)
    assert done["status"] == "succeeded"
    assert as_json(mwap("--json", "jobs", "show", job_id))["status"] == "succeeded"
    recent = as_json(
        mwap("--json", "jobs", "list", "--tenant", tenant_id, "--type", "integration.sync_files")
    )
    assert [j["_id"] for j in recent] == [job_id]
    refused = mwap("jobs", "retry", job_id, ok=False)
    assert refused.returncode == 1
    assert "only failed jobs" in refused.stderr

    failing = as_json(mwap("--json", "jobs", "enqueue", "system.echo", "--params", '{"fail": true}'))
    failed = factories.wait_final(db, failing["job"]["_id"])
    assert failed["status"] == "failed"
    retried = as_json(mwap("--json", "jobs", "retry", failed["_id"]))
    assert retried["retryOf"] == failed["_id"]
    assert retried["job"]["_id"] != failed["_id"]

    assert mwap("jobs", "enqueue", "nope.nothing", ok=False).returncode == 2
    assert mwap("jobs", "enqueue", "system.echo", "--params", "{bad", ok=False).returncode == 2

    assert as_json(mwap("--json", "integrations", "disable", integration["id"]))["status"] == "inactive"
    assert db["cloudIntegrations"].find_one({"_id": integration["id"]})["status"] == "inactive"
    mwap(
        "integrations",
        "reconnect",
        integration["id"],
        "--expires-at",
        expires,
        env={"MWAP_INTEGRATION_ACCESS_TOKEN": account.access_token},
    )
    assert db["cloudIntegrations"].find_one({"_id": integration["id"]})["status"] == "active"
    assert (
        db["auditLogs"].count_documents({"target.id": integration["id"], "action": "integration.reconnected"})
        == 1
    )

    dry = as_json(mwap("--json", "retention", "run", "--tenant", tenant_id, "--dry-run"))
    assert set(dry[tenant_id]["wouldRemove"]) == {"auditLogs", "jobs", "virtualFiles"}


def test_queues_reports_depth_and_workers(mwap, worker) -> None:
    data = as_json(mwap("--json", "queues"))
    assert set(data["queues"]) == {"default", "sync", "maintenance"}
    assert all(row["depth"] >= 0 for row in data["queues"].values())
    assert worker.hostname in data["workers"]


def test_demo_seed_is_idempotent(mwap, db: Database, fake: FakeProviders) -> None:
    first = as_json(mwap("--json", "demo", "seed", "--providers-url", fake.base_url))
    second = as_json(
        mwap(
            "--json",
            "demo",
            "seed",
            "--providers-url",
            fake.base_url,
            "--keep-keys",
            json.dumps(first["tenantApiKeys"]),
        )
    )
    assert first == second
    assert db["cloudIntegrations"].count_documents({"_id": {"$in": first["integrations"]}}) == 3
    assert db["apiKeys"].count_documents({"tenantId": {"$in": first["tenants"]}, "revokedAt": None}) == 2


def test_keys_generate_and_missing_settings(mwap, stack_env: dict[str, str]) -> None:
    entry = mwap("keys", "generate", "--kid", "k9").stdout.strip()
    assert entry.startswith("k9:")
    env = {k: v for k, v in stack_env.items() if k != "MWAP_MONGO_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "mwap.cli", "db", "init"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "MWAP_MONGO_URL" in result.stderr
