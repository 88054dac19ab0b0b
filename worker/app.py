"""The Celery app factory. Configuration comes from one Settings object; nothing here runs jobs."""

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

from celery import Celery
from kombu import Queue as KombuQueue
from kombu.exceptions import BatchPublishError  # type: ignore[attr-defined]  # stubs predate kombu 5.7

import tasks
from mwap import jobtypes, redis_urls
from mwap.enqueue import BatchingPublisher
from mwap.settings import Settings
from worker import schedule, sentinel_transport, signals


class MwapCelery(Celery):
    """A Celery app that carries the Settings it was built from."""

    mwap_settings: Settings  # read by tasks through self.app, never from the environment


def settings_of(app: Celery) -> Settings:
    """The Settings of an app built by ``create_celery_app``."""
    if not isinstance(app, MwapCelery):
        raise TypeError(f"{app!r} was not built by worker.app.create_celery_app")
    return app.mwap_settings


def create_celery_app(settings: Settings, *, include_tasks: bool = True) -> MwapCelery:
    """A Celery app for the worker and beat, or, with ``include_tasks=False``, for producers
    (the API) that only send tasks by name."""
    # The job types' declarations: routes and the schedule derive from them. A producer (the API)
    # reads them too, for its request bodies; it never runs a task.
    tasks.load()
    app = MwapCelery("mwap", include=tasks.modules() if include_tasks else [])
    app.mwap_settings = settings
    # Sentinel (mwap/redis_urls.py): kombu's sentinel transport and RedBeat's Sentinel support each
    # need the master's name and the sentinels' password beside the URL.
    sentinel_password = redis_urls.secret(settings.redis_sentinel_password)
    master = settings.redis_sentinel_master
    broker_url, sentinel_options = redis_urls.celery_broker(
        settings.redis_url, master, sentinel_password, timeout=settings.redis_timeout
    )
    if sentinel_options:
        sentinel_transport.install()
    app.conf.update(
        broker_url=broker_url,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            # Redis re-delivers an unacknowledged message after this long; it must outlast the
            # longest task (enforced in Settings) or a running job gets a second worker.
            "visibility_timeout": settings.broker_visibility_timeout,
            "socket_timeout": settings.redis_timeout,
            "socket_connect_timeout": settings.redis_timeout,
            "health_check_interval": 30,
            **sentinel_options,
        },
        # The ledger in MongoDB holds results; Celery keeps none.
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # At-least-once delivery: ack after the job ran, re-queue when the worker process dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        task_queues=[KombuQueue(q.value, routing_key=q.value) for q in jobtypes.Queue],
        task_default_queue=jobtypes.Queue.DEFAULT.value,
        task_create_missing_queues=False,
        task_routes=jobtypes.routes(),
        # Task events cost every job Redis PUBLISHes: a worker sends them while Flower (which turns
        # them on while it runs) or another monitor asks, or always with MWAP_WORKER_TASK_EVENTS;
        # the queue metrics read waiting messages from Redis. A task-sent event per enqueue is
        # opt-in (MWAP_TASK_SENT_EVENTS).
        worker_send_task_events=settings.worker_task_events,
        task_send_sent_event=settings.task_sent_events,
        enable_utc=True,
        timezone="UTC",
        worker_hijack_root_logger=False,
        beat_schedule=schedule.build_schedule(settings),
        # One active scheduler across hosts: RedBeat keeps the schedule's state and a leader lock
        # in Redis; a standby beat takes over once the leader's lock expires.
        beat_scheduler="worker.beat:Scheduler",
        **redis_urls.redbeat(settings.redis_url, master, sentinel_password, timeout=settings.redis_timeout),
        redbeat_key_prefix="mwap:redbeat:",
        redbeat_lock_timeout=settings.beat_lock_timeout,
        beat_max_loop_interval=max(1, settings.beat_lock_timeout // 5),
    )
    signals.install(app, worker=include_tasks)  # logs, metrics, Sentry; producers only stamp messages
    return app


class _Message(NamedTuple):
    task_name: str
    job_id: str
    queue: str
    headers: dict[str, str]
    countdown: float | None
    about: Mapping[str, str] | None


class _Publisher:
    """Sends a job's message by task name, its job id the only argument and the task id.

    Its ``argsrepr`` shows that argument (``['<job id>']``) and its ``kwargsrepr`` the ``about``
    given (``enqueue.about_job``: type, tenant and subject ids) as a dict literal: what Flower lists
    as the task's arguments, and parses for ``kwargs:tenantId=<id>``. The task gets no keyword
    arguments.

    Within ``batch()``, this thread's messages are held in one Redis pipeline (kombu's
    ``Producer.batch``) sent when the block ends: a 100-job request or a dispatcher's chunk costs one
    round trip instead of one per job. If that pipeline fails, whether any of it reached Redis is
    unknown, so every message of the block is sent again one at a time, with Celery's retries (a
    job's second message is harmless: one execution at a time, and a final job's does nothing).
    """

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._local = threading.local()

    def __call__(
        self,
        task_name: str,
        job_id: str,
        queue: str,
        headers: dict[str, str],
        *,
        countdown: float | None = None,
        about: Mapping[str, str] | None = None,
    ) -> None:
        message = _Message(task_name, job_id, queue, headers, countdown, about)
        held: list[_Message] | None = getattr(self._local, "held", None)
        if held is not None:
            held.append(message)
        self._send(message, getattr(self._local, "producer", None))

    def _send(self, message: _Message, producer: Any = None) -> None:
        self._app.send_task(
            message.task_name,
            args=[message.job_id],
            task_id=message.job_id,
            queue=message.queue,
            headers=message.headers,
            countdown=message.countdown,
            producer=producer,
            # Celery also copies it into the message's properties; its argsrepr is its own default.
            kwargsrepr=repr(dict(message.about)) if message.about else None,
        )

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold this thread's messages until the block ends, then send them in one round trip."""
        if getattr(self._local, "held", None) is not None:
            yield  # nested: the outer block sends
            return
        held: list[_Message] = []
        self._local.held = held
        try:
            with self._app.producer_or_acquire() as producer:
                self._local.producer = producer
                try:
                    with producer.batch():
                        yield
                finally:
                    self._local.producer = None
        except BatchPublishError:
            self._local.held = None
            for message in held:
                self._send(message)
        finally:
            self._local.held = None


def publisher(app: Celery) -> BatchingPublisher:
    """The one way a job's message is sent (API, dispatchers, continuations, requeues, resends):
    this app's one ``_Publisher``, made on first use."""
    made: _Publisher | None = getattr(app, "_mwap_publisher", None)
    if made is None:
        made = _Publisher(app)
        app._mwap_publisher = made  # type: ignore[attr-defined]
    return made
