"""Small builders for test data: seed 000-shaped documents written straight into MongoDB."""

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from mwap.crypto import KeyRing
from mwap.ids import oid
from mwap.ledger import now
from ops.bench import documents

ACTOR = {"type": "operator", "id": "tests"}
# The MWAP backend's ENCRYPTION_KEY of this session: its legacy iv:authTag:ciphertext values are readable.
LEGACY_PASSWORD = "legacy-" + secrets.token_hex(16)

# Documents here are written the way the MWAP backend writes them (seed 000's shapes, ObjectIds),
# straight into MongoDB: no platform registration code is involved, so every test reads what the
# backend would have written. Only the tokens are sealed with the platform's key ring.


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def tenant(db: Database, *, archived: bool = False, **settings: Any) -> dict[str, Any]:
    """A seed-shaped tenant; ``settings`` override its ``settings`` fields (camelCase)."""
    doc = {**documents.tenant(**settings), "archived": archived}
    db["tenants"].insert_one(doc)
    return doc


def provider(
    db: Database, ring: KeyRing, slug: str = "google-drive", base_url: str = "http://127.0.0.1:9"
) -> dict:
    """The provider with ``slug`` (slug and name are unique: one per slug per database)."""
    existing = db["cloudProviders"].find_one({"slug": slug})
    if existing:
        return existing
    return point_provider_at(
        db,
        ring,
        {
            "slug": slug,
            "name": documents.PROVIDER_NAMES.get(slug, slug),
            "authUrl": f"{base_url}/auth",
            "tokenUrl": f"{base_url}/token",
            "clientId": f"client-{slug}",
            "clientSecret": f"secret-{slug}",
            "scopes": [],
            "metadata": {"apiBaseUrl": base_url},
        },
    )


def point_provider_at(db: Database, ring: KeyRing, document: dict[str, Any]) -> dict[str, Any]:
    """Register (or re-point, keeping its ``_id``) the provider of ``document``'s slug, seed-shaped,
    its client secret (given in the clear) encrypted."""
    return documents.converge_provider(db, ring, document)


def integration_for(
    db: Database, ring: KeyRing, tenant_id: Any, account: Any, **kwargs: Any
) -> dict[str, Any]:
    """An integration holding the tokens the fake issued to ``account``."""
    kwargs.setdefault("expires_in", timedelta(seconds=account.expires_in))
    return integration(
        db,
        ring,
        tenant_id,
        slug=account.provider,
        access_token=account.access_token,
        refresh_token=account.refresh_token,
        **kwargs,
    )


def integration(
    db: Database,
    ring: KeyRing,
    tenant_id: Any,
    *,
    slug: str = "google-drive",
    access_token: str | None = None,
    refresh_token: str | None = None,
    expires_in: timedelta | None = timedelta(hours=1),
    project_ids: list[Any] | None = None,
    status: str = "active",
    **fields: Any,
) -> dict[str, Any]:
    """A seed-shaped integration of ``tenant_id`` (one per provider per tenant, as the seed's unique
    index says), its tokens encrypted; linked (enabled) to ``project_ids``."""
    provider_doc = provider(db, ring, slug)
    doc = documents.integration(
        ring,
        oid(tenant_id),
        provider_doc,
        access_token=access_token,
        refresh_token=refresh_token,
        expires_in=expires_in,
        moment=datetime.now(UTC),
        status=status,
        **fields,
    )
    db["cloudIntegrations"].insert_one(doc)
    for project_id in project_ids or []:
        link(db, project_id, doc["_id"])
    return doc


def link(db: Database, project_id: Any, integration_id: Any, *, enabled: bool = True) -> None:
    """Add the project's link to the integration (seed ``projects.integrations[]``)."""
    db["projects"].update_one(
        {"_id": oid(project_id)},
        {"$push": {"integrations": {"integrationId": oid(integration_id), "enabled": enabled}}},
    )


def project(db: Database, tenant_id: Any, **fields: Any) -> dict[str, Any]:
    """A seed-shaped project of ``tenant_id``; ``fields`` override (e.g. folderPath, archived)."""
    doc = documents.project(oid(tenant_id), **fields)
    db["projects"].insert_one(doc)
    return doc


def enqueue_job(
    services: Any, job_type: str, tenant_id: str | None, subject: dict[str, str], **params: Any
) -> dict:
    """Create a job the way the API does (ledger, lease, publish) without going through HTTP."""
    from mwap.enqueue import JobRequest, enqueue  # noqa: PLC0415
    from worker.app import create_celery_app, publisher  # noqa: PLC0415

    producer = _producers.get(id(services.settings))
    if producer is None:
        producer = _producers[id(services.settings)] = create_celery_app(
            services.settings, include_tasks=False
        )

    [outcome] = enqueue(
        services.db,
        services.redis,
        publisher(producer),
        [JobRequest(job_type, tenant_id, subject, params)],
        lease_ttl=services.settings.broker_visibility_timeout,
    )
    return outcome.job


_producers: dict[int, Any] = {}


def wait_final(db: Database, job_id: str, *, timeout: float = 60) -> dict[str, Any]:
    """The ledger document once the job is succeeded or failed."""
    from ops.processes import wait_for  # noqa: PLC0415 - keeps factories importable without ops

    return wait_for(
        lambda: (
            (doc := db["jobs"].find_one({"_id": job_id}))
            and doc["status"] in ("succeeded", "failed", "cancelled")
            and doc
        ),
        timeout=timeout,
        what=f"job {job_id} final",
    )


def run_integration_job(
    services: Any, job_type: str, integration: dict[str, Any], **params: Any
) -> dict[str, Any]:
    """Enqueue a job for ``integration`` and wait for the real worker to finish it."""
    job = enqueue_job(
        services, job_type, integration["tenantId"], {"integrationId": str(integration["_id"])}, **params
    )
    return wait_final(services.db, job["_id"])


def run_tenant_job(services: Any, job_type: str, tenant_id: Any, **params: Any) -> dict[str, Any]:
    job = enqueue_job(services, job_type, tenant_id, {"tenantId": str(tenant_id)}, **params)
    return wait_final(services.db, job["_id"])


def api_key(db: Database, tenant_id: str) -> tuple[dict[str, Any], str]:
    """A live tenant API key: its stored document and the key itself."""
    from mwap import apikeys  # noqa: PLC0415 - only the API tests need keys

    return apikeys.create(db, tenant_id, name="tests", actor=ACTOR)


def virtual_file(db: Database, integration: dict[str, Any], path: str, **fields: Any) -> dict[str, Any]:
    """A seed-shaped synced file of ``integration`` at ``path`` (plus the platform's ``tenantId``)."""
    moment = now()
    doc = {
        "_id": ObjectId(),
        "projectId": fields.pop("projectId", None) or ObjectId(),
        "integrationId": integration["_id"],
        "providerId": integration["providerId"],
        "providerFileId": uid("pf"),
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "type": "text/plain",
        "size": 10,
        "modifiedTime": moment,
        "metadata": {"permissions": []},
        "syncStatus": {"lastSync": moment, "status": "synced"},
        "createdAt": moment,
        "updatedAt": moment,
        "tenantId": integration["tenantId"],
        **fields,
    }
    db["virtualFiles"].insert_one(doc)
    return doc


def usage_day(db: Database, tenant_id: Any, day: Any, **fields: Any) -> dict[str, Any]:
    """A ``usageDaily`` rollup of ``day`` (a date) for ``tenant_id``."""
    doc = {
        "_id": ObjectId(),
        "tenantId": oid(tenant_id),
        "day": datetime(day.year, day.month, day.day, tzinfo=UTC),
        "jobs": {},
        "apiRequests": 0,
        "providerRequests": 0,
        "filesSynced": 0,
        "storageBytes": 0,
        "integrationsByHealth": {},
        "updatedAt": now(),
        **fields,
    }
    db["usageDaily"].insert_one(doc)
    return doc


def job_document(
    db: Database,
    job_type: str,
    tenant_id: str | None,
    subject: dict[str, str] | None = None,
    *,
    created_at: datetime | None = None,
    status: str = "queued",
) -> dict[str, Any]:
    """A ledger document written directly (no message published): for listing tests."""
    from mwap import jobtypes, ledger  # noqa: PLC0415

    doc = ledger.new_job(
        job_type, tenant_id=tenant_id, subject=subject, queue=jobtypes.job_types()[job_type].queue.value
    )
    doc["status"] = status
    if created_at is not None:
        doc["createdAt"] = created_at
    db["jobs"].insert_one(doc)
    return doc
