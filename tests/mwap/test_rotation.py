"""`mwap keys rotate`: every secret re-encrypted under the newest key, resumable, nothing lost."""

import json
import os
import subprocess
import sys

import factories
import pytest
from bson import ObjectId
from pymongo.database import Database

from mwap import webhooks
from mwap.connections import mongo_client
from mwap.crypto import WEBHOOK_SECRET, KeyRing, integration_binding, provider_binding
from mwap.indexes import ensure_indexes
from mwap.rotation import rotate
from mwap.settings import Settings

OLD_KEY = KeyRing.generate_key()
NEW_KEY = KeyRing.generate_key()


class Interrupted(Exception):
    pass


@pytest.fixture
def fresh(settings: Settings) -> Database:
    name = factories.uid("rotation").replace("-", "_")
    database = mongo_client(settings)[name]
    ensure_indexes(database, settings)  # the seed's unique indexes hold here too
    yield database
    mongo_client(settings).drop_database(name)


def seed(db: Database, ring: KeyRing, count: int) -> dict[ObjectId, tuple[str, str]]:
    tokens = {}
    for n in range(count):
        access, refresh = f"access-{n}", f"refresh-{n}"
        # One Google Drive integration per tenant (the seed's unique (tenantId, providerId)).
        tenant_id = factories.tenant(db)["_id"]
        doc = factories.integration(db, ring, tenant_id, access_token=access, refresh_token=refresh)
        tokens[doc["_id"]] = (access, refresh)
    return tokens


def plaintexts(db: Database, ring: KeyRing) -> dict[ObjectId, tuple[str, str]]:
    out = {}
    for doc in db["cloudIntegrations"].find():
        auth = doc["authData"]
        out[doc["_id"]] = tuple(
            ring.decrypt(auth[field], integration_binding(doc["tenantId"], doc["_id"], f"authData.{field}"))
            for field in ("accessToken", "refreshToken")
        )
    return out


def key_ids(db: Database, ring: KeyRing) -> set[str]:
    ids = set()
    for doc in db["cloudIntegrations"].find():
        ids |= {ring.key_id_of(doc["authData"][f]) for f in ("accessToken", "refreshToken")}
    return ids


def test_interrupted_rotation_resumes_and_loses_nothing(fresh: Database) -> None:
    old = KeyRing.parse(f"k1:{OLD_KEY}")
    tokens = seed(fresh, old, 7)
    endpoint, signing = webhooks.create_endpoint(
        fresh, old, factories.tenant(fresh)["_id"], url="https://hooks.example.com/a", events=["job.failed"]
    )
    new = KeyRing.parse(f"k2:{NEW_KEY},k1:{OLD_KEY}")

    def stop_after_first_batch(collection: str, report: object) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        rotate(fresh, new, batch_size=3, progress=stop_after_first_batch)
    assert key_ids(fresh, new) == {"k1", "k2"}  # halfway: some rotated, some not
    assert plaintexts(fresh, new) == tokens  # and every secret still readable

    report = rotate(fresh, new, batch_size=3)
    assert report.failures == []
    # The rest, plus the provider's clientSecret and the webhook endpoint's signing secret.
    assert report.rotated_documents == 7 - 3 + 1 + 1
    assert key_ids(fresh, new) == {"k2"}
    assert plaintexts(fresh, KeyRing.parse(f"k2:{NEW_KEY}")) == tokens  # the old key can now be retired
    provider = fresh["cloudProviders"].find_one()
    assert new.decrypt(provider["clientSecret"], provider_binding(provider["_id"])) == "secret-google-drive"
    audit = fresh["auditLogs"].find_one({"action": "keys.rotated"}, sort=[("createdAt", -1)])
    stored = fresh["webhookEndpoints"].find_one({"_id": endpoint["_id"]})
    assert new.key_id_of(stored["secret"]) == "k2"
    assert new.decrypt(stored["secret"], WEBHOOK_SECRET.binding_of(stored)) == signing
    assert audit["details"]["rotatedSecrets"] == 2 * 4 + 1 + 1
    assert rotate(fresh, new).rotated_secrets == 0  # idempotent


def test_rotation_cli_reports_undecryptable_secrets_and_exits_nonzero(
    fresh: Database, stack_env: dict[str, str]
) -> None:
    old = KeyRing.parse(f"k1:{OLD_KEY}")
    tokens = seed(fresh, old, 2)
    victim = next(iter(tokens))
    # A ciphertext copied from another integration must not decrypt here (AAD binding).
    other = fresh["cloudIntegrations"].find_one({"_id": {"$ne": victim}})
    fresh["cloudIntegrations"].update_one(
        {"_id": victim}, {"$set": {"authData.accessToken": other["authData"]["accessToken"]}}
    )
    env = {**stack_env, "MWAP_MONGO_DB": fresh.name, "MWAP_ENCRYPTION_KEYS": f"k2:{NEW_KEY},k1:{OLD_KEY}"}
    result = subprocess.run(
        [sys.executable, "-m", "mwap_cli", "--json", "keys", "rotate", "--batch-size", "1"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=os.getcwd(),
    )
    assert result.returncode == 1, result.stderr
    output = json.loads(result.stdout)
    assert output["primaryKey"] == "k2"
    assert [(f["id"], f["field"]) for f in output["failures"]] == [(str(victim), "authData.accessToken")]
    assert "'k1'" in output["failures"][0]["error"]
    assert "scanned" in result.stderr  # progress on stderr
    for value in tokens.values():
        assert value[0] not in result.stdout + result.stderr
