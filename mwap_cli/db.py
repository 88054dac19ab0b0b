"""``mwap db``: the database's schema version, migrations and indexes (``mwap.migrations``)."""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypedDict

import click

from mwap import indexes, migrations, sharding
from mwap_cli.context import Context, json_flag, pass_ctx

PROGRESS_EVERY = 2.0  # seconds between progress lines on stderr


@click.group()
def db() -> None:
    """Database: schema migrations and indexes."""


wait_option = click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=migrations.WAIT,
    show_default=True,
    help="Seconds to wait for another migrator's lock before giving up (exit 1).",
)
batch_option = click.option(
    "--batch-size", type=click.IntRange(min=1), default=migrations.BATCH, show_default=True
)


@contextmanager
def _errors() -> Iterator[None]:
    """The runner's refusals as messages with exit status 1."""
    try:
        yield
    except (
        migrations.LockBusyError,
        migrations.LockLostError,
        migrations.MigrationError,
        migrations.SchemaTooNewError,
    ) as error:
        raise click.ClickException(str(error)) from None


class _Hooks(TypedDict):
    on_batch: Callable[[str, int], None]
    on_wait: Callable[[dict[str, Any]], None]


def _hooks(ctx: Context) -> _Hooks:
    """Progress on stderr (so --json output stays parseable)."""
    last = 0.0

    def on_batch(key: str, done: int) -> None:
        nonlocal last
        if time.monotonic() - last >= PROGRESS_EVERY:
            last = time.monotonic()
            ctx.progress(f"  … {key}: {done} batches")

    def on_wait(holder: dict[str, Any]) -> None:
        ctx.progress(
            f"waiting for the migration lock held by {holder.get('owner')} "
            f"({holder.get('command', 'a migration')})"
        )

    return _Hooks(on_batch=on_batch, on_wait=on_wait)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{what} {n}" for what, n in counts.items()) or "nothing to change"


def _report_text(report: migrations.Report) -> str:
    if report.dry_run:
        lines = [f"dry run, nothing changed: schema version {report.before}, would migrate to {report.after}"]
        verb = {"up": "would apply", "reconcile": "would reconcile"}
    else:
        lines = [f"schema version {report.before} -> {report.after}"]
        verb = {"up": "applied", "down": "rolled back", "reconcile": "reconciled"}
    for step in report.steps:
        resumed = " (resumed)" if step.resumed else ""
        took = "" if report.dry_run else f" in {step.seconds:.1f}s"
        lines.append(
            f"  {verb[step.direction]} {step.version:04d} {step.name}{resumed}{took}: {_counts(step.counts)}"
        )
    if len(lines) == 1:
        lines.append("  up to date" if report.before == report.after else "  nothing to do")
    return "\n".join(lines)


@db.command("migrate")
@click.option("--dry-run", is_flag=True, help="Print what would change, with counts; change nothing.")
@click.option("--to", "to", type=click.IntRange(min=0), help="Stop at this version (default: the newest).")
@wait_option
@batch_option
@json_flag
@pass_ctx
def db_migrate(ctx: Context, dry_run: bool, to: int | None, wait: float, batch_size: int) -> None:
    """Apply the pending migrations in order (idempotent; a rerun resumes an interrupted one)."""
    with _errors():
        report = migrations.migrate(
            ctx.db, ctx.settings, to=to, dry_run=dry_run, wait=wait, batch_size=batch_size, **_hooks(ctx)
        )
    ctx.emit(report.as_json(), lambda: _report_text(report))


@db.command("rollback")
@click.option("--to", "to", type=click.IntRange(min=0), required=True, help="The version to go back to.")
@wait_option
@batch_option
@json_flag
@pass_ctx
def db_rollback(ctx: Context, to: int, wait: float, batch_size: int) -> None:
    """Undo the migrations above version --to, newest first."""
    with _errors():
        report = migrations.rollback(
            ctx.db, ctx.settings, to=to, wait=wait, batch_size=batch_size, **_hooks(ctx)
        )
    ctx.emit(report.as_json(), lambda: _report_text(report))


@db.command("status")
@json_flag
@pass_ctx
def db_status(ctx: Context) -> None:
    """The schema version, each migration's state, the lock's holder and any missing index."""
    state = migrations.status(ctx.db)
    state["missingIndexes"] = indexes.missing_indexes(ctx.db, ctx.settings)

    def text() -> str:
        behind = state["version"] < state["head"]
        lines = [
            f"schema version {state['version']} of {state['head']}"
            + (" (run `mwap db migrate`)" if behind else "")
        ]
        for m in state["migrations"]:
            when = f" {m['appliedAt']:%Y-%m-%d %H:%M:%S}" if m["appliedAt"] else ""
            lines.append(f"  {m['version']:04d} {m['name']:<20} {m['state']}{when}  {m['description']}")
        lines += [
            f"  {u['version']:04d} {u['name']} {u['state']} (unknown to this build)" for u in state["unknown"]
        ]
        if lock := state["lock"]:
            lines.append(
                f"lock held by {lock['owner']} ({lock['command']}) until {lock['expiresAt']:%H:%M:%S}"
            )
        if state["missingIndexes"]:
            lines.append("missing indexes: " + ", ".join(state["missingIndexes"]))
        return "\n".join(lines)

    ctx.emit(state, text)


@db.command("shard-plan")
@json_flag
@pass_ctx
def db_shard_plan(ctx: Context) -> None:
    """The tenant shard key of each collection (mwap/sharding.py) as mongosh commands; runs nothing."""
    name = ctx.settings.mongo_db
    ctx.emit(
        {
            "database": name,
            "commands": sharding.shard_commands(name),
            "collections": [
                {
                    "collection": p.collection,
                    "shardKey": dict(p.key) if p.key is not None else None,
                    "reason": p.reason,
                    **({"note": p.note} if p.note else {}),
                }
                for p in sharding.PLAN
            ],
        },
        lambda: sharding.mongosh_script(name),
    )


@db.command("init")
@wait_option
@json_flag
@pass_ctx
def db_init(ctx: Context, wait: float) -> None:
    """Same as `mwap db migrate`, reporting the indexes created (kept for scripts that call it)."""
    with _errors():
        report = migrations.migrate(ctx.db, ctx.settings, wait=wait, **_hooks(ctx))
    created = [name for step in report.steps for name in step.details.get("created", [])]
    missing = indexes.missing_indexes(ctx.db, ctx.settings)
    ctx.emit(
        {"created": created, "missing": missing},
        f"schema version {report.after}; created {len(created)} indexes; {len(missing)} missing"
        + "".join(f"\n  + {n}" for n in created),
    )
    if missing:
        raise SystemExit(1)
