"""``mwap retention``: apply tenants' retention now, in this process."""

import click

from mwap.ids import is_oid
from mwap_cli.context import Context, json_flag, pass_ctx


@click.group()
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
@json_flag
@pass_ctx
def retention_run(ctx: Context, tenant_ids: tuple[str, ...], dry_run: bool) -> None:
    """Apply retention now, in this process (what the tenant.apply_retention job does)."""
    from mwap.services import services_for  # noqa: PLC0415
    from tasks import retention as retention_logic  # noqa: PLC0415
    from tasks.integrations import Skip  # noqa: PLC0415

    services = services_for(ctx.settings)
    bad = [t for t in tenant_ids if not is_oid(t)]
    if bad:
        raise click.BadParameter(f"--tenant must be a 24-hex id: {bad[0][:40]}")
    targets = list(tenant_ids) or [
        str(t["_id"])
        for t in ctx.store.global_collection("tenants").find({"archived": {"$ne": True}}, {"_id": 1})
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
