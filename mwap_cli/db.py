"""``mwap db``: the database's indexes."""

import sys

import click

from mwap import indexes
from mwap_cli.context import Context, json_flag, pass_ctx


@click.group()
def db() -> None:
    """Database: indexes."""


@db.command("init")
@json_flag
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
