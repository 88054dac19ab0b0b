"""``mwap demo seed``: demo tenants, projects, providers and integrations, idempotently.

The providers point at a fake-providers server (``ops/fake_providers``, started by ``ops/run``
with ``--seed-demo``); the integrations hold that server's documented demo tokens, encrypted.
Running it again converges on the same state: tokens are reset to the demo ones (the fake server
starts afresh with each ``ops/run``), an integration left in ``error`` becomes active again, and a
tenant keeps a live API key it already has.

Development tooling: the command joins ``mwap`` through the ``mwap.commands`` entry point of the
``mwap-tasks-dev`` distribution (``ops/pyproject.toml``), so it is not part of the production package.
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from bson import ObjectId
from pymongo.database import Database

from mwap import apikeys, audit, crypto, indexes, registry
from mwap.crypto import KeyRing
from mwap.ledger import now
from mwap_cli.context import Context, json_flag, pass_ctx
from ops.fake_providers.demo import DEMO_ACCOUNTS, demo_tokens
from ops.fake_providers.documents import provider_documents

ACTOR = {"type": "operator", "id": "mwap demo seed"}
CREATED_BY = "mwap-demo-seed"

# Natural keys, as the backend's unique indexes define them: tenants by ownerId, projects by
# (tenant, name), providers by slug, integrations by (tenant, provider).
TENANTS: list[dict[str, Any]] = [
    {
        "ownerId": "auth0|demo-acme-owner",
        "name": "Acme Corp (demo)",
        "settings": {"retentionDays": 90, "maxProjects": 20},
    },
    {
        "ownerId": "auth0|demo-globex-owner",
        "name": "Globex (demo)",
        "settings": {"retentionDays": 30, "maxProjects": 5},
    },
]
# (tenant owner, project name, folderPath, [demo account of each linked integration])
PROJECTS = [
    ("auth0|demo-acme-owner", "Alpha", "/Projects/Alpha", ["demo-google", "demo-dropbox"]),
    ("auth0|demo-acme-owner", "Photos", "/Photos", ["demo-google"]),
    ("auth0|demo-globex-owner", "Everything", "/Projects", ["demo-onedrive"]),
]
# (tenant owner, demo account)
INTEGRATIONS = [
    ("auth0|demo-acme-owner", "demo-google"),
    ("auth0|demo-acme-owner", "demo-dropbox"),
    ("auth0|demo-globex-owner", "demo-onedrive"),
]


def seed(
    db: Database,
    ring: KeyRing,
    providers_url: str,
    *,
    keep_keys: dict[str, str] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Create or converge the demo data; returns ids and the tenant API keys (new ones in clear).

    Run against a database the MWAP backend already filled, it adds only what is missing: an
    existing provider (by slug), tenant (by ownerId), project (by tenant and name) or integration
    (by tenant and provider) is kept under its own ``_id``.
    """
    providers = {}
    for document in provider_documents(providers_url):
        providers[document["slug"]] = _converge_provider(db, ring, document)
    progress(f"providers: {', '.join(providers)}")

    tenants: dict[str, ObjectId] = {}
    for tenant in TENANTS:
        found = db["tenants"].find_one({"ownerId": tenant["ownerId"]}, {"_id": 1})
        if found is None:
            try:
                found = registry.create_tenant(db, registry.TenantCreate.model_validate(tenant), actor=ACTOR)
            except registry.ConflictError:  # created concurrently, or same owner under another name
                found = db["tenants"].find_one({"ownerId": tenant["ownerId"]}, {"_id": 1})
        if found is None:
            raise RuntimeError(f"tenant of {tenant['ownerId']} neither created nor found")
        tenants[tenant["ownerId"]] = found["_id"]
    progress(f"tenants: {', '.join(str(t) for t in tenants.values())}")

    integrations: dict[str, ObjectId] = {}
    for owner, account_id in INTEGRATIONS:
        provider_id = providers[DEMO_ACCOUNTS[account_id]]
        integrations[account_id] = _converge_integration(db, ring, tenants[owner], provider_id, account_id)

    moment = now()
    projects = []
    for owner, name, folder, accounts in PROJECTS:
        tenant_id = tenants[owner]
        db["projects"].update_one(
            {"tenantId": tenant_id, "name": name},
            {
                "$setOnInsert": {
                    "description": f"Demo project {name}",
                    "projectTypeId": DEMO_PROJECT_TYPE,
                    "config": {},
                    "members": [{"userId": owner, "role": "OWNER", "addedAt": moment, "addedBy": owner}],
                    "folderPath": folder,
                    "integrations": [],
                    "metadata": {"fileCount": 0, "totalSize": 0, "lastSync": moment},
                    "createdAt": moment,
                    "updatedAt": moment,
                    "archived": False,
                }
            },
            upsert=True,
        )
        project = db["projects"].find_one({"tenantId": tenant_id, "name": name}, {"integrations": 1})
        if project is None:
            raise RuntimeError(f"project {name} not found after its upsert")
        linked = {link.get("integrationId") for link in project.get("integrations") or []}
        missing = [
            {"integrationId": integrations[a], "enabled": True}
            for a in accounts
            if integrations[a] not in linked
        ]
        if missing:
            db["projects"].update_one(
                {"_id": project["_id"], "tenantId": tenant_id},
                {"$push": {"integrations": {"$each": missing}}, "$set": {"updatedAt": moment}},
            )
        projects.append(str(project["_id"]))
    progress(f"integrations: {', '.join(str(i) for i in integrations.values())}")

    keys = {}
    for tenant_id in tenants.values():
        known = (keep_keys or {}).get(str(tenant_id))
        if known and apikeys.find_live(db, known):
            keys[str(tenant_id)] = known
        else:
            _, keys[str(tenant_id)] = apikeys.create(db, tenant_id, name="demo", actor=ACTOR)
    return {
        "tenants": [str(t) for t in tenants.values()],
        "projects": projects,
        "integrations": [str(i) for i in integrations.values()],
        "tenantApiKeys": keys,
    }


# One fixed project type for the demo projects (projectTypes are the backend's; none is required).
DEMO_PROJECT_TYPE = ObjectId("64d000000000000000000001")


def _converge_provider(db: Database, ring: KeyRing, document: dict[str, Any]) -> ObjectId:
    """The provider with this slug: created if missing, else pointed at the fake server."""
    body = registry.ProviderCreate.model_validate(
        {
            **{k: v for k, v in document.items() if k != "metadata"},
            "apiBaseUrl": document["metadata"]["apiBaseUrl"],
            "createdBy": CREATED_BY,
        }
    )
    existing = db["cloudProviders"].find_one({"slug": body.slug.value}, {"_id": 1})
    if existing is None:
        try:
            return registry.create_provider(db, ring, body, actor=ACTOR)["_id"]
        except registry.ConflictError:  # a provider of that name exists under another slug
            existing = db["cloudProviders"].find_one({"slug": body.slug.value}, {"_id": 1})
            if existing is None:
                raise
    # Keep its _id (integrations refer to it); take the fake server's URLs and credentials.
    fresh = registry.provider_document(ring, body)
    db["cloudProviders"].update_one(
        {"_id": existing["_id"]},
        {
            "$set": {
                "authUrl": fresh["authUrl"],
                "tokenUrl": fresh["tokenUrl"],
                "clientId": fresh["clientId"],
                "clientSecret": crypto.seal(
                    ring,
                    crypto.CLIENT_SECRET,
                    body.client_secret.get_secret_value(),
                    document_id=existing["_id"],
                ),
                "metadata.apiBaseUrl": fresh["metadata"]["apiBaseUrl"],
                "updatedAt": now(),
            }
        },
    )
    return existing["_id"]


def _converge_integration(
    db: Database, ring: KeyRing, tenant_id: ObjectId, provider_id: ObjectId, account_id: str
) -> ObjectId:
    access, refresh = demo_tokens(account_id)
    expires = datetime.now(UTC) + timedelta(hours=1)
    existing = db["cloudIntegrations"].find_one(
        {"tenantId": tenant_id, "providerId": provider_id}, {"_id": 1}
    )
    if existing is None:
        body = registry.IntegrationCreate.model_validate(
            {
                "tenantId": str(tenant_id),
                "providerId": str(provider_id),
                "authData": {"accessToken": access, "refreshToken": refresh, "expiresAt": expires},
                "userInfo": {
                    "email": f"{account_id}@example.test",
                    "name": f"Demo {account_id}",
                    "providerId": account_id,
                },
                "createdBy": CREATED_BY,
            }
        )
        return registry.create_integration(db, ring, body, actor=ACTOR)["_id"]
    integration_id = existing["_id"]
    # The fake server starts afresh with each ops/run: put the demo tokens back, clear any error.
    db["cloudIntegrations"].update_one(
        {"_id": integration_id, "tenantId": tenant_id},
        {
            "$set": {
                "authData.accessToken": crypto.seal(
                    ring, crypto.ACCESS_TOKEN, access, document_id=integration_id, tenant_id=tenant_id
                ),
                "authData.refreshToken": crypto.seal(
                    ring, crypto.REFRESH_TOKEN, refresh, document_id=integration_id, tenant_id=tenant_id
                ),
                "authData.expiresAt": expires,
                "status": "active",
                "mwapTasks.statusReason": None,
                "mwapTasks.syncCursor": None,
                "mwapTasks.refreshCooldownUntil": None,
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
    return integration_id


@click.group()
def demo() -> None:
    """Demo data for ops/run."""


@demo.command("seed")
@click.option("--providers-url", required=True, help="Base URL of the fake providers server.")
@click.option("--keep-keys", default="{}", help="JSON {tenantId: key} of tenant keys to keep if still live.")
@json_flag
@pass_ctx
def demo_seed(ctx: Context, providers_url: str, keep_keys: str) -> None:
    """Create (or converge) demo tenants, projects, providers and integrations. Idempotent."""
    try:
        kept = json.loads(keep_keys)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"--keep-keys is not JSON: {error}") from None
    indexes.ensure_indexes(ctx.db, ctx.settings)
    result = seed(ctx.db, ctx.settings.key_ring(), providers_url, keep_keys=kept, progress=ctx.progress)
    ctx.emit(
        result,
        f"demo ready: tenants {', '.join(result['tenants'])}; integrations {', '.join(result['integrations'])}",
    )
