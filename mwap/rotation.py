"""Re-encrypting every stored secret under the newest key of the ring (``mwap keys rotate``).

Resumable by construction: each document is rewritten with a conditional update that names its
old ciphertext, so a run that stops halfway leaves every secret readable under one key or the
other, and the next run simply skips what is already current. A concurrent token refresh wins
over rotation (the conditional update then matches nothing and the fresh token is left alone).

Values still in the MWAP backend's legacy ``iv:authTag:ciphertext`` format (``mwap.crypto``) are
rotated like any value not under the primary key: decrypted with ``MWAP_LEGACY_ENCRYPTION_KEY`` and
written as ``enc:v1`` under the primary key, bound to their document and field for the first time.
They are counted apart (``legacy_converted``); without the legacy key each is a failure of the
report, not a crash, and the next run with the key converts them.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pymongo import UpdateOne
from pymongo.database import Database

from mwap import audit
from mwap.crypto import SECRETS, CryptoError, KeyRing
from mwap.store import Document


@dataclass
class RotationReport:
    scanned: int = 0
    rotated_documents: int = 0
    rotated_secrets: int = 0
    # Of rotated_secrets, the legacy values converted to enc:v1. Like rotated_secrets it counts the
    # values written; one a concurrent refresh replaced first is counted but left as refreshed.
    legacy_converted: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)


def get_path(document: Document, path: str) -> object:
    """The value at a dotted ``path`` of ``document`` (None where it is absent)."""
    value: object = document
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def projection_of(collection: str) -> dict[str, int]:
    """What ``rotate_documents`` reads of a document of ``collection``."""
    return {"tenantId": 1, **{secret.path: 1 for secret in SECRETS[collection]}}


def rotate_documents(
    db: Database[Document],
    ring: KeyRing,
    collection: str,
    documents: list[Document],
    report: RotationReport,
    *,
    legacy_only: bool = False,
) -> None:
    """Re-encrypt the secrets of ``documents`` (read with ``projection_of``) that need it — with
    ``legacy_only``, only the MWAP backend's legacy values — in one conditional bulk write."""
    writes = []
    for document in documents:
        report.scanned += 1
        changes: dict[str, str] = {}
        legacy = 0
        for secret in SECRETS[collection]:
            path = secret.path
            current = get_path(document, path)
            if not isinstance(current, str):
                continue
            if not (ring.is_legacy(current) if legacy_only else ring.needs_rotation(current)):
                continue
            binding = secret.binding_of(document)
            try:
                changes[path] = ring.encrypt(ring.decrypt(current, binding), binding)
                if ring.is_legacy(current):
                    legacy += 1
            except CryptoError as error:
                report.failures.append(
                    {"collection": collection, "id": str(document["_id"]), "field": path, "error": str(error)}
                )
        if changes:
            # Only if every rotated secret is still the one we read.
            condition = {"_id": document["_id"], **{p: get_path(document, p) for p in changes}}
            writes.append(UpdateOne(condition, {"$set": changes}))
            report.rotated_secrets += len(changes)
            report.legacy_converted += legacy
    if writes:
        result = db[collection].bulk_write(writes, ordered=False)
        report.rotated_documents += result.modified_count


def rotate(
    db: Database[Document],
    ring: KeyRing,
    *,
    batch_size: int = 200,
    progress: Callable[[str, RotationReport], None] | None = None,
) -> RotationReport:
    """Re-encrypt every secret not under ``ring.primary``; one bulk write per batch."""
    report = RotationReport()
    for collection in SECRETS:
        projection = projection_of(collection)
        last_id: Any = None
        while True:
            query: dict[str, Any] = {} if last_id is None else {"_id": {"$gt": last_id}}
            batch = list(db[collection].find(query, projection).sort("_id", 1).limit(batch_size))
            if not batch:
                break
            last_id = batch[-1]["_id"]
            rotate_documents(db, ring, collection, batch, report)
            if progress:
                progress(collection, report)
    audit.record(
        db,
        tenant_id=None,
        action="keys.rotated",
        target_type="keyRing",
        target_id=ring.primary,
        actor={"type": "operator", "id": "mwap keys rotate"},
        details={
            "scanned": report.scanned,
            "rotatedDocuments": report.rotated_documents,
            "rotatedSecrets": report.rotated_secrets,
            "legacyConverted": report.legacy_converted,
            "failures": len(report.failures),
        },
    )
    return report
