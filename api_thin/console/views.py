"""The console's pages: server-rendered HTML over the ledger, the integrations, the broker and beat.

Reads go to MongoDB through the explicit cross-tenant door (the operator sees every tenant), each
list a keyset page from an indexed query (``queries``). The two actions, re-run and cancel, go
through ``mwap.job_actions``, the same path as ``POST /v1/jobs/{id}/rerun|cancel``, audited with
the operator's name.
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, abort, make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from api_thin import context
from api_thin.console import queries, session
from api_thin.console.queries import IntegrationFilter, JobFilter
from api_thin.problems import Problem
from mwap import job_actions, jobtypes, leases, ledger, redact
from mwap.ids import is_oid, oid
from mwap.models import IntegrationStatus

bp = Blueprint("console", __name__, template_folder="templates", static_folder="static")

MAX_CURSOR = 512
WINDOW_HOURS = 24
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?)?")
# What a redirect after an action may say; the page shows the text for the code, never input.
NOTICES = {
    "cancelled": "The job was cancelled.",
    "rerun": "A new job was queued to re-run it.",
    "rerun-open": "A job of this type for this subject was already open: here it is.",
    "already-final": "The job had already ended: nothing was cancelled.",
    "still-open": "The job is still open: cancel it or let it end before re-running it.",
    "signed-out": "You are signed out.",
}


def _jobs():
    return context.list_store().unscoped(ledger.COLLECTION)


def _arg(name: str, limit: int = 64) -> str | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    if len(value) > limit:
        raise Problem(400, "Invalid filter", detail=f"{name} is too long")
    return value


def _id_arg(name: str) -> str | None:
    value = _arg(name)
    if value is not None and not is_oid(value):
        raise Problem(400, "Invalid filter", detail=f"{name} must be a 24-hex id")
    return value


def _time_arg(name: str) -> datetime | None:
    value = _arg(name)
    if value is None:
        return None
    if not _DATE.fullmatch(value):
        raise Problem(400, "Invalid filter", detail=f"{name}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)")
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        raise Problem(400, "Invalid filter", detail=f"{name} is not a date") from None


def _choice(name: str, allowed: list[str]) -> str | None:
    value = _arg(name)
    if value is not None and value not in allowed:
        raise Problem(400, "Invalid filter", detail=f"{name} must be one of {', '.join(allowed)}")
    return value


def _cursor() -> str | None:
    return _arg("cursor", MAX_CURSOR)


def _job_filter(statuses: tuple[str, ...] = ()) -> JobFilter:
    status = _choice("status", [s.value for s in ledger.Status])
    return JobFilter(
        tenant_id=_id_arg("tenant"),
        type=_choice("type", sorted(jobtypes.job_types())),
        statuses=(status,) if status else statuses,
        created_from=_time_arg("from"),
        created_to=_time_arg("to"),
        integration_id=_id_arg("integration"),
    )


def _tenant_names(ids: set[Any]) -> dict[str, str]:
    return queries.names(context.store().global_collection("tenants"), ids)


def _labels(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Tenant names and integration provider slugs for the rows of a page, two queries at most."""
    return {"tenants": _tenant_names({doc.get("tenantId") for doc in docs})}


def _page(template: str, **values: Any) -> Response:
    operator = session.current_operator()
    values.setdefault("notice", NOTICES.get(request.args.get("notice", "")))
    html = render_template(
        template,
        operator=operator,
        job_types=sorted(jobtypes.job_types()),
        statuses=[s.value for s in ledger.Status],
        **values,
    )
    return make_response(html)


def _filters_kept(*names: str) -> dict[str, str]:
    return {name: request.args[name] for name in names if request.args.get(name)}


# --- sign-in ----------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse:
    target = session.safe_next(request.values.get("next"))
    if request.method == "GET":
        if session.current_operator() is not None:
            return redirect(target)
        return _page("login.html", next=target, error=None)
    if not session.same_origin():
        raise Problem(403, "Cross-site request refused")
    wait = session.throttled()
    if wait is not None:
        response = _page("login.html", next=target, error=f"Too many failed sign-ins: wait {wait} s.")
        response.status_code = 429
        response.headers["Retry-After"] = str(wait)
        return response
    name = request.form.get("operator", "").strip()
    key = request.form.get("key", "")
    if not session.valid_operator_name(name):
        response = _page(
            "login.html",
            next=target,
            error="Give your name (letters, digits, . _ @ - and spaces; at most 64) for the audit trail.",
        )
        response.status_code = 400
        return response
    if not session.key_matches(key):
        session.count_failure()
        response = _page("login.html", next=target, error="That is not the admin API key.")
        response.status_code = 401
        return response
    signed_in = redirect(target)
    session.close_session()  # a fresh id at every sign-in (no session fixation)
    session.set_cookie(signed_in, session.open_session(name))
    return signed_in


@bp.route("/logout", methods=["POST"])
@session.signed_in
def logout() -> BaseResponse:
    session.close_session()
    response = redirect(url_for("console.login", notice="signed-out"))
    session.clear_cookie(response)
    return response


# --- overview ---------------------------------------------------------------------------------


@bp.route("/")
@session.signed_in
def overview() -> Response:
    since = ledger.now() - timedelta(hours=WINDOW_HOURS)
    jobs = _jobs()
    failing = queries.failing_tenants(jobs, since)
    tenant_names = _tenant_names({row["_id"] for row in failing})
    integrations = context.list_store().unscoped("cloudIntegrations")
    needs_reauth = integrations.count_documents({"status": IntegrationStatus.ERROR.value})
    rows, held = queries.queues(context.redis())
    stale = queries.stuck_filter(context.settings().stale_job_after)
    stuck = jobs.count_documents(stale.query(), limit=1000)
    return _page(
        "overview.html",
        window=WINDOW_HOURS,
        since=since,
        counts=queries.job_counts(jobs, since),
        failing=failing,
        tenant_names=tenant_names,
        needs_reauth=needs_reauth,
        queues=rows,
        held=held,
        stuck=stuck,
    )


# --- jobs -------------------------------------------------------------------------------------


def _job_list(template: str, title: str, job_filter: JobFilter, **values: Any) -> Response:
    page = queries.newest_jobs(_jobs(), job_filter.query(), _cursor(), queries.PAGE_SIZE)
    return _page(
        template,
        title=title,
        page=page,
        labels=_labels(page.items),
        filters=job_filter,
        kept=_filters_kept("tenant", "type", "status", "from", "to", "integration"),
        **values,
    )


@bp.route("/jobs")
@session.signed_in
def jobs() -> Response:
    return _job_list("jobs.html", "Jobs", _job_filter(), endpoint="console.jobs")


@bp.route("/dead-letters")
@session.signed_in
def dead_letters() -> Response:
    job_filter = _job_filter(statuses=(ledger.Status.FAILED.value,))
    if job_filter.statuses != (ledger.Status.FAILED.value,):
        raise Problem(400, "Invalid filter", detail="dead letters are the failed jobs")
    return _job_list("jobs.html", "Dead letters", job_filter, endpoint="console.dead_letters")


@bp.route("/stuck")
@session.signed_in
def stuck() -> Response:
    stale_after = context.settings().stale_job_after
    base = queries.stuck_filter(stale_after)
    chosen = _job_filter(statuses=base.statuses)
    if not set(chosen.statuses) <= set(ledger.OPEN):
        raise Problem(400, "Invalid filter", detail="stuck jobs are open: queued, running or retrying")
    created_to = min(filter(None, [chosen.created_to, base.created_to]))
    job_filter = JobFilter(
        tenant_id=chosen.tenant_id,
        type=chosen.type,
        statuses=chosen.statuses,
        created_from=chosen.created_from,
        created_to=created_to,
        integration_id=chosen.integration_id,
    )
    return _job_list("jobs.html", "Stuck jobs", job_filter, endpoint="console.stuck", stale_after=stale_after)


def _job_or_404(job_id: str) -> dict[str, Any]:
    if not is_oid(job_id):
        abort(404)
    doc = ledger.get(context.db(), job_id, tenant_id=None)
    if doc is None:
        abort(404)
    return doc


@bp.route("/jobs/<job_id>")
@session.signed_in
def job(job_id: str) -> Response:
    doc = _job_or_404(job_id)
    subject = doc.get("subject") or {}
    tenant = _tenant_names({doc.get("tenantId")})
    redis = context.redis()
    held_by: bytes | str | None = None
    if doc.get("status") in ledger.OPEN:
        held_by = redis.get(leases.exec_key(job_id))
    return _page(
        "job.html",
        job=doc,
        subject=subject,
        tenant_name=tenant.get(str(doc.get("tenantId")), ""),
        is_open=doc.get("status") in ledger.OPEN,
        worker_alive=queries.worker_alive(redis, doc.get("workerRun")),
        exec_holder=held_by.decode() if isinstance(held_by, bytes) else held_by,
        scrub=redact.redact_text,
    )


@bp.route("/jobs/<job_id>/cancel", methods=["POST"])
@session.signed_in
def cancel(job_id: str) -> BaseResponse:
    _job_or_404(job_id)
    operator = session.current_operator()
    assert operator is not None  # signed_in
    outcome = job_actions.cancel_job(
        context.db(), context.redis(), job_id, tenant_id=None, actor=operator.actor
    )
    notice = "cancelled" if outcome.changed else "already-final"
    return redirect(url_for("console.job", job_id=job_id, notice=notice))


@bp.route("/jobs/<job_id>/rerun", methods=["POST"])
@session.signed_in
def rerun(job_id: str) -> BaseResponse:
    _job_or_404(job_id)
    operator = session.current_operator()
    assert operator is not None  # signed_in
    try:
        outcome = job_actions.rerun_job(
            context.db(),
            context.redis(),
            context.publish(),
            job_id,
            tenant_id=None,
            actor=operator.actor,
            lease_ttl=leases.job_lease_ttl(context.settings()),
        )
    except job_actions.JobOpen:
        return redirect(url_for("console.job", job_id=job_id, notice="still-open"))
    except job_actions.Refused as refusal:
        raise Problem(409, "This job cannot be re-run", detail=str(refusal)) from None
    notice = "rerun" if outcome.created else "rerun-open"
    return redirect(url_for("console.job", job_id=outcome.job["_id"], notice=notice))


# --- integrations and tenants -----------------------------------------------------------------


def _providers(docs: list[dict[str, Any]]) -> dict[str, str]:
    providers = context.store().global_collection("cloudProviders")
    return queries.names(providers, {doc.get("providerId") for doc in docs}, "slug")


@bp.route("/integrations")
@session.signed_in
def integrations() -> Response:
    status = _choice("status", [s.value for s in IntegrationStatus])
    integration_filter = IntegrationFilter(tenant_id=_id_arg("tenant"), status=status)
    page = queries.integrations_page(
        context.list_store().unscoped("cloudIntegrations"),
        integration_filter.query(),
        _cursor(),
        queries.PAGE_SIZE,
    )
    return _page(
        "integrations.html",
        page=page,
        providers=_providers(page.items),
        labels=_labels(page.items),
        filters=integration_filter,
        integration_statuses=[s.value for s in IntegrationStatus],
        kept=_filters_kept("tenant", "status"),
    )


@bp.route("/integrations/<integration_id>")
@session.signed_in
def integration(integration_id: str) -> Response:
    if not is_oid(integration_id):
        abort(404)
    doc = (
        context.store()
        .unscoped("cloudIntegrations")
        .find_one({"_id": oid(integration_id)}, queries.INTEGRATION_FIELDS)
    )
    if doc is None:
        abort(404)
    recent = queries.newest_jobs(_jobs(), JobFilter(integration_id=integration_id).query(), None, 20)
    return _page(
        "integration.html",
        integration=doc,
        providers=_providers([doc]),
        labels=_labels([doc]),
        recent=recent,
    )


@bp.route("/tenants/<tenant_id>")
@session.signed_in
def tenant(tenant_id: str) -> Response:
    if not is_oid(tenant_id):
        abort(404)
    doc = (
        context.store()
        .global_collection("tenants")
        .find_one({"_id": oid(tenant_id)}, {"name": 1, "archived": 1})
    )
    if doc is None:
        abort(404)
    integrations_of = queries.integrations_page(
        context.list_store().unscoped("cloudIntegrations"), {"tenantId": oid(tenant_id)}, None, 100
    )
    recent = queries.newest_jobs(_jobs(), JobFilter(tenant_id=tenant_id).query(), None, 20)
    since = ledger.now() - timedelta(hours=WINDOW_HOURS)
    failed = _jobs().count_documents(
        {"tenantId": oid(tenant_id), "status": ledger.Status.FAILED.value, "createdAt": {"$gte": since}}
    )
    return _page(
        "tenant.html",
        tenant=doc,
        integrations=integrations_of,
        providers=_providers(integrations_of.items),
        recent=recent,
        failed=failed,
        window=WINDOW_HOURS,
    )


# --- broker and beat --------------------------------------------------------------------------


@bp.route("/queues")
@session.signed_in
def queue_page() -> Response:
    rows, held = queries.queues(context.redis())
    return _page("queues.html", queues=rows, held=held)


@bp.route("/beat")
@session.signed_in
def beat_page() -> Response:
    return _page("beat.html", beat=queries.beat(context.redis()))
