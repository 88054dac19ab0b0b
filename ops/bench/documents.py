"""Seed 000-shaped documents for the bench's data, built as ``tests/factories.py`` builds them.

The bench writes what the MWAP backend would have written (ObjectId ids and references, every
seed field), straight into MongoDB with ``insert_many`` in batches: no registration code runs,
so seeding costs one command per batch and measures nothing of the platform. Only the tokens and
client secrets are sealed with the platform's key ring, bound to their documents.
"""

import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from itertools import batched
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from mwap import crypto
from mwap.crypto import KeyRing
from mwap.ledger import now

CREATED_BY = "auth0|mwap-bench"
PROVIDER_NAMES = {"google-drive": "Google Drive", "dropbox": "Dropbox", "onedrive": "OneDrive"}


def tenant(*, moment: datetime | None = None, **settings: Any) -> dict[str, Any]:
    """A seed-shaped tenant (one owner per tenant: ``ownerId`` is unique)."""
    moment = moment or now()
    return {
        "_id": ObjectId(),
        "name": f"Bench tenant {secrets.token_hex(4)}",
        "ownerId": f"auth0|bench-{secrets.token_hex(8)}",
        "settings": {
            "allowPublicProjects": False,
            "maxProjects": 10,
            "retentionDays": 90,
            "features": {"cloudIntegrations": True, "advancedSecurity": False, "customBranding": False},
            **settings,
        },
        "metadata": {"totalProjects": 0, "totalMembers": 0, "storageUsed": 0, "lastActivity": moment},
        "createdAt": moment,
        "updatedAt": moment,
        "archived": False,
    }


def project(
    tenant_id: ObjectId, *, folder_path: str = "/", integration_ids: Iterable[ObjectId] = (), **fields: Any
) -> dict[str, Any]:
    """A seed-shaped project of ``tenant_id`` linked (enabled) to ``integration_ids``."""
    moment = fields.pop("moment", None) or now()
    return {
        "_id": ObjectId(),
        "name": f"Bench project {secrets.token_hex(4)}",
        "tenantId": tenant_id,
        "projectTypeId": ObjectId(),
        "config": {},
        "members": [{"userId": CREATED_BY, "role": "OWNER", "addedAt": moment, "addedBy": CREATED_BY}],
        "folderPath": folder_path,
        "integrations": [{"integrationId": i, "enabled": True} for i in integration_ids],
        "metadata": {"fileCount": 0, "totalSize": 0, "lastSync": moment},
        "createdAt": moment,
        "updatedAt": moment,
        "archived": False,
        **fields,
    }


def converge_provider(db: Database, ring: KeyRing, document: dict[str, Any]) -> dict[str, Any]:
    """Register (or re-point, keeping its ``_id``) the provider of ``document``'s slug, seed-shaped,
    its client secret (given in the clear) encrypted. ``document`` as the fake providers give it."""
    existing = db["cloudProviders"].find_one({"slug": document["slug"]}, {"_id": 1, "createdAt": 1})
    provider_id = existing["_id"] if existing else ObjectId()
    moment = now()
    doc = {
        "_id": provider_id,
        "name": document.get("name") or PROVIDER_NAMES.get(document["slug"], document["slug"]),
        "slug": document["slug"],
        "scopes": list(document.get("scopes") or []),
        "authUrl": document["authUrl"],
        "tokenUrl": document["tokenUrl"],
        "clientId": document["clientId"],
        "clientSecret": crypto.seal(
            ring, crypto.CLIENT_SECRET, document["clientSecret"], document_id=provider_id
        ),
        "grantType": "authorization_code",
        "tokenMethod": "POST",
        "metadata": dict(document.get("metadata") or {}),
        "createdAt": existing["createdAt"] if existing else moment,
        "updatedAt": moment,
        "createdBy": CREATED_BY,
    }
    db["cloudProviders"].replace_one({"_id": provider_id}, doc, upsert=True)
    return doc


def integration(
    ring: KeyRing,
    tenant_id: ObjectId,
    provider: dict[str, Any],
    *,
    access_token: str | None = None,
    refresh_token: str | None = None,
    expires_in: timedelta | None = timedelta(hours=1),
    moment: datetime | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A seed-shaped, active integration of ``tenant_id`` with ``provider``, its tokens encrypted
    (a tenant holds one integration per provider: the seed's unique index)."""
    moment = moment or now()
    integration_id = ObjectId()

    def seal(secret: crypto.Secret, value: str) -> str:
        return crypto.seal(ring, secret, value, document_id=integration_id, tenant_id=tenant_id)

    auth: dict[str, Any] = {
        "accessToken": seal(crypto.ACCESS_TOKEN, access_token or "at-" + secrets.token_hex(8)),
        "refreshToken": seal(crypto.REFRESH_TOKEN, refresh_token or "rt-" + secrets.token_hex(8)),
        "scope": list(provider.get("scopes") or []),
    }
    if expires_in is not None:
        auth["expiresAt"] = moment + expires_in
    return {
        "_id": integration_id,
        "tenantId": tenant_id,
        "providerId": provider["_id"],
        "status": "active",
        "authData": auth,
        "userInfo": {
            "email": f"bench-{secrets.token_hex(4)}@example.test",
            "name": "Bench User",
            "providerId": f"acct-{secrets.token_hex(4)}",
        },
        "health": {"lastCheck": moment, "status": "healthy", "errorCount": 0},
        "usage": {"totalRequests": 0, "lastRequest": moment},
        "createdAt": moment,
        "updatedAt": moment,
        "createdBy": CREATED_BY,
        **fields,
    }


def insert_batched(db: Database, collection: str, documents: Iterable[dict[str, Any]], batch: int) -> int:
    """``insert_many`` of ``documents`` in batches of ``batch``; the number inserted."""
    inserted = 0
    for chunk in batched(documents, batch, strict=False):
        db[collection].insert_many(list(chunk), ordered=False)
        inserted += len(chunk)
    return inserted
