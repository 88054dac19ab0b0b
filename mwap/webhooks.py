"""Webhooks: tenants' endpoints, the events the jobs emit through an outbox, and delivery records.

An event is written in the same MongoDB update as the state change that causes it: the job
``$push``es an entry (``outbox_push``) into ``mwapTasks.webhookOutbox`` of the document it updates.
``relay`` later moves each entry into ``webhookEvents`` (keyed by the event id, a duplicate insert
ignored), creates one ``webhookDeliveries`` document per matching enabled endpoint (its id derived
from event and endpoint, so a repeated relay creates nothing twice) and only then ``$pull``s the
entry. A crash anywhere repeats a step, never loses an event, and no event exists for a write that
did not happen. Signing follows the Standard Webhooks specification (``sign``).
"""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pydantic import BaseModel, ConfigDict, Field
from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from mwap import audit, redact
from mwap.crypto import WEBHOOK_ENDPOINTS, WEBHOOK_SECRET, KeyRing, Secret, seal, unseal
from mwap.ledger import now
from mwap.store import Document, Store

ENDPOINTS = WEBHOOK_ENDPOINTS
EVENTS = "webhookEvents"
DELIVERIES = "webhookDeliveries"
OUTBOX_FIELD = "mwapTasks.webhookOutbox"
# The collections whose documents carry an outbox (the writes that emit events).
OUTBOX_COLLECTIONS = ("cloudIntegrations", "jobs")
SIGNING_SECRET = WEBHOOK_SECRET
SECRET_PREFIX = "whsec_"  # noqa: S105 - the spec's prefix, not a secret
SECRET_BYTES = 24  # the spec asks for 24 to 64 bytes
MAX_URL_CHARS = 2048
MAX_ENDPOINTS_PER_TENANT = 20
RESPONSE_BODY_CAP = 1024  # bytes of a receiver's answer kept with the attempt


class EventType(StrEnum):
    INTEGRATION_AUTH_FAILED = "integration.auth_failed"
    INTEGRATION_RECOVERED = "integration.recovered"
    INTEGRATION_HEALTH_CHANGED = "integration.health_changed"
    SYNC_COMPLETED = "sync.completed"
    JOB_FAILED = "job.failed"
    RETENTION_APPLIED = "retention.applied"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (``nextAttemptAt``)
    DELIVERED = "delivered"
    FAILED = "failed"  # out of attempts, or its endpoint was disabled or removed


# --- payloads: the ``data`` of each event type (their JSON schemas go into the OpenAPI document) ---


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class IntegrationAuthFailed(Payload):
    """The integration lost its authorization (status ``error``): the user must reconnect it."""

    integration_id: str = Field(alias="integrationId")
    reason: str = Field(max_length=500)


class IntegrationRecovered(Payload):
    """The integration answers again after an error (status back to ``active``)."""

    integration_id: str = Field(alias="integrationId")


class IntegrationHealthChanged(Payload):
    """The integration's ``health.status`` moved (healthy, degraded, unhealthy)."""

    integration_id: str = Field(alias="integrationId")
    previous: str | None
    status: str
    error_count: int = Field(alias="errorCount")
    last_error: str | None = Field(default=None, alias="lastError", max_length=500)


class SyncCompleted(Payload):
    """A sync run of the integration (or one project) finished; counts of virtual files."""

    integration_id: str = Field(alias="integrationId")
    project_id: str | None = Field(default=None, alias="projectId")
    added: int
    changed: int
    deleted: int


class JobFailed(Payload):
    """A job ended ``failed`` (after its last retry)."""

    job_id: str = Field(alias="jobId")
    type: str
    subject: dict[str, str]
    error: dict[str, str]


class RetentionApplied(Payload):
    """The tenant's retention policy ran: documents deleted per collection."""

    deleted: dict[str, int]


PAYLOADS: dict[EventType, type[Payload]] = {
    EventType.INTEGRATION_AUTH_FAILED: IntegrationAuthFailed,
    EventType.INTEGRATION_RECOVERED: IntegrationRecovered,
    EventType.INTEGRATION_HEALTH_CHANGED: IntegrationHealthChanged,
    EventType.SYNC_COMPLETED: SyncCompleted,
    EventType.JOB_FAILED: JobFailed,
    EventType.RETENTION_APPLIED: RetentionApplied,
}


class _Pending:
    written = False  # this process wrote an outbox entry since the last ``take_pending``


def event(data: Payload) -> dict[str, Any]:
    """An outbox entry for ``data`` (its type from the payload's class), with a fresh stable id."""
    (kind,) = (k for k, model in PAYLOADS.items() if isinstance(data, model))
    _Pending.written = True
    return {
        "id": f"evt_{secrets.token_hex(12)}",
        "type": kind.value,
        "createdAt": now(),
        "data": data.model_dump(mode="json", by_alias=True),
    }


def job_failed(
    job_id: str, job_type: str, subject: Mapping[str, Any] | None, error: Mapping[str, str]
) -> dict[str, Any]:
    """The ``job.failed`` outbox entry of a job that ended failed (its ledger's final write carries
    it: the worker's last failure, the reconciler's ``JobLost``). The message as a tenant reads it."""
    return event(
        JobFailed(
            job_id=str(job_id),
            type=job_type,
            subject={k: str(v) for k, v in (subject or {}).items()},
            error={"type": error["type"], "message": redact.public_text(error["message"])[:500]},
        )
    )


def outbox_push(*entries: dict[str, Any]) -> dict[str, Any]:
    """The update fragment that appends ``entries`` to the document's outbox (merge it into the
    ``update_one`` of the state change)."""
    return {"$push": {OUTBOX_FIELD: {"$each": list(entries)}}}


def take_pending() -> bool:
    """Whether this process emitted an event since the last call (the task then kicks the relay)."""
    written, _Pending.written = _Pending.written, False
    return written


# --- signing (Standard Webhooks) ---------------------------------------------------------------


def new_secret() -> str:
    """A signing secret as the spec writes it: ``whsec_`` + base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed by the secret's bytes."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signatures(secrets_: Iterable[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: one signature per active secret, space-separated."""
    return " ".join(sign(s, message_id, timestamp, body) for s in secrets_)


# --- endpoints ----------------------------------------------------------------------------------


class EndpointLimitError(ValueError):
    """The tenant has as many endpoints as allowed."""


def create_endpoint(
    db: Database[Document],
    ring: KeyRing,
    tenant_id: ObjectId | str,
    *,
    url: str,
    events: list[str],
    description: str | None = None,
    actor: dict[str, str] | None = None,
) -> tuple[Document, str]:
    """Store a new endpoint; returns its document and the signing secret (shown this once)."""
    scope = Store(db).tenant(tenant_id)
    endpoints = scope[ENDPOINTS]
    if endpoints.count_documents({}) >= MAX_ENDPOINTS_PER_TENANT:
        raise EndpointLimitError(f"a tenant may have at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints")
    endpoint_id = ObjectId()
    secret = new_secret()
    doc = {
        "_id": endpoint_id,
        "url": url,
        "events": sorted(set(events)),
        "description": description,
        "enabled": True,
        "secret": seal(ring, SIGNING_SECRET, secret, document_id=endpoint_id, tenant_id=scope.tenant_id),
        "previousSecrets": [],
        "failingSince": None,
        "createdAt": now(),
        "disabledAt": None,
        "disabledReason": None,
    }
    endpoints.insert_one(doc)
    audit.record(
        db,
        tenant_id=scope.tenant_id,
        action="webhook.created",
        target_type="webhookEndpoint",
        target_id=endpoint_id,
        actor=actor,
        details={"url": url[:200], "events": doc["events"]},
    )
    return {**doc, "tenantId": scope.tenant_id}, secret


def delete_endpoint(
    db: Database[Document], tenant_id: ObjectId | str, endpoint_id: ObjectId, *, actor: dict[str, str] | None
) -> bool:
    """Remove an endpoint; its pending deliveries end ``failed``. False when there was none."""
    scope = Store(db).tenant(tenant_id)
    if not scope[ENDPOINTS].delete_one({"_id": endpoint_id}).deleted_count:
        return False
    scope[DELIVERIES].update_many(
        {"endpointId": endpoint_id, "status": DeliveryStatus.PENDING.value},
        {"$set": {"status": DeliveryStatus.FAILED.value, "nextAttemptAt": None}},
    )
    audit.record(
        db,
        tenant_id=scope.tenant_id,
        action="webhook.deleted",
        target_type="webhookEndpoint",
        target_id=endpoint_id,
        actor=actor,
    )
    return True


def rotate_secret(
    db: Database[Document],
    ring: KeyRing,
    tenant_id: ObjectId | str,
    endpoint_id: ObjectId,
    *,
    overlap: timedelta,
    actor: dict[str, str] | None = None,
) -> str | None:
    """A new signing secret for the endpoint (returned once); the current one keeps signing beside
    it for ``overlap``, so receivers can switch without dropping a request. None: no such endpoint."""
    scope = Store(db).tenant(tenant_id)
    endpoint = scope[ENDPOINTS].find_one({"_id": endpoint_id})
    if endpoint is None:
        return None
    moment = now()
    current = unseal(
        ring, SIGNING_SECRET, endpoint["secret"], document_id=endpoint_id, tenant_id=scope.tenant_id
    )
    kid = str(ObjectId())
    previous = {
        "kid": kid,
        "secret": seal(
            ring, _previous_secret(kid), current, document_id=endpoint_id, tenant_id=scope.tenant_id
        ),
        "until": moment + overlap,
    }
    kept = [p for p in endpoint.get("previousSecrets") or [] if _aware(p["until"], moment) > moment]
    fresh = new_secret()
    scope[ENDPOINTS].update_one(
        {"_id": endpoint_id, "secret": endpoint["secret"]},  # a concurrent rotation wins, this one fails
        {
            "$set": {
                "secret": seal(
                    ring, SIGNING_SECRET, fresh, document_id=endpoint_id, tenant_id=scope.tenant_id
                ),
                "previousSecrets": [*kept, previous][-3:],
            }
        },
    )
    audit.record(
        db,
        tenant_id=scope.tenant_id,
        action="webhook.secret_rotated",
        target_type="webhookEndpoint",
        target_id=endpoint_id,
        actor=actor,
        details={"overlapSeconds": int(overlap.total_seconds())},
    )
    return fresh


def _previous_secret(kid: str) -> Secret:
    return Secret(ENDPOINTS, f"previousSecrets.{kid}")


def _aware(moment: datetime, like: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=like.tzinfo)


def signing_secrets(ring: KeyRing, endpoint: Document, moment: datetime) -> list[str]:
    """The endpoint's current secret, then any previous one still inside its rotation overlap."""
    current = unseal(
        ring, SIGNING_SECRET, endpoint["secret"], document_id=endpoint["_id"], tenant_id=endpoint["tenantId"]
    )
    found = [current]
    for old in endpoint.get("previousSecrets") or []:
        if _aware(old["until"], moment) > moment:
            found.append(
                unseal(
                    ring,
                    _previous_secret(old["kid"]),
                    old["secret"],
                    document_id=endpoint["_id"],
                    tenant_id=endpoint["tenantId"],
                )
            )
    return found


def disable_endpoint(
    db: Database[Document], tenant_id: ObjectId, endpoint_id: ObjectId, *, reason: str
) -> bool:
    """Disable an endpoint (410 Gone, or failing too long) with an audit entry; True if it changed."""
    changed = (
        Store(db)
        .tenant(tenant_id)[ENDPOINTS]
        .update_one(
            {"_id": endpoint_id, "enabled": True},
            {"$set": {"enabled": False, "disabledAt": now(), "disabledReason": reason[:200]}},
        )
        .modified_count
    )
    if changed:
        audit.record(
            db,
            tenant_id=tenant_id,
            action="webhook.disabled",
            target_type="webhookEndpoint",
            target_id=endpoint_id,
            details={"reason": reason[:200]},
        )
    return bool(changed)


# --- relay: outbox -> webhookEvents + webhookDeliveries ------------------------------------------


def delivery_id(event_id: str, endpoint_id: object) -> str:
    """A delivery's id, derived from its event and endpoint: a repeated relay makes no second one."""
    # 24 hex digits, the shape of every id the API takes in a path.
    return hashlib.sha256(f"{event_id}|{endpoint_id}".encode()).hexdigest()[:24]


def _insert_ignoring_duplicates(db: Database[Document], name: str, documents: list[Document]) -> list[Any]:
    """Insert each document; returns the ids that were new (a duplicate id means already done)."""
    if not documents:
        return []
    try:
        db[name].insert_many(documents, ordered=False)
    except BulkWriteError as error:
        duplicates = {
            documents[e["index"]]["_id"]
            for e in error.details.get("writeErrors", [])
            if e.get("code") == 11000
        }
        if len(duplicates) != len(error.details.get("writeErrors", [])):
            raise
        return [d["_id"] for d in documents if d["_id"] not in duplicates]
    return [d["_id"] for d in documents]


def relay(db: Database[Document], *, limit: int = 200) -> list[str]:
    """Move outbox entries into events and deliveries; returns the new deliveries' ids to enqueue."""
    new_deliveries: list[str] = []
    store = Store(db)
    for collection in OUTBOX_COLLECTIONS:
        # Cross-tenant by design: the relay serves every tenant's outbox (each entry keeps its tenant).
        source = store.unscoped(collection)
        holders = source.find({f"{OUTBOX_FIELD}.0": {"$exists": True}}, {"tenantId": 1, OUTBOX_FIELD: 1})
        for holder in holders.limit(limit):
            entries = (holder.get("mwapTasks") or {}).get("webhookOutbox") or []
            tenant_id = holder.get("tenantId")
            if tenant_id is not None:
                new_deliveries += _relay_entries(db, tenant_id, entries)
            # Only the entries handled here: a newer one pushed meanwhile stays for the next pass.
            source.update_one(
                {"_id": holder["_id"]},
                {"$pull": {OUTBOX_FIELD: {"id": {"$in": [e["id"] for e in entries]}}}},
            )
    return new_deliveries


def _relay_entries(db: Database[Document], tenant_id: ObjectId, entries: list[Document]) -> list[str]:
    scope = Store(db).tenant(tenant_id)
    events = [
        {
            "_id": e["id"],
            "tenantId": tenant_id,
            "type": e["type"],
            "data": e["data"],
            "createdAt": e["createdAt"],
        }
        for e in entries
    ]
    _insert_ignoring_duplicates(db, EVENTS, events)
    endpoints = list(scope[ENDPOINTS].find({"enabled": True}, {"events": 1}))
    moment = now()
    deliveries = [
        {
            "_id": delivery_id(e["_id"], endpoint["_id"]),
            "tenantId": tenant_id,
            "eventId": e["_id"],
            "eventType": e["type"],
            "endpointId": endpoint["_id"],
            "status": DeliveryStatus.PENDING.value,
            "attemptCount": 0,
            "attempts": [],
            "nextAttemptAt": moment,
            "createdAt": moment,
            "deliveredAt": None,
        }
        for e in events
        for endpoint in endpoints
        if e["type"] in (endpoint.get("events") or [])
    ]
    return [str(i) for i in _insert_ignoring_duplicates(db, DELIVERIES, deliveries)]


def due_deliveries(db: Database[Document], moment: datetime, *, limit: int = 500) -> list[str]:
    """Pending deliveries whose next attempt is due (the sweep's backstop for lost messages and
    for retries too far ahead for a broker countdown)."""
    found = (
        Store(db)
        .unscoped(DELIVERIES)
        .find({"status": DeliveryStatus.PENDING.value, "nextAttemptAt": {"$lte": moment}}, {"_id": 1})
        .limit(limit)
    )
    return [str(d["_id"]) for d in found]


def backlog(db: Database[Document]) -> int:
    """Pending deliveries, every tenant."""
    return Store(db).unscoped(DELIVERIES).count_documents({"status": DeliveryStatus.PENDING.value})


def claim(db: Database[Document], delivery: str, *, hold_seconds: float) -> Document | None:
    """Take a due pending delivery for one attempt: its next attempt moves ``hold_seconds`` ahead,
    so a second message for it finds it not due. If this worker dies, the sweep finds it due again
    once the hold has passed. None when it is not due (delivered, failed, or held)."""
    moment = now()
    return (
        Store(db)
        .unscoped(DELIVERIES)
        .find_one_and_update(
            {"_id": delivery, "status": DeliveryStatus.PENDING.value, "nextAttemptAt": {"$lte": moment}},
            {
                "$set": {"nextAttemptAt": moment + timedelta(seconds=hold_seconds)},
                "$inc": {"attemptCount": 1},
            },
            return_document=ReturnDocument.AFTER,
        )
    )


def record_attempt(
    db: Database[Document],
    delivery: Document,
    attempt: dict[str, Any],
    *,
    status: DeliveryStatus,
    next_attempt_at: datetime | None,
) -> None:
    """Append one attempt to its delivery and set the outcome (or the next attempt's time)."""
    fields: dict[str, Any] = {"status": status.value, "nextAttemptAt": next_attempt_at}
    if status is DeliveryStatus.DELIVERED:
        fields["deliveredAt"] = attempt["at"]
    Store(db).tenant(delivery["tenantId"])[DELIVERIES].update_one(
        {"_id": delivery["_id"]},
        {"$set": fields, "$push": {"attempts": {"$each": [attempt], "$slice": -50}}},
    )


def redeliver(
    db: Database[Document], tenant_id: ObjectId | str, endpoint_id: ObjectId, delivery: str
) -> bool:
    """Make a delivery pending and due now (a fresh retry budget); False when there is none."""
    return bool(
        Store(db)
        .tenant(tenant_id)[DELIVERIES]
        .update_one(
            {"_id": delivery, "endpointId": endpoint_id},
            {"$set": {"status": DeliveryStatus.PENDING.value, "nextAttemptAt": now(), "attemptCount": 0}},
        )
        .matched_count
    )


def mark_failing(db: Database[Document], endpoint: Document, moment: datetime) -> datetime:
    """Note the endpoint failing since ``moment`` unless it already was; returns since when."""
    since = endpoint.get("failingSince")
    if isinstance(since, datetime):
        return since if since.tzinfo else since.replace(tzinfo=moment.tzinfo)
    Store(db).tenant(endpoint["tenantId"])[ENDPOINTS].update_one(
        {"_id": endpoint["_id"], "failingSince": None}, {"$set": {"failingSince": moment}}
    )
    return moment


def mark_healthy(db: Database[Document], endpoint: Document) -> None:
    if endpoint.get("failingSince") is not None:
        Store(db).tenant(endpoint["tenantId"])[ENDPOINTS].update_one(
            {"_id": endpoint["_id"]}, {"$set": {"failingSince": None}}
        )
