"""The shard key of every collection the platform owns or shares with the MWAP backend, or why it
stays unsharded: one plan, read by ``mwap.indexes`` (each shard key needs an index that starts with
it) and by ``mwap db shard-plan`` (the ``shardCollection`` commands).

Tenant first (seed 004: "tenant_id + timestamp"; seed 000: ``tenantId`` for tenant-based sharding):
a tenant's documents sit together, every tenant-scoped query (``mwap.store`` adds ``tenantId`` to
each) goes to the shards holding that tenant, and a unique index can stay unique — MongoDB enforces
uniqueness across shards only for an index that starts with the whole shard key (``_id``'s too:
without ``_id`` in the key it is unique per shard only). The keys are ranged, not hashed: a hashed
key allows no unique index beside ``_id`` and scatters a tenant, and zone sharding by tenant (data
residency) needs ranges. A second field (``_id``, ``day``, the file's ids) lets a big tenant's
documents split into many chunks. Cross-tenant queries (the dispatchers' due items, the sweeps) ask
every shard, each through its own indexes.
"""

import json
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

type Keys = tuple[tuple[str, int], ...]

TENANT: Keys = (("tenantId", 1),)
TENANT_ID: Keys = (("tenantId", 1), ("_id", 1))
SHARD_KEY_INDEX = "mwap_shard_key"  # the name of an index added only to support a shard key

# findAndModify by _id alone (the ledger's start and finish, a delivery's claim): MongoDB documents
# such writes on a sharded collection without the shard key in the filter from 7.1 (self-managed: 8.0).
_BY_ID = (
    "its findAndModify writes filter on _id without tenantId: shard it on MongoDB 7.1+ (self-managed "
    "8.0+), where a write without the shard key is accepted; on 7.0 leave it unsharded"
)


@dataclass(frozen=True, slots=True)
class Placement:
    collection: str
    key: Keys | None  # None: unsharded (it stays on the database's primary shard)
    reason: str
    note: str = ""  # what an operator must know before running its shardCollection

    @property
    def sharded(self) -> bool:
        return self.key is not None


PLAN: tuple[Placement, ...] = (
    Placement(
        "tenants",
        None,
        "one small document per tenant, its _id the tenant id that the other collections are sharded "
        "by; seed 000's unique ownerId and {ownerId, name} hold across all tenants, which no tenant "
        "shard key could enforce",
    ),
    Placement(
        "projects",
        TENANT,
        "a tenant's few projects are read together; seed 000's unique {tenantId, name} starts with the key",
    ),
    Placement("projectTypes", None, "a small catalogue shared by every tenant"),
    Placement(
        "cloudProviders",
        None,
        "a handful of documents; seed 000's unique slug and name hold across all tenants",
    ),
    Placement(
        "cloudIntegrations",
        TENANT,
        "at most MWAP_MAX_INTEGRATIONS_PER_TENANT per tenant; seed 000's unique {tenantId, providerId} "
        "starts with the key",
    ),
    Placement(
        "virtualFiles",
        (("tenantId", 1), ("integrationId", 1), ("providerFileId", 1)),
        "the largest collection: one document per provider file. The key is the unique "
        "{tenantId, integrationId, providerFileId} of migration 0004, which replaces seed 000's unique "
        "{providerFileId, integrationId} (the same constraint: an integration belongs to one tenant); "
        "sync's upserts carry the whole key, a listing reads one integration's range, and a big "
        "account splits into many chunks",
        note="every writer must set tenantId on virtualFiles (migration 0004 stamps the existing ones)",
    ),
    Placement(
        "auditLogs",
        TENANT_ID,
        "tenant, then time (seed 004): an ObjectId _id starts with its creation second; no unique index",
    ),
    Placement(
        "jobs",
        TENANT_ID,
        "the ledger; a job id is written once with its tenant (a repeated insert of the same job has the "
        "same tenant, so the same chunk, and still fails on _id); no other unique index",
        note=_BY_ID,
    ),
    Placement("usageDaily", (("tenantId", 1), ("day", 1)), "its unique {tenantId, day} is the key"),
    Placement(
        "apiKeys",
        None,
        "looked up by keyHash before the tenant is known (the key names it), so the unique keyHash "
        "must hold across all tenants; small",
    ),
    Placement("webhookEndpoints", TENANT, "a tenant's few endpoints are read together; no unique index"),
    Placement(
        "webhookEvents",
        TENANT_ID,
        "an event's id is written with its tenant only: a repeated relay inserts the same _id under the "
        "same tenant, which still fails on _id as the relay expects",
    ),
    Placement(
        "webhookDeliveries",
        TENANT_ID,
        "a delivery's id derives from its event and endpoint, both of one tenant (as webhookEvents)",
        note=_BY_ID,
    ),
    Placement(
        "migrations",
        None,
        "the schema records and the migration lock, whose _id must be unique across the cluster",
    ),
    Placement("migrationStash", None, "migration 0001's journal while it swaps ids; empty afterwards"),
)


def plan() -> dict[str, Placement]:
    """The placement of each collection, by name."""
    return {placement.collection: placement for placement in PLAN}


def sharded() -> list[Placement]:
    return [placement for placement in PLAN if placement.sharded]


def starts_with(keys: Sequence[tuple[str, int]], prefix: Sequence[tuple[str, int]]) -> bool:
    """Whether an index on ``keys`` has ``prefix`` (fields and directions) as its prefix."""
    return [tuple(k) for k in keys[: len(prefix)]] == [tuple(p) for p in prefix]


def missing_key_indexes(declared: Iterable[tuple[str, Sequence[tuple[str, int]]]]) -> list[tuple[str, Keys]]:
    """(collection, shard key) of each sharded collection that no index of ``declared``
    ((collection, keys) pairs) supports: ``shardCollection`` on a non-empty collection needs one."""
    by_collection: dict[str, list[Sequence[tuple[str, int]]]] = {}
    for collection, keys in declared:
        by_collection.setdefault(collection, []).append(keys)
    return [
        (placement.collection, placement.key)
        for placement in sharded()
        if placement.key is not None
        and not any(starts_with(keys, placement.key) for keys in by_collection.get(placement.collection, []))
    ]


def shard_commands(database: str) -> list[dict[str, object]]:
    """The admin commands that shard ``database`` by the plan (run on a mongos)."""
    commands: list[dict[str, object]] = [{"enableSharding": database}]
    commands += [
        {"shardCollection": f"{database}.{placement.collection}", "key": dict(placement.key)}
        for placement in sharded()
        if placement.key is not None
    ]
    return commands


def _js(keys: Keys) -> str:
    return "{ " + ", ".join(f"{field}: {direction}" for field, direction in keys) + " }"


def mongosh_script(database: str) -> str:
    """The plan as a mongosh script, with each collection's reason as a comment."""
    lines = [
        f"// Tenant shard keys of the database {json.dumps(database)} (mwap/sharding.py). Run on a",
        "// mongos as a user with clusterManager, after `mwap db migrate` (a non-empty collection",
        "// needs the index that supports its key; the migrations create them).",
        f"sh.enableSharding({json.dumps(database)})",
    ]
    for placement in PLAN:
        lines.append("")
        lines += textwrap.wrap(
            f"{placement.collection}: {placement.reason}", 96, initial_indent="// ", subsequent_indent="//   "
        )
        if placement.note:
            lines += textwrap.wrap(
                f"NOTE: {placement.note}", 96, initial_indent="// ", subsequent_indent="//   "
            )
        if placement.key is None:
            lines.append(f"// {placement.collection} stays unsharded")
        else:
            namespace = json.dumps(f"{database}.{placement.collection}")
            lines.append(f"sh.shardCollection({namespace}, {_js(placement.key)})")
    return "\n".join(lines) + "\n"
