"""Celery signal handlers: JSON logging, Sentry, metrics and each job's log context.

``install(app, worker=...)`` is called by the app factory. Every producer (API, beat, workers)
stamps its messages with the publish time and the current request id; worker and beat processes
also take over logging (``setup_logging``, so Celery does not install its own handlers), start
Sentry and check the database's schema version (``check_database``), and — in workers — keep the
heartbeat (``worker/heartbeat.py``), bind ``jobId``/``jobType``/``requestId`` around each task and
count jobs by type and outcome.
"""

import logging
import os
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery import Task, signals
from redbeat.schedulers import acquire_distributed_beat_lock

from mwap import broker, logs, metrics
from mwap.sentry import init_sentry
from mwap.settings import Settings
from worker import heartbeat
from worker.delivery import delivery_of

if TYPE_CHECKING:  # worker.app imports this module
    from worker.app import MwapCelery

REQUEST_ID_HEADER = "mwap_request_id"

_OUTCOMES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}


class _State:
    app: "MwapCelery | None" = None
    component: str | None = None  # "worker" once celeryd_init has fired in this process


def install(app: "MwapCelery", *, worker: bool) -> None:
    """Connect the handlers; with ``worker=False`` (a producer such as the API) only the stamp."""
    signals.before_task_publish.connect(_stamp_message)
    if not worker:
        return
    _State.app = app
    signals.celeryd_init.connect(_on_worker_init)
    signals.worker_ready.connect(_on_worker_ready)
    signals.worker_init.connect(_on_worker_start)
    signals.worker_shutdown.connect(_on_worker_stop)
    # The schema check before RedBeat's wait for the leader lock (connected when redbeat was
    # imported): a beat refused for a newer schema exits without taking the lock (which would stay
    # taken for its timeout, keeping every standby waiting), and a standby logs pending migrations
    # at start, not once it leads.
    signals.beat_init.disconnect(acquire_distributed_beat_lock)
    signals.beat_init.connect(_on_beat_init)
    signals.beat_init.connect(acquire_distributed_beat_lock)
    signals.setup_logging.connect(_on_setup_logging)
    signals.worker_process_shutdown.connect(_on_process_shutdown)
    signals.task_prerun.connect(_on_task_prerun)
    signals.task_postrun.connect(_on_task_postrun)
    signals.task_success.connect(_on_task_success)
    signals.task_failure.connect(_on_task_failure)
    signals.task_retry.connect(_on_task_retry)


def _settings() -> Settings:
    assert _State.app is not None, "worker.signals.install was not called"
    return _State.app.mwap_settings


def _stamp_message(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is None:
        return
    # Overwritten on every publish (a retry is a new message): the queue-age metric reads it.
    headers[broker.SENT_AT_HEADER] = time.time()
    request_id = logs.current().get("requestId")
    if request_id:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


def _on_worker_init(**_: Any) -> None:
    # Main worker process, before the pool forks: children inherit the Sentry client and the
    # tracers they build are instrumented.
    _State.component = "worker"
    metrics.set_role("worker")
    init_sentry(_settings(), "worker")
    # Before the pool starts: a database a newer build migrated is refused here.
    check_database("worker", warn=False)


def _on_worker_start(sender: Any = None, **_: Any) -> None:
    # Main process, before the pool starts and before any message is consumed (worker/heartbeat.py).
    heartbeat.start(_settings(), getattr(sender, "hostname", None) or "unknown")


def _on_worker_stop(**_: Any) -> None:
    # After a warm shutdown's pool has finished its jobs.
    heartbeat.stop()


def _on_worker_ready(**_: Any) -> None:
    # Once logging is the platform's (JSON): pending migrations, missing indexes.
    check_database("worker")


def check_database(component: str, *, warn: bool = True) -> None:
    """At start: refuse a database that a newer build migrated (exit status 1, naming both
    versions); with ``warn``, log pending migrations (`mwap db migrate`) and missing indexes."""
    from mwap import migrations  # noqa: PLC0415 - only the start of a worker or beat needs it
    from mwap.connections import mongo_db  # noqa: PLC0415
    from mwap.indexes import warn_if_missing  # noqa: PLC0415

    settings = _settings()
    try:
        database = mongo_db(settings)
        migrations.check_schema(database, component, warn=warn)
        if warn:
            warn_if_missing(database, settings, component)
    except migrations.SchemaTooNewError as error:
        raise SystemExit(f"mwap: {error}") from None
    except Exception as error:  # noqa: BLE001 - MongoDB may be down at start; jobs retry on their own
        logging.getLogger(__name__).warning("%s could not check the database: %s", component, error)


def _on_beat_init(**_: Any) -> None:
    metrics.set_role("beat")
    init_sentry(_settings(), "beat")
    check_database("beat")


def _on_setup_logging(**_: Any) -> None:
    # Connecting this signal is what stops Celery from configuring logging its own way.
    # Beat's setup_logging comes before beat_init, so beat is recognised by its module instead.
    component = _State.component or ("beat" if "celery.apps.beat" in sys.modules else "celery")
    logs.configure_logging(_settings(), component)


def _on_process_shutdown(**_: Any) -> None:
    metrics.process_exited(os.getpid())


def _on_task_prerun(task_id: str, task: Task, args: tuple = (), **_: Any) -> None:
    request = task.request
    logs.clear()
    logs.bind(
        jobId=str(args[0]) if args else task_id,
        jobType=task.name,
        requestId=getattr(request, REQUEST_ID_HEADER, None),
    )
    delivery_of(request).clock = time.monotonic()
    metrics.job_started(task.name, _queue_wait(request))


def _queue_wait(request: Any) -> float | None:
    sent_at = getattr(request, broker.SENT_AT_HEADER, None)
    if sent_at is None:
        return None
    ready_at = float(sent_at)
    if request.eta:  # a countdown retry waits on purpose; measure from when it was due
        eta = request.eta if isinstance(request.eta, datetime) else datetime.fromisoformat(request.eta)
        ready_at = max(ready_at, eta.timestamp())
    return time.time() - ready_at


def _on_task_postrun(task: Task, state: str | None = None, **_: Any) -> None:
    try:
        delivery = delivery_of(task.request)
        started = delivery.clock
        if started is not None:
            outcome = "skipped" if delivery.skip else _OUTCOMES.get(state or "", (state or "unknown").lower())
            metrics.job_finished(task.name, outcome, time.monotonic() - started)
    finally:
        logs.clear()


def _on_task_success(sender: Task, **_: Any) -> None:
    skipped = delivery_of(sender.request).skip
    metrics.job_outcome(sender.name, "skipped" if skipped else "succeeded")


def _on_task_failure(sender: Task, **_: Any) -> None:
    metrics.job_outcome(sender.name, "failed")


def _on_task_retry(sender: Task, **_: Any) -> None:
    metrics.job_outcome(sender.name, "retried")
