"""Enqueue jobs (one, a batch, or through the trigger endpoints), read them from the ledger, and
cancel or re-run one (``mwap.job_actions``, the path the operator console takes too).

The enqueue path does the least that keeps the promise: validate, authorize (at most one MongoDB
query per batch for the integrations it names and one for the tenants the admin names; none for
a tenant key's own tenant), write the ledger documents in one ``insert_many``, publish one message
per job (``mwap.enqueue``).
"""

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import request, url_for
from pydantic import ValidationError

from api_thin import context, idempotency, pagination
from api_thin.auth import Principal
from api_thin.problems import Problem
from api_thin.routing import Call, Reply
from api_thin.schemas import BatchItemOut, BatchOut, JobGetQuery, JobListQuery, JobOut, JobPage
from mwap import job_actions, jobtypes, leases, ledger, notify, redact
from mwap.enqueue import Enqueued, JobRequest, enqueue
from mwap.ids import oid
from mwap.jobtypes import Scope
from mwap.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """One requested job before its tenant or integration has been looked up."""

    type: str
    params: dict[str, Any]
    tenant_id: str | None = None
    integration_id: str | None = None
    project_id: str | None = None
    pointer: str | None = None  # where the item sits in the body ("", "/jobs/3"); None: ids came in the path


def _error(target: Target, field: str, detail: str) -> dict[str, str] | None:
    if target.pointer is None:
        return None
    return {"pointer": f"{target.pointer}/{field}", "detail": detail}


def _raise(status: int, title: str, errors: list[dict[str, str] | None]) -> None:
    listed = [e for e in errors if e is not None]
    raise Problem(status, title, errors=listed or None)


def _visible_integrations(principal: Principal, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The named integrations the caller may see, in one query."""
    if not ids:
        return {}
    store = Store(context.db())
    query = {"_id": {"$in": sorted(oid(i) for i in ids)}}
    if principal.is_admin:
        found = store.unscoped("cloudIntegrations").find(query, {"tenantId": 1})
    else:
        found = store.tenant(principal.tenant)["cloudIntegrations"].find(query, {"tenantId": 1})
    docs = {str(doc["_id"]): doc for doc in found}
    live = _live_tenants({str(doc["tenantId"]) for doc in docs.values()})
    return {key: doc for key, doc in docs.items() if str(doc["tenantId"]) in live}


def _live_tenants(ids: set[str]) -> set[str]:
    """Those of ``ids`` naming a tenant that exists and is not archived (it gets no jobs)."""
    if not ids:
        return set()
    found = (
        context.store()
        .global_collection("tenants")
        .find({"_id": {"$in": sorted(oid(i) for i in ids)}, "archived": {"$ne": True}}, {"_id": 1})
    )
    return {str(doc["_id"]) for doc in found}


def _projects_found(targets: list[Target], integrations: dict[str, dict[str, Any]]) -> set[tuple[str, str]]:
    """(tenant, project) pairs among the named projects that exist in the integration's tenant."""
    wanted: dict[str, list[Any]] = {}
    for target in targets:
        doc = integrations.get(target.integration_id or "")
        if target.project_id is not None and doc is not None:
            wanted.setdefault(str(doc["tenantId"]), []).append(oid(target.project_id))
    found = set()
    for tenant_id, project_ids in wanted.items():
        projects = Store(context.db()).tenant(tenant_id)["projects"]
        found |= {
            (tenant_id, str(p["_id"])) for p in projects.find({"_id": {"$in": project_ids}}, {"_id": 1})
        }
    return found


def _tenants_named(principal: Principal, targets: list[Target]) -> dict[int, str]:
    """Each tenant job's tenant, by target index; 422 where none is named, 403 for system jobs
    asked for with a tenant key."""
    invalid, forbidden = [], []
    tenant_ids: dict[int, str] = {}
    for n, target in enumerate(targets):
        scope = jobtypes.job_types()[target.type].scope
        if scope is Scope.SYSTEM and not principal.is_admin:
            forbidden.append(_error(target, "type", f"{target.type} needs the admin key"))
        elif scope is Scope.TENANT:
            tenant_id = target.tenant_id or principal.tenant_id
            if tenant_id is None:
                invalid.append(_error(target, "tenantId", "required with the admin key"))
            else:
                tenant_ids[n] = tenant_id
    if invalid:
        _raise(422, "A tenant job needs a tenant", invalid)
    if forbidden:
        _raise(403, "System jobs need the admin key", forbidden)
    return tenant_ids


def resolve(principal: Principal, targets: list[Target]) -> list[JobRequest]:
    """Check every target against what the caller may touch; all or nothing.

    422 for a missing tenant field, 403 for a system job with a tenant key, 404 for a tenant or
    integration that does not exist or belongs to another tenant (the same answer for both).
    """
    tenant_ids = _tenants_named(principal, targets)
    integrations = _visible_integrations(
        principal, {t.integration_id for t in targets if t.integration_id is not None}
    )
    # A tenant key's own tenant exists (its key does); only tenants the admin names are looked up.
    tenants = _live_tenants(set(tenant_ids.values()) if principal.is_admin else set())
    if principal.tenant_id is not None:
        tenants.add(principal.tenant_id)
    projects = _projects_found(targets, integrations)

    missing_tenants, missing_integrations, requests = [], [], []
    common = {
        "request_id": request.headers.get("X-Request-ID"),
        "idempotency_key": request.headers.get(idempotency.HEADER),
    }
    for n, target in enumerate(targets):
        if n in tenant_ids:
            tenant_id = tenant_ids[n]
            if not principal.can_see(tenant_id) or tenant_id not in tenants:
                missing_tenants.append(_error(target, "tenantId", "no such tenant"))
                continue
            requests.append(
                JobRequest(target.type, tenant_id, {"tenantId": tenant_id}, target.params, **common)
            )
        elif target.integration_id is not None:
            doc = integrations.get(target.integration_id)
            if doc is None or (target.tenant_id is not None and target.tenant_id != str(doc["tenantId"])):
                missing_integrations.append(_error(target, "integrationId", "no such integration"))
                continue
            subject = {"integrationId": str(doc["_id"])}
            if target.project_id is not None:
                if (str(doc["tenantId"]), target.project_id) not in projects:
                    missing_integrations.append(_error(target, "projectId", "no such project"))
                    continue
                subject = {"projectId": target.project_id, **subject}
            requests.append(JobRequest(target.type, doc["tenantId"], subject, target.params, **common))
        else:
            requests.append(JobRequest(target.type, None, {}, target.params, **common))
    if missing_integrations:
        _raise(404, "No such integration", missing_integrations + missing_tenants)
    if missing_tenants:
        _raise(404, "No such tenant", missing_tenants)
    return requests


def submit(requests: list[JobRequest]) -> list[Enqueued]:
    settings = context.settings()
    return enqueue(
        context.db(), context.redis(), context.publish(), requests, lease_ttl=leases.job_lease_ttl(settings)
    )


def _location(job_id: str) -> str:
    return url_for("get_job", jobId=job_id)


def job_out(doc: dict[str, Any], principal: Principal) -> JobOut:
    """A ledger job as ``principal`` may read it.

    The admin reads error texts as the ledger keeps them (scrubbed of secrets at write). A tenant
    key reads them without URLs, host names, addresses or key ids (``redact.public_text``): they
    describe the platform's insides, not the tenant's job.
    """
    if principal.is_admin:
        return JobOut.from_document(doc)
    return JobOut.from_document(tenant_view(doc))


def tenant_view(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with its error and its retries' errors shaped by ``redact.public_text``."""
    settings = context.settings()
    hosts, key_ids = redact.settings_hosts(settings), redact.settings_key_ids(settings)

    def shaped(error: Any) -> Any:
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            return error
        return {**error, "message": redact.public_text(error["message"], hosts=hosts, key_ids=key_ids)}

    view = {**doc, "error": shaped(doc.get("error"))}
    if isinstance(doc.get("retries"), list):
        view["retries"] = [
            {**retry, "error": shaped(retry.get("error"))} if isinstance(retry, dict) else retry
            for retry in doc["retries"]
        ]
    return view


def job_reply(outcome: Enqueued, principal: Principal) -> Reply:
    """202 for a new job; 200 with the open job when one of the same type and subject exists."""
    doc = outcome.job
    status = 202 if outcome.created else 200
    return Reply(status, job_out(doc, principal), {"Location": _location(doc["_id"])})


def _target(item: Any, pointer: str) -> Target:
    return Target(
        type=item.type,
        params=item.params.model_dump(mode="json", by_alias=True),
        tenant_id=getattr(item, "tenant_id", None),
        integration_id=getattr(item, "integration_id", None),
        project_id=getattr(item, "project_id", None),
        pointer=pointer,
    )


def create_job(call: Call) -> Reply:
    [outcome] = submit(resolve(call.caller, [_target(call.body.root, "")]))
    return job_reply(outcome, call.caller)


def create_job_batch(call: Call) -> Reply:
    targets = [_target(item, f"/jobs/{n}") for n, item in enumerate(call.body.jobs)]
    outcomes = submit(resolve(call.caller, targets))
    items = [
        BatchItemOut(
            status=202 if outcome.created else 200,
            created=outcome.created,
            location=_location(outcome.job["_id"]),
            job=job_out(outcome.job, call.caller),
        )
        for outcome in outcomes
    ]
    return Reply(202, BatchOut(items=items))


def trigger(job_type: str, name: str) -> Callable[[Call], Reply]:
    """A view enqueueing ``job_type`` for the tenant or integration in the path; the body (optional)
    holds the job's params."""
    scope = jobtypes.job_types()[job_type].scope

    def view(call: Call) -> Reply:
        params = call.body.model_dump(mode="json", by_alias=True)
        if scope is Scope.INTEGRATION:
            target = Target(job_type, params, integration_id=call.path["integrationId"])
        elif scope is Scope.PROJECT:
            target = Target(
                job_type,
                params,
                integration_id=call.path["integrationId"],
                project_id=call.path["projectId"],
            )
        else:
            target = Target(job_type, params, tenant_id=call.path["tenantId"])
        [outcome] = submit(resolve(call.caller, [target]))
        return job_reply(outcome, call.caller)

    view.__name__ = view.__qualname__ = name
    return view


def get_job(call: Call) -> Reply:
    query: JobGetQuery = call.query
    job_id, tenant_id = call.path["jobId"], call.caller.tenant_id

    def read() -> dict[str, Any] | None:
        return ledger.get(context.db(), job_id, tenant_id=tenant_id)

    wait = min(query.wait, context.settings().job_wait_max)
    with context.job_waiters().slot() if wait > 0 else contextlib.nullcontext(False) as waiting:
        if waiting:
            doc = notify.wait_until_final(
                context.redis(),
                job_id,
                read,
                lambda d: d is None or ledger.is_final(d),
                timeout=wait,
                codec_options=context.db().codec_options,
            )
        else:
            doc = read()
    if doc is None:
        raise Problem(404, "No such job")
    return Reply(200, job_out(doc, call.caller))


_REFUSALS: dict[type[job_actions.Refused], str] = {
    job_actions.JobOpen: "The job has not ended",
    job_actions.UnknownJobType: "The job's type no longer exists",
    job_actions.JobTypeChanged: "The job no longer fits its type",
    job_actions.SubjectGone: "The job's subject no longer exists",
    job_actions.RerunInProgress: "A rerun of this job is being enqueued",
}


def _refused(refused: job_actions.Refused) -> Problem:
    """404 for a job the caller cannot see; 409, naming why, for one whose state refuses the action."""
    if isinstance(refused, job_actions.NoSuchJob):
        return Problem(404, "No such job")
    headers = {"Retry-After": "1"} if isinstance(refused, job_actions.RerunInProgress) else None
    return Problem(
        409,
        _REFUSALS.get(type(refused), "Conflict"),
        slug=refused.code,
        detail=str(refused),
        headers=headers,
    )


def cancel_job(call: Call) -> Reply:
    """Cancel an open job: 200 with it, 404, or 409 when it has already ended (nothing changes)."""
    principal = call.caller
    try:
        outcome = job_actions.cancel_job(
            context.db(),
            context.redis(),
            call.path["jobId"],
            tenant_id=principal.tenant_id,
            actor=principal.actor,
        )
    except job_actions.Refused as refused:
        raise _refused(refused) from None
    if not outcome.changed:
        raise Problem(
            409,
            "The job has already ended",
            slug="job-final",
            detail=f"the job is {outcome.job['status']}: nothing was cancelled",
        )
    return Reply(200, job_out(outcome.job, principal), {"Location": _location(outcome.job["_id"])})


def rerun_job(call: Call) -> Reply:
    """Enqueue an ended job again as a new one: 202, or 200 with the open job of that type and
    subject; 404, or 409 while it is open or when its type, params or subject no longer hold."""
    principal = call.caller
    try:
        outcome = job_actions.rerun_job(
            context.db(),
            context.redis(),
            context.publish(),
            call.path["jobId"],
            tenant_id=principal.tenant_id,
            actor=principal.actor,
            lease_ttl=leases.job_lease_ttl(context.settings()),
            request_id=request.headers.get("X-Request-ID"),
        )
    except job_actions.Refused as refused:
        raise _refused(refused) from None
    return job_reply(outcome, principal)


def tenant_filter(principal: Principal, requested: str | None) -> str | None:
    """The tenant a listing is confined to: a tenant key's own (naming another is a 404), or the
    one the admin asks for, or None (the admin, all tenants)."""
    if principal.is_admin:
        return requested
    if requested is not None and requested != principal.tenant_id:
        raise Problem(404, "No such tenant")
    return principal.tenant_id


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def list_jobs(call: Call) -> Reply:
    query: JobListQuery = call.query
    tenant_id = tenant_filter(call.caller, query.tenant_id)
    find: dict[str, Any] = {}
    conditions: list[dict[str, Any]] = []
    if query.type:
        find["type"] = query.type
    if query.status:
        find["status"] = query.status.value
    created: dict[str, datetime] = {}
    if query.created_from:
        created["$gte"] = _utc(query.created_from)
    if query.created_to:
        created["$lt"] = _utc(query.created_to)
    if created:
        find["createdAt"] = created
    if query.subject:
        conditions.append(
            {
                "$or": [
                    {"subject.integrationId": query.subject},
                    {"subject.projectId": query.subject},
                    {"subject.tenantId": query.subject},
                ]
            }
        )
    if query.cursor:
        position = pagination.decode(query.cursor, "jobs", {"t": int, "id": str})
        after = pagination.from_millis(position["t"])
        conditions.append(
            {"$or": [{"createdAt": {"$lt": after}}, {"createdAt": after, "_id": {"$lt": position["id"]}}]}
        )
    if conditions:
        find["$and"] = conditions
    store = context.list_store()
    collection = store.tenant(tenant_id)["jobs"] if tenant_id else store.unscoped(ledger.COLLECTION)
    docs = list(collection.find(find).sort([("createdAt", -1), ("_id", -1)]).limit(query.limit + 1))
    more = len(docs) > query.limit
    docs = docs[: query.limit]
    next_cursor = None
    if more:
        last = docs[-1]
        next_cursor = pagination.encode("jobs", t=pagination.to_millis(last["createdAt"]), id=last["_id"])
    return Reply(200, JobPage(items=_jobs_out(docs, call.caller), next_cursor=next_cursor))


def _jobs_out(docs: list[dict[str, Any]], principal: Principal) -> list[JobOut]:
    items = []
    for doc in docs:
        try:
            items.append(job_out(doc, principal))
        except ValidationError:  # a ledger document another writer broke: skip it, say which
            logger.warning("skipping invalid jobs document _id=%s", doc.get("_id"))
    return items
