"""``mwap jobs``: enqueue a job as the API would, read the ledger, retry a failed job, cancel an open one."""

import json
from typing import Any

import click

from mwap import leases, ledger
from mwap.ids import is_oid, oid
from mwap_cli.context import Context, find_integration, json_default, json_flag, pass_ctx


def _job_line(job: dict[str, Any]) -> str:
    subject = ",".join(f"{k}={v}" for k, v in (job.get("subject") or {}).items())
    error = f"  error={job['error']['type']}: {job['error']['message'][:80]}" if job.get("error") else ""
    return f"{job['_id']}  {job['type']:<26} {job['status']:<9} {job['createdAt']:%Y-%m-%d %H:%M:%S}  {subject}{error}"


def _enqueue(ctx: Context, requests: list[Any]) -> list[Any]:
    from mwap.enqueue import enqueue  # noqa: PLC0415
    from worker.app import publisher  # noqa: PLC0415

    producer, redis = _producer_and_redis(ctx)
    try:
        return enqueue(
            ctx.db, redis, publisher(producer), requests, lease_ttl=leases.job_lease_ttl(ctx.settings)
        )
    finally:
        producer.close()


def _producer_and_redis(ctx: Context) -> tuple[Any, Any]:
    from mwap.connections import redis_client  # noqa: PLC0415
    from worker.app import create_celery_app  # noqa: PLC0415

    return create_celery_app(ctx.settings, include_tasks=False), redis_client(ctx.settings)


@click.group()
def jobs() -> None:
    """Jobs and the ledger."""


@jobs.command("enqueue")
@click.argument("job_type")
@click.option("--tenant", "tenant_id", help="Tenant id (tenant jobs; optional for integration jobs).")
@click.option("--integration", "integration_id", help="Integration id (integration and project jobs).")
@click.option("--project", "project_id", help="Project id (project jobs).")
@click.option("--params", "params_json", default="{}", help="Job params as a JSON object.")
@json_flag
@pass_ctx
def jobs_enqueue(
    ctx: Context,
    *,
    job_type: str,
    tenant_id: str | None,
    integration_id: str | None,
    project_id: str | None,
    params_json: str,
) -> None:
    """Enqueue one job (as the API would), printing its id."""
    from mwap import jobtypes  # noqa: PLC0415
    from mwap.enqueue import JobRequest  # noqa: PLC0415

    kind = jobtypes.get(job_type)
    if kind is None:
        raise click.BadParameter(f"unknown job type; one of {', '.join(sorted(jobtypes.job_types()))}")
    try:
        params = kind.validate_params(json.loads(params_json))
    except (json.JSONDecodeError, ValueError) as error:
        raise click.BadParameter(f"--params: {error}") from None
    subject: dict[str, str] = {}
    tenant: Any = None
    if kind.scope in {jobtypes.Scope.INTEGRATION, jobtypes.Scope.PROJECT}:
        if not integration_id:
            raise click.UsageError(f"{job_type} needs --integration")
        doc = find_integration(ctx, integration_id, {"tenantId": 1})
        if tenant_id and str(doc["tenantId"]) != tenant_id:
            raise click.ClickException(f"integration {integration_id} not found")
        tenant, subject = doc["tenantId"], {"integrationId": str(doc["_id"])}
        if kind.scope is jobtypes.Scope.PROJECT:
            if not project_id or not is_oid(project_id):
                raise click.UsageError(f"{job_type} needs --project (24-hex)")
            projects = ctx.store.tenant(tenant)["projects"]
            if projects.find_one({"_id": oid(project_id)}, {"_id": 1}) is None:
                raise click.ClickException(f"project {project_id} not found")
            subject = {"projectId": project_id, **subject}
    elif kind.scope is jobtypes.Scope.TENANT:
        found = (
            ctx.store.global_collection("tenants").find_one(
                {"_id": oid(tenant_id), "archived": {"$ne": True}}, {"_id": 1}
            )
            if tenant_id and is_oid(tenant_id)
            else None
        )
        if found is None:
            raise click.ClickException(f"{job_type} needs an existing, non-archived --tenant")
        tenant, subject = found["_id"], {"tenantId": str(found["_id"])}
    [outcome] = _enqueue(ctx, [JobRequest(job_type, tenant, subject, params)])
    job = outcome.job
    note = "enqueued" if outcome.created else "already queued or running"
    ctx.emit({"job": job, "created": outcome.created}, f"{job['_id']}  {note}")


@jobs.command("show")
@click.argument("job_id")
@json_flag
@pass_ctx
def jobs_show(ctx: Context, job_id: str) -> None:
    """One job's ledger document."""
    job = ledger.get(ctx.db, job_id, tenant_id=None)
    if job is None:
        raise click.ClickException(f"no job {job_id}")
    ctx.emit(job, lambda: json.dumps(job, default=json_default, indent=2))


@jobs.command("list")
@click.option("--type", "job_type")
@click.option(
    "--status", type=click.Choice(["queued", "running", "retrying", "succeeded", "failed", "cancelled"])
)
@click.option("--tenant", "tenant_id")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@json_flag
@pass_ctx
def jobs_list(
    ctx: Context, job_type: str | None, status: str | None, tenant_id: str | None, limit: int
) -> None:
    """Recent jobs, newest first."""
    if tenant_id and not is_oid(tenant_id):
        raise click.BadParameter("--tenant must be a 24-hex id")
    query: dict[str, Any] = {k: v for k, v in {"type": job_type, "status": status}.items() if v}
    if tenant_id:
        query["tenantId"] = oid(tenant_id)
    every_tenants_jobs = ctx.store.unscoped(ledger.COLLECTION)  # operators see every tenant
    rows = list(every_tenants_jobs.find(query).sort([("createdAt", -1), ("_id", -1)]).limit(limit))
    ctx.emit(rows, lambda: "\n".join(_job_line(r) for r in rows) or "no jobs")


CLI_ACTOR = {"type": "operator", "id": "mwap jobs", "via": "cli"}


@jobs.command("retry")
@click.argument("job_id")
@json_flag
@pass_ctx
def jobs_retry(ctx: Context, job_id: str) -> None:
    """Enqueue a failed job again: a new job with the same type, subject and params, linked to it
    (``rerunOf``) and audited, through the same path as POST /v1/jobs/{id}/rerun and the console."""
    from mwap import job_actions  # noqa: PLC0415
    from worker.app import publisher  # noqa: PLC0415

    job = ledger.get(ctx.db, job_id, tenant_id=None) if is_oid(job_id) else None
    if job is None:
        raise click.ClickException(f"no job {job_id}")
    if job["status"] != "failed":
        raise click.ClickException(f"job {job_id} is {job['status']}; only failed jobs are retried")
    producer, redis = _producer_and_redis(ctx)
    try:
        outcome = job_actions.rerun_job(
            ctx.db,
            redis,
            publisher(producer),
            job_id,
            tenant_id=None,
            actor=CLI_ACTOR,
            lease_ttl=leases.job_lease_ttl(ctx.settings),
        )
    except job_actions.Refused as refusal:
        raise click.ClickException(f"job {job_id} cannot be retried: {refusal}") from None
    finally:
        producer.close()
    ctx.emit(
        {"job": outcome.job, "retryOf": job_id, "created": outcome.created},
        f"{outcome.job['_id']}  retry of {job_id}",
    )


@jobs.command("cancel")
@click.argument("job_id")
@json_flag
@pass_ctx
def jobs_cancel(ctx: Context, job_id: str) -> None:
    """Cancel an open job (queued, running or retrying), audited, as POST /v1/jobs/{id}/cancel does."""
    from mwap import job_actions  # noqa: PLC0415
    from mwap.connections import redis_client  # noqa: PLC0415

    try:
        outcome = job_actions.cancel_job(
            ctx.db, redis_client(ctx.settings), job_id, tenant_id=None, actor=CLI_ACTOR
        )
    except job_actions.NoSuchJob:
        raise click.ClickException(f"no job {job_id}") from None
    if not outcome.changed:
        raise click.ClickException(f"job {job_id} has already ended: {outcome.job['status']}")
    ctx.emit(outcome.job, f"{job_id}  cancelled")
