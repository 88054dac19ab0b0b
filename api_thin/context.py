"""Per-process handles the views use: settings, MongoDB, Redis and the task producer."""

from celery import Celery
from flask import current_app
from pymongo.database import Database
from redis import Redis

from mwap.connections import mongo_db, redis_client
from mwap.settings import Settings


def settings() -> Settings:
    return current_app.config["MWAP_SETTINGS"]


def db() -> Database:
    return mongo_db(settings())


def redis() -> Redis:
    return redis_client(settings())


def producer() -> Celery:
    return current_app.extensions["mwap_celery"]


def publish(task_name: str, job_id: str, queue: str, headers: dict[str, str]) -> None:
    """Send one job by name: its id is the only argument and the Celery task id."""
    producer().send_task(task_name, args=[job_id], task_id=job_id, queue=queue, headers=headers)
