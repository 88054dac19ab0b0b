"""Tenants and providers: registration (admin key), a tenant's own record and its usage."""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import url_for

from api_thin import context
from api_thin.auth import Principal
from api_thin.problems import Problem
from api_thin.routing import Call, Reply
from api_thin.schemas import ProviderOut, TenantOut, UsageDayOut, UsageOut, UsageQuery, UsageTotalsOut
from mwap import registry
from mwap.ids import is_oid, oid
from mwap.models import UsageDaily
from mwap.store import valid_documents

MAX_USAGE_DAYS = 366
DEFAULT_USAGE_DAYS = 30


def find_tenant(principal: Principal, tenant_id: str) -> dict[str, Any]:
    """The tenant if the caller may see it, else a 404 (another tenant's id answers as a missing one)."""
    visible = is_oid(tenant_id) and principal.can_see(tenant_id)
    tenants = context.store().global_collection("tenants")
    doc = tenants.find_one({"_id": oid(tenant_id)}) if visible else None
    if doc is None:
        raise Problem(404, "No such tenant")
    return doc


def create_tenant(call: Call) -> Reply:
    try:
        doc = registry.create_tenant(context.db(), call.body, actor=call.caller.actor)
    except registry.ConflictError as error:
        raise Problem(409, "Tenant exists", detail=str(error)) from None
    location = url_for("get_tenant", tenantId=str(doc["_id"]))
    return Reply(201, TenantOut.from_document(doc), {"Location": location})


def get_tenant(call: Call) -> Reply:
    return Reply(200, TenantOut.from_document(find_tenant(call.caller, call.path["tenantId"])))


def create_provider(call: Call) -> Reply:
    try:
        doc = registry.create_provider(context.db(), context.key_ring(), call.body, actor=call.caller.actor)
    except registry.ConflictError as error:
        raise Problem(409, "Provider exists", detail=str(error)) from None
    return Reply(201, ProviderOut.model_validate(registry.public_provider(doc)))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def get_usage(call: Call) -> Reply:
    query: UsageQuery = call.query
    principal: Principal = call.caller
    tenant_id = call.path["tenantId"]
    end = query.end or datetime.now(UTC).date()
    start = query.start or end - timedelta(days=DEFAULT_USAGE_DAYS - 1)
    if start > end:
        raise Problem(
            422, "Invalid query parameters", errors=[{"parameter": "from", "detail": "must not be after to"}]
        )
    if (end - start).days + 1 > MAX_USAGE_DAYS:
        raise Problem(
            422,
            "Invalid query parameters",
            errors=[{"parameter": "from", "detail": f"at most {MAX_USAGE_DAYS} days per request"}],
        )
    if principal.is_admin:
        find_tenant(principal, tenant_id)  # a tenant key's own tenant exists; another's is a 404 below
    elif not is_oid(tenant_id) or not principal.can_see(tenant_id):
        raise Problem(404, "No such tenant")
    docs = list(
        context.list_store()
        .tenant(tenant_id)["usageDaily"]
        .find({"day": {"$gte": _midnight(start), "$lte": _midnight(end)}})
        .sort("day", 1)
        .limit(MAX_USAGE_DAYS)
    )
    rows = valid_documents(UsageDaily, docs, collection="usageDaily")
    days = [
        UsageDayOut(
            day=row.day.date(),
            jobs=row.jobs,
            api_requests=row.api_requests,
            provider_requests=row.provider_requests,
            files_synced=row.files_synced,
            storage_bytes=row.storage_bytes,
            integrations_by_health=row.integrations_by_health,
        )
        for row in rows
    ]
    jobs: dict[str, dict[str, int]] = {}
    for day in days:
        for job_type, counts in day.jobs.items():
            for status, count in counts.items():
                jobs.setdefault(job_type, {})[status] = jobs.get(job_type, {}).get(status, 0) + count
    totals = UsageTotalsOut(
        jobs=jobs,
        api_requests=sum(d.api_requests for d in days),
        provider_requests=sum(d.provider_requests for d in days),
        files_synced=sum(d.files_synced for d in days),
    )
    return Reply(200, UsageOut(tenant_id=tenant_id, start=start, end=end, days=days, totals=totals))
