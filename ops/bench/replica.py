"""In-process replicas of what the API and the workers do in MongoDB, on a monitored client.

The API and worker processes cannot be watched from outside, so their MongoDB path is run here,
step for step (the same ``mwap.enqueue.enqueue``, ``mwap.ledger`` and ``tasks.sync`` calls),
against a ledger in the same state as during the measurement: the commands it sends and the
time spent inside them are what those processes spend per job.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery
from pymongo import MongoClient
from pymongo.database import Database
from redis import Redis

import tasks
from mwap import ledger
from mwap.connections import key_ring
from mwap.enqueue import JobRequest, enqueue
from mwap.services import Services
from mwap.settings import Settings
from ops.bench.mongo import CommandStats, Usage, monitored_client
from worker.app import create_celery_app

ECHO_PARAMS = tasks.load()["system.echo"].validate_params({})  # what the API stores for params {}


@dataclass
class Monitored:
    """Services whose MongoDB client is monitored, publishing where ``settings.redis_url`` says."""

    services: Services
    stats: CommandStats
    client: MongoClient
    producer: Celery

    @classmethod
    def open(cls, settings: Settings, redis: Redis) -> "Monitored":
        stats = CommandStats()
        client = monitored_client(settings.mongo_url, stats)
        services = Services(settings, client[settings.mongo_db], redis, key_ring(settings))
        return cls(services, stats, client, create_celery_app(settings, include_tasks=False))

    @property
    def db(self) -> Database:
        return self.services.db

    def publish(self, name: str, job_id: str, queue: str, headers: dict[str, str]) -> None:
        self.producer.send_task(name, args=[job_id], task_id=job_id, queue=queue, headers=headers)

    def enqueue(self, requests: list[JobRequest]) -> list[dict[str, Any]]:
        """Jobs created the way the API creates them (ledger, leases, publish)."""
        outcomes = enqueue(
            self.db,
            self.services.redis,
            self.publish,
            requests,
            lease_ttl=self.services.settings.broker_visibility_timeout,
        )
        return [outcome.job for outcome in outcomes]

    def measure(self, work: Callable[[], Any]) -> Usage:
        before = self.stats.snapshot()
        work()
        return self.stats.snapshot() - before

    def close(self) -> None:
        self.producer.close()
        self.client.close()


def echo_request() -> JobRequest:
    return JobRequest("system.echo", None, {}, dict(ECHO_PARAMS))


def enqueue_echo(replica: Monitored, jobs: int, batch: int) -> Usage:
    """``POST /v1/jobs`` (batch 1) or ``POST /v1/jobs/batch``: ``jobs`` jobs in calls of ``batch``."""

    def work() -> None:
        for _ in range(math.ceil(jobs / batch)):
            replica.enqueue([echo_request() for _ in range(batch)])

    return replica.measure(work)


def echo_lifecycle(replica: Monitored, jobs: int, reads: int) -> tuple[Usage, Usage]:
    """Each job as the API and a worker see it: enqueue, start, succeed, then ``reads`` reads of
    ``GET /v1/jobs/{id}``. Returns (everything, the critical path: enqueue, start, succeed, one read)."""
    everything = replica.stats.snapshot()
    critical = Usage.zero()
    for _ in range(jobs):
        job_id = ""

        def life() -> None:
            nonlocal job_id
            [job] = replica.enqueue([echo_request()])
            job_id = job["_id"]
            ledger.start(replica.db, job_id, worker="bench-replica")
            ledger.succeed(replica.db, job_id, {"message": "", "retries": 0}, started_at=ledger.now())
            ledger.get(replica.db, job_id, tenant_id=None)

        critical += replica.measure(life)
        for _ in range(max(0, reads - 1)):
            ledger.get(replica.db, job_id, tenant_id=None)
    return replica.stats.snapshot() - everything, critical


def echo_chunk(replica: Monitored, jobs: int) -> Usage:
    """``jobs`` jobs enqueued in one call, then each started and succeeded as a worker does."""

    def work() -> None:
        for job in replica.enqueue([echo_request() for _ in range(jobs)]):
            ledger.start(replica.db, job["_id"], worker="bench-replica")
            ledger.succeed(replica.db, job["_id"], {"message": "", "retries": 0}, started_at=ledger.now())

    return replica.measure(work)
