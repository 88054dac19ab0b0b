"""The tenant shard keys (``mwap.sharding``) against the index set (``mwap.indexes``): every unique
index of a sharded collection starts with its shard key, so a unique index added without the tenant
breaks this test; and migration 0004, which moves virtualFiles' uniqueness to the tenant-first key,
up (resumed after a stop), down and its refusal."""

import base64
import secrets
from collections.abc import Iterator

import pytest
from bson import ObjectId
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from mwap import migrations, sharding
from mwap.indexes import TENANT_FILE_UNIQUE, Index, indexes
from mwap.migrations import m0004_tenant_file_key as m0004
from mwap.migrations.context import MigrationError
from mwap.migrations.lock import COLLECTION as MIGRATIONS
from mwap.migrations.reshape import STASH
from mwap.settings import Settings
from mwap.store import GLOBAL, TENANT_OWNED

SEED_INDEX = "providerFileId_1_integrationId_1"


@pytest.fixture(scope="module")
def plain_settings() -> Settings:
    """Settings without servers: the index set depends on them only through TTL lengths."""
    return Settings(
        redis_url="redis://127.0.0.1:1/0",
        mongo_url="mongodb://127.0.0.1:1/",
        encryption_keys="k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        admin_api_key="a" * 8 + secrets.token_urlsafe(16),
    )


def incompatible_unique_indexes(index_set: list[Index]) -> list[str]:
    """``collection.name`` of each unique index of a sharded collection that does not start with the
    collection's shard key (MongoDB refuses such an index once the collection is sharded, and
    ``shardCollection`` refuses the collection while it has one)."""
    plan = sharding.plan()
    return [
        f"{i.collection}.{i.name}"
        for i in index_set
        if i.options.get("unique")
        and (key := plan[i.collection].key) is not None
        and not sharding.starts_with(i.keys, key)
    ]


def test_every_unique_index_of_a_sharded_collection_starts_with_its_shard_key(
    plain_settings: Settings,
) -> None:
    assert incompatible_unique_indexes(indexes(plain_settings)) == []


def test_the_check_catches_a_unique_index_without_the_tenant(plain_settings: Settings) -> None:
    planted = Index("jobs", "idempotency_unique", [("idempotencyKey", 1)], {"unique": True})
    tenant_first = Index("jobs", "tenant_idem", [("tenantId", 1), ("_id", 1), ("k", 1)], {"unique": True})
    assert incompatible_unique_indexes([*indexes(plain_settings), planted, tenant_first]) == [
        "jobs.idempotency_unique"
    ]


def test_every_collection_has_a_placement_and_every_shard_key_an_index(plain_settings: Settings) -> None:
    index_set = indexes(plain_settings)
    plan = sharding.plan()
    used = {i.collection for i in index_set} | TENANT_OWNED | GLOBAL | {MIGRATIONS, STASH}
    assert sorted(used - plan.keys()) == [], "a new collection needs a placement in mwap/sharding.py"
    for placement in sharding.PLAN:
        assert placement.reason
        if placement.key is None:
            continue
        # Tenant first (seed 004); ranged (a hashed key allows no unique index beside _id).
        assert placement.key[0] == ("tenantId", 1), placement.collection
        assert placement.collection in TENANT_OWNED
        assert all(direction == 1 for _, direction in placement.key)
        supporting = [i for i in index_set if i.collection == placement.collection]
        assert any(sharding.starts_with(i.keys, placement.key) for i in supporting), placement.collection
    assert sharding.missing_key_indexes((i.collection, i.keys) for i in index_set) == []
    # Collections keyed by something other than the tenant, or unique across tenants, stay whole.
    assert {p.collection for p in sharding.PLAN if not p.sharded} >= GLOBAL | {"apiKeys", MIGRATIONS}


def test_shard_commands_and_script(plain_settings: Settings) -> None:
    commands = sharding.shard_commands("mwap_x")
    assert commands[0] == {"enableSharding": "mwap_x"}
    by_namespace = {c["shardCollection"]: c["key"] for c in commands[1:]}
    assert by_namespace["mwap_x.virtualFiles"] == {"tenantId": 1, "integrationId": 1, "providerFileId": 1}
    assert by_namespace["mwap_x.jobs"] == {"tenantId": 1, "_id": 1}
    assert "mwap_x.tenants" not in by_namespace
    assert list(by_namespace["mwap_x.usageDaily"]) == ["tenantId", "day"]  # key order is meaningful
    script = sharding.mongosh_script("mwap_x")
    assert 'sh.shardCollection("mwap_x.jobs", { tenantId: 1, _id: 1 })' in script
    assert "// apiKeys stays unsharded" in script


# --- migration 0004 --------------------------------------------------------------------------


@pytest.fixture
def own_db(db: Database) -> Iterator[Database]:
    name = f"mwap_shard_{secrets.token_hex(4)}"
    yield db.client[name]
    db.client.drop_database(name)


def at_version_3_of_the_previous_build(database: Database, settings: Settings) -> None:
    """Version 3 as the build before 0004 left it: seed 000's unique file index, no tenant-first one."""
    migrations.migrate(database, settings, to=3)
    files = database["virtualFiles"]
    files.drop_index(TENANT_FILE_UNIQUE)
    files.drop_index(SEED_INDEX)
    files.create_index([("providerFileId", 1), ("integrationId", 1)], name=SEED_INDEX, unique=True)


class Stop(Exception):
    pass


def test_0004_moves_the_file_uniqueness_to_the_tenant_and_back(own_db: Database, settings: Settings) -> None:
    at_version_3_of_the_previous_build(own_db, settings)
    tenant, integration = ObjectId(), ObjectId()
    own_db["cloudIntegrations"].insert_one({"_id": integration, "tenantId": tenant, "providerId": ObjectId()})
    files = own_db["virtualFiles"]
    ours = {"_id": ObjectId(), "tenantId": tenant, "integrationId": integration, "providerFileId": "p0"}
    # Written by the MWAP backend, without the platform's tenantId; one of an unknown integration.
    theirs = [
        {"_id": ObjectId(), "integrationId": integration, "providerFileId": f"p{n}", **extra}
        for n, extra in enumerate([{}, {"mwapTasks": {"pathLower": "/a"}}, {}], start=1)
    ]
    orphan = {"_id": ObjectId(), "integrationId": ObjectId(), "providerFileId": "p9"}
    files.insert_many([ours, *theirs, orphan])
    before = sorted(files.find(), key=lambda d: d["_id"])

    planned = migrations.migrate(own_db, settings, dry_run=True)
    [step] = [s for s in planned.steps if s.version == 4]
    assert step.counts == {
        "virtualFiles given their integration's tenantId": 3,
        "virtualFiles of no known integration (no tenantId)": 1,
        "indexes to create": 1,
        "indexes to make not unique": 1,
    }
    assert sorted(files.find(), key=lambda d: d["_id"]) == before

    # Stopped after the second batch of one file: the next run resumes there.
    def stop_after_two(key: str, done: int) -> None:
        if key == "tenantId" and done == 2:
            raise Stop

    with pytest.raises(Stop):
        migrations.migrate(own_db, settings, batch_size=1, on_batch=stop_after_two)
    record = own_db[MIGRATIONS].find_one({"_id": 4})
    assert record["state"] == "running"
    assert record["checkpoint"]["tenantId"] is not None
    assert files.count_documents({"tenantId": tenant}) == 3
    report = migrations.migrate(own_db, settings, batch_size=1)
    [step] = [s for s in report.steps if s.version == 4]
    assert step.resumed
    assert step.counts["virtualFiles given their integration's tenantId"] == 1
    assert migrations.schema_version(own_db) == migrations.head()

    assert files.count_documents({"tenantId": tenant}) == 4
    assert files.count_documents({"tenantId": tenant, m0004.MARK: True}) == 3
    assert files.find_one({"_id": orphan["_id"]}).get("tenantId") is None
    info = files.index_information()
    assert info[TENANT_FILE_UNIQUE]["unique"] is True
    assert info[TENANT_FILE_UNIQUE]["key"] == [("tenantId", 1), ("integrationId", 1), ("providerFileId", 1)]
    assert not info[SEED_INDEX].get("unique")
    with pytest.raises(DuplicateKeyError):
        files.insert_one({"tenantId": tenant, "integrationId": integration, "providerFileId": "p1"})

    # Down: the seed's unique index again, the added tenantIds taken back: the very documents.
    migrations.rollback(own_db, settings, to=3)
    assert files.index_information()[SEED_INDEX]["unique"] is True
    assert sorted(files.find(), key=lambda d: d["_id"]) == before

    # Up again, then a file that repeats one under another tenant: down refuses, naming it.
    migrations.migrate(own_db, settings)
    files.insert_one({"tenantId": ObjectId(), "integrationId": integration, "providerFileId": "p1"})
    with pytest.raises(MigrationError, match=f"providerFileId p1 of integration {integration}"):
        migrations.rollback(own_db, settings, to=3)
