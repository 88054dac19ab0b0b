"""``mwap tenants``: register tenants."""

import click

from mwap import registry
from mwap_cli.context import OPERATOR, Context, create, json_flag, parse, pass_ctx


@click.group()
def tenants() -> None:
    """Tenants."""


@tenants.command("add")
@click.option("--owner-id", required=True, help="The owner's Auth0 user id (one tenant per owner).")
@click.option("--name", required=True)
@click.option("--description")
@click.option("--retention-days", type=int)
@click.option("--max-projects", type=int)
@json_flag
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
    body = parse(
        registry.TenantCreate,
        {"ownerId": owner_id, "name": name, "description": description, "settings": tenant_settings},
    )
    doc = create(lambda: registry.create_tenant(ctx.db, body, actor=OPERATOR))
    ctx.emit(doc, f"tenant {doc['_id']} created")
