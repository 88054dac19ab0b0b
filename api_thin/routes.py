"""The API's route table: every operation, its models and answers, in one place.

``install`` registers these routes on the Flask app and serves ``/openapi.json`` built from the
same table, so what is documented is what is served.
"""

from flask import Flask

from api_thin import context, health, integrations, jobs, openapi, security, tenants
from api_thin.routing import Auth, Call, Endpoint, Out, Reply, register
from api_thin.schemas import (
    BatchOut,
    FileListQuery,
    FilePage,
    HealthOut,
    IntegrationCreate,
    IntegrationListQuery,
    IntegrationOut,
    IntegrationPage,
    JobCreate,
    JobGetQuery,
    JobListQuery,
    JobOut,
    JobPage,
    OpenApiOut,
    ProviderOut,
    ReadyOut,
    TenantCreate,
    TenantOut,
    UsageOut,
    UsageQuery,
    job_batch_model,
)
from mwap import jobtypes
from mwap.registry import ProviderCreate

_NEW_JOB = Out(JobOut, "A new job was queued.", headers=("Location",))
_OPEN_JOB = Out(
    JobOut, "A job of this type for this subject is already queued or running: that job.", ("Location",)
)
_JOB_ANSWERS = {202: _NEW_JOB, 200: _OPEN_JOB}


def _trigger(path: str, job_type: str, name: str, summary: str) -> Endpoint:
    return Endpoint(
        "POST",
        path,
        jobs.trigger(job_type, name),
        summary,
        "jobs",
        _JOB_ANSWERS,
        body=jobtypes.job_types()[job_type].params,
        body_required=False,
        description=f"Enqueues `{job_type}`. The body is optional: the job's params.",
    )


def serve_openapi(_call: Call) -> Reply:
    return Reply(200, OpenApiOut(openapi.document()))


ENDPOINTS: list[Endpoint] = [
    # jobs
    Endpoint(
        "POST",
        "/v1/jobs",
        jobs.create_job,
        "Enqueue a job",
        "jobs",
        _JOB_ANSWERS,
        body=JobCreate,
        errors=(403, 404),
        description="A tenant key may name only its own tenant and integrations; system jobs need the admin key.",
    ),
    Endpoint(
        "POST",
        "/v1/jobs/batch",
        jobs.create_job_batch,
        "Enqueue many jobs",
        "jobs",
        {202: Out(BatchOut, "Every job, in request order: new (202) or the open one (200).")},
        body=lambda settings: job_batch_model(context.setting(settings, "api_batch_max")),
        errors=(403, 404),
        description="All or nothing: one invalid or unknown item rejects the batch, naming `/jobs/<n>/...`.",
    ),
    Endpoint(
        "GET",
        "/v1/jobs",
        jobs.list_jobs,
        "List jobs, newest first",
        "jobs",
        {200: Out(JobPage, "A page.")},
        query=JobListQuery,
        errors=(404,),  # a tenant key naming another tenant
    ),
    Endpoint(
        "GET",
        "/v1/jobs/{jobId}",
        jobs.get_job,
        "A job from the ledger",
        "jobs",
        {200: Out(JobOut, "The job (with ?wait, once it ended or the wait ran out).")},
        query=JobGetQuery,
    ),
    # integrations
    Endpoint(
        "GET",
        "/v1/integrations",
        integrations.list_integrations,
        "List integrations",
        "integrations",
        {200: Out(IntegrationPage, "A page, by id.")},
        query=IntegrationListQuery,
        errors=(404,),
    ),
    Endpoint(
        "POST",
        "/v1/integrations",
        integrations.create_integration,
        "Register an integration; its tokens are stored encrypted and never returned",
        "integrations",
        {201: Out(IntegrationOut, "Registered.", headers=("Location",))},
        body=IntegrationCreate,
        errors=(403, 404, 409),  # tenant policy; unknown tenant/provider/project; exists or over the cap
    ),
    Endpoint(
        "GET",
        "/v1/integrations/{integrationId}",
        integrations.get_integration,
        "An integration: status, health, token expiry",
        "integrations",
        {200: Out(IntegrationOut, "The integration.")},
    ),
    Endpoint(
        "DELETE",
        "/v1/integrations/{integrationId}",
        integrations.delete_integration,
        "Delete an integration, its tokens and its files; its open jobs are cancelled",
        "integrations",
        {204: Out(None, "Deleted.")},
    ),
    Endpoint(
        "GET",
        "/v1/integrations/{integrationId}/files",
        integrations.list_files,
        "List an integration's synced files, by path",
        "integrations",
        {200: Out(FilePage, "A page, by path.")},
        query=FileListQuery,
    ),
    _trigger(
        "/v1/integrations/{integrationId}/sync",
        "integration.sync_files",
        "sync_integration",
        "Sync files now",
    ),
    _trigger(
        "/v1/integrations/{integrationId}/projects/{projectId}/sync",
        "project.sync_files",
        "sync_project",
        "Sync files now for one project (seed sync-virtual-files)",
    ),
    _trigger(
        "/v1/integrations/{integrationId}/refresh",
        "integration.refresh_token",
        "refresh_integration",
        "Refresh the OAuth token now",
    ),
    _trigger(
        "/v1/integrations/{integrationId}/health-check",
        "integration.health_check",
        "check_integration",
        "Check the integration's health now",
    ),
    # tenants and providers
    Endpoint(
        "POST",
        "/v1/tenants",
        tenants.create_tenant,
        "Register a tenant",
        "registration",
        {201: Out(TenantOut, "Registered.", headers=("Location",))},
        auth=Auth.ADMIN,
        body=TenantCreate,
    ),
    Endpoint(
        "GET",
        "/v1/tenants/{tenantId}",
        tenants.get_tenant,
        "A tenant",
        "registration",
        {200: Out(TenantOut, "The tenant.")},
    ),
    Endpoint(
        "GET",
        "/v1/tenants/{tenantId}/usage",
        tenants.get_usage,
        "A tenant's daily usage",
        "tenants",
        {200: Out(UsageOut, "The days in the range that have a rollup, and their totals.")},
        query=UsageQuery,
    ),
    _trigger(
        "/v1/tenants/{tenantId}/aggregate", "tenant.aggregate_usage", "aggregate_tenant", "Roll up usage now"
    ),
    _trigger(
        "/v1/tenants/{tenantId}/retention",
        "tenant.apply_retention",
        "apply_tenant_retention",
        "Apply retention now",
    ),
    Endpoint(
        "POST",
        "/v1/providers",
        tenants.create_provider,
        "Register a cloud provider; its client secret is stored encrypted and never returned",
        "registration",
        {201: Out(ProviderOut, "Registered.")},
        auth=Auth.ADMIN,
        body=ProviderCreate,
    ),
    # operations
    Endpoint(
        "GET",
        "/health",
        health.health,
        "The process is alive",
        "operations",
        {200: Out(HealthOut, "Alive.")},
        auth=Auth.NONE,
    ),
    Endpoint(
        "GET",
        "/ready",
        health.ready,
        "Redis and MongoDB are reachable",
        "operations",
        {
            200: Out(ReadyOut, "Ready."),
            503: Out(
                ReadyOut, "Not ready: the checks say which dependency is down.", headers=("Retry-After",)
            ),
        },
        auth=Auth.NONE,
    ),
    Endpoint(
        "GET",
        "/metrics",
        None,  # added by api_thin.observability
        "Prometheus metrics",
        "operations",
        {200: Out(None, "Metrics in the Prometheus text format.", media_type="text/plain")},
        auth=Auth.NONE,
        errors=(503,),  # queue metrics read Redis
        name="metrics",
    ),
    Endpoint(
        "GET",
        "/openapi.json",
        serve_openapi,
        "This document",
        "operations",
        {200: Out(OpenApiOut, "The OpenAPI 3.1 description of this API.")},
        auth=Auth.NONE,
        name="openapi",
    ),
]


def install(app: Flask) -> None:
    """Register every route of the table, the security headers and CORS."""
    register(app, ENDPOINTS)
    openapi.install(app, ENDPOINTS)
    security.install(app)
