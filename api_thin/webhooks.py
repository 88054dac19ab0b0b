"""Webhook endpoints of a tenant: register (the signing secret shown once), list, remove; their
deliveries with every attempt, and a manual redelivery. A tenant key sees only its own tenant's."""

from datetime import timedelta
from typing import Any

from flask import url_for

from api_thin import context
from api_thin.auth import Principal
from api_thin.jobs import tenant_filter
from api_thin.problems import Problem
from api_thin.routing import Call, Reply
from api_thin.schemas import (
    DeliveryListQuery,
    DeliveryOut,
    DeliveryPage,
    WebhookCreate,
    WebhookCreatedOut,
    WebhookListQuery,
    WebhookOut,
    WebhookPage,
)
from mwap import webhooks
from mwap.ids import oid
from mwap.store import Store, valid_documents
from tasks.providers.outbound import OutboundPolicy, OutboundRefused

_NOT_FOUND = "No such webhook endpoint"


def find_endpoint(principal: Principal, webhook_id: str) -> dict[str, Any]:
    """The endpoint if the caller may see it, else a 404 (the same answer as for a missing id)."""
    store = Store(context.db())
    if principal.is_admin:
        doc = store.unscoped(webhooks.ENDPOINTS).find_one({"_id": oid(webhook_id)})
    else:
        doc = store.tenant(principal.tenant)[webhooks.ENDPOINTS].find_one({"_id": oid(webhook_id)})
    if doc is None:
        raise Problem(404, _NOT_FOUND)
    return doc


def _tenant_for_create(principal: Principal, requested: str | None) -> str:
    if principal.is_admin:
        if requested is None:
            raise Problem(
                422,
                "A webhook endpoint needs a tenant",
                errors=[{"pointer": "/tenantId", "detail": "required with the admin key"}],
            )
        tenant = (
            Store(context.db()).global_collection("tenants").find_one({"_id": oid(requested)}, {"_id": 1})
        )
        if tenant is None:
            raise Problem(
                404, "No such tenant", errors=[{"pointer": "/tenantId", "detail": "no such tenant"}]
            )
        return requested
    if requested is not None and requested != principal.tenant_id:
        raise Problem(404, "No such tenant", errors=[{"pointer": "/tenantId", "detail": "no such tenant"}])
    return principal.tenant


def create_webhook(call: Call) -> Reply:
    body: WebhookCreate = call.body
    principal: Principal = call.caller
    tenant_id = _tenant_for_create(principal, body.tenant_id)
    try:
        OutboundPolicy.from_settings(context.settings()).check_webhook_url(body.url)
    except OutboundRefused as refused:
        raise Problem(
            422,
            "Webhook URL refused",
            slug="webhook-url",
            errors=[{"pointer": "/url", "detail": refused.reason}],
        ) from None
    try:
        doc, secret = webhooks.create_endpoint(
            context.db(),
            context.key_ring(),
            tenant_id,
            url=body.url,
            events=[kind.value for kind in body.events],
            description=body.description,
            actor=principal.actor,
        )
    except webhooks.EndpointLimitError as error:
        raise Problem(409, "Too many webhook endpoints", slug="conflict", detail=str(error)) from None
    location = url_for("get_webhook", webhookId=str(doc["_id"]))
    return Reply(
        201,
        WebhookCreatedOut.model_validate({**doc, "id": doc["_id"], "secret": secret}),
        {"Location": location},
    )


def list_webhooks(call: Call) -> Reply:
    query: WebhookListQuery = call.query
    tenant_id = tenant_filter(call.caller, query.tenant_id)
    store = context.list_store()
    collection = (
        store.tenant(tenant_id)[webhooks.ENDPOINTS] if tenant_id else store.unscoped(webhooks.ENDPOINTS)
    )
    docs = collection.find({}, {"secret": 0, "previousSecrets": 0}).sort("_id", 1).limit(500)
    items = list(
        valid_documents(WebhookOut, ({**d, "id": d["_id"]} for d in docs), collection=webhooks.ENDPOINTS)
    )
    return Reply(200, WebhookPage(items=items))


def get_webhook(call: Call) -> Reply:
    return Reply(200, WebhookOut.from_document(find_endpoint(call.caller, call.path["webhookId"])))


def delete_webhook(call: Call) -> Reply:
    principal: Principal = call.caller
    doc = find_endpoint(principal, call.path["webhookId"])
    if not webhooks.delete_endpoint(context.db(), doc["tenantId"], doc["_id"], actor=principal.actor):
        raise Problem(404, _NOT_FOUND)
    return Reply(204)


def _envelope(event: dict[str, Any] | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {
        "id": event["_id"],
        "type": event["type"],
        "timestamp": event["createdAt"],
        "tenantId": event["tenantId"],
        "data": event["data"],
    }


def list_deliveries(call: Call) -> Reply:
    query: DeliveryListQuery = call.query
    endpoint = find_endpoint(call.caller, call.path["webhookId"])
    scope = context.list_store().tenant(endpoint["tenantId"])
    find: dict[str, Any] = {"endpointId": endpoint["_id"]}
    if query.status:
        find["status"] = query.status.value
    docs = list(scope[webhooks.DELIVERIES].find(find).sort("createdAt", -1).limit(query.limit))
    events = {
        e["_id"]: e for e in scope[webhooks.EVENTS].find({"_id": {"$in": list({d["eventId"] for d in docs})}})
    }
    shaped = ({**d, "id": d["_id"], "event": _envelope(events.get(d["eventId"]))} for d in docs)
    return Reply(
        200, DeliveryPage(items=list(valid_documents(DeliveryOut, shaped, collection=webhooks.DELIVERIES)))
    )


def redeliver(call: Call) -> Reply:
    endpoint = find_endpoint(call.caller, call.path["webhookId"])
    delivery = call.path["deliveryId"]
    if not endpoint.get("enabled"):
        raise Problem(409, "The webhook endpoint is disabled", slug="conflict")
    if not webhooks.redeliver(context.db(), endpoint["tenantId"], endpoint["_id"], delivery):
        raise Problem(404, "No such delivery")
    context.producer().send_task("webhooks.deliver", args=[delivery], queue="webhooks")
    doc = Store(context.db()).tenant(endpoint["tenantId"])[webhooks.DELIVERIES].find_one({"_id": delivery})
    if doc is None:  # expired between the two reads
        raise Problem(404, "No such delivery")
    event = (
        Store(context.db()).tenant(endpoint["tenantId"])[webhooks.EVENTS].find_one({"_id": doc["eventId"]})
    )
    return Reply(202, DeliveryOut.model_validate({**doc, "id": doc["_id"], "event": _envelope(event)}))


def rotate_secret(call: Call) -> Reply:
    principal: Principal = call.caller
    endpoint = find_endpoint(principal, call.path["webhookId"])
    overlap = timedelta(hours=context.option("webhook_secret_overlap_hours"))
    secret = webhooks.rotate_secret(
        context.db(),
        context.key_ring(),
        endpoint["tenantId"],
        endpoint["_id"],
        overlap=overlap,
        actor=principal.actor,
    )
    if secret is None:
        raise Problem(404, _NOT_FOUND)
    return Reply(200, WebhookCreatedOut.model_validate({**endpoint, "id": endpoint["_id"], "secret": secret}))
