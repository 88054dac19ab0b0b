"""Enqueue jobs and read them back from the ledger."""

from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from api_thin import context
from api_thin.auth import Principal, authenticate
from api_thin.body import parse
from api_thin.problems import Problem
from api_thin.schemas import JobCreate, JobOut
from mwap import jobtypes, ledger
from mwap.jobtypes import Scope

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")


def _target(principal: Principal, job_type: jobtypes.JobType, body: JobCreate) -> tuple[str | None, dict]:
    """The job's tenant and subject ids, checked against what the caller may touch."""
    if job_type.scope is Scope.SYSTEM:
        if not principal.is_admin:
            raise Problem(403, f"{job_type.name} needs the admin key")
        if body.tenant_id or body.integration_id:
            raise Problem(
                422,
                f"{job_type.name} takes no tenantId or integrationId",
                errors=[{"pointer": "/tenantId", "detail": "not allowed for a system job"}],
            )
        return None, {}
    raise Problem(422, f"{job_type.name} cannot be enqueued yet")  # scopes arrive with their jobs


def enqueue(principal: Principal, body: JobCreate) -> dict[str, Any]:
    """Validate, write the ledger document, publish. Returns the ledger document."""
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
    tenant_id, subject = _target(principal, job_type, body)
    doc = ledger.new_job(
        job_type.name,
        tenant_id=tenant_id,
        subject=subject,
        params=params,
        queue=job_type.queue.value,
        request_id=request.headers.get("X-Request-ID"),
    )
    db = context.db()
    db[ledger.COLLECTION].insert_one(doc)
    # Enqueue only after the ledger write: a worker that picks the job up must find its document.
    context.producer().send_task(
        job_type.name, args=[doc["_id"]], task_id=doc["_id"], queue=job_type.queue.value
    )
    return doc


@bp.post("")
def create_job() -> tuple[Response, int, dict[str, str]]:
    principal = authenticate()
    doc = enqueue(principal, parse(JobCreate))
    location = url_for("jobs.get_job", job_id=doc["_id"])
    return jsonify(JobOut.from_document(doc).model_dump(mode="json")), 202, {"Location": location}


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    principal = authenticate()
    doc = ledger.get(context.db(), job_id, tenant_id=principal.tenant_id)
    if doc is None:
        raise Problem(404, "No such job")
    return jsonify(JobOut.from_document(doc).model_dump(mode="json"))
