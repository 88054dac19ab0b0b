"""Every index the platform relies on, created idempotently by ``mwap db migrate`` (migration 0002
and its reconcile step, ``mwap.migrations``).

Names are explicit so that a check at start can say exactly which are missing, and so that a
changed definition fails loudly (MongoDB refuses a different index under an existing name).
"""

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import OperationFailure

from mwap import jobtypes, sharding
from mwap.settings import Settings
from mwap.store import Document

logger = logging.getLogger(__name__)

DAY = 86400
TENANT_FILE_UNIQUE = "mwap_tenant_integration_file"


@dataclass(frozen=True, slots=True)
class Index:
    collection: str
    name: str
    keys: list[tuple[str, int]]
    options: dict[str, Any] = field(default_factory=dict)


def indexes(settings: Settings) -> list[Index]:
    """The index set for these settings (TTL lengths come from retention settings), with an index
    for each shard key (``mwap.sharding``) that no other index starts with."""
    declared = _declared(settings)
    return declared + [
        Index(collection, sharding.SHARD_KEY_INDEX, list(keys))
        for collection, keys in sharding.missing_key_indexes((i.collection, i.keys) for i in declared)
    ]


def _declared(settings: Settings) -> list[Index]:
    return [
        # --- seed 000's indexes, exactly as listed there (keys and options) ---
        Index("tenants", "ownerId_1", [("ownerId", ASCENDING)], {"unique": True}),
        Index("tenants", "ownerId_1_name_1", [("ownerId", ASCENDING), ("name", ASCENDING)], {"unique": True}),
        Index("tenants", "archived_1", [("archived", ASCENDING)]),
        Index("tenants", "subscription.expiresAt_1", [("subscription.expiresAt", ASCENDING)]),
        Index("projects", "tenantId_1", [("tenantId", ASCENDING)]),
        Index(
            "projects", "tenantId_1_name_1", [("tenantId", ASCENDING), ("name", ASCENDING)], {"unique": True}
        ),
        Index("projects", "members.userId_1", [("members.userId", ASCENDING)]),
        Index("projects", "projectTypeId_1", [("projectTypeId", ASCENDING)]),
        Index("projects", "archived_1", [("archived", ASCENDING)]),
        Index("cloudProviders", "slug_1", [("slug", ASCENDING)], {"unique": True}),
        Index("cloudProviders", "name_1", [("name", ASCENDING)], {"unique": True}),
        Index("cloudIntegrations", "tenantId_1", [("tenantId", ASCENDING)]),
        Index(
            "cloudIntegrations",
            "tenantId_1_providerId_1",
            [("tenantId", ASCENDING), ("providerId", ASCENDING)],
            {"unique": True},
        ),
        Index("cloudIntegrations", "status_1", [("status", ASCENDING)]),
        Index("cloudIntegrations", "authData.expiresAt_1", [("authData.expiresAt", ASCENDING)]),
        Index("cloudIntegrations", "health.lastCheck_1", [("health.lastCheck", ASCENDING)]),
        Index("virtualFiles", "projectId_1", [("projectId", ASCENDING)]),
        Index("virtualFiles", "integrationId_1", [("integrationId", ASCENDING)]),
        # Seed 000 makes this one unique; migration 0004 moves the uniqueness to
        # mwap_tenant_integration_file below (tenant first, so it holds on a sharded collection) and
        # keeps this one, not unique, for lookups by file and integration (mwap/sharding.py).
        Index(
            "virtualFiles",
            "providerFileId_1_integrationId_1",
            [("providerFileId", ASCENDING), ("integrationId", ASCENDING)],
        ),
        Index("virtualFiles", "syncStatus.lastSync_1", [("syncStatus.lastSync", ASCENDING)]),
        Index("virtualFiles", "path_1", [("path", ASCENDING)]),
        # --- the platform's own, for its queries ---
        # seed 000's unique file per integration, with the tenant first: virtualFiles' shard key
        Index(
            "virtualFiles",
            TENANT_FILE_UNIQUE,
            [("tenantId", ASCENDING), ("integrationId", ASCENDING), ("providerFileId", ASCENDING)],
            {"unique": True},
        ),
        # sync: a tenant's files under a path, and its project totals
        Index(
            "virtualFiles",
            "mwap_tenant_integration_path",
            [("tenantId", ASCENDING), ("integrationId", ASCENDING), ("mwapTasks.pathLower", ASCENDING)],
        ),
        Index("virtualFiles", "mwap_tenant_project", [("tenantId", ASCENDING), ("projectId", ASCENDING)]),
        # audit
        Index("auditLogs", "tenant_created", [("tenantId", ASCENDING), ("createdAt", DESCENDING)]),
        # Backstop only: per-tenant retention (tenant.apply_retention) deletes sooner.
        Index(
            "auditLogs",
            "created_ttl",
            [("createdAt", ASCENDING)],
            {"expireAfterSeconds": settings.audit_retention_days * DAY},
        ),
        # job ledger
        Index(
            "jobs",
            "tenant_created",
            [("tenantId", ASCENDING), ("createdAt", DESCENDING), ("_id", DESCENDING)],
        ),
        Index(
            "jobs",
            "tenant_status_created",
            [("tenantId", ASCENDING), ("status", ASCENDING), ("createdAt", DESCENDING)],
        ),
        Index(
            "jobs",
            "type_status_created",
            [("type", ASCENDING), ("status", ASCENDING), ("createdAt", DESCENDING)],
        ),
        Index("jobs", "status_created", [("status", ASCENDING), ("createdAt", ASCENDING)]),
        # the console's lists, newest first, paged on (createdAt, _id): every job, by status (dead
        # letters), by type (api_thin/console/queries.py)
        Index("jobs", "created_id", [("createdAt", DESCENDING), ("_id", DESCENDING)]),
        Index(
            "jobs",
            "status_created_id",
            [("status", ASCENDING), ("createdAt", DESCENDING), ("_id", DESCENDING)],
        ),
        Index(
            "jobs", "type_created_id", [("type", ASCENDING), ("createdAt", DESCENDING), ("_id", DESCENDING)]
        ),
        # the dead-worker check: a dead worker run's running jobs (only running jobs are indexed)
        Index(
            "jobs",
            "mwap_running_worker_run",
            [("workerRun", ASCENDING)],
            {"partialFilterExpression": {"status": "running"}},
        ),
        Index(
            "jobs",
            "finished_ttl",
            [("finishedAt", ASCENDING)],
            {"expireAfterSeconds": settings.job_retention_days * DAY},
        ),
        # usage and keys
        Index(
            "usageDaily", "tenant_day_unique", [("tenantId", ASCENDING), ("day", ASCENDING)], {"unique": True}
        ),
        Index(
            "jobs",
            "subject_integration_status",
            [("subject.integrationId", ASCENDING), ("status", ASCENDING)],
        ),
        Index("apiKeys", "key_hash_unique", [("keyHash", ASCENDING)], {"unique": True}),
        Index("apiKeys", "tenant", [("tenantId", ASCENDING), ("createdAt", DESCENDING)]),
        # webhooks (mwap/webhooks.py): a tenant's endpoints and deliveries, the sweep's due query,
        # the relay's outbox scans, and TTLs that keep events and attempts for a while
        Index("webhookEndpoints", "tenant_created", [("tenantId", ASCENDING), ("createdAt", DESCENDING)]),
        Index(
            "webhookDeliveries",
            "tenant_endpoint_created",
            [("tenantId", ASCENDING), ("endpointId", ASCENDING), ("createdAt", DESCENDING)],
        ),
        Index("webhookDeliveries", "status_next", [("status", ASCENDING), ("nextAttemptAt", ASCENDING)]),
        Index(
            "webhookDeliveries",
            "created_ttl",
            [("createdAt", ASCENDING)],
            {"expireAfterSeconds": settings.webhook_retention_days * DAY},
        ),
        Index(
            "webhookEvents",
            "created_ttl",
            [("createdAt", ASCENDING)],
            {"expireAfterSeconds": settings.webhook_retention_days * DAY},
        ),
        Index(
            "cloudIntegrations",
            "mwap_webhook_outbox",
            [("mwapTasks.webhookOutbox.id", ASCENDING)],
            {"sparse": True},
        ),
        Index("jobs", "mwap_webhook_outbox", [("mwapTasks.webhookOutbox.id", ASCENDING)], {"sparse": True}),
        # the dispatchers' due queries: each scheduled job type declares the index it needs
        *jobtypes.due_indexes(),
    ]


def ensure_indexes(db: Database[Document], settings: Settings) -> list[str]:
    """Create every missing index; returns the ``collection.name`` of those created."""
    existing = _existing(db)
    created = []
    for index in indexes(settings):
        present = existing.get(index.collection, {}).get(index.name)
        ttl = index.options.get("expireAfterSeconds")
        if present is not None:
            if ttl is not None and present.get("expireAfterSeconds") != ttl:
                # A changed retention setting: adjust the TTL in place instead of rebuilding.
                db.command("collMod", index.collection, index={"name": index.name, "expireAfterSeconds": ttl})
            continue
        db[index.collection].create_index(index.keys, name=index.name, **index.options)
        created.append(f"{index.collection}.{index.name}")
    return created


def missing_indexes(db: Database[Document], settings: Settings) -> list[str]:
    """``collection.name`` of every expected index that does not exist."""
    existing = _existing(db)
    return [
        f"{index.collection}.{index.name}"
        for index in indexes(settings)
        if index.name not in existing.get(index.collection, {})
    ]


def _existing(db: Database[Document]) -> dict[str, MutableMapping[str, Any]]:
    names = set(db.list_collection_names())
    return {name: db[name].index_information() for name in names}


def warn_if_missing(db: Database[Document], settings: Settings, component: str) -> list[str]:
    """Log which indexes are missing (run ``mwap db migrate``); never fails the caller."""
    try:
        missing = missing_indexes(db, settings)
    except OperationFailure as error:  # pragma: no cover - reported, not fatal
        logger.warning("%s could not check indexes: %s", component, error)
        return []
    if missing:
        logger.warning(
            "%s: %d indexes missing (run `mwap db migrate`): %s", component, len(missing), ", ".join(missing)
        )
    return missing
