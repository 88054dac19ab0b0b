"""Small builders for test data, written through the same registry code the API and CLI use."""

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.database import Database

from mwap import registry
from mwap.crypto import KeyRing
from mwap.ledger import now

ACTOR = {"type": "operator", "id": "tests"}


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def tenant(db: Database, **settings: Any) -> dict[str, Any]:
    body = registry.TenantCreate(id=uid("ten"), name="Tenant", settings=settings)
    return registry.create_tenant(db, body, actor=ACTOR)


def provider(
    db: Database, ring: KeyRing, slug: str = "google-drive", base_url: str = "http://127.0.0.1:9"
) -> dict:
    existing = db["cloudProviders"].find_one({"slug": slug})
    if existing:
        return existing
    body = registry.ProviderCreate.model_validate(
        {
            "id": slug,
            "slug": slug,
            "authUrl": f"{base_url}/auth",
            "tokenUrl": f"{base_url}/token",
            "clientId": f"client-{slug}",
            "clientSecret": f"secret-{slug}",
            "metadata": {"apiBaseUrl": base_url},
        }
    )
    return registry.create_provider(db, ring, body, actor=ACTOR)


def point_provider_at(db: Database, ring: KeyRing, document: dict[str, Any]) -> dict[str, Any]:
    """Register (or re-point) the provider of ``document``'s slug, its secret encrypted."""
    slug = document["slug"]
    body = registry.ProviderCreate.model_validate({**document, "id": slug})
    fresh = registry.provider_document(ring, body)
    db["cloudProviders"].replace_one({"_id": slug}, fresh, upsert=True)
    return fresh


def integration_for(
    db: Database, ring: KeyRing, tenant_id: str, account: Any, **kwargs: Any
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
    tenant_id: str,
    *,
    slug: str = "google-drive",
    access_token: str | None = None,
    refresh_token: str | None = None,
    expires_in: timedelta = timedelta(hours=1),
    project_ids: list[str] | None = None,
) -> dict[str, Any]:
    provider(db, ring, slug)
    body = registry.IntegrationCreate.model_validate(
        {
            "id": uid("int"),
            "tenantId": tenant_id,
            "providerSlug": slug,
            "accessToken": access_token or "at-" + secrets.token_hex(8),
            "refreshToken": refresh_token or "rt-" + secrets.token_hex(8),
            "expiresAt": datetime.now(UTC) + expires_in,
            "projectIds": project_ids or [],
        }
    )
    return registry.create_integration(db, ring, body, actor=ACTOR)


def project(db: Database, tenant_id: str, **fields: Any) -> dict[str, Any]:
    doc = {
        "_id": uid("prj"),
        "tenantId": tenant_id,
        "name": uid("Project"),
        "status": "active",
        "members": [],
        "integrations": [],
        "metadata": {"fileCount": 0, "totalSize": 0, "lastSync": None},
        "createdAt": now(),
        **fields,
    }
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
            (doc := db["jobs"].find_one({"_id": job_id})) and doc["status"] in ("succeeded", "failed") and doc
        ),
        timeout=timeout,
        what=f"job {job_id} final",
    )


def run_integration_job(
    services: Any, job_type: str, integration: dict[str, Any], **params: Any
) -> dict[str, Any]:
    """Enqueue a job for ``integration`` and wait for the real worker to finish it."""
    job = enqueue_job(
        services, job_type, integration["tenantId"], {"integrationId": integration["_id"]}, **params
    )
    return wait_final(services.db, job["_id"])


def run_tenant_job(services: Any, job_type: str, tenant_id: str, **params: Any) -> dict[str, Any]:
    job = enqueue_job(services, job_type, tenant_id, {"tenantId": tenant_id}, **params)
    return wait_final(services.db, job["_id"])


def api_key(db: Database, tenant_id: str) -> tuple[dict[str, Any], str]:
    """A live tenant API key: its stored document and the key itself."""
    from mwap import apikeys  # noqa: PLC0415 - only the API tests need keys

    return apikeys.create(db, tenant_id, name="tests", actor=ACTOR)


def virtual_file(db: Database, integration: dict[str, Any], path: str, **fields: Any) -> dict[str, Any]:
    """A synced file of ``integration`` at ``path`` (``deletedAt`` given to make it deleted)."""
    moment = now()
    doc = {
        "_id": uid("file"),
        "tenantId": integration["tenantId"],
        "integrationId": integration["_id"],
        "projectId": None,
        "providerFileId": uid("pf"),
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "mimeType": "text/plain",
        "size": 10,
        "isFolder": False,
        "modifiedAt": moment,
        "contentHash": None,
        "syncStatus": {"status": "synced", "lastSyncedAt": moment, "error": None},
        "deletedAt": None,
        "createdAt": moment,
        "updatedAt": moment,
        **fields,
    }
    db["virtualFiles"].insert_one(doc)
    return doc


def usage_day(db: Database, tenant_id: str, day: Any, **fields: Any) -> dict[str, Any]:
    """A ``usageDaily`` rollup of ``day`` (a date) for ``tenant_id``."""
    doc = {
        "_id": f"{tenant_id}:{day.isoformat()}",
        "tenantId": tenant_id,
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
        job_type, tenant_id=tenant_id, subject=subject, queue=jobtypes.JOB_TYPES[job_type].queue.value
    )
    doc["status"] = status
    if created_at is not None:
        doc["createdAt"] = created_at
    db["jobs"].insert_one(doc)
    return doc
