"""``mwap integrations``: register tenants' cloud integrations, list them, disable one, reconnect one
with new tokens. Tokens are stored encrypted and never printed."""

from typing import Any, TextIO

import click

from mwap import registry
from mwap.ids import is_oid, oid
from mwap_cli.context import OPERATOR, Context, create, find_integration, json_flag, parse, pass_ctx
from mwap_cli.secret_input import read_tokens, secret_option


@click.group()
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
@json_flag
@pass_ctx
def integrations_add(ctx: Context, /, **options: Any) -> None:
    """Register an integration; its tokens are stored encrypted and never printed.

    Tokens come from --access-token-file / --refresh-token-file (a file, or - for standard input),
    from MWAP_INTEGRATION_ACCESS_TOKEN / MWAP_INTEGRATION_REFRESH_TOKEN, or (the access token) a
    hidden prompt; never from the command line.
    """
    access_token, refresh_token = read_tokens(options["access_token_file"], options["refresh_token_file"])
    user_info = None
    if options["email"] or options["account_id"]:
        user_info = {
            "email": options["email"] or "",
            "name": options["account_name"],
            "providerId": options["account_id"] or "",
        }
    body = parse(
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
    doc = create(
        lambda: registry.create_integration(
            ctx.db,
            ctx.settings.key_ring(),
            body,
            actor=OPERATOR,
            max_integrations=ctx.settings.max_integrations_per_tenant,
        )
    )
    ctx.emit(registry.public_integration(doc, options["provider_slug"]), f"integration {doc['_id']} created")


@integrations.command("list")
@click.option("--tenant", "tenant_id")
@click.option("--status", type=click.Choice(["active", "inactive", "error", "pending"]))
@json_flag
@pass_ctx
def integrations_list(ctx: Context, tenant_id: str | None, status: str | None) -> None:
    """Integrations with status, health and token expiry (never tokens)."""
    if tenant_id and not is_oid(tenant_id):
        raise click.BadParameter("--tenant must be a 24-hex id")
    query: dict[str, Any] = {"status": status} if status else {}
    if tenant_id:
        query["tenantId"] = oid(tenant_id)
    slugs = {
        p["_id"]: p.get("slug") for p in ctx.store.global_collection("cloudProviders").find({}, {"slug": 1})
    }
    rows = [
        registry.public_integration(doc, slugs.get(doc.get("providerId")))
        for doc in ctx.store.unscoped("cloudIntegrations").find(query).limit(1000)
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


def _set_status(ctx: Context, integration_id: str, fields: dict[str, Any], action: str) -> dict[str, Any]:
    from mwap import audit, webhooks  # noqa: PLC0415
    from mwap.ledger import now  # noqa: PLC0415

    doc = find_integration(ctx, integration_id, {"tenantId": 1, "status": 1})
    update: dict[str, Any] = {"$set": {**fields, "updatedAt": now()}}
    query: dict[str, Any] = {"_id": doc["_id"]}
    if doc.get("status") == "error" and fields.get("status") == "active":
        # Back from an error: the integration.recovered webhook event rides this very update.
        recovered = webhooks.event(webhooks.IntegrationRecovered(integration_id=str(doc["_id"])))
        update.update(webhooks.outbox_push(recovered))
        update["$unset"] = {"mwapTasks.authFailedAt": ""}  # recovered here: not again at a health check
        query["status"] = "error"
    if not ctx.store.tenant(doc["tenantId"])["cloudIntegrations"].update_one(query, update).matched_count:
        # Its status moved since it was read: write the change alone (no event for a change not seen).
        ctx.store.tenant(doc["tenantId"])["cloudIntegrations"].update_one(
            {"_id": doc["_id"]}, {"$set": {**fields, "updatedAt": now()}}
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
@json_flag
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
@json_flag
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
    access_token, refresh_token = read_tokens(access_token_file, refresh_token_file)
    from datetime import datetime  # noqa: PLC0415

    from mwap import crypto  # noqa: PLC0415

    try:
        expires = datetime.fromisoformat(expires_at)
    except ValueError as error:
        raise click.BadParameter(f"--expires-at: {error}") from None
    if expires.tzinfo is None:
        raise click.BadParameter("--expires-at needs a time zone, e.g. 2026-01-01T00:00:00Z")
    doc = find_integration(ctx, integration_id, {"tenantId": 1})
    ring = ctx.settings.key_ring()
    tenant_id = doc["tenantId"]
    fields: dict[str, Any] = {
        "authData.accessToken": crypto.seal(
            ring, crypto.ACCESS_TOKEN, access_token, document_id=integration_id, tenant_id=tenant_id
        ),
        "authData.expiresAt": expires,
        "status": "active",
        "mwapTasks.statusReason": None,
        "health.errorCount": 0,
        "mwapTasks.refreshCooldownUntil": None,
    }
    if refresh_token:
        fields["authData.refreshToken"] = crypto.seal(
            ring, crypto.REFRESH_TOKEN, refresh_token, document_id=integration_id, tenant_id=tenant_id
        )
    _set_status(ctx, integration_id, fields, "integration.reconnected")
    ctx.emit({"id": integration_id, "status": "active"}, f"{integration_id} reconnected")
