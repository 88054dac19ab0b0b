"""Integrations: register, list, show, delete, and list their synced files. Never a token."""

from typing import Any

from flask import url_for

from api_thin import context, pagination
from api_thin.auth import Principal
from api_thin.jobs import tenant_filter
from api_thin.problems import Problem
from api_thin.routing import Call, Reply
from api_thin.schemas import (
    FileListQuery,
    FileOut,
    FilePage,
    IntegrationListQuery,
    IntegrationOut,
    IntegrationPage,
)
from mwap import registry
from mwap.enqueue import cancel_integration_jobs
from mwap.ids import is_oid, oid
from mwap.store import Store, valid_documents


def find_integration(
    principal: Principal, integration_id: str, projection: dict[str, int] | None = None
) -> dict[str, Any]:
    """The integration if the caller may see it, else a 404 (the same answer as for a missing id)."""
    store = Store(context.db())
    if not is_oid(integration_id):
        raise Problem(404, "No such integration")
    if principal.is_admin:
        doc = store.unscoped("cloudIntegrations").find_one({"_id": oid(integration_id)}, projection)
    else:
        doc = store.tenant(principal.tenant)["cloudIntegrations"].find_one(
            {"_id": oid(integration_id)}, projection
        )
    if doc is None:
        raise Problem(404, "No such integration")
    return doc


def _file(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "id": doc["_id"]}


def _slugs(docs: list[dict[str, Any]], store: Store | None = None) -> dict[Any, str | None]:
    """Provider slugs by provider id, for the integrations shown (one query, through ``store``)."""
    ids = list({doc.get("providerId") for doc in docs})
    providers = (
        (store or Store(context.db()))
        .global_collection("cloudProviders")
        .find({"_id": {"$in": ids}}, {"slug": 1})
    )
    return {provider["_id"]: provider.get("slug") for provider in providers}


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return registry.public_integration(doc, _slugs([doc]).get(doc.get("providerId")))


def list_integrations(call: Call) -> Reply:
    query: IntegrationListQuery = call.query
    tenant_id = tenant_filter(call.caller, query.tenant_id)
    find: dict[str, Any] = {}
    if query.status:
        find["status"] = query.status.value
    if query.health:
        find["health.status"] = query.health.value
    if query.provider_id:
        find["providerId"] = oid(query.provider_id)
    if query.cursor:
        after = pagination.decode(query.cursor, "integrations", {"id": str})["id"]
        if not is_oid(after):
            raise Problem(400, "Invalid cursor", slug="invalid-cursor")
        find["_id"] = {"$gt": oid(after)}
    store = context.list_store()
    collection = (
        store.tenant(tenant_id)["cloudIntegrations"] if tenant_id else store.unscoped("cloudIntegrations")
    )
    docs = list(collection.find(find).sort("_id", 1).limit(query.limit + 1))
    more = len(docs) > query.limit
    docs = docs[: query.limit]
    next_cursor = pagination.encode("integrations", id=str(docs[-1]["_id"])) if more else None
    slugs = _slugs(docs, store)
    items = list(
        valid_documents(
            IntegrationOut,
            (registry.public_integration(doc, slugs.get(doc.get("providerId"))) for doc in docs),
            collection="cloudIntegrations",
        )
    )
    return Reply(200, IntegrationPage(items=items, next_cursor=next_cursor))


def get_integration(call: Call) -> Reply:
    doc = find_integration(call.caller, call.path["integrationId"])
    return Reply(200, IntegrationOut.model_validate(_public(doc)))


def create_integration(call: Call) -> Reply:
    body = call.body
    principal: Principal = call.caller
    if not principal.can_see(body.tenant_id):
        raise Problem(404, "No such tenant", errors=[{"pointer": "/tenantId", "detail": "no such tenant"}])
    try:
        doc = registry.create_integration(
            context.db(),
            context.key_ring(),
            body,
            actor=principal.actor,
            max_integrations=context.option("max_integrations_per_tenant"),
        )
    except registry.NotFoundError as error:
        raise Problem(404, "Not found", detail=str(error)) from None
    except registry.PolicyError as error:
        raise Problem(403, "Refused by tenant policy", slug="tenant-policy", detail=str(error)) from None
    except registry.ConflictError as error:
        raise Problem(409, "Integration exists", slug="conflict", detail=str(error)) from None
    location = url_for("get_integration", integrationId=str(doc["_id"]))
    return Reply(201, IntegrationOut.model_validate(_public(doc)), {"Location": location})


def delete_integration(call: Call) -> Reply:
    principal: Principal = call.caller
    integration_id = call.path["integrationId"]
    tenant_id = find_integration(principal, integration_id, {"tenantId": 1})["tenantId"]
    if not registry.delete_integration(context.db(), tenant_id, integration_id, actor=principal.actor):
        raise Problem(404, "No such integration")
    # Seed cancelJobsForIntegration: nothing queued or running about it goes on.
    cancel_integration_jobs(context.db(), context.redis(), integration_id, reason="integration deleted")
    return Reply(204)


def _cursor_id(value: str) -> Any:
    if not is_oid(value):
        raise Problem(400, "Invalid cursor", slug="invalid-cursor")
    return oid(value)


def list_files(call: Call) -> Reply:
    query: FileListQuery = call.query
    integration = find_integration(call.caller, call.path["integrationId"], {"tenantId": 1})
    find: dict[str, Any] = {"integrationId": integration["_id"]}
    conditions: list[dict[str, Any]] = []
    folder = (query.path or "").rstrip("/")
    if query.path is not None and (folder or query.path.startswith("/")):
        # "Starts with folder + '/'" as a range on the indexed path: '0' sorts right after '/'.
        conditions.append({"path": {"$gte": folder + "/", "$lt": folder + "0"}})
    if query.cursor:
        position = pagination.decode(query.cursor, "files", {"p": str, "id": str})
        conditions.append(
            {
                "$or": [
                    {"path": {"$gt": position["p"]}},
                    {"path": position["p"], "_id": {"$gt": _cursor_id(position["id"])}},
                ]
            }
        )
    if conditions:
        find["$and"] = conditions
    files = context.list_store().tenant(integration["tenantId"])["virtualFiles"]
    docs = list(files.find(find).sort([("path", 1), ("_id", 1)]).limit(query.limit + 1))
    more = len(docs) > query.limit
    docs = docs[: query.limit]
    next_cursor = None
    if more:
        last = docs[-1]
        next_cursor = pagination.encode("files", p=str(last.get("path", "")), id=str(last["_id"]))
    return Reply(
        200,
        FilePage(
            items=list(valid_documents(FileOut, map(_file, docs), collection="virtualFiles")),
            next_cursor=next_cursor,
        ),
    )
