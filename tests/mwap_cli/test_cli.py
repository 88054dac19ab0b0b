"""The `mwap` command against the test stack: every subcommand, its JSON, its errors."""

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import factories
import pytest
from bson import ObjectId
from pymongo.database import Database

from mwap import leases
from mwap.crypto import provider_binding
from mwap.models import CloudIntegration, CloudProvider, Project, Tenant
from ops.fake_providers.control import FakeProviders

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def mwap(stack_env: dict[str, str]):
    def run(
        *args: str, ok: bool = True, env: dict[str, str] | None = None, stdin: str = ""
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "mwap_cli", *args],
            env={**stack_env, **(env or {})},
            input=stdin,  # secrets travel here, in files or in the environment: never in argv
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
    ["db", "migrate"],
    ["db", "rollback"],
    ["db", "status"],
    ["db", "shard-plan"],
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
    ["jobs", "cancel"],
    ["queues"],
    ["retention", "run"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_subcommand_has_help(mwap, command: list[str]) -> None:
    result = mwap(*command, "--help")
    assert result.stdout.startswith("Usage: ")
    assert " ".join(command) in result.stdout.splitlines()[0]
    assert len(result.stdout.splitlines()) > 3


# seed 000's index list: (collection, keys, unique)
SEED_INDEXES = [
    ("tenants", [("ownerId", 1)], True),
    ("tenants", [("ownerId", 1), ("name", 1)], True),
    ("tenants", [("archived", 1)], False),
    ("tenants", [("subscription.expiresAt", 1)], False),
    ("projects", [("tenantId", 1)], False),
    ("projects", [("tenantId", 1), ("name", 1)], True),
    ("projects", [("members.userId", 1)], False),
    ("projects", [("projectTypeId", 1)], False),
    ("projects", [("archived", 1)], False),
    ("cloudProviders", [("slug", 1)], True),
    ("cloudProviders", [("name", 1)], True),
    ("cloudIntegrations", [("tenantId", 1)], False),
    ("cloudIntegrations", [("tenantId", 1), ("providerId", 1)], True),
    ("cloudIntegrations", [("status", 1)], False),
    ("cloudIntegrations", [("authData.expiresAt", 1)], False),
    ("cloudIntegrations", [("health.lastCheck", 1)], False),
    ("virtualFiles", [("projectId", 1)], False),
    ("virtualFiles", [("integrationId", 1)], False),
    # The seed's unique (providerFileId, integrationId) is kept tenant first, which a sharded
    # collection needs (mwap/sharding.py, migration 4); the seed's key stays, not unique.
    ("virtualFiles", [("providerFileId", 1), ("integrationId", 1)], False),
    ("virtualFiles", [("tenantId", 1), ("integrationId", 1), ("providerFileId", 1)], True),
    ("virtualFiles", [("syncStatus.lastSync", 1)], False),
    ("virtualFiles", [("path", 1)], False),
]


@pytest.fixture
def fresh_db(db: Database) -> Iterator[tuple[dict[str, str], Database]]:
    """An empty database of the same server: the env that points `mwap` at it, and a handle."""
    name = f"mwap_cli_{secrets.token_hex(4)}"
    yield {"MWAP_MONGO_DB": name}, db.client[name]
    db.client.drop_database(name)


def _index_shapes(database: Database, collection: str) -> dict[tuple, dict[str, Any]]:
    """Each index of ``collection`` by its key pattern, with its options (without name/version)."""
    shapes = {}
    for info in database[collection].index_information().values():
        keys = tuple((field, int(direction)) for field, direction in info["key"])
        shapes[keys] = {k: v for k, v in info.items() if k not in {"key", "v", "ns"}}
    return shapes


def test_db_init_creates_every_seed_index_and_is_idempotent(mwap, fresh_db) -> None:
    env, database = fresh_db
    first = as_json(mwap("--json", "db", "init", env=env))
    assert first["missing"] == []
    assert len(first["created"]) >= len(SEED_INDEXES)
    before = {c: _index_shapes(database, c) for c in {c for c, _, _ in SEED_INDEXES}}
    for collection, keys, unique in SEED_INDEXES:
        shapes = before[collection]
        assert tuple(keys) in shapes, f"{collection} has no index on {keys}"
        options = shapes[tuple(keys)]
        assert bool(options.get("unique", False)) is unique, f"{collection} {keys} unique should be {unique}"
        # Exactly the seed's options: no partial filter, sparse or TTL on a seed index.
        assert set(options) - {"name", "unique"} == set(), f"{collection} {keys}: {options}"

    assert as_json(mwap("--json", "db", "init", env=env)) == {"created": [], "missing": []}
    assert as_json(mwap("db", "init", "--json", env=env)) == {"created": [], "missing": []}
    assert {c: _index_shapes(database, c) for c in before} == before


def test_db_init_on_the_session_database_is_idempotent(mwap, db: Database) -> None:
    assert as_json(mwap("--json", "db", "init")) == {"created": [], "missing": []}


def test_tenant_registration_takes_seed_fields_and_refuses_a_duplicate_owner(mwap, db: Database) -> None:
    owner = factories.uid("auth0|cli-owner")
    tenant = as_json(
        mwap(
            "--json",
            "tenants",
            "add",
            "--owner-id",
            owner,
            "--name",
            "CLI Co",
            "--description",
            "made by the CLI",
            "--retention-days",
            "10",
            "--max-projects",
            "3",
        )
    )
    stored = db["tenants"].find_one({"_id": ObjectId(tenant["_id"])})
    assert stored["ownerId"] == owner
    assert stored["name"] == "CLI Co"
    assert stored["description"] == "made by the CLI"
    assert stored["settings"]["retentionDays"] == 10
    assert stored["settings"]["maxProjects"] == 3
    assert stored["archived"] is False
    assert Tenant.model_validate(stored).owner_id == owner

    dup = mwap("tenants", "add", "--owner-id", owner, "--name", "again", ok=False)
    assert dup.returncode == 1
    assert "exists" in dup.stderr
    assert "ownerId" in dup.stderr
    assert db["tenants"].count_documents({"ownerId": owner}) == 1

    bad = mwap(
        "tenants",
        "add",
        "--owner-id",
        factories.uid("auth0|x"),
        "--name",
        "X",
        "--max-projects",
        "0",
        ok=False,
    )
    assert bad.returncode == 2
    assert "maxProjects" in bad.stderr


def test_provider_registration_takes_seed_fields_and_refuses_a_duplicate(
    mwap, fresh_db, ring, tmp_path
) -> None:
    env, database = fresh_db
    secret_file = tmp_path / "client-secret"
    secret_file.write_text("top-secret\n")
    mwap("db", "init", env=env)
    common = ["--auth-url", "https://auth.example.test/a", "--token-url", "https://auth.example.test/t"]
    added = as_json(
        mwap(
            "--json",
            "providers",
            "add",
            "--slug",
            "google-drive",
            "--name",
            "Google Drive",
            *common,
            "--api-base-url",
            "https://api.example.test/",
            "--client-id",
            "cid",
            "--scope",
            "drive.readonly",
            "--client-secret-file",
            str(secret_file),
            env=env,
        )
    )
    assert added["clientSecret"] == "[REDACTED]"
    stored = database["cloudProviders"].find_one({"_id": ObjectId(added["id"])})
    assert CloudProvider.model_validate(stored).slug == "google-drive"
    assert stored["scopes"] == ["drive.readonly"]
    assert stored["grantType"] == "authorization_code"
    assert stored["tokenMethod"] == "POST"
    assert stored["metadata"] == {"apiBaseUrl": "https://api.example.test"}
    assert "top-secret" not in stored["clientSecret"]
    assert ring.decrypt(stored["clientSecret"], provider_binding(stored["_id"])) == "top-secret"

    def add(slug: str, name: str) -> subprocess.CompletedProcess:
        return mwap(
            "providers",
            "add",
            "--slug",
            slug,
            "--name",
            name,
            *common,
            "--client-id",
            "cid",
            "--client-secret-file",
            "-",
            stdin="s\n",
            env=env,
            ok=False,
        )

    same_slug = add("google-drive", "Another Drive")
    assert same_slug.returncode == 1
    assert "exists" in same_slug.stderr
    assert "slug" in same_slug.stderr
    same_name = add("dropbox", "Google Drive")
    assert same_name.returncode == 1
    assert "name" in same_name.stderr
    assert database["cloudProviders"].count_documents({}) == 1


def test_registration_keys_and_jobs(mwap, db: Database, fake: FakeProviders) -> None:
    tenant = as_json(
        mwap(
            "--json",
            "tenants",
            "add",
            "--owner-id",
            factories.uid("auth0|cli"),
            "--name",
            "CLI Jobs Co",
            "--retention-days",
            "10",
        )
    )
    tenant_id = tenant["_id"]
    project = factories.project(db, ObjectId(tenant_id), folderPath="/")

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
        "--scope",
        "files.metadata.read",
        "--email",
        "cli@example.test",
        "--account-name",
        "CLI User",
        "--account-id",
        "dbid:cli",
        "--project",
        str(project["_id"]),
        "--access-token-file",
        "-",
        stdin=account.access_token + "\n",
        env={"MWAP_INTEGRATION_REFRESH_TOKEN": account.refresh_token},
    )
    integration = as_json(added)
    assert integration["authData"]["accessToken"] == "[REDACTED]"
    assert integration["authData"]["scope"] == ["files.metadata.read"]
    assert integration["providerSlug"] == "dropbox"
    assert account.access_token not in added.stdout + added.stderr
    integration_oid = ObjectId(integration["id"])
    stored = db["cloudIntegrations"].find_one({"_id": integration_oid})
    assert stored["tenantId"] == ObjectId(tenant_id)
    assert stored["userInfo"] == {"email": "cli@example.test", "name": "CLI User", "providerId": "dbid:cli"}
    assert CloudIntegration.model_validate(stored).status == "active"
    linked = db["projects"].find_one({"_id": project["_id"]})["integrations"]
    assert linked == [{"integrationId": integration_oid, "enabled": True}]

    # One integration per (tenant, provider): a second is refused with a clear message.
    again = mwap(
        "integrations",
        "add",
        "--tenant",
        tenant_id,
        "--provider",
        "dropbox",
        env={"MWAP_INTEGRATION_ACCESS_TOKEN": "x"},
        ok=False,
    )
    assert again.returncode == 1
    assert "already" in again.stderr

    listing = as_json(mwap("--json", "integrations", "list", "--tenant", tenant_id))
    assert [i["id"] for i in listing] == [integration["id"]]

    enqueued = as_json(
        mwap("--json", "jobs", "enqueue", "integration.sync_files", "--integration", integration["id"])
    )
    job_id = enqueued["job"]["_id"]
    assert enqueued["job"]["subject"] == {"integrationId": integration["id"]}
    done = factories.wait_final(db, job_id)
    assert done["status"] == "succeeded", done.get("error")
    files = list(db["virtualFiles"].find({"integrationId": integration_oid}))
    assert [(f["path"], f["projectId"]) for f in files] == [("/a.txt", project["_id"])]
    assert as_json(mwap("--json", "jobs", "show", job_id))["status"] == "succeeded"
    recent = as_json(
        mwap("--json", "jobs", "list", "--tenant", tenant_id, "--type", "integration.sync_files")
    )
    assert [j["_id"] for j in recent] == [job_id]
    refused = mwap("jobs", "retry", job_id, ok=False)
    assert refused.returncode == 1
    assert "only failed jobs" in refused.stderr

    project_job = as_json(
        mwap(
            "--json",
            "jobs",
            "enqueue",
            "project.sync_files",
            "--integration",
            integration["id"],
            "--project",
            str(project["_id"]),
        )
    )
    assert project_job["job"]["subject"] == {
        "projectId": str(project["_id"]),
        "integrationId": integration["id"],
    }
    assert factories.wait_final(db, project_job["job"]["_id"])["status"] == "succeeded"
    no_project = mwap("jobs", "enqueue", "project.sync_files", "--integration", integration["id"], ok=False)
    assert no_project.returncode == 2
    unknown = mwap("jobs", "enqueue", "integration.sync_files", "--integration", str(ObjectId()), ok=False)
    assert unknown.returncode == 1
    assert "not found" in unknown.stderr

    failing = as_json(mwap("--json", "jobs", "enqueue", "system.echo", "--params", '{"fail": true}'))
    failed = factories.wait_final(db, failing["job"]["_id"])
    assert failed["status"] == "failed"
    retried = as_json(mwap("--json", "jobs", "retry", failed["_id"]))
    assert retried["retryOf"] == failed["_id"]
    assert retried["job"]["_id"] != failed["_id"]
    assert db["jobs"].find_one({"_id": retried["job"]["_id"]})["rerunOf"] == failed["_id"]
    audit = db["auditLogs"].find_one({"target.id": failed["_id"], "action": "job.rerun"})
    assert audit["actor"] == {"type": "operator", "id": "mwap jobs", "via": "cli"}

    waiting = factories.job_document(db, "system.echo", None, status="queued")
    assert as_json(mwap("--json", "jobs", "cancel", waiting["_id"]))["status"] == "cancelled"
    assert db["jobs"].find_one({"_id": waiting["_id"]})["status"] == "cancelled"
    again = mwap("jobs", "cancel", waiting["_id"], ok=False)
    assert again.returncode == 1
    assert "already ended" in again.stderr
    assert mwap("jobs", "cancel", str(ObjectId()), ok=False).returncode == 1
    assert db["auditLogs"].count_documents({"target.id": waiting["_id"], "action": "job.cancelled"}) == 1

    assert mwap("jobs", "enqueue", "nope.nothing", ok=False).returncode == 2
    assert mwap("jobs", "enqueue", "system.echo", "--params", "{bad", ok=False).returncode == 2

    assert as_json(mwap("--json", "integrations", "disable", integration["id"]))["status"] == "inactive"
    assert db["cloudIntegrations"].find_one({"_id": integration_oid})["status"] == "inactive"
    mwap(
        "integrations",
        "reconnect",
        integration["id"],
        "--expires-at",
        expires,
        env={"MWAP_INTEGRATION_ACCESS_TOKEN": account.access_token},
    )
    assert db["cloudIntegrations"].find_one({"_id": integration_oid})["status"] == "active"
    assert (
        db["auditLogs"].count_documents({"target.id": integration["id"], "action": "integration.reconnected"})
        == 1
    )

    dry = as_json(mwap("--json", "retention", "run", "--tenant", tenant_id, "--dry-run"))
    assert set(dry[tenant_id]["wouldRemove"]) == {"auditLogs", "jobs"}


def test_disable_cancels_the_integrations_open_jobs(mwap, db: Database, ring, services) -> None:
    tenant_id = factories.tenant(db)["_id"]
    target = factories.integration(db, ring, tenant_id, slug="google-drive")
    other = factories.integration(db, ring, tenant_id, slug="dropbox")

    def job(integration: dict, job_type: str, status: str) -> dict:
        doc = factories.job_document(
            db, job_type, tenant_id, {"integrationId": str(integration["_id"])}, status=status
        )
        lease_key = leases.key(f"test-{job_type}", doc["_id"])
        assert leases.acquire(services.redis, lease_key, doc["_id"], 300)
        db["jobs"].update_one({"_id": doc["_id"]}, {"$set": {"leaseKey": lease_key}})
        return {**doc, "leaseKey": lease_key}

    queued = job(target, "integration.sync_files", "queued")
    running = job(target, "integration.health_check", "running")
    retrying = job(target, "integration.refresh_token", "retrying")
    finished = job(target, "integration.health_check", "succeeded")
    others = job(other, "integration.sync_files", "queued")

    result = as_json(mwap("--json", "integrations", "disable", str(target["_id"]), "--reason", "offboarding"))
    assert result == {"id": str(target["_id"]), "status": "inactive", "cancelledJobs": 3}
    stored = db["cloudIntegrations"].find_one({"_id": target["_id"]})
    assert stored["status"] == "inactive"
    assert stored["mwapTasks"]["statusReason"] == "offboarding"
    for open_job in (queued, running, retrying):
        doc = db["jobs"].find_one({"_id": open_job["_id"]})
        assert doc["status"] == "cancelled"
        assert doc["finishedAt"] is not None
        assert "offboarding" in doc["error"]["message"]
        assert services.redis.get(open_job["leaseKey"]) is None
    assert db["jobs"].find_one({"_id": finished["_id"]})["status"] == "succeeded"
    assert db["jobs"].find_one({"_id": others["_id"]})["status"] == "queued"
    assert services.redis.get(others["leaseKey"]) == others["_id"].encode()

    # Disabling again finds nothing open; an unknown or malformed id is a clear error.
    assert as_json(mwap("--json", "integrations", "disable", str(target["_id"])))["cancelledJobs"] == 0
    for bad in (str(ObjectId()), "not-an-id"):
        missing = mwap("integrations", "disable", bad, ok=False)
        assert missing.returncode == 1
        assert "not found" in missing.stderr


def test_queues_reports_depth_and_workers(mwap, worker) -> None:
    data = as_json(mwap("--json", "queues"))
    assert set(data["queues"]) == {"default", "sync", "maintenance", "webhooks"}
    assert all(row["depth"] >= 0 for row in data["queues"].values())
    assert worker.hostname in data["workers"]


DEMO_OWNERS = ["auth0|demo-acme-owner", "auth0|demo-globex-owner"]
DEMO_PROJECTS = {"Alpha": "/Projects/Alpha", "Photos": "/Photos", "Everything": "/Projects"}


def _demo_state(database: Database) -> dict[str, Any]:
    """What the demo seed leaves behind, by natural keys (ids included, so a changed id shows)."""
    return {
        "providers": sorted((p["slug"], p["_id"]) for p in database["cloudProviders"].find()),
        "tenants": sorted((t["ownerId"], t["_id"]) for t in database["tenants"].find()),
        "projects": sorted(
            (p["name"], p["_id"], p["folderPath"], sorted(str(i["integrationId"]) for i in p["integrations"]))
            for p in database["projects"].find()
        ),
        "integrations": sorted(
            (i["tenantId"], i["providerId"], i["_id"], i["status"])
            for i in database["cloudIntegrations"].find()
        ),
    }


def _seed(mwap, fake: FakeProviders, env: dict[str, str], keep: dict[str, str] | None = None) -> dict:
    args = ["--json", "demo", "seed", "--providers-url", fake.base_url]
    if keep is not None:
        args += ["--keep-keys", json.dumps(keep)]
    return as_json(mwap(*args, env=env))


def test_demo_seed_twice_converges(mwap, fresh_db, fake: FakeProviders) -> None:
    env, database = fresh_db
    first = _seed(mwap, fake, env)
    state = _demo_state(database)
    second = _seed(mwap, fake, env, keep=first["tenantApiKeys"])
    assert first == second
    assert _demo_state(database) == state

    assert len(first["tenants"]) == 2
    assert [t[0] for t in state["tenants"]] == sorted(DEMO_OWNERS)
    assert [p[0] for p in state["providers"]] == ["dropbox", "google-drive", "onedrive"]
    assert {p[0]: p[2] for p in state["projects"]} == DEMO_PROJECTS
    assert {p[0]: len(p[3]) for p in state["projects"]} == {"Alpha": 2, "Photos": 1, "Everything": 1}
    integration_ids = [ObjectId(i) for i in first["integrations"]]
    assert database["cloudIntegrations"].count_documents({"_id": {"$in": integration_ids}}) == 3
    tenant_ids = [ObjectId(t) for t in first["tenants"]]
    assert database["apiKeys"].count_documents({"tenantId": {"$in": tenant_ids}, "revokedAt": None}) == 2
    # Everything it wrote reads back as seed 000's models.
    for document in database["tenants"].find():
        Tenant.model_validate(document)
    for document in database["projects"].find():
        Project.model_validate(document)
    for document in database["cloudProviders"].find():
        CloudProvider.model_validate(document)
    for document in database["cloudIntegrations"].find():
        CloudIntegration.model_validate(document)


def test_demo_seed_adds_only_what_a_backend_database_lacks(mwap, fresh_db, fake: FakeProviders, ring) -> None:
    env, database = fresh_db
    mwap("db", "init", env=env)
    # What the MWAP backend wrote before: Google Drive under its own _id, the Acme owner's tenant
    # under another name, and that tenant's Google Drive integration.
    backend_provider = factories.provider(
        database, ring, "google-drive", base_url="https://backend.example.test"
    )
    backend_tenant = factories.tenant(database)
    database["tenants"].update_one(
        {"_id": backend_tenant["_id"]}, {"$set": {"ownerId": DEMO_OWNERS[0], "name": "Acme (backend)"}}
    )
    backend_integration = factories.integration(database, ring, backend_tenant["_id"], slug="google-drive")
    assert backend_integration["providerId"] == backend_provider["_id"]

    first = _seed(mwap, fake, env)
    providers = {p["slug"]: p for p in database["cloudProviders"].find()}
    assert sorted(providers) == ["dropbox", "google-drive", "onedrive"]
    assert providers["google-drive"]["_id"] == backend_provider["_id"]
    assert providers["google-drive"]["createdAt"] == backend_provider["createdAt"]
    # The demo's integrations talk to the fake server: the kept provider is pointed at it.
    assert providers["google-drive"]["metadata"]["apiBaseUrl"].startswith(fake.base_url)

    acme = database["tenants"].find_one({"ownerId": DEMO_OWNERS[0]})
    assert acme["_id"] == backend_tenant["_id"]
    assert acme["name"] == "Acme (backend)"
    assert database["tenants"].count_documents({"ownerId": {"$in": DEMO_OWNERS}}) == 2
    assert str(backend_tenant["_id"]) in first["tenants"]

    acme_google = list(
        database["cloudIntegrations"].find({"tenantId": acme["_id"], "providerId": backend_provider["_id"]})
    )
    assert [i["_id"] for i in acme_google] == [backend_integration["_id"]]
    assert str(backend_integration["_id"]) in first["integrations"]
    assert database["cloudIntegrations"].count_documents({}) == 3
    alpha = database["projects"].find_one({"tenantId": acme["_id"], "name": "Alpha"})
    assert {"integrationId": backend_integration["_id"], "enabled": True} in alpha["integrations"]

    state = _demo_state(database)
    second = _seed(mwap, fake, env, keep=first["tenantApiKeys"])
    assert second == first
    assert _demo_state(database) == state


def test_keys_generate_and_missing_settings(mwap, stack_env: dict[str, str]) -> None:
    entry = mwap("keys", "generate", "--kid", "k9").stdout.strip()
    assert entry.startswith("k9:")
    env = {k: v for k, v in stack_env.items() if k != "MWAP_MONGO_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "mwap_cli", "db", "init"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "MWAP_MONGO_URL" in result.stderr
