"""`mwap db migrate | rollback | status | init` as an operator runs them, each test on a database of
its own (the migrations themselves: tests/mwap/test_migrations.py)."""

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest
from pymongo.database import Database

from mwap import migrations
from mwap.indexes import indexes
from mwap.settings import Settings

HEAD = migrations.head()


@pytest.fixture
def fresh(db: Database, stack_env: dict[str, str]) -> Iterator[tuple[dict[str, str], Database]]:
    name = f"mwap_mig_cli_{secrets.token_hex(4)}"
    yield {**stack_env, "MWAP_MONGO_DB": name}, db.client[name]
    db.client.drop_database(name)


def mwap(env: dict[str, str], *args: str, status: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "mwap_cli", *args], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == status, result.stderr
    return result


def as_json(env: dict[str, str], *args: str) -> dict:
    return json.loads(mwap(env, *args, "--json").stdout)


def test_status_migrate_and_rollback(fresh, settings: Settings) -> None:
    env, database = fresh
    every_index = len(indexes(settings))

    state = as_json(env, "db", "status")
    assert (state["version"], state["head"], state["lock"]) == (0, HEAD, None)
    assert [m["state"] for m in state["migrations"]] == ["pending"] * HEAD
    assert [m["name"] for m in state["migrations"]][:3] == ["seed_contract", "indexes", "legacy_ciphertext"]
    assert len(state["missingIndexes"]) == every_index
    assert "run `mwap db migrate`" in mwap(env, "db", "status").stdout

    text = mwap(env, "db", "migrate", "--to", "1").stdout
    assert text.splitlines()[0] == "schema version 0 -> 1"
    assert "applied 0001 seed_contract" in text
    assert as_json(env, "db", "status")["version"] == 1

    report = as_json(env, "db", "migrate")
    assert (report["from"], report["to"], report["dryRun"]) == (1, HEAD, False)
    assert [s["version"] for s in report["steps"]] == list(range(2, HEAD + 1))
    assert len(report["steps"][0]["details"]["created"]) == every_index
    state = as_json(env, "db", "status")
    assert state["version"] == HEAD
    assert state["missingIndexes"] == []
    assert {m["state"] for m in state["migrations"]} == {"applied"}
    assert "up to date" in mwap(env, "db", "migrate").stdout

    refused = mwap(env, "db", "migrate", "--to", "1", status=1)
    assert "use `mwap db rollback --to 1`" in refused.stderr

    report = as_json(env, "db", "rollback", "--to", "1")
    assert [(s["version"], s["direction"]) for s in report["steps"]] == [
        (v, "down") for v in range(HEAD, 1, -1)
    ]
    assert report["steps"][-1]["counts"]["indexes dropped"] == every_index
    state = as_json(env, "db", "status")
    assert state["version"] == 1
    assert len(state["missingIndexes"]) == every_index
    assert database["migrations"].count_documents({}) == 1

    beyond = mwap(env, "db", "rollback", "--to", str(HEAD + 1), status=1)
    assert f"--to must be between 0 and {HEAD}" in beyond.stderr


def test_dry_run_prints_counts_and_writes_nothing(fresh, settings: Settings) -> None:
    env, database = fresh
    report = as_json(env, "db", "migrate", "--dry-run")
    assert report["dryRun"] is True
    assert (report["from"], report["to"]) == (0, HEAD)
    indexes_step = next(s for s in report["steps"] if s["name"] == "indexes")
    assert indexes_step["counts"] == {"indexes to create": len(indexes(settings))}
    text = mwap(env, "db", "migrate", "--dry-run").stdout
    assert text.startswith("dry run, nothing changed: schema version 0, would migrate to")
    assert "would apply 0002 indexes: indexes to create" in text
    assert database.list_collection_names() == []


def test_init_is_migrate_and_keeps_its_output(fresh) -> None:
    env, database = fresh
    first = as_json(env, "db", "init")
    assert first["missing"] == []
    assert len(first["created"]) > 20
    assert as_json(env, "db", "status")["version"] == HEAD  # the records say what init did
    assert as_json(env, "db", "init") == {"created": [], "missing": []}
    # A dropped index comes back with init (or migrate): the set follows the code.
    database["apiKeys"].drop_index("tenant")
    assert as_json(env, "db", "init") == {"created": ["apiKeys.tenant"], "missing": []}


def test_shard_plan_prints_the_shard_commands_for_the_configured_database(fresh) -> None:
    env, database = fresh
    name = env["MWAP_MONGO_DB"]
    plan = as_json(env, "db", "shard-plan")
    assert plan["database"] == name
    assert plan["commands"][0] == {"enableSharding": name}
    keys = {c["shardCollection"]: c["key"] for c in plan["commands"][1:]}
    assert keys[f"{name}.virtualFiles"] == {"tenantId": 1, "integrationId": 1, "providerFileId": 1}
    assert all(next(iter(key)) == "tenantId" for key in keys.values())
    placements = {p["collection"]: p for p in plan["collections"]}
    assert placements["tenants"]["shardKey"] is None
    assert placements["apiKeys"]["reason"].startswith("looked up by keyHash")
    script = mwap(env, "db", "shard-plan").stdout
    assert f'sh.enableSharding("{name}")' in script
    assert f'sh.shardCollection("{name}.jobs", {{ tenantId: 1, _id: 1 }})' in script
    assert "// tenants stays unsharded" in script
    assert database.list_collection_names() == []  # it prints; it runs nothing
