"""The bench enqueueing platform jobs from its own process, as ``mwap jobs enqueue`` does: the one
enqueue path (``mwap.enqueue.enqueue``: leases, ledger, the one publisher) on a MongoDB client
whose commands the bench counts itself (its process shares no metrics directory with the
platform's)."""

from dataclasses import dataclass
from typing import Any

from celery import Celery
from pymongo import MongoClient
from pymongo.database import Database

import tasks
from mwap.connections import key_ring, redis_client
from mwap.enqueue import JobRequest, enqueue
from mwap.services import Services
from mwap.settings import Settings
from ops.bench.mongo import CommandStats, monitored_client
from worker.app import create_celery_app, publisher

ECHO_PARAMS = tasks.load()["system.echo"].validate_params({})  # what the API stores for params {}


def echo_request() -> JobRequest:
    return JobRequest("system.echo", None, {}, dict(ECHO_PARAMS))


@dataclass
class Producer:
    services: Services
    stats: CommandStats
    client: MongoClient
    app: Celery

    @classmethod
    def open(cls, settings: Settings) -> "Producer":
        stats = CommandStats()
        client = monitored_client(settings.mongo_url, stats)
        services = Services(settings, client[settings.mongo_db], redis_client(settings), key_ring(settings))
        return cls(services, stats, client, create_celery_app(settings, include_tasks=False))

    @property
    def db(self) -> Database:
        return self.services.db

    def enqueue(self, requests: list[JobRequest]) -> list[dict[str, Any]]:
        """The jobs created (ledger documents), in request order."""
        outcomes = enqueue(
            self.db,
            self.services.redis,
            publisher(self.app),
            requests,
            lease_ttl=self.services.settings.broker_visibility_timeout,
        )
        return [outcome.job for outcome in outcomes]

    def close(self) -> None:
        self.app.close()
        self.client.close()
