"""``mwap queues``: broker queue depths and ages, and the workers that answer a ping."""

import click

from mwap_cli.context import Context, json_flag, pass_ctx


@click.command("queues")
@json_flag
@pass_ctx
def queues(ctx: Context) -> None:
    """Broker queues (depth, oldest message age) and the workers online."""
    import time  # noqa: PLC0415

    from mwap.broker import queue_stats  # noqa: PLC0415
    from mwap.connections import redis_client  # noqa: PLC0415
    from mwap.jobtypes import Queue  # noqa: PLC0415
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
