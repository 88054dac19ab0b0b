"""Enqueue jobs and read them back from the ledger."""

from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from api_thin import context
from api_thin.auth import Principal, authenticate
from api_thin.body import parse
from api_thin.problems import Problem
from api_thin.schemas import JobCreate, JobOut
from mwap import jobtypes, ledger
from mwap.enqueue import Enqueued, JobRequest, enqueue
from mwap.jobtypes import Scope
from mwap.store import Store

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")


def _field_problem(status: int, title: str, pointer: str, detail: str) -> Problem:
    return Problem(status, title, errors=[{"pointer": pointer, "detail": detail}])


def resolve(principal: Principal, body: JobCreate) -> JobRequest:
    """Check type, params and target against what the caller may touch; 404 for others' ids."""
    job_type = jobtypes.JOB_TYPES.get(body.type)
    if job_type is None:
        raise Problem(
            422,
            f"Unknown job type {body.type!r}",
            slug="unknown-job-type",
            errors=[{"pointer": "/type", "detail": f"one of {sorted(jobtypes.JOB_TYPES)}"}],
        )
    try:
        params = job_type.validate_params(body.params)
    except ValueError as error:
        raise Problem(422, "Invalid params", detail=str(error)[:500]) from None
    request_id = request.headers.get("X-Request-ID")
    if job_type.scope is Scope.SYSTEM:
        if not principal.is_admin:
            raise Problem(403, f"{job_type.name} needs the admin key")
        if body.tenant_id or body.integration_id:
            raise _field_problem(
                422, f"{job_type.name} takes no tenant or integration", "/tenantId", "not allowed"
            )
        return JobRequest(job_type.name, None, {}, params, request_id)
    if job_type.scope is Scope.TENANT:
        tenant_id = body.tenant_id or principal.tenant_id
        if tenant_id is None:
            raise _field_problem(
                422, f"{job_type.name} needs a tenant", "/tenantId", "required with the admin key"
            )
        if (
            not principal.can_see(tenant_id)
            or context.db()["tenants"].find_one({"_id": tenant_id}, {"_id": 1}) is None
        ):
            raise Problem(404, "No such tenant")
        return JobRequest(job_type.name, tenant_id, {"tenantId": tenant_id}, params, request_id)
    if body.integration_id is None:
        raise _field_problem(422, f"{job_type.name} needs an integration", "/integrationId", "required")
    integration = find_integration(principal, body.integration_id)
    if body.tenant_id and body.tenant_id != integration["tenantId"]:
        raise Problem(404, "No such integration")
    tenant_id = integration["tenantId"]
    return JobRequest(job_type.name, tenant_id, {"integrationId": integration["_id"]}, params, request_id)


def find_integration(principal: Principal, integration_id: str) -> dict[str, Any]:
    """The integration if the caller may see it, else a 404 (the same answer as for a missing id)."""
    store = Store(context.db())
    projection = {"tenantId": 1, "status": 1}
    if principal.is_admin:
        doc = store.unscoped("cloudIntegrations").find_one({"_id": integration_id}, projection)
    else:
        doc = store.tenant(principal.tenant_id)["cloudIntegrations"].find_one(
            {"_id": integration_id}, projection
        )
    if doc is None:
        raise Problem(404, "No such integration")
    return doc


def submit(requests: list[JobRequest]) -> list[Enqueued]:
    settings = context.settings()
    return enqueue(
        context.db(), context.redis(), context.publish, requests, lease_ttl=settings.broker_visibility_timeout
    )


def job_response(outcome: Enqueued) -> tuple[Response, int, dict[str, str]]:
    """202 for a new job; 200 with the open job when one of the same type and subject exists."""
    doc = outcome.job
    location = url_for("jobs.get_job", job_id=doc["_id"])
    status = 202 if outcome.created else 200
    return jsonify(JobOut.from_document(doc).model_dump(mode="json")), status, {"Location": location}


@bp.post("")
def create_job() -> tuple[Response, int, dict[str, str]]:
    principal = authenticate()
    [outcome] = submit([resolve(principal, parse(JobCreate))])
    return job_response(outcome)


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    principal = authenticate()
    doc = ledger.get(context.db(), job_id, tenant_id=principal.tenant_id)
    if doc is None:
        raise Problem(404, "No such job")
    return jsonify(JobOut.from_document(doc).model_dump(mode="json"))
