"""The audit trail: writes that matter append one ``auditLogs`` document."""

from typing import Any

from bson import ObjectId
from pymongo.database import Database

from mwap.ids import oid
from mwap.ledger import now
from mwap.store import Document

SYSTEM = {"type": "system", "id": "mwap"}


def entry(
    *,
    tenant_id: ObjectId | str | None,
    action: str,
    target_type: str,
    target_id: object,
    actor: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An audit document, for callers that batch it with other writes."""
    return {
        "_id": ObjectId(),
        "tenantId": None if tenant_id is None else oid(tenant_id),
        "actor": actor or SYSTEM,
        "action": action,
        "target": {"type": target_type, "id": str(target_id)},
        "details": details or {},
        "createdAt": now(),
    }


def record(db: Database[Document], **fields: Any) -> dict[str, Any]:
    """Append one audit document (see ``entry`` for the fields) and return it."""
    document = entry(**fields)
    db["auditLogs"].insert_one(document)
    return document
