"""``mwap demo seed``: demo tenants, projects, providers and integrations, idempotently.

The providers point at a fake-providers server (``ops/fake_providers``, started by ``ops/run``
with ``--seed-demo``); the integrations hold that server's documented demo tokens, encrypted.
Running it again converges on the same state: tokens are reset to the demo ones (the fake server
starts afresh with each ``ops/run``), an integration left in ``error`` becomes active again, and a
tenant keeps a live API key it already has.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.database import Database

from mwap import apikeys, audit, registry
from mwap.crypto import KeyRing, integration_binding
from mwap.ledger import now
from ops.fake_providers.demo import DEMO_ACCOUNTS, demo_tokens
from ops.fake_providers.documents import provider_documents

ACTOR = {"type": "operator", "id": "mwap demo seed"}

TENANTS = [
    {"id": "demo-acme", "name": "Acme Corp (demo)", "settings": {"retentionDays": 90, "maxProjects": 20}},
    {"id": "demo-globex", "name": "Globex (demo)", "settings": {"retentionDays": 30, "maxProjects": 5}},
]
PROJECTS = [
    (
        "demo-acme",
        "prj-acme-alpha",
        "Alpha",
        [("int-demo-google", "/Projects/Alpha"), ("int-demo-dropbox", "/")],
    ),
    ("demo-acme", "prj-acme-photos", "Photos", [("int-demo-google", "/Photos")]),
    ("demo-globex", "prj-globex-all", "Everything", [("int-demo-onedrive", "/Projects")]),
]
INTEGRATIONS = [
    ("demo-acme", "int-demo-google", "demo-google"),
    ("demo-acme", "int-demo-dropbox", "demo-dropbox"),
    ("demo-globex", "int-demo-onedrive", "demo-onedrive"),
]


def seed(
    db: Database,
    ring: KeyRing,
    providers_url: str,
    *,
    keep_keys: dict[str, str] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Create or converge the demo data; returns ids and the tenant API keys (new ones in clear)."""
    for document in provider_documents(providers_url):
        body = registry.ProviderCreate.model_validate({**document, "id": document["slug"]})
        fresh = registry.provider_document(ring, body)
        existing = db["cloudProviders"].find_one({"_id": fresh["_id"]}, {"createdAt": 1})
        if existing:
            fresh["createdAt"] = existing["createdAt"]
        db["cloudProviders"].replace_one({"_id": fresh["_id"]}, fresh, upsert=True)
    progress(f"providers: {', '.join(d['slug'] for d in provider_documents(providers_url))}")

    for tenant in TENANTS:
        if db["tenants"].find_one({"_id": tenant["id"]}) is None:
            registry.create_tenant(db, registry.TenantCreate.model_validate(tenant), actor=ACTOR)
    progress(f"tenants: {', '.join(t['id'] for t in TENANTS)}")

    moment = now()
    for tenant_id, project_id, name, _ in PROJECTS:
        db["projects"].update_one(
            {"_id": project_id, "tenantId": tenant_id},
            {
                "$setOnInsert": {
                    "name": name,
                    "status": "active",
                    "members": [{"userId": f"{tenant_id}-owner", "role": "owner"}],
                    "integrations": [],
                    "metadata": {"fileCount": 0, "totalSize": 0, "lastSync": None},
                    "createdAt": moment,
                }
            },
            upsert=True,
        )

    for tenant_id, integration_id, account_id in INTEGRATIONS:
        _converge_integration(db, ring, tenant_id, integration_id, account_id)
    for tenant_id, project_id, _, links in PROJECTS:
        db["projects"].update_one(
            {"_id": project_id, "tenantId": tenant_id},
            {"$set": {"integrations": [{"integrationId": i, "folderPath": f} for i, f in links]}},
        )
    progress(f"integrations: {', '.join(i for _, i, _ in INTEGRATIONS)}")

    keys = {}
    for tenant in TENANTS:
        tenant_id = tenant["id"]
        known = (keep_keys or {}).get(tenant_id)
        if known and apikeys.find_live(db, known):
            keys[tenant_id] = known
        else:
            _, keys[tenant_id] = apikeys.create(db, tenant_id, name="demo", actor=ACTOR)
    return {
        "tenants": [t["id"] for t in TENANTS],
        "projects": [p[1] for p in PROJECTS],
        "integrations": [i[1] for i in INTEGRATIONS],
        "tenantApiKeys": keys,
    }


def _converge_integration(
    db: Database, ring: KeyRing, tenant_id: str, integration_id: str, account_id: str
) -> None:
    access, refresh = demo_tokens(account_id)
    slug = DEMO_ACCOUNTS[account_id]
    expires = datetime.now(UTC) + timedelta(hours=1)
    if db["cloudIntegrations"].find_one({"_id": integration_id, "tenantId": tenant_id}) is None:
        body = registry.IntegrationCreate.model_validate(
            {
                "id": integration_id,
                "tenantId": tenant_id,
                "providerSlug": slug,
                "accessToken": access,
                "refreshToken": refresh,
                "expiresAt": expires,
                "userInfo": {"id": account_id, "email": f"{account_id}@example.test"},
            }
        )
        registry.create_integration(db, ring, body, actor=ACTOR)
        return
    # The fake server starts afresh with each ops/run: put the demo tokens back, clear any error.
    db["cloudIntegrations"].update_one(
        {"_id": integration_id, "tenantId": tenant_id},
        {
            "$set": {
                "authData.accessToken": ring.encrypt(
                    access, integration_binding(tenant_id, integration_id, "authData.accessToken")
                ),
                "authData.refreshToken": ring.encrypt(
                    refresh, integration_binding(tenant_id, integration_id, "authData.refreshToken")
                ),
                "authData.expiresAt": expires,
                "status": "active",
                "statusReason": None,
                "metadata.syncCursor": None,
                "metadata.refreshCooldownUntil": None,
                "updatedAt": now(),
            }
        },
    )
    audit.record(
        db,
        tenant_id=tenant_id,
        action="integration.reseeded",
        target_type="integration",
        target_id=integration_id,
        actor=ACTOR,
    )
