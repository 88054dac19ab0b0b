"""Whom a job's message is for (``mwap.enqueue.about_job``), as Celery's ``kwargsrepr`` carries it
for Flower and logs: read back from a Redis database no worker consumes, for a job the API
enqueued, a continuation and the reconciler's and the dead-worker check's resends. The task's own
arguments stay the job id alone."""

import ast
import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import factories
import pytest
from api_support import forget_offline, offline_app, offline_redis_url, tenant_with_key
from bson import ObjectId
from celery import Celery
from flask import Flask
from pymongo.database import Database
from redis import Redis

from mwap import enqueue, ledger
from mwap.ledger import now
from mwap.services import Services
from mwap.settings import Settings
from tasks import dead_workers, reconcile
from worker.app import create_celery_app, publisher


@pytest.fixture(scope="module")
def offline(settings: Settings) -> Iterator[tuple[Flask, Celery, Redis]]:
    """The API and a producer whose messages stay in their Redis database, and that database."""
    url = offline_redis_url(settings)
    producer = create_celery_app(settings.model_copy(update={"redis_url": url}), include_tasks=False)
    redis = Redis.from_url(url)
    yield offline_app(settings), producer, redis
    redis.close()
    producer.close()
    forget_offline(settings)


def message_of(redis: Redis, queue: str, job_id: str) -> dict[str, Any]:
    for raw in redis.lrange(queue, 0, -1):
        message = json.loads(raw)
        if message["headers"]["id"] == job_id:
            return message
    raise AssertionError(f"no message for job {job_id} in {queue}")


def arguments(message: dict[str, Any]) -> list[Any]:
    """The task's positional and keyword arguments, as the worker decodes them."""
    body = message["body"]
    if message["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    return json.loads(body)[:2]


def test_about_job_shows_the_type_the_tenant_and_the_subject_ids_only() -> None:
    tenant, integration, project = ObjectId(), str(ObjectId()), str(ObjectId())
    doc = ledger.new_job(
        "project.sync_files",
        tenant_id=tenant,
        subject={"integrationId": integration, "projectId": project},
        params={"note": "ya29.not-for-logs"},
        queue="sync",
    )
    assert enqueue.about_job(doc) == {
        "type": "project.sync_files",
        "tenantId": str(tenant),
        "integrationId": integration,
        "projectId": project,
    }
    system = ledger.new_job("system.echo", tenant_id=None, queue="default")
    assert enqueue.about_job(system) == {"type": "system.echo"}


def test_about_from_repr_reads_back_only_what_about_job_shows() -> None:
    shown = {"type": "integration.sync_files", "tenantId": "a" * 24, "integrationId": "b" * 24}
    assert enqueue.about_from_repr(repr(shown)) == shown
    refused = [
        None,
        "",
        "{}",
        "['x']",
        "{'type': 1}",
        "{'type': 'system.echo', 'token': 'secret'}",
        "__import__('os').getcwd()",
        "{'type': 'system.echo'",
        "[" * 400,
        repr({"type": "x" * 600}),
    ]
    assert [text for text in refused if enqueue.about_from_repr(text) is not None] == []


def test_an_api_enqueued_jobs_message_shows_whom_it_is_for_and_no_secret(
    offline: tuple[Flask, Celery, Redis], db: Database
) -> None:
    api, _, redis = offline
    tenant, headers = tenant_with_key(db)
    response = api.test_client().post(
        "/v1/jobs", json={"type": "tenant.apply_retention", "params": {"dryRun": True}}, headers=headers
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    job_id = response.get_json()["id"]
    try:
        message = message_of(redis, "maintenance", job_id)
        assert ast.literal_eval(message["headers"]["kwargsrepr"]) == {
            "type": "tenant.apply_retention",
            "tenantId": str(tenant["_id"]),
        }
        assert message["headers"]["argsrepr"] == f"['{job_id}']"
        assert arguments(message) == [[job_id], {}]
        api_key = headers["Authorization"].removeprefix("Bearer ")
        assert api_key not in json.dumps(message)
    finally:
        db["jobs"].delete_one({"_id": job_id})  # queued for good: no reconciler pass may resend it


def test_a_continuations_message_shows_whom_it_is_for(
    offline: tuple[Flask, Celery, Redis], db: Database
) -> None:
    _, producer, redis = offline
    tenant, integration = str(factories.tenant(db)["_id"]), str(ObjectId())
    running = enqueue.OpenJob(
        ledger.new_job_id(), "integration.sync_files", tenant, {"integrationId": integration}, None
    )
    job_id = enqueue.continue_job(db, redis, publisher(producer), running, params={}, lease_ttl=60)
    try:
        message = message_of(redis, "sync", job_id)
        assert ast.literal_eval(message["headers"]["kwargsrepr"]) == {
            "type": "integration.sync_files",
            "tenantId": tenant,
            "integrationId": integration,
        }
        assert arguments(message) == [[job_id], {}]
    finally:
        db["jobs"].delete_one({"_id": job_id})


@pytest.mark.parametrize(
    "projection", [reconcile.PROJECTION, dead_workers.PROJECTION], ids=["reconcile", "dead_workers"]
)
def test_a_resent_jobs_message_shows_whom_it_is_for(
    offline: tuple[Flask, Celery, Redis], services: Services, db: Database, projection: dict[str, int]
) -> None:
    """The job as the reconciler (or the dead-worker check) reads it is enough to say it."""
    _, producer, redis = offline
    tenant, integration = factories.tenant(db)["_id"], str(ObjectId())
    doc = ledger.new_job(
        "integration.health_check", tenant_id=tenant, subject={"integrationId": integration}, queue="default"
    )
    doc["createdAt"] = now() - timedelta(minutes=5)
    db["jobs"].insert_one(doc)
    try:
        read = db["jobs"].find_one({"_id": doc["_id"]}, projection)
        assert read is not None
        assert reconcile.resend_or_fail(services, publisher(producer), read, now()) == "resent"
        message = message_of(redis, "default", doc["_id"])
        assert ast.literal_eval(message["headers"]["kwargsrepr"]) == {
            "type": "integration.health_check",
            "tenantId": str(tenant),
            "integrationId": integration,
        }
        assert arguments(message) == [[doc["_id"]], {}]
    finally:
        db["jobs"].delete_one({"_id": doc["_id"]})
