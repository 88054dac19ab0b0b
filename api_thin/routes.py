"""The API's route table: every operation, its models and answers, in one place.

``install`` registers these routes on the Flask app and serves ``/openapi.json`` built from the
same table, so what is documented is what is served.
"""

from flask import Flask

from api_thin import context, health, integrations, jobs, openapi, security, tenants, webhooks
from api_thin.routing import Auth, Call, Endpoint, Out, Reply, register
from api_thin.schemas import (
    BatchOut,
    DeliveryListQuery,
    DeliveryOut,
    DeliveryPage,
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
    WebhookCreate,
    WebhookCreatedOut,
    WebhookListQuery,
    WebhookOut,
    WebhookPage,
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
    Endpoint(
        "POST",
        "/v1/jobs/{jobId}/cancel",
        jobs.cancel_job,
        "Cancel a queued, running or retrying job",
        "jobs",
        {200: Out(JobOut, "Cancelled: the job as it is now.", headers=("Location",))},
        body_required=False,
        errors=(409,),  # the job has already ended: nothing changes
        description="Its lease is freed and whoever waits on it is woken; a worker running it drops its "
        "outcome at its next ledger write. Audited (`job.cancelled`). A tenant key reaches only its "
        "tenant's jobs, never a system job.",
    ),
    Endpoint(
        "POST",
        "/v1/jobs/{jobId}/rerun",
        jobs.rerun_job,
        "Enqueue an ended job again, as a new job",
        "jobs",
        {
            202: Out(JobOut, "A new job, with `rerunOf` naming this one.", headers=("Location",)),
            200: Out(
                JobOut,
                "This job's last rerun, or another job of its type and subject, is still queued or "
                "running: that job.",
                ("Location",),
            ),
        },
        body_required=False,
        errors=(409,),  # still open; its type, params or subject no longer hold; a rerun in flight
        description="Same type, tenant, subject and params, for a job that succeeded, failed or was "
        "cancelled. Audited (`job.rerun`). A tenant key reaches only its tenant's jobs, never a "
        "system job.",
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
    # webhooks
    Endpoint(
        "POST",
        "/v1/webhooks",
        webhooks.create_webhook,
        "Register a webhook endpoint; its signing secret is in this answer only",
        "webhooks",
        {201: Out(WebhookCreatedOut, "Registered.", headers=("Location",))},
        body=WebhookCreate,
        errors=(404, 409),  # unknown tenant; over the per-tenant cap
        description="Events are POSTed signed as Standard Webhooks (`webhook-id`, `webhook-timestamp`, "
        "`webhook-signature`); see the README's Webhooks section.",
    ),
    Endpoint(
        "GET",
        "/v1/webhooks",
        webhooks.list_webhooks,
        "List webhook endpoints (never their secrets)",
        "webhooks",
        {200: Out(WebhookPage, "The endpoints, oldest first.")},
        query=WebhookListQuery,
        errors=(404,),
    ),
    Endpoint(
        "GET",
        "/v1/webhooks/{webhookId}",
        webhooks.get_webhook,
        "A webhook endpoint",
        "webhooks",
        {200: Out(WebhookOut, "The endpoint.")},
    ),
    Endpoint(
        "DELETE",
        "/v1/webhooks/{webhookId}",
        webhooks.delete_webhook,
        "Remove a webhook endpoint; its pending deliveries end failed",
        "webhooks",
        {204: Out(None, "Removed.")},
    ),
    Endpoint(
        "POST",
        "/v1/webhooks/{webhookId}/rotate-secret",
        webhooks.rotate_secret,
        "A new signing secret, shown once; the old one keeps signing beside it for the overlap",
        "webhooks",
        {200: Out(WebhookCreatedOut, "The endpoint and its new secret.")},
        body_required=False,
        description="During the overlap (MWAP_WEBHOOK_SECRET_OVERLAP_HOURS) each request carries two "
        "signatures in `webhook-signature`, space-separated; either verifies.",
    ),
    Endpoint(
        "GET",
        "/v1/webhooks/{webhookId}/deliveries",
        webhooks.list_deliveries,
        "An endpoint's deliveries, newest first, each with its attempts and the event sent",
        "webhooks",
        {200: Out(DeliveryPage, "A page.")},
        query=DeliveryListQuery,
    ),
    Endpoint(
        "POST",
        "/v1/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver",
        webhooks.redeliver,
        "Send a delivery again now (same event, same webhook-id), with a fresh retry budget",
        "webhooks",
        {202: Out(DeliveryOut, "Queued.")},
        body_required=False,
        errors=(409,),  # the endpoint is disabled
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
