"""Dispatchers: only due items, indexed and chunked, no double enqueue while a lease holds."""

from collections import Counter
from datetime import timedelta

import factories
import pymongo
import pytest
from pymongo import monitoring

from mwap.connections import redis_client
from mwap.ledger import now
from mwap.settings import Settings
from tasks import dispatch
from worker.app import create_celery_app
from worker.base import Services


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.counts[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def isolated(settings: Settings, ring):
    """Services on a database and Redis db of their own, with every MongoDB command counted.

    The session worker listens on Redis db 0; here jobs are published to db 9, where nobody
    consumes them, so the queue holds exactly what the dispatcher sent.
    """
    name = factories.uid("dispatch").replace("-", "_")
    own = settings.model_copy(
        update={"mongo_db": name, "redis_url": settings.redis_url.rsplit("/", 1)[0] + "/9"}
    )
    listener = Commands()
    client = pymongo.MongoClient(own.mongo_url, tz_aware=True, event_listeners=[listener])
    redis = redis_client(own)
    redis.flushdb()
    services = Services(own, client[name], redis, ring)
    app = create_celery_app(own, include_tasks=False)
    yield services, app, listener
    client.drop_database(name)
    client.close()
    redis.flushdb()


def make_integrations(services: Services, tenant_id: str, *, due: int, fresh: int) -> list[str]:
    moment = now()
    docs = []
    for n in range(due + fresh):
        docs.append(
            {
                "_id": f"int-{n:05d}",
                "tenantId": tenant_id,
                "providerId": "google-drive",
                "providerSlug": "google-drive",
                "status": "active",
                "authData": {
                    "accessToken": "enc:v1:k1:x",
                    "refreshToken": "enc:v1:k1:y",
                    "expiresAt": moment + timedelta(days=1),
                },
                "health": {"status": "healthy", "lastCheck": None if n < due else moment},
                "metadata": {"lastSyncAt": moment, "lastRefreshAt": moment},
            }
        )
    services.db["cloudIntegrations"].insert_many(docs)
    return [d["_id"] for d in docs[:due]]


def queued_ids(services: Services, queue: str) -> list[str]:
    import json  # noqa: PLC0415

    return [json.loads(raw)["headers"]["id"] for raw in services.redis.lrange(queue, 0, -1)]


def test_dispatch_enqueues_only_due_items_once(isolated) -> None:
    services, app, _listener = isolated
    due = make_integrations(services, "tenant-a", due=12, fresh=30)
    first = dispatch.dispatch_integrations(services, app, "integration.health_check")
    assert first == {"due": 12, "enqueued": 12}
    jobs = list(services.db["jobs"].find({"type": "integration.health_check"}))
    assert sorted(j["subject"]["integrationId"] for j in jobs) == sorted(due)
    assert {j["status"] for j in jobs} == {"queued"}
    assert sorted(queued_ids(services, "default")) == sorted(j["_id"] for j in jobs)

    # Still queued: their leases hold, so the next tick enqueues nothing new.
    again = dispatch.dispatch_integrations(services, app, "integration.health_check")
    assert again == {"due": 12, "enqueued": 0}
    assert services.db["jobs"].count_documents({}) == 12


def test_dispatch_cost_follows_due_items_not_all_items(isolated) -> None:
    services, app, listener = isolated
    make_integrations(services, "tenant-a", due=10, fresh=10)
    listener.counts.clear()
    dispatch.dispatch_integrations(services, app, "integration.health_check")
    small = sum(listener.counts.values())

    services.db["cloudIntegrations"].delete_many({})
    services.db["jobs"].delete_many({})
    services.redis.flushdb()
    make_integrations(services, "tenant-b", due=10, fresh=600)
    listener.counts.clear()
    result = dispatch.dispatch_integrations(services, app, "integration.health_check")
    assert result == {"due": 10, "enqueued": 10}
    assert sum(listener.counts.values()) == small  # a find and one insert_many, whatever the size
    assert listener.counts["insert"] == 1
    plan = (
        services.db["cloudIntegrations"]
        .find(dispatch.due_integrations(services, "integration.health_check"))
        .explain()
    )
    assert "COLLSCAN" not in str(plan.get("queryPlanner", {}).get("winningPlan", ""))


def test_tenant_dispatch_and_refresh_query(isolated) -> None:
    services, app, _ = isolated
    services.db["tenants"].insert_many(
        [
            {"_id": "t1", "status": "active"},
            {"_id": "t2", "status": "suspended"},
            {"_id": "t3", "status": "active"},
        ]
    )
    assert dispatch.dispatch_tenants(services, app, "tenant.aggregate_usage") == {"due": 2, "enqueued": 2}
    subjects = sorted(j["subject"]["tenantId"] for j in services.db["jobs"].find())
    assert subjects == ["t1", "t3"]
    assert len(queued_ids(services, "maintenance")) == 2

    moment = now()
    make_integrations(services, "t1", due=0, fresh=3)
    services.db["cloudIntegrations"].update_one(
        {"_id": "int-00000"}, {"$set": {"authData.expiresAt": moment}}
    )
    services.db["cloudIntegrations"].update_one(
        {"_id": "int-00001"}, {"$set": {"metadata.lastRefreshAt": moment - timedelta(days=2)}}
    )
    services.db["cloudIntegrations"].update_one(
        {"_id": "int-00002"},
        {
            "$set": {
                "authData.expiresAt": moment,
                "metadata.refreshCooldownUntil": moment + timedelta(hours=1),
            }
        },
    )
    result = dispatch.dispatch_integrations(services, app, "integration.refresh_token")
    assert result == {"due": 2, "enqueued": 2}  # expiring soon, and idle for over 24 h; not the cooling one


def test_dispatchers_and_the_reconciler_are_on_the_beat_schedule(settings: Settings) -> None:
    import beat_schedule  # noqa: PLC0415

    schedule = beat_schedule.build_schedule(settings)
    dispatchers = {
        f"dispatch.{name}"
        for name in (
            "integration.health_check",
            "integration.refresh_token",
            "integration.sync_files",
            "tenant.aggregate_usage",
            "tenant.apply_retention",
        )
    }
    assert set(schedule) == dispatchers | {"system.reconcile"}
    entry = schedule["dispatch.integration.sync_files"]
    assert entry["schedule"] == settings.sync_interval
    assert entry["options"]["expires"] == settings.sync_interval


def test_one_call_asking_twice_for_the_same_subject_gets_one_job(isolated) -> None:
    services, app, _ = isolated
    from mwap.enqueue import JobRequest, enqueue  # noqa: PLC0415
    from worker.app import publisher  # noqa: PLC0415

    twice = [JobRequest("integration.sync_files", "t1", {"integrationId": "int-1"}) for _ in range(2)]
    first, second = enqueue(services.db, services.redis, publisher(app), twice, lease_ttl=60)
    assert first.created
    assert not second.created
    assert second.job["_id"] == first.job["_id"]
    assert services.db["jobs"].count_documents({}) == 1
