"""The ``mwap`` command: operators' tools against the configured Redis and MongoDB.

Every subcommand has ``--help``, prints JSON with ``--json``, and exits non-zero with a message on
error. Settings come from the environment, as for every other process. One module per command
group; this one builds the root group.

Commands of other installed distributions join through the ``mwap.commands`` entry-point group, as
Flask's ``flask.commands`` does: the development tools (``mwap demo``, ``mwap bench``, in the
``mwap-tasks-dev`` distribution under ``ops/``) are there in a development install and absent from
the production package and image.
"""

from importlib.metadata import entry_points

import click

from mwap_cli.context import Context, json_option
from mwap_cli.db import db
from mwap_cli.integrations import integrations
from mwap_cli.jobs import jobs
from mwap_cli.keys import keys
from mwap_cli.metrics import metrics as metrics_group
from mwap_cli.providers import providers
from mwap_cli.queues import queues
from mwap_cli.retention import retention
from mwap_cli.tenants import tenants
from mwap_cli.webhooks import webhooks

PLUGIN_GROUP = "mwap.commands"


class MwapGroup(click.Group):
    """A group that also holds the commands of the ``mwap.commands`` entry points, loaded on first
    use so that a plain import of this module stays cheap."""

    _plugins_loaded = False

    def _load_plugin_commands(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for entry_point in entry_points(group=PLUGIN_GROUP):
            # The platform's own commands win: an installed plugin cannot stand in for `mwap keys`.
            if entry_point.name not in self.commands:
                self.add_command(entry_point.load(), entry_point.name)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return super().list_commands(ctx)


@click.group(cls=MwapGroup, context_settings={"help_option_names": ["-h", "--help"]})
@json_option
@click.pass_context
def main(ctx: click.Context, as_json: bool) -> None:
    """Operate mwap-tasks: database, keys, jobs, queues, integrations, metrics."""
    import tasks  # noqa: PLC0415 - only when a subcommand runs: `mwap --help` stays fast
    from mwap import metrics  # noqa: PLC0415

    metrics.set_role("cli")
    ctx.obj = Context(as_json)
    if ctx.invoked_subcommand == "metrics":  # a sidecar serving files: no job types, less memory
        return
    # The job types' registry, as every entry point loads it at start (indexes, enqueue, the ledger).
    tasks.load()


for command in (db, keys, tenants, providers, integrations, jobs, queues, retention, webhooks, metrics_group):
    main.add_command(command)
