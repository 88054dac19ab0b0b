"""Tenant API keys: random, shown once, stored only as a SHA-256 hash, revocable."""

import hashlib
import secrets
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from mwap import audit
from mwap.ids import is_oid, oid
from mwap.ledger import now
from mwap.store import Document

KEY_PREFIX = "mwap_"


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a single fast hash is safe; no password stretching needed.
    return hashlib.sha256(key.encode()).hexdigest()


def create(
    db: Database[Document], tenant_id: ObjectId | str, *, name: str = "", actor: dict[str, str]
) -> tuple[dict[str, Any], str]:
    """A new key for ``tenant_id``: the stored document and the key itself (shown once)."""
    if not is_oid(tenant_id):
        raise LookupError(f"tenant {str(tenant_id)[:40]} not found")
    tenant_id = oid(tenant_id)
    tenant = db["tenants"].find_one({"_id": tenant_id}, {"archived": 1})
    if tenant is None:
        raise LookupError(f"tenant {tenant_id} not found")
    if tenant.get("archived") is True:
        raise LookupError(f"tenant {tenant_id} is archived")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    doc = {
        "_id": "key_" + secrets.token_hex(8),
        "tenantId": tenant_id,
        "keyHash": hash_key(key),
        "prefix": key[: len(KEY_PREFIX) + 6],
        "name": name,
        "createdAt": now(),
        "revokedAt": None,
    }
    db["apiKeys"].insert_one(doc)
    audit.record(
        db,
        tenant_id=tenant_id,
        action="apiKey.created",
        target_type="apiKey",
        target_id=doc["_id"],
        actor=actor,
    )
    return doc, key


def revoke(db: Database[Document], key_id: str, *, actor: dict[str, str]) -> dict[str, Any] | None:
    """Revoke a key by id; None when there is no such live key."""
    doc = db["apiKeys"].find_one_and_update(
        {"_id": key_id, "revokedAt": None}, {"$set": {"revokedAt": now()}}, projection={"keyHash": 0}
    )
    if doc is not None:
        audit.record(
            db,
            tenant_id=doc["tenantId"],
            action="apiKey.revoked",
            target_type="apiKey",
            target_id=key_id,
            actor=actor,
        )
    return doc


def find_live(db: Database[Document], key: str) -> dict[str, Any] | None:
    """The live key's document, or None: unknown, revoked, without a tenant, or its tenant is gone
    or archived.

    A key always belongs to one tenant: a document whose ``tenantId`` is null, missing or not an
    ObjectId authenticates nobody (it never stands for the admin, whose key lives in settings).
    """
    doc = db["apiKeys"].find_one({"keyHash": hash_key(key), "revokedAt": None}, {"tenantId": 1})
    if doc is None or not isinstance(doc.get("tenantId"), ObjectId):
        return None
    tenant = db["tenants"].find_one({"_id": doc["tenantId"]}, {"archived": 1})
    if tenant is None or tenant.get("archived") is True:
        return None
    return doc


def listing(db: Database[Document], tenant_id: ObjectId | str | None = None) -> list[dict[str, Any]]:
    query = {"tenantId": oid(tenant_id)} if tenant_id else {}
    return list(db["apiKeys"].find(query, {"keyHash": 0}).sort("createdAt", -1).limit(1000))
