"""What every command group shares: the command's context (settings, database, output) and the
small conversions between click and the core (``--json`` anywhere, pydantic errors as usage errors).
"""

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click
from pydantic import ValidationError
from pymongo.database import Database

from mwap import registry
from mwap.connections import mongo_db
from mwap.ids import is_oid, oid
from mwap.settings import Settings, SettingsError, get_settings
from mwap.store import Store

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

    @property
    def store(self) -> Store:
        """Operators' tools work across tenants: ``store.unscoped`` names each such access."""
        return Store(self.db)

    def emit(self, data: Any, text: str | Callable[[], str]) -> None:
        """JSON with --json, else the human line(s)."""
        if self.as_json:
            click.echo(json.dumps(data, default=json_default, indent=2))
        else:
            click.echo(text() if callable(text) else text)

    def progress(self, message: str) -> None:
        """Progress goes to stderr so that --json output stays parseable."""
        click.echo(message, err=True)


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


pass_ctx = click.make_pass_decorator(Context)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def json_flag(command: Callable) -> Callable:
    """Accept --json after the subcommand too (``mwap db init --json``)."""

    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        found = ctx.find_object(Context)
        if value and found is not None:
            found.as_json = True
        return value

    return click.option(
        "--json", "as_json_local", is_flag=True, expose_value=False, callback=callback, help="Print JSON."
    )(command)


def parse[M](model: type[M], data: dict[str, Any]) -> M:
    """``data`` (``None`` values left out) validated by ``model``; its errors as a usage error."""
    try:
        return model.model_validate({k: v for k, v in data.items() if v is not None})  # type: ignore[attr-defined]
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_input=False)
        )
        raise click.BadParameter(problems) from None


def create(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a registry creation; a conflict or a missing reference is an error message (exit 1)."""
    try:
        return fn()
    except (registry.ConflictError, registry.NotFoundError) as error:
        raise click.ClickException(str(error)) from None


def find_integration(ctx: Context, integration_id: str, projection: dict[str, int]) -> dict[str, Any]:
    """The integration by its 24-hex id, or a clear error (exit 1)."""
    doc = (
        ctx.store.unscoped("cloudIntegrations").find_one({"_id": oid(integration_id)}, projection)
        if is_oid(integration_id)
        else None
    )
    if doc is None:
        raise click.ClickException(f"integration {integration_id[:40]} not found")
    return doc
