"""``mwap capacity``: what N integrations need, from the per-job costs ``mwap bench`` measured."""

import json
from pathlib import Path

import click

from ops.capacity.costs import PUBLISHED, MissingCost, load_costs
from ops.capacity.model import Workload, plan
from ops.capacity.table import as_json, as_text


@click.command("capacity")
@click.option("--integrations", type=click.IntRange(1), required=True, help="Active integrations.")
@click.option(
    "--sync-interval", type=click.FloatRange(min=1), default=900.0, show_default=True, help="Seconds."
)
@click.option(
    "--health-interval", type=click.FloatRange(min=1), default=900.0, show_default=True, help="Seconds."
)
@click.option(
    "--new-integration-check-within",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Seconds (the health dispatcher ticks every min of this and --health-interval).",
)
@click.option(
    "--token-refresh-interval",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="Seconds.",
)
@click.option(
    "--token-lifetime",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="The providers' access-token lifetime, seconds.",
)
@click.option("--files", type=click.IntRange(0), help="Files per integration [the bench's sync shape].")
@click.option("--page-size", type=click.IntRange(1), help="Files per provider page [the bench's sync shape].")
@click.option(
    "--latency-ms", type=click.FloatRange(min=0), default=100.0, show_default=True, help="Per provider call."
)
@click.option(
    "--sync-concurrency",
    type=click.IntRange(1),
    default=8,
    show_default=True,
    help="Threads per sync worker.",
)
@click.option(
    "--default-concurrency",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="Prefork processes per worker.",
)
@click.option("--api-rps", type=click.FloatRange(min=0), default=0.0, show_default=True, help="API jobs/s.")
@click.option("--api-cpus-per-replica", type=click.FloatRange(min=0.01), default=0.5, show_default=True)
@click.option(
    "--utilisation",
    type=click.FloatRange(0.05, 1.0),
    default=0.7,
    show_default=True,
    help="Target busy fraction.",
)
@click.option(
    "--costs",
    "costs_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=PUBLISHED,
    help="A `mwap bench` results file [the published ops/bench/results/latest.json].",
)
@click.option("--json", "as_json_output", is_flag=True, help="Print JSON.")
def capacity_command(
    *,
    integrations: int,
    sync_interval: float,
    health_interval: float,
    new_integration_check_within: float,
    token_refresh_interval: float,
    token_lifetime: float,
    files: int | None,
    page_size: int | None,
    latency_ms: float,
    sync_concurrency: int,
    default_concurrency: int,
    api_rps: float,
    api_cpus_per_replica: float,
    utilisation: float,
    costs_path: Path,
    as_json_output: bool,
) -> None:
    """Worker processes per queue, API replicas, Redis and MongoDB ops/s for N integrations."""
    try:
        costs = load_costs(costs_path)
    except MissingCost as missing:
        raise click.ClickException(str(missing)) from None
    workload = Workload(
        integrations=integrations,
        sync_interval=sync_interval,
        health_interval=health_interval,
        new_integration_check_within=new_integration_check_within,
        token_refresh_interval=token_refresh_interval,
        token_lifetime=token_lifetime,
        files=files,
        page_size=page_size,
        latency_ms=latency_ms,
        sync_concurrency=sync_concurrency,
        default_concurrency=default_concurrency,
        api_rps=api_rps,
        api_cpus_per_replica=api_cpus_per_replica,
        utilisation=utilisation,
    )
    result = plan(workload, costs)
    if as_json_output:
        click.echo(json.dumps(as_json(result, costs), indent=2))
    else:
        click.echo(as_text(result, costs), nl=False)
