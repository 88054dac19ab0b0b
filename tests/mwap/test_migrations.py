"""Versioned migrations (``mwap.migrations``) against the MongoDB wire server, each test in a database
of its own: the way up and back, resuming a killed run, the lock between two migrators, the dry
run, and the start-up check of worker, beat and API.

The old documents are written as the platform's releases before commit 8eecc95 wrote them
(``mwap/registry.py``, ``tasks/sync.py``, ``tasks/tokens.py``, ``tasks/analytics.py``,
``mwap/apikeys.py``, ``mwap/ledger.py`` of a9c1c17), tokens sealed under their string ids.
"""

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import factories
import pytest
import redis
from bson import ObjectId
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pymongo.database import Database

from mwap import migrations
from mwap.crypto import ACCESS_TOKEN, SECRETS, Binding, KeyRing
from mwap.indexes import missing_indexes
from mwap.migrations import m0001_seed_contract as contract
from mwap.migrations.context import Run
from mwap.migrations.lock import LockBusyError, LockLostError, MigrationLock
from mwap.migrations.reshape import STASH, seed_id
from mwap.models import (
    ApiKey,
    AuditLog,
    CloudIntegration,
    CloudProvider,
    JobRecord,
    Project,
    Tenant,
    UsageDaily,
    VirtualFile,
)
from mwap.settings import Settings
from ops.processes import free_port, wait_for

HEAD = migrations.head()
# Recent: the TTL indexes (jobs, audit logs) would delete older documents under the test's feet.
MOMENT = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


@pytest.fixture
def own_db(db: Database) -> Iterator[Database]:
    """A database of this test's own on the session's server."""
    name = f"mwap_mig_{secrets.token_hex(4)}"
    yield db.client[name]
    db.client.drop_database(name)


@pytest.fixture
def own_env(stack_env: dict[str, str], own_db: Database) -> dict[str, str]:
    return {**stack_env, "MWAP_MONGO_DB": own_db.name}


# --- the old platform's documents -------------------------------------------------------------


def legacy_encrypt(plaintext: str, password: str = factories.LEGACY_PASSWORD) -> str:
    """The MWAP backend's iv:authTag:ciphertext (Node's createCipher), as in test_crypto_legacy."""
    secret, derived, block = password.encode(), b"", b""
    while len(derived) < 44:
        block = hashlib.md5(block + secret, usedforsecurity=False).digest()
        derived += block
    sealed = AESGCM(derived[:32]).encrypt(derived[32:44], plaintext.encode(), b"MWAP-AUTH-DATA")
    return f"{os.urandom(16).hex()}:{sealed[-16:].hex()}:{sealed[:-16].hex()}"


def write_legacy(db: Database, ring: KeyRing) -> None:
    """A small database as the platform's first releases left it, with their indexes."""
    at = MOMENT

    def seal(collection: str, tenant: str | None, doc_id: str, path: str, value: str) -> str:
        return ring.encrypt(value, Binding(collection, tenant, doc_id, path))

    settings = {"maxProjects": 10, "retentionDays": 90, "maxConcurrentJobs": 8}
    db["tenants"].insert_many(
        [
            {"_id": "ten_acme", "name": "Acme", "status": "active", "createdAt": at, "updatedAt": at,
             "settings": {**settings, "allowedProviders": ["google-drive", "dropbox"]}},
            {"_id": "ten_paused", "name": "Paused", "status": "suspended", "createdAt": at, "updatedAt": at,
             "settings": {**settings, "allowedProviders": []}},
            # A caller-chosen id of 24 hex digits keeps its value as an ObjectId.
            {"_id": "65f0a1b2c3d4e5f6a7b8c9d0", "name": "Gone", "status": "archived", "createdAt": at,
             "updatedAt": at, "settings": {**settings, "allowedProviders": ["onedrive"]}},
        ]
    )  # fmt: skip
    db["projectTypes"].insert_one(
        {
            "_id": "pt_docs",
            "name": "Docs",
            "description": "",
            "configSchema": {},
            "active": True,
            "createdAt": at,
        }
    )
    providers = []
    for slug, name, status in (
        ("google-drive", "Google Drive", "active"),
        ("dropbox", "Dropbox", "inactive"),
    ):
        providers.append(
            {"_id": slug, "slug": slug, "name": name, "authUrl": "https://auth.example.test/a",
             "tokenUrl": "https://auth.example.test/t", "clientId": f"client-{slug}",
             "clientSecret": seal("cloudProviders", None, slug, "clientSecret", f"secret-{slug}"),
             "scopes": ["files.read"], "status": status,
             "metadata": {"apiBaseUrl": "https://api.example.test"}, "createdAt": at, "updatedAt": at}
        )  # fmt: skip
    db["cloudProviders"].insert_many(providers)

    def integration(doc_id: str, tenant: str, provider: str, **fields: Any) -> dict[str, Any]:
        doc = {
            "_id": doc_id, "tenantId": tenant, "providerId": provider, "providerSlug": provider,
            "name": f"{provider} of {tenant}", "status": "active", "statusReason": None,
            "authData": {
                "accessToken": seal("cloudIntegrations", tenant, doc_id, "authData.accessToken", f"at-{doc_id}"),
                "refreshToken": seal("cloudIntegrations", tenant, doc_id, "authData.refreshToken", f"rt-{doc_id}"),
                "expiresAt": at + timedelta(hours=1), "scope": "files.read files.meta", "tokenType": "Bearer",
            },
            "userInfo": {"id": f"acct-{doc_id}", "email": f"{doc_id}@example.test"},
            "health": {"status": "unknown", "lastCheck": None, "errorCount": 0, "lastError": None},
            "usage": {"totalRequests": 3},
            "metadata": {"lastSyncAt": None, "lastRefreshAt": None, "syncCursor": None},
            "createdAt": at, "updatedAt": at,
        }  # fmt: skip
        doc.update(fields)
        return doc

    db["cloudIntegrations"].insert_many(
        [
            integration("int_drive", "ten_acme", "google-drive",
                        metadata={"lastSyncAt": at, "lastRefreshAt": at, "syncCursor": "c-1", "syncRunId": None,
                                  "lastSyncStats": {"pages": 2}},
                        health={"status": "healthy", "lastCheck": at, "errorCount": 0, "lastError": None}),
            integration("int_box", "ten_acme", "dropbox", status="revoked", statusReason="user revoked"),
            integration("int_paused", "ten_paused", "google-drive", status="error", statusReason="token refused"),
        ]
    )  # fmt: skip
    db["projects"].insert_many(
        [
            {"_id": "prj_alpha", "tenantId": "ten_acme", "projectTypeId": "pt_docs", "name": "Alpha",
             "description": "", "status": "active",
             "members": [{"userId": "u1", "role": "owner"}, {"userId": "u2", "role": "viewer"}],
             "integrations": [{"integrationId": "int_drive", "folderPath": "/Alpha"},
                              {"integrationId": "int_box", "folderPath": "/Alpha"}],
             "metadata": {"fileCount": 2, "totalSize": 20, "lastSync": at}, "createdAt": at},
            {"_id": "prj_beta", "tenantId": "ten_acme", "projectTypeId": None, "name": "Beta",
             "description": "", "status": "archived", "members": [{"userId": "u1", "role": "deputy"}],
             "integrations": [{"integrationId": "int_drive", "folderPath": "/"},
                              {"integrationId": "int_box", "folderPath": "/Beta"}],
             "metadata": {"fileCount": 0, "totalSize": 0, "lastSync": None}, "createdAt": at},
        ]
    )  # fmt: skip

    def file(name: str, **fields: Any) -> dict[str, Any]:
        path = f"/Alpha/{name}"
        doc = {
            "_id": hashlib.sha256(f"int_drive\0pf-{name}".encode()).hexdigest()[:32],
            "tenantId": "ten_acme", "integrationId": "int_drive", "projectId": "prj_alpha",
            "providerFileId": f"pf-{name}", "name": name, "path": path, "pathLower": path.casefold(),
            "parentId": "pf-root", "isFolder": False, "mimeType": "text/plain", "size": 10, "modifiedAt": at,
            "contentHash": f"h-{name}", "docHash": f"d-{name}", "seenRun": None,
            "syncStatus": {"status": "synced", "lastSyncedAt": at, "error": None}, "deletedAt": None,
            "createdAt": at, "updatedAt": at,
        }  # fmt: skip
        doc.update(fields)
        return doc

    db["virtualFiles"].insert_many(
        [
            file("a.txt"),
            file("b.txt", size=0),
            file("Sub", isFolder=True, mimeType=None, size=0),
            file("gone.txt", deletedAt=at, syncStatus={"status": "deleted", "lastSyncedAt": at}),
            file("loose.txt", projectId=None),
        ]
    )
    db["usageDaily"].insert_one(
        {"_id": f"ten_acme:{at.date().isoformat()}", "tenantId": "ten_acme", "day": at.replace(hour=0), "jobs": {},
         "apiRequests": 4, "providerRequests": 9, "filesSynced": 2, "storageBytes": 20,
         "integrationsByHealth": {"healthy": 1}, "updatedAt": at}
    )  # fmt: skip
    db["apiKeys"].insert_one(
        {"_id": "key_0123456789abcdef", "tenantId": "ten_acme", "keyHash": "f" * 64, "prefix": "mwap_abcd",
         "name": "ci", "createdAt": at, "revokedAt": None}
    )  # fmt: skip
    db["auditLogs"].insert_many(
        [
            {"_id": ObjectId("a0" * 12), "tenantId": "ten_acme", "actor": {"type": "operator", "id": "cli"},
             "action": "integration.created", "target": {"type": "integration", "id": "int_drive"},
             "details": {}, "createdAt": at},
            {"_id": ObjectId("a1" * 12), "tenantId": None, "actor": {"type": "system", "id": "mwap"},
             "action": "provider.created", "target": {"type": "provider", "id": "dropbox"},
             "details": {}, "createdAt": at},
        ]
    )  # fmt: skip
    db["jobs"].insert_many(
        [
            {"_id": "4f2a" * 8, "type": "integration.sync_files", "tenantId": "ten_acme",
             "subject": {"integrationId": "int_drive"}, "params": {}, "queue": "sync", "status": "succeeded",
             "attempts": 1, "createdAt": at, "finishedAt": at},
            {"_id": "9c1b" * 8, "type": "system.reconcile", "tenantId": None, "subject": {}, "params": {},
             "queue": "maintenance", "status": "succeeded", "attempts": 1, "createdAt": at},
        ]
    )  # fmt: skip
    # The old `mwap db init`'s indexes on these collections (a9c1c17 mwap/indexes.py).
    options = {
        "name_unique": {"unique": True},
        "slug_unique": {"unique": True},
        "tenant_name_unique": {"unique": True},
        "integration_file_unique": {"unique": True},
        "tenant_provider_account_unique": {
            "unique": True,
            "partialFilterExpression": {"userInfo.id": {"$type": "string"}},
        },
        "tenant_deleted": {"partialFilterExpression": {"deletedAt": {"$type": "date"}}},
    }
    for collection, named in contract.LEGACY_INDEXES.items():
        for name, keys in named.items():
            db[collection].create_index(keys, name=name, **options.get(name, {}))


# --- looking at a database --------------------------------------------------------------------


def documents(db: Database, *, skip: tuple[str, ...] = ("migrations",)) -> dict[str, list[dict[str, Any]]]:
    return {
        name: sorted(db[name].find(), key=lambda doc: repr(doc["_id"]))
        for name in sorted(db.list_collection_names())
        if name not in skip
    }


def index_set(db: Database, *, skip: tuple[str, ...] = ("migrations",)) -> dict[str, dict[str, Any]]:
    return {
        name: {
            index: {k: v for k, v in info.items() if k not in {"ns", "v"}}
            for index, info in db[name].index_information().items()
        }
        for name in sorted(db.list_collection_names())
        if name not in skip
    }


def readable(db: Database, ring: KeyRing) -> dict[str, list[dict[str, Any]]]:
    """``documents`` with each secret replaced by its plaintext under its binding: sealing again
    draws a fresh nonce, so two conversions of one secret differ only in their ciphertext."""
    out = documents(db, skip=("migrations", STASH))
    for collection, kinds in SECRETS.items():
        for doc in out.get(collection, []):
            for secret in kinds:
                *parents, last = secret.path.split(".")
                holder = doc
                for part in parents:
                    holder = holder[part]
                holder[last] = "plain:" + ring.decrypt(holder[last], secret.binding_of(doc))
    return out


def records(db: Database) -> dict[int, dict[str, Any]]:
    return {doc["_id"]: doc for doc in db["migrations"].find({"_id": {"$type": "int"}})}


# --- the way up and back ----------------------------------------------------------------------


def test_up_converts_every_old_document_to_the_seed_shapes(
    own_db: Database, settings: Settings, ring
) -> None:
    write_legacy(own_db, ring)
    report = migrations.migrate(own_db, settings)

    assert [(s.version, s.direction) for s in report.steps] == [(v, "up") for v in range(1, HEAD + 1)]
    assert (report.before, report.after) == (0, HEAD)
    assert migrations.schema_version(own_db) == HEAD
    contract_step = report.steps[0]
    assert contract_step.counts["tenants"] == 3
    assert contract_step.counts["virtualFiles"] == 3
    assert contract_step.counts["virtualFiles set aside (deleted)"] == 1
    assert contract_step.counts["virtualFiles set aside (in no project)"] == 1
    assert contract_step.counts["old indexes dropped"] == sum(map(len, contract.LEGACY_INDEXES.values()))
    # Every converted document validates against today's models: ObjectIds, seed fields, enums.
    for collection, model in {
        "tenants": Tenant, "projects": Project, "cloudProviders": CloudProvider,
        "cloudIntegrations": CloudIntegration, "virtualFiles": VirtualFile, "usageDaily": UsageDaily,
        "apiKeys": ApiKey, "auditLogs": AuditLog, "jobs": JobRecord,
    }.items():  # fmt: skip
        for doc in own_db[collection].find():
            model.model_validate(doc)
    acme, drive = seed_id("tenants", "ten_acme"), seed_id("cloudIntegrations", "int_drive")
    tenant = own_db["tenants"].find_one({"_id": acme})
    assert tenant["ownerId"] == "mwap-legacy|ten_acme"
    assert tenant["archived"] is False
    assert "status" not in tenant
    assert own_db["tenants"].find_one({"_id": seed_id("tenants", "ten_paused")})["archived"] is True
    assert own_db["tenants"].find_one({"_id": ObjectId("65f0a1b2c3d4e5f6a7b8c9d0")})["archived"] is True
    integration = own_db["cloudIntegrations"].find_one({"_id": drive})
    assert integration["tenantId"] == acme
    assert integration["providerId"] == seed_id("cloudProviders", "google-drive")
    assert integration["mwapTasks"]["syncCursor"] == "c-1"
    assert integration["mwapTasks"]["healthCheckedAt"] == MOMENT
    assert integration["authData"]["scope"] == ["files.read", "files.meta"]
    assert integration["userInfo"] == {"providerId": "acct-int_drive", "email": "int_drive@example.test"}
    assert "metadata" not in integration
    assert "providerSlug" not in integration
    box = own_db["cloudIntegrations"].find_one({"_id": seed_id("cloudIntegrations", "int_box")})
    assert (box["status"], box["mwapTasks"]["statusReason"]) == ("inactive", "user revoked")
    # The tokens, sealed again under the new ids, read where the jobs look for them.
    assert readable(own_db, ring)["cloudIntegrations"][0]["authData"]["accessToken"].startswith(
        "plain:at-int_"
    )
    alpha = own_db["projects"].find_one({"_id": seed_id("projects", "prj_alpha")})
    assert alpha["folderPath"] == "/Alpha"
    assert alpha["integrations"][0] == {"integrationId": drive, "enabled": True}
    assert [m["role"] for m in alpha["members"]] == ["OWNER", "MEMBER"]
    folder = own_db["virtualFiles"].find_one({"name": "Sub"})
    assert (folder["type"], folder["mwapTasks"]["isFolder"]) == ("inode/directory", True)
    assert folder["providerId"] == integration["providerId"]
    job = own_db["jobs"].find_one({"_id": "4f2a" * 8})
    assert (job["tenantId"], job["subject"]) == (acme, {"integrationId": str(drive)})
    # The old indexes are gone, the platform's are all there.
    assert "slug_unique" not in own_db["cloudProviders"].index_information()
    assert missing_indexes(own_db, settings) == []


def test_up_down_up_leaves_identical_documents_and_indexes(
    own_db: Database, settings: Settings, ring
) -> None:
    write_legacy(own_db, ring)
    before, before_indexes = documents(own_db), index_set(own_db)

    migrations.migrate(own_db, settings)
    up_once, up_once_indexes = readable(own_db, ring), index_set(own_db, skip=("migrations", STASH))

    report = migrations.rollback(own_db, settings, to=0)
    assert [(s.version, s.direction) for s in report.steps] == [(v, "down") for v in range(HEAD, 0, -1)]
    assert migrations.schema_version(own_db) == 0
    assert records(own_db) == {}
    # Back to the very documents, ciphertexts included, and the very indexes; no stash left.
    assert documents(own_db) == before
    assert index_set(own_db) == before_indexes

    migrations.migrate(own_db, settings)
    assert readable(own_db, ring) == up_once
    assert index_set(own_db, skip=("migrations", STASH)) == up_once_indexes


def test_down_converts_back_what_the_platform_changed_after_the_way_up(
    own_db: Database, settings: Settings, ring
) -> None:
    write_legacy(own_db, ring)
    migrations.migrate(own_db, settings)
    drive = seed_id("cloudIntegrations", "int_drive")
    # The platform at work after the migration: a refreshed token, a sync's state, a new link.
    doc = own_db["cloudIntegrations"].find_one({"_id": drive})
    fresh = ring.encrypt("at-refreshed", ACCESS_TOKEN.binding_of(doc))
    own_db["cloudIntegrations"].update_one(
        {"_id": drive},
        {"$set": {"authData.accessToken": fresh, "mwapTasks.syncCursor": "c-2", "authData.scope": ["x"]}},
    )
    own_db["jobs"].update_one({"_id": "4f2a" * 8}, {"$set": {"status": "failed"}})

    migrations.rollback(own_db, settings, to=0)

    old = own_db["cloudIntegrations"].find_one({"_id": "int_drive"})
    assert old["metadata"]["syncCursor"] == "c-2"
    assert old["authData"]["scope"] == "x"
    binding = Binding("cloudIntegrations", "ten_acme", "int_drive", "authData.accessToken")
    assert ring.decrypt(old["authData"]["accessToken"], binding) == "at-refreshed"
    job = own_db["jobs"].find_one({"_id": "4f2a" * 8})
    assert (job["status"], job["tenantId"], job["subject"]) == (
        "failed",
        "ten_acme",
        {"integrationId": "int_drive"},
    )


def test_a_fresh_database_migrates_to_the_platform_index_set(own_db: Database, settings: Settings) -> None:
    report = migrations.migrate(own_db, settings)
    assert report.after == HEAD
    assert missing_indexes(own_db, settings) == []
    assert report.steps[1].counts["indexes created"] == len(report.steps[1].details["created"])
    # Nothing pending: a second run does nothing and says so.
    again = migrations.migrate(own_db, settings)
    assert (again.before, again.after, again.steps) == (HEAD, HEAD, [])
    assert STASH not in own_db.list_collection_names() or own_db[STASH].count_documents({}) == 0


def test_clashing_old_documents_stop_the_migration_before_it_converts_anything(
    own_db: Database, settings: Settings, ring
) -> None:
    write_legacy(own_db, ring)
    # Two accounts of one provider for one tenant: the old platform allowed it, the seed does not.
    second = own_db["cloudIntegrations"].find_one({"_id": "int_drive"})
    own_db["cloudIntegrations"].insert_one({**second, "_id": "int_drive_2", "userInfo": {"id": "other"}})
    before = documents(own_db)
    with pytest.raises(migrations.MigrationError, match=r"int_drive_2"):
        migrations.migrate(own_db, settings)
    assert documents(own_db, skip=("migrations", STASH)) == before
    assert records(own_db)[1]["state"] == "running"


# --- a run stopped halfway -------------------------------------------------------------------

KILLED_RUN = """
import sys, threading
import tasks
from mwap import migrations
from mwap.connections import mongo_db
from mwap.settings import get_settings

tasks.load()
settings = get_settings()
calls = 0

def on_batch(key, done):
    global calls
    calls += 1
    if calls == int(sys.argv[1]):
        print("paused", key, flush=True)
        threading.Event().wait()  # until killed

migrations.migrate(mongo_db(settings), settings, batch_size=1, lock_ttl=2, on_batch=on_batch)
print("finished", flush=True)
"""


def test_a_killed_migration_is_finished_by_the_next_run(
    own_db: Database, own_env: dict[str, str], settings: Settings, ring, db: Database
) -> None:
    write_legacy(own_db, ring)
    twin = db.client[f"{own_db.name}_twin"]
    try:
        write_legacy(twin, ring)
        migrations.migrate(twin, settings)  # the same documents, migrated without a stop
        expected = readable(twin, ring)
    finally:
        db.client.drop_database(twin.name)

    # Batches of one document; killed (SIGKILL: no cleanup, its lock left behind) after the 7th
    # batch, which is in the middle of the integrations (3 tenants, 1 project type, 2 providers).
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, "7"], env=own_env, stdout=subprocess.PIPE, text=True
    )
    try:
        line = child.stdout.readline()
        assert line.split() == ["paused", "cloudIntegrations"], line
        record = records(own_db)[1]
        assert record["state"] == "running"
        assert record["checkpoint"]["cloudIntegrations"] == "int_box"
        converted = own_db["cloudIntegrations"].count_documents({"_id": {"$type": "objectId"}})
        assert converted == 1
        assert own_db["cloudIntegrations"].count_documents({"_id": {"$type": "string"}}) == 2
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert own_db["migrations"].find_one({"_id": "lock"}) is not None  # the dead run's lock

    # The next run waits for that lock to expire (2 s), then resumes where the killed one stopped.
    report = migrations.migrate(own_db, settings, wait=60)
    assert report.steps[0].resumed is True
    assert report.steps[0].counts["cloudIntegrations"] == 2  # only those the killed run left
    assert readable(own_db, ring) == expected
    assert migrations.schema_version(own_db) == HEAD


def test_a_run_stopped_inside_a_swap_is_completed_by_the_next(
    own_db: Database, settings: Settings, ring
) -> None:
    """Stopped between the writes of one batch (the lock lost: the runner checks it before every
    write): the providers' new documents are journaled and their old ones deleted, the new ones
    not written yet. The slugs are unique: the two copies never coexist."""
    write_legacy(own_db, ring)

    def check_lock() -> None:
        if own_db["cloudProviders"].count_documents({}) == 0:
            raise LockLostError("lost the migration lock")

    with pytest.raises(LockLostError):
        contract.up(Run(own_db, settings, batch_size=10, check_lock=check_lock))
    assert own_db[STASH].count_documents({"c": "cloudProviders", "swap": "up"}) == 2

    migrations.migrate(own_db, settings)
    providers = readable(own_db, ring)["cloudProviders"]
    assert sorted(doc["slug"] for doc in providers) == ["dropbox", "google-drive"]
    assert {doc["clientSecret"] for doc in providers} == {"plain:secret-dropbox", "plain:secret-google-drive"}
    assert own_db[STASH].count_documents({"swap": {"$exists": True}}) == 0


def test_an_interrupted_rollback_is_finished_by_the_next(own_db: Database, settings: Settings, ring) -> None:
    write_legacy(own_db, ring)
    before = documents(own_db)
    migrations.migrate(own_db, settings)

    class Stop(Exception):
        pass

    def stop_in_the_files(key: str, done: int) -> None:
        if key == "virtualFiles" and done == 2:
            raise Stop

    with pytest.raises(Stop):
        migrations.rollback(own_db, settings, to=0, batch_size=1, on_batch=stop_in_the_files)
    state = records(own_db)
    assert state[1]["state"] == "rolling_back"
    assert state[1]["checkpoint"]["virtualFiles"] is not None
    assert 2 not in state  # the indexes' down ran before, whole
    assert migrations.status(own_db)["lock"] is None  # released on the way out

    report = migrations.rollback(own_db, settings, to=0)
    assert [(s.version, s.resumed) for s in report.steps] == [(1, True)]
    assert documents(own_db) == before


# --- two migrators -----------------------------------------------------------------------------


def _reader(stream: Any, lines: list[str]) -> threading.Thread:
    thread = threading.Thread(target=lambda: lines.extend(iter(stream.readline, "")), daemon=True)
    thread.start()
    return thread


def test_two_concurrent_migrate_commands_apply_each_migration_once(
    own_db: Database, own_env: dict[str, str], ring
) -> None:
    write_legacy(own_db, ring)
    command = [sys.executable, "-m", "mwap_cli", "--json", "db", "migrate"]
    # Another migrator holds the lock while both commands start, so both must wait for it.
    holder = MigrationLock(own_db, command="a deploy in progress").acquire(wait=0)
    children, errors = [], []
    try:
        for _ in range(2):
            child = subprocess.Popen(
                command, env=own_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            lines: list[str] = []
            _reader(child.stderr, lines)
            children.append(child)
            errors.append(lines)
        wait_for(
            lambda: all(any("waiting for the migration lock held by" in line for line in e) for e in errors),
            timeout=60,
            what="both migrators waiting",
        )
        # A third that may not wait says who holds the lock and fails.
        impatient = subprocess.run(
            [*command, "--wait", "0"], check=False, env=own_env, capture_output=True, text=True
        )
        assert impatient.returncode == 1
        assert f"the migration lock is held by {holder.owner}" in impatient.stderr
        assert "a deploy in progress" in impatient.stderr
    finally:
        holder.release()
    outputs = []
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0, "".join(errors[children.index(child)])
        outputs.append(json.loads(out))
    applied = sorted(
        step["version"] for output in outputs for step in output["steps"] if step["direction"] == "up"
    )
    assert applied == list(range(1, HEAD + 1))  # each once, by one of the two
    assert sorted(output["to"] for output in outputs) == [HEAD, HEAD]
    assert {r["state"] for r in records(own_db).values()} == {"applied"}
    assert own_db["tenants"].count_documents({}) == 3
    assert own_db[STASH].count_documents({"c": "tenants"}) == 3


def test_the_lock(own_db: Database) -> None:
    first = MigrationLock(own_db, command="first", ttl=30).acquire(wait=0)
    try:
        with pytest.raises(LockBusyError, match=first.owner):
            MigrationLock(own_db, command="second").acquire(wait=0)
        first.check()  # still ours
    finally:
        first.release()
    assert own_db["migrations"].find_one({"_id": "lock"}) is None
    # A crashed migrator's lock (expired, never released) is taken over at once.
    own_db["migrations"].insert_one(
        {"_id": "lock", "owner": "dead:1:x", "expiresAt": datetime.now(UTC) - timedelta(seconds=1)}
    )
    with MigrationLock(own_db, command="next", ttl=2).acquire(wait=0) as taken:
        assert own_db["migrations"].find_one({"_id": "lock"})["owner"] == taken.owner
        # Taken over by someone else: its next renewal (every ttl/4) notices, and so does check().
        own_db["migrations"].update_one({"_id": "lock"}, {"$set": {"owner": "thief"}})
        wait_for(lambda: _lost(taken), timeout=10, what="the renewal to notice")
        with pytest.raises(LockLostError):
            taken.check()


def _lost(lock: MigrationLock) -> bool:
    try:
        lock.check()
    except LockLostError:
        return True
    return False


# --- the dry run -------------------------------------------------------------------------------


def test_dry_run_changes_nothing_and_counts_what_would_change(
    own_db: Database, settings: Settings, ring
) -> None:
    write_legacy(own_db, ring)
    own_db["cloudIntegrations"].update_one(
        {"_id": "int_paused"}, {"$set": {"authData.refreshToken": legacy_encrypt("rt-backend")}}
    )
    names, before, before_indexes = own_db.list_collection_names(), documents(own_db), index_set(own_db)

    report = migrations.migrate(own_db, settings, dry_run=True, batch_size=2)

    assert report.dry_run is True
    assert (report.before, report.after) == (0, HEAD)
    counts = {step.version: step.counts for step in report.steps}
    assert counts[1]["tenants"] == 3
    assert counts[1]["cloudIntegrations"] == 3
    assert counts[1]["virtualFiles set aside (deleted)"] == 1
    assert counts[1]["old indexes dropped"] == sum(map(len, contract.LEGACY_INDEXES.values()))
    assert counts[2]["indexes to create"] == len(missing_indexes(own_db, settings)) > 0
    assert counts[3] == {"cloudIntegrations legacy secrets": 1}
    assert sorted(own_db.list_collection_names()) == sorted(names)  # not even the migrations collection
    assert documents(own_db) == before
    assert index_set(own_db) == before_indexes


# --- the legacy ciphertext ---------------------------------------------------------------------


def test_legacy_ciphertext_becomes_enc_v1_and_needs_the_legacy_key(
    own_db: Database, settings: Settings
) -> None:
    ring = settings.key_ring()
    tenant = factories.tenant(own_db)
    integration = factories.integration(own_db, ring, tenant["_id"])
    own_db["cloudIntegrations"].update_one(
        {"_id": integration["_id"]}, {"$set": {"authData.accessToken": legacy_encrypt("at-from-node")}}
    )
    without_key = settings.model_copy(update={"legacy_encryption_key": None})
    with pytest.raises(migrations.MigrationError, match="MWAP_LEGACY_ENCRYPTION_KEY"):
        migrations.migrate(own_db, without_key)
    assert records(own_db)[3]["state"] == "running"
    assert migrations.schema_version(own_db) == 2

    report = migrations.migrate(own_db, settings)
    assert report.steps[0].counts == {"cloudIntegrations legacy secrets converted": 1}
    stored = own_db["cloudIntegrations"].find_one({"_id": integration["_id"]})["authData"]
    assert stored["accessToken"].startswith("enc:v1:")
    assert readable(own_db, ring)["cloudIntegrations"][0]["authData"]["accessToken"] == "plain:at-from-node"
    # The way down leaves enc:v1 alone (writing the legacy format again would reuse its nonce).
    migrations.rollback(own_db, settings, to=2)
    assert own_db["cloudIntegrations"].find_one({"_id": integration["_id"]})["authData"] == stored


# --- the start-up check ----------------------------------------------------------------------


def test_check_schema_warns_when_older_and_refuses_when_newer(
    own_db: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="mwap.migrations"):
        assert migrations.check_schema(own_db, "worker") == 0
    assert f"schema is at version 0, older than this build's {HEAD}" in caplog.text
    assert "run `mwap db migrate`" in caplog.text

    migrations.migrate(own_db, settings)
    caplog.clear()
    assert migrations.check_schema(own_db, "worker") == HEAD
    assert caplog.text == ""

    own_db["migrations"].insert_one({"_id": HEAD + 1, "name": "from_the_future", "state": "applied"})
    with pytest.raises(migrations.SchemaTooNewError, match=f"version {HEAD + 1}.*up to {HEAD}"):
        migrations.check_schema(own_db, "worker")
    with pytest.raises(migrations.SchemaTooNewError):
        migrations.migrate(own_db, settings)
    assert migrations.status(own_db)["unknown"] == [
        {"version": HEAD + 1, "name": "from_the_future", "state": "applied"}
    ]


BEAT_LOCK = "mwap:redbeat::lock"
STARTS = {
    "worker": ["-m", "celery", "-A", "worker.entry:celery_app", "worker", "-P", "solo", "--without-gossip"],
    "beat": ["-m", "celery", "-A", "worker.entry:celery_app", "beat", "-s", "{tmp}/beat-schedule"],
    "api": ["-m", "gunicorn", "-c", "python:api_thin.gunicorn_conf", "api_thin.wsgi:app"],
}


@pytest.mark.parametrize("component", sorted(STARTS))
def test_worker_beat_and_api_refuse_a_database_of_a_newer_schema(
    component: str, own_db: Database, own_env: dict[str, str], settings: Settings, tmp_path
) -> None:
    migrations.migrate(own_db, settings)
    own_db["migrations"].insert_one({"_id": HEAD + 1, "name": "from_the_future", "state": "applied"})
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in STARTS[component]]
    env = {**own_env, "MWAP_API_PORT": str(free_port())}
    lock = redis.Redis.from_url(own_env["MWAP_REDIS_URL"])
    lock_before = lock.get(BEAT_LOCK)
    result = subprocess.run(
        [sys.executable, *argv], check=False, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"{component}: the database's schema is at version {HEAD + 1}" in result.stderr
    assert f"newer than this build knows (up to {HEAD})" in result.stderr
    # Refused before it took beat's leader lock: no standby is kept waiting for its timeout.
    assert lock.get(BEAT_LOCK) == lock_before


@pytest.mark.parametrize("component", sorted(STARTS))
def test_worker_beat_and_api_start_on_an_older_schema_and_say_what_to_run(
    component: str, own_db: Database, own_env: dict[str, str], settings: Settings, tmp_path
) -> None:
    migrations.migrate(own_db, settings, to=HEAD - 1)
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in STARTS[component]]
    # PYTHONFAULTHANDLER: a process that does not stop is made to print every thread's stack.
    env = {**own_env, "MWAP_API_PORT": str(free_port()), "PYTHONFAULTHANDLER": "1"}
    child = subprocess.Popen(
        [sys.executable, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = _reader(child.stdout, lines)
    try:
        wait_for(
            lambda: any("run `mwap db migrate`" in line for line in lines),
            timeout=90,
            what=f"{component}'s warning",
        )
        warning = next(line for line in lines if "run `mwap db migrate`" in line)
        assert f"schema is at version {HEAD - 1}, older than this build's {HEAD}" in warning
        assert child.poll() is None  # it starts all the same
    finally:
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGABRT)
            child.wait(timeout=30)
            reader.join(timeout=10)
            stacks = "".join(lines[-80:])
            raise AssertionError(f"{component} did not stop within 30 s of SIGTERM:\n{stacks}") from None
