"""virtualFiles unique per tenant, integration and provider file (the shard key), seed's index kept.

Seed 000's unique ``{providerFileId: 1, integrationId: 1}`` cannot stay unique once ``virtualFiles``
is sharded by tenant (MongoDB enforces a unique index across shards only when it starts with the
shard key; ``mwap.sharding``). The same constraint, tenant first, is ``{tenantId: 1, integrationId:
1, providerFileId: 1}`` (an integration belongs to one tenant), which is also the shard key. ``up``:

1. gives ``tenantId`` to files that lack it (written by another writer), taken from their
   integration, in batches, marked ``mwapTasks.tenantIdAdded`` so that ``down`` removes exactly
   those; a file of no known integration keeps none (counted);
2. creates ``mwap_tenant_integration_file`` (unique) if missing — before the old constraint goes,
   so no moment is without one;
3. rebuilds the seed's index under its name without ``unique`` (lookups by file and integration).

Every step checks the state first, so a killed run is finished by the next. ``down`` makes the
seed's index unique again (refusing, naming them, if files repeat a provider file of one
integration), then takes the added ``tenantId`` back; the tenant-first index belongs to the index
set (``mwap/indexes.py``), which migration 0002's ``down`` drops.
"""

from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.errors import OperationFailure

from mwap.indexes import TENANT_FILE_UNIQUE
from mwap.migrations.context import MigrationError, Run

FILES, INTEGRATIONS = "virtualFiles", "cloudIntegrations"
SEED_INDEX = "providerFileId_1_integrationId_1"
SEED_KEYS = [("providerFileId", ASCENDING), ("integrationId", ASCENDING)]
TENANT_KEYS = [("tenantId", ASCENDING), ("integrationId", ASCENDING), ("providerFileId", ASCENDING)]
MARK = "mwapTasks.tenantIdAdded"
DUPLICATE_KEY = 11000
_SHOWN = 5


def up(run: Run) -> None:
    _add_tenant_ids(run)
    info = run.db[FILES].index_information()
    seed = info.get(SEED_INDEX)
    if run.dry_run:
        run.count("indexes to create", int(TENANT_FILE_UNIQUE not in info))
        run.count("indexes to make not unique", int(bool(seed and seed.get("unique"))))
        return
    run.check_lock()
    if TENANT_FILE_UNIQUE not in info:
        try:
            run.db[FILES].create_index(TENANT_KEYS, name=TENANT_FILE_UNIQUE, unique=True)
        except OperationFailure as error:
            if error.code != DUPLICATE_KEY:
                raise
            raise MigrationError(
                f"virtualFiles repeats a provider file of one integration ({error.details}): "
                "remove the duplicates and rerun"
            ) from None
        run.count("indexes created")
    if seed is not None and seed.get("unique"):
        run.db[FILES].drop_index(SEED_INDEX)
        seed = None
    if seed is None:
        run.db[FILES].create_index(SEED_KEYS, name=SEED_INDEX)
        run.count("indexes made not unique")


def _add_tenant_ids(run: Run) -> None:
    query = {"tenantId": None}
    for batch in run.batches(FILES, query, key="tenantId", projection={"integrationId": 1}):
        wanted = list({doc["integrationId"] for doc in batch if doc.get("integrationId") is not None})
        owners = {
            i["_id"]: i.get("tenantId")
            for i in run.db[INTEGRATIONS].find({"_id": {"$in": wanted}}, {"tenantId": 1})
        }
        requests = [
            UpdateOne({"_id": doc["_id"], **query}, {"$set": {"tenantId": tenant, MARK: True}})
            for doc in batch
            if (tenant := owners.get(doc.get("integrationId"))) is not None
        ]
        run.count("virtualFiles given their integration's tenantId", len(requests))
        run.count("virtualFiles of no known integration (no tenantId)", len(batch) - len(requests))
        run.write(FILES, requests)


def down(run: Run) -> None:
    seed = run.db[FILES].index_information().get(SEED_INDEX)
    if seed is not None and not seed.get("unique"):
        repeated = _repeated_files(run)
        if repeated:
            raise MigrationError(
                f"virtualFiles repeats provider files of one integration ({'; '.join(repeated)}): seed "
                f"000's unique {SEED_INDEX} cannot come back until one of each is removed"
            )
        run.check_lock()
        run.db[FILES].drop_index(SEED_INDEX)
        seed = None
    if seed is None:
        run.check_lock()
        try:
            run.db[FILES].create_index(SEED_KEYS, name=SEED_INDEX, unique=True)
        except OperationFailure as error:
            # E.g. a sharded virtualFiles, where only an index starting with the shard key is unique.
            raise MigrationError(f"cannot make {SEED_INDEX} unique again: {error}") from None
        run.count("indexes made unique")
    for batch in run.batches(FILES, {MARK: True}, key="tenantIdAdded", projection={"mwapTasks": 1}):
        # Back to the very document: an mwapTasks that held only the mark goes too.
        requests = [
            UpdateOne(
                {"_id": doc["_id"], MARK: True},
                {
                    "$unset": {
                        "tenantId": "",
                        **({MARK: ""} if len(doc["mwapTasks"]) > 1 else {"mwapTasks": ""}),
                    }
                },
            )
            for doc in batch
        ]
        run.write(FILES, requests)
        run.count("virtualFiles tenantId taken back", len(requests))


def _repeated_files(run: Run) -> list[str]:
    pipeline: list[dict[str, Any]] = [
        {"$group": {"_id": {"f": "$providerFileId", "i": "$integrationId"}, "n": {"$sum": 1}}},
        {"$match": {"n": {"$gt": 1}}},
        {"$limit": _SHOWN},
    ]
    return [
        f"providerFileId {g['_id']['f']} of integration {g['_id']['i']}"
        for g in run.db[FILES].aggregate(pipeline)
    ]
