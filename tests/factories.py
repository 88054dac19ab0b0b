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
