"""The ``mwap`` command: operators' tools against the configured Redis and MongoDB.

Every subcommand has ``--help``, prints JSON with ``--json``, and exits non-zero with a message on
error. Settings come from the environment, as for every other process.
"""

import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

import click
from pydantic import ValidationError
from pymongo.database import Database

from mwap import apikeys, indexes, registry, rotation
from mwap.connections import mongo_db
from mwap.ids import is_oid, oid
from mwap.settings import Settings, SettingsError, get_settings

OPERATOR = {"type": "operator", "id": "mwap-cli"}


class Context:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    @property
    def settings(self) -> Settings:
        try:
            return get_settings()
        except SettingsError as error:
            raise click.UsageError(str(error)) from None

    @property
    def db(self) -> Database:
        return mongo_db(self.settings)

    def emit(self, data: Any, text: str | Callable[[], str]) -> None:
        """JSON with --json, else the human line(s)."""
        if self.as_json:
            click.echo(json.dumps(data, default=_json_default, indent=2))
        else:
            click.echo(text() if callable(text) else text)

    def progress(self, message: str) -> None:
        """Progress goes to stderr so that --json output stays parseable."""
        click.echo(message, err=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


pass_ctx = click.make_pass_decorator(Context)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@json_option
@click.pass_context
def main(ctx: click.Context, as_json: bool) -> None:
    """Operate mwap-tasks: database, keys, jobs, queues, integrations."""
    ctx.obj = Context(as_json)


def _json_flag(command: Callable) -> Callable:
    """Accept --json after the subcommand too (``mwap db init --json``)."""

    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        found = ctx.find_object(Context)
        if value and found is not None:
            found.as_json = True
        return value

    return click.option(
        "--json", "as_json_local", is_flag=True, expose_value=False, callback=callback, help="Print JSON."
    )(command)


# db ---------------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database: indexes."""


@db.command("init")
@_json_flag
@pass_ctx
def db_init(ctx: Context) -> None:
    """Create every index the platform needs (idempotent)."""
    created = indexes.ensure_indexes(ctx.db, ctx.settings)
    missing = indexes.missing_indexes(ctx.db, ctx.settings)
    ctx.emit(
        {"created": created, "missing": missing},
        f"created {len(created)} indexes; {len(missing)} missing" + "".join(f"\n  + {n}" for n in created),
    )
    if missing:
        sys.exit(1)


# keys -------------------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Tenant API keys and the encryption key ring."""


@keys.command("create")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option("--name", default="", help="A label for the key.")
@_json_flag
@pass_ctx
def keys_create(ctx: Context, tenant_id: str, name: str) -> None:
    """Create a tenant API key. The key is shown once and stored only as a hash."""
    try:
        doc, key = apikeys.create(ctx.db, tenant_id, name=name, actor=OPERATOR)
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    ctx.emit(
        {"id": doc["_id"], "tenantId": tenant_id, "key": key},
        f"{doc['_id']}  {key}\n(shown once; store it now)",
    )


@keys.command("revoke")
@click.argument("key_id")
@_json_flag
@pass_ctx
def keys_revoke(ctx: Context, key_id: str) -> None:
    """Revoke a tenant API key by its id."""
    doc = apikeys.revoke(ctx.db, key_id, actor=OPERATOR)
    if doc is None:
        raise click.ClickException(f"no live key {key_id}")
    ctx.emit({"id": key_id, "revoked": True}, f"revoked {key_id}")


@keys.command("list")
@click.option("--tenant", "tenant_id", help="Only this tenant's keys.")
@_json_flag
@pass_ctx
def keys_list(ctx: Context, tenant_id: str | None) -> None:
    """List API keys (ids and prefixes, never the keys)."""
    rows = apikeys.listing(ctx.db, tenant_id)
    ctx.emit(
        rows,
        lambda: (
            "\n".join(
                f"{r['_id']}  {r['tenantId']}  {r['prefix']}…  {'revoked' if r.get('revokedAt') else 'live'}  {r.get('name', '')}"
                for r in rows
            )
            or "no keys"
        ),
    )


@keys.command("rotate")
@click.option("--batch-size", default=200, show_default=True, type=click.IntRange(1, 10_000))
@_json_flag
@pass_ctx
def keys_rotate(ctx: Context, batch_size: int) -> None:
    """Re-encrypt every stored secret under the newest key of MWAP_ENCRYPTION_KEYS. Resumable.

    Values in the MWAP backend's legacy format are converted too (set MWAP_LEGACY_ENCRYPTION_KEY).
    """
    ring = ctx.settings.key_ring()
    report = rotation.rotate(
        ctx.db,
        ring,
        batch_size=batch_size,
        progress=lambda collection, r: ctx.progress(
            f"{collection}: scanned {r.scanned}, rotated {r.rotated_secrets} secrets"
            f" ({r.legacy_converted} from the legacy format)"
        ),
    )
    data = {
        "primaryKey": ring.primary,
        "scanned": report.scanned,
        "rotatedDocuments": report.rotated_documents,
        "rotatedSecrets": report.rotated_secrets,
        "legacyConverted": report.legacy_converted,
        "failures": report.failures,
    }
    ctx.emit(
        data,
        f"rotated {report.rotated_secrets} secrets in {report.rotated_documents} documents to key {ring.primary}"
        f" ({report.legacy_converted} converted from the MWAP backend's legacy format)"
        + "".join(f"\n  ! {f['collection']}/{f['id']} {f['field']}: {f['error']}" for f in report.failures),
    )
    if report.failures:
        sys.exit(1)


@keys.command("generate")
@click.option("--kid", required=True, help="Key id for the new key, e.g. k2.")
def keys_generate(kid: str) -> None:
    """Print a new ring entry (kid:base64key) to put first in MWAP_ENCRYPTION_KEYS."""
    from mwap.crypto import KeyRing  # noqa: PLC0415 - only this command needs it

    click.echo(f"{kid}:{KeyRing.generate_key()}")


# secrets: never from argv ----------------------------------------------------------------------

MAX_SECRET_CHARS = 16_384


def secret_option(name: str, envvar: str, what: str, *, required: bool) -> Callable[[Callable], Callable]:
    """``--<name>-file PATH`` (``-``: standard input) for a secret, plus a hidden ``--<name>`` that
    refuses any value: argv is readable by every local user (``ps``, ``/proc/<pid>/cmdline``) and
    shells keep it in history. ``read_secret`` falls back to ``envvar``, then a hidden prompt."""
    dest = name.replace("-", "_")

    def refuse(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            raise click.UsageError(
                f"--{name} does not take the {what} on the command line (other users see it in `ps`, "
                f"shells keep it in history): set {envvar}, or pass --{name}-file PATH, "
                f"or --{name}-file - to read it from standard input",
                ctx=ctx,
            )

    prompt = " On a terminal, it is asked for (hidden) when neither is given." if required else ""

    def decorate(command: Callable) -> Callable:
        command = click.option(
            f"--{name}-file",
            f"{dest}_file",
            type=click.File("r", encoding="utf-8", lazy=False),
            help=f"Read the {what} from this file ('-': standard input); or set {envvar}.{prompt}",
        )(command)
        return click.option(f"--{name}", hidden=True, expose_value=False, is_eager=True, callback=refuse)(
            command
        )

    return decorate


def read_secret(source: TextIO | None, name: str, envvar: str, what: str, *, required: bool) -> str | None:
    """The secret from ``--<name>-file``, else ``envvar``, else a hidden prompt on a terminal."""
    if source is not None:
        where = "standard input" if source.name in ("-", "<stdin>") else "the file"
        value = source.read(MAX_SECRET_CHARS + 1)
        if len(value) > MAX_SECRET_CHARS:
            raise click.UsageError(f"--{name}-file: {where} holds more than {MAX_SECRET_CHARS} characters")
        value = value.strip("\r\n")
        if not value:
            raise click.UsageError(f"--{name}-file: {where} is empty")
        return value
    from_env = os.environ.get(envvar)
    if from_env:
        return from_env
    if not required:
        return None
    if sys.stdin.isatty():
        return click.prompt(what[:1].upper() + what[1:], hide_input=True)
    raise click.UsageError(
        f"the {what} is needed: set {envvar}, or pass --{name}-file PATH (or - for standard input)"
    )


def _one_stdin(*sources: TextIO | None) -> None:
    if sum(1 for source in sources if source is not None and source.name in ("-", "<stdin>")) > 1:
        raise click.UsageError("only one secret can come from standard input")


# registration -----------------------------------------------------------------------------------


def _parse[M](model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate({k: v for k, v in data.items() if v is not None})  # type: ignore[attr-defined]
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_input=False)
        )
        raise click.BadParameter(problems) from None


def _create(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return fn()
    except (registry.ConflictError, registry.NotFoundError) as error:
        raise click.ClickException(str(error)) from None


@main.group()
def tenants() -> None:
    """Tenants."""


@tenants.command("add")
@click.option("--owner-id", required=True, help="The owner's Auth0 user id (one tenant per owner).")
@click.option("--name", required=True)
@click.option("--description")
@click.option("--retention-days", type=int)
@click.option("--max-projects", type=int)
@_json_flag
@pass_ctx
def tenants_add(
    ctx: Context,
    *,
    owner_id: str,
    name: str,
    description: str | None,
    retention_days: int | None,
    max_projects: int | None,
) -> None:
    """Register a tenant (seed 000's fields)."""
    tenant_settings = {
        k: v
        for k, v in {"retentionDays": retention_days, "maxProjects": max_projects}.items()
        if v is not None  # 0 is refused by validation, not silently replaced by the default
    }
    body = _parse(
        registry.TenantCreate,
        {"ownerId": owner_id, "name": name, "description": description, "settings": tenant_settings},
    )
    doc = _create(lambda: registry.create_tenant(ctx.db, body, actor=OPERATOR))
    ctx.emit(doc, f"tenant {doc['_id']} created")


@main.group()
def providers() -> None:
    """Cloud providers."""


@providers.command("add")
@click.option("--slug", required=True, type=click.Choice(["google-drive", "dropbox", "onedrive"]))
@click.option("--name", required=True, help="Display name, unique (e.g. 'Google Drive').")
@click.option("--auth-url", required=True)
@click.option("--token-url", required=True)
@click.option("--api-base-url", help="Stored as metadata.apiBaseUrl; default: the provider's real API.")
@click.option("--client-id", required=True)
@secret_option("client-secret", "MWAP_PROVIDER_CLIENT_SECRET", "client secret", required=True)
@click.option("--scope", "scopes", multiple=True)
@click.option("--grant-type", default="authorization_code", show_default=True)
@click.option("--token-method", default="POST", show_default=True, type=click.Choice(["POST", "GET"]))
@click.option("--created-by", default="mwap-tasks", show_default=True)
@_json_flag
@pass_ctx
def providers_add(ctx: Context, /, **options: Any) -> None:
    """Register a provider (the client secret is stored encrypted).

    The client secret comes from --client-secret-file (a file, or - for standard input), from
    MWAP_PROVIDER_CLIENT_SECRET, or a hidden prompt; never from the command line.
    """
    client_secret = read_secret(
        options["client_secret_file"],
        "client-secret",
        "MWAP_PROVIDER_CLIENT_SECRET",
        "client secret",
        required=True,
    )
    body = _parse(
        registry.ProviderCreate,
        {
            "slug": options["slug"],
            "name": options["name"],
            "authUrl": options["auth_url"],
            "tokenUrl": options["token_url"],
            "clientId": options["client_id"],
            "clientSecret": client_secret,
            "scopes": list(options["scopes"]),
            "grantType": options["grant_type"],
            "tokenMethod": options["token_method"],
            "apiBaseUrl": options["api_base_url"],
            "createdBy": options["created_by"],
        },
    )
    doc = _create(lambda: registry.create_provider(ctx.db, ctx.settings.key_ring(), body, actor=OPERATOR))
    ctx.emit(registry.public_provider(doc), f"provider {doc['_id']} created")


@main.group()
def integrations() -> None:
    """Tenants' cloud integrations."""


@integrations.command("add")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id (24-hex).")
@click.option(
    "--provider", "provider_slug", required=True, type=click.Choice(["google-drive", "dropbox", "onedrive"])
)
@secret_option("access-token", "MWAP_INTEGRATION_ACCESS_TOKEN", "access token", required=True)
@secret_option("refresh-token", "MWAP_INTEGRATION_REFRESH_TOKEN", "refresh token", required=False)
@click.option("--expires-at", help="ISO 8601 with time zone (optional, as in the seed).")
@click.option("--scope", "scopes", multiple=True, help="A granted scope (repeatable).")
@click.option("--email", help="userInfo.email of the provider account.")
@click.option("--account-name", default="", help="userInfo.name of the provider account.")
@click.option("--account-id", help="userInfo.providerId: the provider's user id.")
@click.option("--created-by", default="mwap-tasks", show_default=True)
@click.option("--project", "project_ids", multiple=True, help="Project id to link (repeatable).")
@_json_flag
@pass_ctx
def integrations_add(ctx: Context, /, **options: Any) -> None:
    """Register an integration; its tokens are stored encrypted and never printed.

    Tokens come from --access-token-file / --refresh-token-file (a file, or - for standard input),
    from MWAP_INTEGRATION_ACCESS_TOKEN / MWAP_INTEGRATION_REFRESH_TOKEN, or (the access token) a
    hidden prompt; never from the command line.
    """
    access_token, refresh_token = _tokens(options["access_token_file"], options["refresh_token_file"])
    user_info = None
    if options["email"] or options["account_id"]:
        user_info = {
            "email": options["email"] or "",
            "name": options["account_name"],
            "providerId": options["account_id"] or "",
        }
    body = _parse(
        registry.IntegrationCreate,
        {
            "tenantId": options["tenant_id"],
            "providerSlug": options["provider_slug"],
            "authData": {
                k: v
                for k, v in {
                    "accessToken": access_token,
                    "refreshToken": refresh_token,
                    "expiresAt": options["expires_at"],
                    "scope": list(options["scopes"]),
                }.items()
                if v is not None
            },
            "userInfo": user_info,
            "createdBy": options["created_by"],
            "projectIds": list(options["project_ids"]),
        },
    )
    doc = _create(
        lambda: registry.create_integration(
            ctx.db,
            ctx.settings.key_ring(),
            body,
            actor=OPERATOR,
            max_integrations=ctx.settings.max_integrations_per_tenant,
        )
    )
    ctx.emit(registry.public_integration(doc, options["provider_slug"]), f"integration {doc['_id']} created")


def _tokens(access_file: TextIO | None, refresh_file: TextIO | None) -> tuple[str, str | None]:
    _one_stdin(access_file, refresh_file)
    access = read_secret(
        access_file, "access-token", "MWAP_INTEGRATION_ACCESS_TOKEN", "access token", required=True
    )
    refresh = read_secret(
        refresh_file, "refresh-token", "MWAP_INTEGRATION_REFRESH_TOKEN", "refresh token", required=False
    )
    return str(access), refresh


# jobs -------------------------------------------------------------------------------------------


def _job_line(job: dict[str, Any]) -> str:
    subject = ",".join(f"{k}={v}" for k, v in (job.get("subject") or {}).items())
    error = f"  error={job['error']['type']}: {job['error']['message'][:80]}" if job.get("error") else ""
    return f"{job['_id']}  {job['type']:<26} {job['status']:<9} {job['createdAt']:%Y-%m-%d %H:%M:%S}  {subject}{error}"


def _enqueue(ctx: Context, requests: list[Any]) -> list[Any]:
    from mwap.connections import redis_client  # noqa: PLC0415
    from mwap.enqueue import enqueue  # noqa: PLC0415
    from worker.app import create_celery_app, publisher  # noqa: PLC0415

    settings = ctx.settings
    producer = create_celery_app(settings, include_tasks=False)
    try:
        return enqueue(
            ctx.db,
            redis_client(settings),
            publisher(producer),
            requests,
            lease_ttl=settings.broker_visibility_timeout,
        )
    finally:
        producer.close()


@main.group()
def jobs() -> None:
    """Jobs and the ledger."""


@jobs.command("enqueue")
@click.argument("job_type")
@click.option("--tenant", "tenant_id", help="Tenant id (tenant jobs; optional for integration jobs).")
@click.option("--integration", "integration_id", help="Integration id (integration and project jobs).")
@click.option("--project", "project_id", help="Project id (project jobs).")
@click.option("--params", "params_json", default="{}", help="Job params as a JSON object.")
@_json_flag
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

    kind = jobtypes.JOB_TYPES.get(job_type)
    if kind is None:
        raise click.BadParameter(f"unknown job type; one of {', '.join(sorted(jobtypes.JOB_TYPES))}")
    try:
        params = kind.validate_params(json.loads(params_json))
    except (json.JSONDecodeError, ValueError) as error:
        raise click.BadParameter(f"--params: {error}") from None
    subject: dict[str, str] = {}
    tenant: Any = None
    if kind.scope in {jobtypes.Scope.INTEGRATION, jobtypes.Scope.PROJECT}:
        if not integration_id:
            raise click.UsageError(f"{job_type} needs --integration")
        doc = _integration(ctx, integration_id, {"tenantId": 1})
        if tenant_id and str(doc["tenantId"]) != tenant_id:
            raise click.ClickException(f"integration {integration_id} not found")
        tenant, subject = doc["tenantId"], {"integrationId": str(doc["_id"])}
        if kind.scope is jobtypes.Scope.PROJECT:
            if not project_id or not is_oid(project_id):
                raise click.UsageError(f"{job_type} needs --project (24-hex)")
            if ctx.db["projects"].find_one({"_id": oid(project_id), "tenantId": tenant}, {"_id": 1}) is None:
                raise click.ClickException(f"project {project_id} not found")
            subject = {"projectId": project_id, **subject}
    elif kind.scope is jobtypes.Scope.TENANT:
        found = (
            ctx.db["tenants"].find_one({"_id": oid(tenant_id), "archived": {"$ne": True}}, {"_id": 1})
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
@_json_flag
@pass_ctx
def jobs_show(ctx: Context, job_id: str) -> None:
    """One job's ledger document."""
    job = ctx.db["jobs"].find_one({"_id": job_id})
    if job is None:
        raise click.ClickException(f"no job {job_id}")
    ctx.emit(job, lambda: json.dumps(job, default=_json_default, indent=2))


@jobs.command("list")
@click.option("--type", "job_type")
@click.option(
    "--status", type=click.Choice(["queued", "running", "retrying", "succeeded", "failed", "cancelled"])
)
@click.option("--tenant", "tenant_id")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@_json_flag
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
    rows = list(ctx.db["jobs"].find(query).sort([("createdAt", -1), ("_id", -1)]).limit(limit))
    ctx.emit(rows, lambda: "\n".join(_job_line(r) for r in rows) or "no jobs")


@jobs.command("retry")
@click.argument("job_id")
@_json_flag
@pass_ctx
def jobs_retry(ctx: Context, job_id: str) -> None:
    """Enqueue a failed job again (a new job with the same type, subject and params)."""
    from mwap.enqueue import JobRequest  # noqa: PLC0415

    job = ctx.db["jobs"].find_one({"_id": job_id})
    if job is None:
        raise click.ClickException(f"no job {job_id}")
    if job["status"] != "failed":
        raise click.ClickException(f"job {job_id} is {job['status']}; only failed jobs are retried")
    [outcome] = _enqueue(
        ctx, [JobRequest(job["type"], job.get("tenantId"), job.get("subject") or {}, job.get("params") or {})]
    )
    ctx.emit(
        {"job": outcome.job, "retryOf": job_id, "created": outcome.created},
        f"{outcome.job['_id']}  retry of {job_id}",
    )


@main.command("queues")
@_json_flag
@pass_ctx
def queues(ctx: Context) -> None:
    """Broker queues (depth, oldest message age) and the workers online."""
    import time  # noqa: PLC0415

    from mwap.connections import redis_client  # noqa: PLC0415
    from mwap.jobtypes import Queue  # noqa: PLC0415
    from mwap.metrics import queue_stats  # noqa: PLC0415
    from worker.app import create_celery_app  # noqa: PLC0415

    settings = ctx.settings
    stats = queue_stats(redis_client(settings), [q.value for q in Queue])
    now = time.time()
    rows = {
        name: {"depth": depth, "oldestAgeSeconds": round(now - oldest, 1) if oldest else None}
        for name, (depth, oldest) in stats.items()
    }
    app = create_celery_app(settings, include_tasks=False)
    try:
        replies = app.control.ping(timeout=1.0) or []
    finally:
        app.close()
    workers = sorted(name for reply in replies for name in reply)
    data = {"queues": rows, "workers": workers}
    ctx.emit(
        data,
        lambda: (
            "\n".join(
                f"{name:<12} depth {row['depth']:>6}   oldest {row['oldestAgeSeconds'] if row['oldestAgeSeconds'] is not None else '-'} s"
                for name, row in rows.items()
            )
            + f"\nworkers online: {len(workers)}"
            + "".join(f"\n  {w}" for w in workers)
        ),
    )


# integrations (operations) -------------------------------------------------------------------


@integrations.command("list")
@click.option("--tenant", "tenant_id")
@click.option("--status", type=click.Choice(["active", "inactive", "error", "pending"]))
@_json_flag
@pass_ctx
def integrations_list(ctx: Context, tenant_id: str | None, status: str | None) -> None:
    """Integrations with status, health and token expiry (never tokens)."""
    if tenant_id and not is_oid(tenant_id):
        raise click.BadParameter("--tenant must be a 24-hex id")
    query: dict[str, Any] = {"status": status} if status else {}
    if tenant_id:
        query["tenantId"] = oid(tenant_id)
    slugs = {p["_id"]: p.get("slug") for p in ctx.db["cloudProviders"].find({}, {"slug": 1})}
    rows = [
        registry.public_integration(doc, slugs.get(doc.get("providerId")))
        for doc in ctx.db["cloudIntegrations"].find(query).limit(1000)
    ]
    ctx.emit(
        rows,
        lambda: (
            "\n".join(
                f"{r['id']}  {r['tenantId']}  {r['providerSlug'] or '?':<12} {r['status']:<8} health={r['health'].get('status')}"
                f"  expires={r['authData']['expiresAt'] or '-'}"
                + (f"  reason={r['statusReason']}" if r.get("statusReason") else "")
                for r in rows
            )
            or "no integrations"
        ),
    )


def _integration(ctx: Context, integration_id: str, projection: dict[str, int]) -> dict[str, Any]:
    """The integration by its 24-hex id, or a clear error (exit 1)."""
    doc = (
        ctx.db["cloudIntegrations"].find_one({"_id": oid(integration_id)}, projection)
        if is_oid(integration_id)
        else None
    )
    if doc is None:
        raise click.ClickException(f"integration {integration_id[:40]} not found")
    return doc


def _set_status(ctx: Context, integration_id: str, fields: dict[str, Any], action: str) -> dict[str, Any]:
    from mwap import audit  # noqa: PLC0415
    from mwap.ledger import now  # noqa: PLC0415

    doc = _integration(ctx, integration_id, {"tenantId": 1, "status": 1})
    ctx.db["cloudIntegrations"].update_one(
        {"_id": doc["_id"], "tenantId": doc["tenantId"]}, {"$set": {**fields, "updatedAt": now()}}
    )
    audit.record(
        ctx.db,
        tenant_id=doc["tenantId"],
        action=action,
        target_type="integration",
        target_id=integration_id,
        actor=OPERATOR,
        details={"from": doc["status"], "to": fields.get("status", doc["status"])},
    )
    return doc


@integrations.command("disable")
@click.argument("integration_id")
@click.option("--reason", default="disabled by an operator")
@_json_flag
@pass_ctx
def integrations_disable(ctx: Context, integration_id: str, reason: str) -> None:
    """Stop every automatic job for an integration (status inactive); cancel its open jobs."""
    from mwap.connections import redis_client  # noqa: PLC0415
    from mwap.enqueue import cancel_integration_jobs  # noqa: PLC0415

    _set_status(
        ctx, integration_id, {"status": "inactive", "mwapTasks.statusReason": reason}, "integration.disabled"
    )
    cancelled = cancel_integration_jobs(
        ctx.db, redis_client(ctx.settings), integration_id, reason=f"integration disabled: {reason}"
    )
    ctx.emit(
        {"id": integration_id, "status": "inactive", "cancelledJobs": cancelled},
        f"{integration_id} disabled; {cancelled} open jobs cancelled",
    )


@integrations.command("reconnect")
@click.argument("integration_id")
@secret_option("access-token", "MWAP_INTEGRATION_ACCESS_TOKEN", "access token", required=True)
@secret_option("refresh-token", "MWAP_INTEGRATION_REFRESH_TOKEN", "refresh token", required=False)
@click.option("--expires-at", required=True, help="ISO 8601 with time zone.")
@_json_flag
@pass_ctx
def integrations_reconnect(
    ctx: Context,
    integration_id: str,
    access_token_file: TextIO | None,
    refresh_token_file: TextIO | None,
    expires_at: str,
) -> None:
    """Store new tokens after the user re-authorized, and make the integration active again.

    Tokens are read as for `integrations add`: files, standard input, the environment or a hidden
    prompt; never the command line.
    """
    access_token, refresh_token = _tokens(access_token_file, refresh_token_file)
    from datetime import datetime  # noqa: PLC0415

    from mwap.crypto import integration_binding  # noqa: PLC0415

    try:
        expires = datetime.fromisoformat(expires_at)
    except ValueError as error:
        raise click.BadParameter(f"--expires-at: {error}") from None
    if expires.tzinfo is None:
        raise click.BadParameter("--expires-at needs a time zone, e.g. 2026-01-01T00:00:00Z")
    doc = _integration(ctx, integration_id, {"tenantId": 1})
    ring = ctx.settings.key_ring()
    tenant_id = doc["tenantId"]
    fields: dict[str, Any] = {
        "authData.accessToken": ring.encrypt(
            access_token, integration_binding(tenant_id, integration_id, "authData.accessToken")
        ),
        "authData.expiresAt": expires,
        "status": "active",
        "mwapTasks.statusReason": None,
        "health.errorCount": 0,
        "mwapTasks.refreshCooldownUntil": None,
    }
    if refresh_token:
        fields["authData.refreshToken"] = ring.encrypt(
            refresh_token, integration_binding(tenant_id, integration_id, "authData.refreshToken")
        )
    _set_status(ctx, integration_id, fields, "integration.reconnected")
    ctx.emit({"id": integration_id, "status": "active"}, f"{integration_id} reconnected")


# retention --------------------------------------------------------------------------------------


@main.group()
def retention() -> None:
    """Retention."""


@retention.command("run")
@click.option(
    "--tenant",
    "tenant_ids",
    multiple=True,
    help="Tenant id (repeatable); default: every non-archived tenant.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@_json_flag
@pass_ctx
def retention_run(ctx: Context, tenant_ids: tuple[str, ...], dry_run: bool) -> None:
    """Apply retention now, in this process (what the tenant.apply_retention job does)."""
    from mwap.connections import redis_client  # noqa: PLC0415
    from tasks import retention as retention_logic  # noqa: PLC0415
    from tasks.integrations import Skip  # noqa: PLC0415
    from worker.base import Services, key_ring  # noqa: PLC0415

    settings = ctx.settings
    services = Services(settings, ctx.db, redis_client(settings), key_ring(settings))
    bad = [t for t in tenant_ids if not is_oid(t)]
    if bad:
        raise click.BadParameter(f"--tenant must be a 24-hex id: {bad[0][:40]}")
    targets = list(tenant_ids) or [
        str(t["_id"]) for t in ctx.db["tenants"].find({"archived": {"$ne": True}}, {"_id": 1})
    ]
    results = {}
    for number, tenant_id in enumerate(targets, 1):
        try:
            results[tenant_id] = retention_logic.apply(services, tenant_id, dry_run=dry_run)
        except Skip as skip:
            raise click.ClickException(f"tenant {tenant_id}: {skip}") from None
        ctx.progress(f"[{number}/{len(targets)}] {tenant_id}")
    key = "wouldRemove" if dry_run else "removed"
    ctx.emit(results, lambda: "\n".join(f"{t}: {key} {r[key]}" for t, r in results.items()) or "no tenants")


# demo -------------------------------------------------------------------------------------------


@main.group()
def demo() -> None:
    """Demo data for ops/run."""


@demo.command("seed")
@click.option("--providers-url", required=True, help="Base URL of the fake providers server.")
@click.option("--keep-keys", default="{}", help="JSON {tenantId: key} of tenant keys to keep if still live.")
@_json_flag
@pass_ctx
def demo_seed(ctx: Context, providers_url: str, keep_keys: str) -> None:
    """Create (or converge) demo tenants, projects, providers and integrations. Idempotent."""
    from mwap import demo as demo_data  # noqa: PLC0415 - needs ops.fake_providers, only here

    try:
        kept = json.loads(keep_keys)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"--keep-keys is not JSON: {error}") from None
    indexes.ensure_indexes(ctx.db, ctx.settings)
    result = demo_data.seed(
        ctx.db, ctx.settings.key_ring(), providers_url, keep_keys=kept, progress=ctx.progress
    )
    ctx.emit(
        result,
        f"demo ready: tenants {', '.join(result['tenants'])}; integrations {', '.join(result['integrations'])}",
    )


# `mwap bench` lives with the ops tooling; it imports what it measures only when it runs.
from ops.bench.cli import bench_command  # noqa: E402

main.add_command(bench_command)

if __name__ == "__main__":
    main()
