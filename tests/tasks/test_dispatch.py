"""Dispatchers: only due items, indexed and chunked, no double enqueue while a lease holds."""

from collections import Counter
from datetime import datetime, timedelta

import factories
import pymongo
import pytest
from bson import ObjectId
from pymongo import monitoring

from mwap.connections import redis_client
from mwap.indexes import ensure_indexes
from mwap.ledger import now
from mwap.services import Services
from mwap.settings import Settings
from tasks import dispatch
from worker.app import create_celery_app


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
    ensure_indexes(client[name], own)
    services = Services(own, client[name], redis, ring)
    app = create_celery_app(own, include_tasks=False)
    yield services, app, listener
    client.drop_database(name)
    client.close()
    redis.flushdb()


def make_integrations(services: Services, tenant_id: ObjectId, *, due: int, fresh: int) -> list[str]:
    """``due`` integrations last health-checked before the interval, then ``fresh`` ones checked now
    (all synced and refreshed now); hex ids of the due ones."""
    moment = now()
    old = moment - timedelta(seconds=services.settings.health_check_interval + 60)
    docs = []
    for n in range(due + fresh):
        checked = old if n < due else moment
        docs.append(
            {
                "_id": ObjectId(),
                "tenantId": tenant_id,
                "providerId": ObjectId(),  # one integration per (tenant, provider)
                "status": "active",
                "authData": {
                    "accessToken": "enc:v1:k1:x",
                    "refreshToken": "enc:v1:k1:y",
                    "expiresAt": moment + timedelta(days=1),
                    "scope": [],
                },
                "health": {"status": "healthy", "lastCheck": checked, "errorCount": 0},
                "mwapTasks": {"healthCheckedAt": checked, "lastSyncAt": moment, "lastRefreshAt": moment},
                "createdAt": moment,
            }
        )
    services.db["cloudIntegrations"].insert_many(docs)
    return [str(d["_id"]) for d in docs[:due]]


def queued_ids(services: Services, queue: str) -> list[str]:
    import json  # noqa: PLC0415

    return [json.loads(raw)["headers"]["id"] for raw in services.redis.lrange(queue, 0, -1)]


def test_dispatch_enqueues_only_due_items_once(isolated) -> None:
    services, app, _listener = isolated
    tenant = factories.tenant(services.db)["_id"]
    due = make_integrations(services, tenant, due=12, fresh=30)
    first = dispatch.dispatch_integrations(services, app, "integration.health_check")
    assert first == {"due": 12, "enqueued": 12}
    jobs = list(services.db["jobs"].find({"type": "integration.health_check"}))
    assert sorted(j["subject"]["integrationId"] for j in jobs) == sorted(due)
    assert {j["status"] for j in jobs} == {"queued"}
    assert {j["tenantId"] for j in jobs} == {tenant}  # an ObjectId in the ledger
    assert sorted(queued_ids(services, "default")) == sorted(j["_id"] for j in jobs)

    # Still queued: their leases hold, so the next tick enqueues nothing new.
    again = dispatch.dispatch_integrations(services, app, "integration.health_check")
    assert again == {"due": 12, "enqueued": 0}
    assert services.db["jobs"].count_documents({}) == 12


def test_dispatch_cost_follows_due_items_not_all_items(isolated) -> None:
    services, app, listener = isolated
    make_integrations(services, factories.tenant(services.db)["_id"], due=10, fresh=10)
    listener.counts.clear()
    dispatch.dispatch_integrations(services, app, "integration.health_check")
    small = sum(listener.counts.values())

    services.db["cloudIntegrations"].delete_many({})
    services.db["jobs"].delete_many({})
    services.redis.flushdb()
    make_integrations(services, factories.tenant(services.db)["_id"], due=10, fresh=600)
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
    t1, _archived, t3 = (
        factories.tenant(services.db, archived=archived)["_id"] for archived in (False, True, False)
    )
    assert dispatch.dispatch_tenants(services, app, "tenant.aggregate_usage") == {"due": 2, "enqueued": 2}
    jobs = list(services.db["jobs"].find())
    assert sorted(j["subject"]["tenantId"] for j in jobs) == sorted([str(t1), str(t3)])
    assert {j["tenantId"] for j in jobs} == {t1, t3}
    assert len(queued_ids(services, "maintenance")) == 2

    moment = now()
    idle = moment - timedelta(seconds=services.settings.token_refresh_max_age + 3600)
    make_integrations(services, t1, due=0, fresh=5)
    ids = [d["_id"] for d in services.db["cloudIntegrations"].find({"tenantId": t1}).sort("_id", 1)]
    integrations = services.db["cloudIntegrations"]
    integrations.update_one({"_id": ids[0]}, {"$set": {"authData.expiresAt": moment}})
    integrations.update_one({"_id": ids[1]}, {"$set": {"mwapTasks.lastRefreshAt": idle}})
    integrations.update_one(
        {"_id": ids[2]},
        {
            "$set": {
                "authData.expiresAt": moment,
                "mwapTasks.refreshCooldownUntil": moment + timedelta(hours=1),
            }
        },
    )
    # Never refreshed by the platform: due once it is older than the idle maximum, not before.
    integrations.update_one(
        {"_id": ids[3]}, {"$unset": {"mwapTasks.lastRefreshAt": ""}, "$set": {"createdAt": idle}}
    )
    integrations.update_one({"_id": ids[4]}, {"$unset": {"mwapTasks.lastRefreshAt": ""}})
    result = dispatch.dispatch_integrations(services, app, "integration.refresh_token")
    # Expiring soon, idle for over 24 h, never refreshed and old; not the cooling one nor the new one.
    assert result == {"due": 3, "enqueued": 3}
    refreshed = {
        j["subject"]["integrationId"] for j in services.db["jobs"].find({"type": "integration.refresh_token"})
    }
    assert refreshed == {str(ids[0]), str(ids[1]), str(ids[3])}


def test_an_archived_tenant_gets_no_jobs_and_neither_do_its_integrations(isolated) -> None:
    services, app, _ = isolated
    live = factories.tenant(services.db)["_id"]
    archived = factories.tenant(services.db, archived=True)["_id"]
    moment = now()
    long_ago = moment - timedelta(days=30)
    for tenant in (live, archived):
        make_integrations(services, tenant, due=2, fresh=0)
    # Due for everything: never synced, token expiring, health long unchecked.
    services.db["cloudIntegrations"].update_many(
        {},
        {
            "$set": {"authData.expiresAt": moment, "health.lastCheck": long_ago},
            "$unset": {"mwapTasks.lastSyncAt": "", "mwapTasks.healthCheckedAt": ""},
        },
    )
    live_ids = {str(d["_id"]) for d in services.db["cloudIntegrations"].find({"tenantId": live})}
    assert len(live_ids) == 2

    for job_type in ("tenant.aggregate_usage", "tenant.apply_retention"):
        assert dispatch.dispatch_tenants(services, app, job_type) == {"due": 1, "enqueued": 1}
        [job] = services.db["jobs"].find({"type": job_type})
        assert job["tenantId"] == live
        assert job["subject"] == {"tenantId": str(live)}
    for job_type in ("integration.health_check", "integration.refresh_token", "integration.sync_files"):
        assert dispatch.dispatch_integrations(services, app, job_type) == {"due": 2, "enqueued": 2}
        jobs = list(services.db["jobs"].find({"type": job_type}))
        assert {j["subject"]["integrationId"] for j in jobs} == live_ids
        assert {j["tenantId"] for j in jobs} == {live}
    assert services.db["jobs"].count_documents({"tenantId": archived}) == 0

    # Un-archived: its work is dispatched on the next tick.
    services.db["tenants"].update_one({"_id": archived}, {"$set": {"archived": False}})
    assert dispatch.dispatch_tenants(services, app, "tenant.aggregate_usage") == {"due": 2, "enqueued": 1}
    assert dispatch.dispatch_integrations(services, app, "integration.sync_files") == {
        "due": 4,
        "enqueued": 2,
    }
    assert services.db["jobs"].count_documents({"tenantId": archived}) == 3


def test_a_new_integration_is_due_for_a_health_check_at_once(isolated, settings: Settings) -> None:
    services, app, _ = isolated
    tenant = factories.tenant(services.db)["_id"]
    make_integrations(services, tenant, due=0, fresh=3)  # checked just now: not due
    # As the backend writes a new integration: health.lastCheck set at creation, no mwapTasks.
    new = factories.integration(services.db, services.ring, tenant, slug="dropbox")
    assert "mwapTasks" not in new
    assert new["health"]["lastCheck"] is not None
    result = dispatch.dispatch_integrations(services, app, "integration.health_check")
    assert result == {"due": 1, "enqueued": 1}
    [job] = services.db["jobs"].find({"type": "integration.health_check"})
    assert job["subject"] == {"integrationId": str(new["_id"])}

    # Once the platform checked it, it waits for the interval like the others.
    services.db["jobs"].delete_many({})
    services.redis.flushdb()
    services.db["cloudIntegrations"].update_one(
        {"_id": new["_id"]}, {"$set": {"mwapTasks.healthCheckedAt": now(), "health.lastCheck": now()}}
    )
    assert dispatch.dispatch_integrations(services, app, "integration.health_check") == {
        "due": 0,
        "enqueued": 0,
    }

    # And the health tick runs often enough to reach a new integration within the bound.
    from worker import schedule as beat_schedule  # noqa: PLC0415

    tick = beat_schedule.build_schedule(settings)["dispatch.integration.health_check"]["schedule"]
    assert tick <= settings.new_integration_check_within < settings.health_check_interval


def test_dispatchers_and_the_reconciler_are_on_the_beat_schedule(settings: Settings) -> None:
    from worker import schedule as beat_schedule  # noqa: PLC0415

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
    passes = {"system.reconcile", "system.recover_dead_workers", "webhooks.sweep"}
    assert set(schedule) == dispatchers | passes
    entry = schedule["dispatch.integration.sync_files"]
    assert entry["schedule"] == settings.sync_interval
    assert entry["options"]["expires"] == settings.sync_interval


def test_one_call_asking_twice_for_the_same_subject_gets_one_job(isolated) -> None:
    services, app, _ = isolated
    from mwap.enqueue import JobRequest, enqueue  # noqa: PLC0415
    from worker.app import publisher  # noqa: PLC0415

    tenant, integration = ObjectId(), str(ObjectId())
    twice = [JobRequest("integration.sync_files", tenant, {"integrationId": integration}) for _ in range(2)]
    first, second = enqueue(services.db, services.redis, publisher(app), twice, lease_ttl=60)
    assert first.created
    assert not second.created
    assert second.job["_id"] == first.job["_id"]
    assert services.db["jobs"].count_documents({}) == 1


# (the due query's module in tasks/, settings, the fields its last run writes, interval and tick fields)
LAST_RUN_RULES = [
    pytest.param(
        "sync", {"sync_interval": 900}, ("mwapTasks.lastSyncAt",), "sync_interval", "sync_interval", id="sync"
    ),
    pytest.param(
        "health",
        {"health_check_interval": 900, "new_integration_check_within": 300},
        ("health.lastCheck", "mwapTasks.healthCheckedAt"),
        "health_check_interval",
        "new_integration_check_within",
        id="health",
    ),
    pytest.param(
        "tokens",
        {"token_refresh_max_age": 86400, "token_refresh_interval": 3600},
        ("mwapTasks.lastRefreshAt",),
        "token_refresh_max_age",
        "token_refresh_interval",
        id="token-idle",
    ),
]


@pytest.mark.parametrize(("module", "values", "fields", "interval_field", "tick_field"), LAST_RUN_RULES)
def test_an_item_finished_after_its_tick_runs_again_one_interval_later(
    isolated, module: str, values: dict, fields: tuple[str, ...], interval_field: str, tick_field: str
) -> None:
    """A job finishes a little after the tick that dispatched it: the item is due again at the tick
    one interval (rounded to ticks) later, not a whole tick after that; never before
    ``interval - tick / 2``. (The old rule, ``last < moment - interval``, waited one more tick.)"""
    import importlib  # noqa: PLC0415

    from ops.capacity.model import period  # noqa: PLC0415
    from worker import schedule as beat_schedule  # noqa: PLC0415

    services, _app, _ = isolated
    settings = services.settings.model_copy(update=values)
    due = importlib.import_module(f"tasks.{module}").due
    interval, tick = float(getattr(settings, interval_field)), float(getattr(settings, tick_field))
    dispatcher = {"sync": "sync_files", "health": "health_check", "tokens": "refresh_token"}[module]
    assert beat_schedule.build_schedule(settings)[f"dispatch.integration.{dispatcher}"]["schedule"] == tick
    make_integrations(services, factories.tenant(services.db)["_id"], due=0, fresh=1)
    (doc,) = services.db["cloudIntegrations"].find()
    t0 = now().replace(microsecond=0)  # the tick that dispatched the last run
    last = t0 + timedelta(seconds=5)  # when that run finished
    services.db["cloudIntegrations"].update_one(
        {"_id": doc["_id"]},
        {"$set": {"authData.expiresAt": t0 + timedelta(days=30), **dict.fromkeys(fields, last)}},
    )

    def is_due(at: datetime) -> bool:
        return services.db["cloudIntegrations"].count_documents({"_id": doc["_id"], **due(settings, at)}) == 1

    ticks = (t0 + timedelta(seconds=k * tick) for k in range(1, 100))
    first = next(at for at in ticks if is_due(at))
    assert (first - t0).total_seconds() == interval == period(interval, tick)
    # Never sooner than the interval less half a tick after the last run.
    earliest = last + timedelta(seconds=interval - tick / 2)
    assert not is_due(earliest - timedelta(seconds=1))
    assert is_due(earliest + timedelta(seconds=1))
