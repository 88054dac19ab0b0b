"""``mwap webhooks``: a tenant's webhook endpoints (list, add with its secret shown once, remove)."""

import click

from mwap import webhooks as core
from mwap.crypto import CryptoError
from mwap.ids import is_oid, oid
from mwap_cli.context import OPERATOR, Context, json_flag, pass_ctx


def _tenant(ctx: Context, tenant_id: str) -> str:
    if not is_oid(tenant_id):
        raise click.BadParameter(f"--tenant must be a 24-hex id: {tenant_id[:40]}")
    if ctx.store.global_collection("tenants").find_one({"_id": oid(tenant_id)}, {"_id": 1}) is None:
        raise click.ClickException(f"no tenant {tenant_id}")
    return tenant_id


@click.group()
def webhooks() -> None:
    """Webhook endpoints."""


@webhooks.command("list")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@json_flag
@pass_ctx
def webhooks_list(ctx: Context, tenant_id: str) -> None:
    """A tenant's endpoints (never their secrets)."""
    endpoints = ctx.store.tenant(_tenant(ctx, tenant_id))[core.ENDPOINTS]
    docs = list(endpoints.find({}, {"secret": 0, "previousSecrets": 0}).sort("_id", 1))
    ctx.emit(
        docs,
        lambda: (
            "\n".join(
                f"{d['_id']}  {'enabled ' if d.get('enabled') else 'disabled'}  {d['url']}  {','.join(d['events'])}"
                for d in docs
            )
            or "no webhook endpoints"
        ),
    )


@webhooks.command("add")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option("--url", required=True, help="https URL of the receiver.")
@click.option(
    "--event",
    "events",
    multiple=True,
    required=True,
    type=click.Choice([kind.value for kind in core.EventType]),
    help="Event type (repeatable).",
)
@click.option("--description")
@json_flag
@pass_ctx
def webhooks_add(
    ctx: Context, *, tenant_id: str, url: str, events: tuple[str, ...], description: str | None
) -> None:
    """Register an endpoint; prints its signing secret once."""
    from tasks.providers.outbound import OutboundPolicy, OutboundRefused  # noqa: PLC0415

    if len(url) > core.MAX_URL_CHARS:
        raise click.BadParameter(f"--url is longer than {core.MAX_URL_CHARS} characters")
    try:
        OutboundPolicy.from_settings(ctx.settings).check_webhook_url(url)
    except OutboundRefused as refused:
        raise click.BadParameter(f"--url refused: {refused.reason}") from None
    try:
        doc, secret = core.create_endpoint(
            ctx.db,
            ctx.settings.key_ring(),
            _tenant(ctx, tenant_id),
            url=url,
            events=list(events),
            description=description,
            actor=OPERATOR,
        )
    except (core.EndpointLimitError, CryptoError) as error:
        raise click.ClickException(str(error)) from None
    shown = {k: v for k, v in doc.items() if k not in {"secret", "previousSecrets"}}
    ctx.emit(
        {**shown, "secret": secret},
        f"webhook endpoint {doc['_id']} created\nsigning secret (shown once): {secret}",
    )


@webhooks.command("remove")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.argument("endpoint_id")
@json_flag
@pass_ctx
def webhooks_remove(ctx: Context, tenant_id: str, endpoint_id: str) -> None:
    """Remove an endpoint; its pending deliveries end failed."""
    if not is_oid(endpoint_id):
        raise click.BadParameter("ENDPOINT_ID must be a 24-hex id")
    if not core.delete_endpoint(ctx.db, _tenant(ctx, tenant_id), oid(endpoint_id), actor=OPERATOR):
        raise click.ClickException(f"no webhook endpoint {endpoint_id} in tenant {tenant_id}")
    ctx.emit({"removed": endpoint_id}, f"webhook endpoint {endpoint_id} removed")
