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
