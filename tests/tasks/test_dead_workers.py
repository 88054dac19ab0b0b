"""system.recover_dead_workers and the heartbeat it reads, against the session's real Redis,
MongoDB stand-in and worker: a dead run's jobs are handed back at once; a live or slow worker's,
and a job whose run has not beaten yet, are left alone."""

import json
import time
from datetime import timedelta

import factories
import pytest
from pydantic import ValidationError
from pymongo.database import Database

from mwap import broker, jobtypes, ledger, liveness
from mwap.connections import redis_client
from mwap.ledger import now
from mwap.services import Services
from mwap.settings import Settings
from ops.processes import Child
from tasks import dead_workers
from tasks.reconcile import resend_or_fail
from worker import heartbeat, schedule
from worker.app import create_celery_app, publisher

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def quick(services: Services) -> Services:
    """The session's services with a short heartbeat TTL: the check's guard against a Redis
    restarted less than a TTL ago holds only for the session Redis's first seconds."""
    return Services(
        services.settings.model_copy(update={"worker_heartbeat_interval": 1, "worker_heartbeat_ttl": 2}),
        services.db,
        services.redis,
        services.ring,
    )


@pytest.fixture(scope="module")
def producer(settings: Settings):
    app = create_celery_app(settings, include_tasks=False)
    yield app
    app.close()


def registered_run(services: Services, *, alive: bool) -> str:
    """A worker run that has beaten; ``alive=False``: its key has since expired (it died)."""
    run = liveness.new_run_id()
    liveness.beat(services.redis, run, "test-node@nowhere", ttl=services.settings.worker_heartbeat_ttl)
    if not alive:
        services.redis.delete(liveness.alive_key(run))
    return run


def running_job(db: Database, run: str, *, tag: str, **fields: object) -> dict:
    """A ledger job a worker run started ``startedAt`` ago (default: a moment ago)."""
    doc = ledger.new_job("system.echo", tenant_id=None, params={"message": "orphan"}, queue="default")
    doc.update(
        {
            "status": "running",
            "attempts": 1,
            "startedAt": now(),
            "worker": "test-node@nowhere",
            "workerRun": run,
            "execOwner": f"test-node@nowhere:4242:{tag}",
            **fields,
        }
    )
    db["jobs"].insert_one(doc)
    return doc


def hold(services: Services, job_id: str, tag: str) -> None:
    """The job's message held unacknowledged under ``tag``, as kombu keeps it for a consumer."""
    message = {"headers": {"id": job_id, "task": "system.echo"}, "properties": {"delivery_tag": tag}}
    services.redis.hset(broker.UNACKED_KEY, tag, json.dumps([message, "", "default"]))
    services.redis.zadd(broker.UNACKED_INDEX_KEY, {tag: time.time()})


def test_a_dead_runs_job_is_resent_at_once_its_lock_freed_and_its_held_message_dropped(
    services: Services, quick: Services, db: Database, producer
) -> None:
    run = registered_run(services, alive=False)
    doc = running_job(db, run, tag="dead-tag-1")
    lock = f"mwap:exec:{doc['_id']}"
    services.redis.set(lock, doc["execOwner"], ex=600)  # the dead delivery's lock, 10 minutes to go
    hold(services, doc["_id"], "dead-tag-1")

    counts = dead_workers.recover(quick, producer)

    assert counts["dead"] >= 1
    assert counts["resent"] >= 1
    assert services.redis.hget(broker.UNACKED_KEY, "dead-tag-1") is None  # nothing to restore later
    assert services.redis.zscore(broker.UNACKED_INDEX_KEY, "dead-tag-1") is None
    assert not services.redis.sismember(liveness.RUNS_KEY, run)  # handed back: forgotten
    done = factories.wait_final(db, doc["_id"], timeout=30)  # not after the lock's 10 minutes
    assert done["status"] == "succeeded"
    assert (done["attempts"], done["resends"]) == (2, 1)
    assert done["result"] == {"message": "orphan", "retries": 0}


def test_a_live_runs_job_is_never_resent_however_old(
    services: Services, quick: Services, db: Database, producer
) -> None:
    run = registered_run(services, alive=True)
    doc = running_job(db, run, tag="live-tag", startedAt=now() - timedelta(hours=1))
    try:
        dead_workers.recover(quick, producer)
        after = db["jobs"].find_one({"_id": doc["_id"]})
        assert (after["status"], after.get("resends")) == ("running", None)
        assert services.redis.sismember(liveness.RUNS_KEY, run)
    finally:
        db["jobs"].delete_one({"_id": doc["_id"]})
        services.redis.delete(liveness.alive_key(run))
        liveness.forget(services.redis, [run])


def test_a_job_whose_run_has_not_beaten_yet_is_left_alone(
    services: Services, quick: Services, db: Database, producer
) -> None:
    # Started a moment ago by a run with no key and no registration (yet): not judged dead.
    doc = running_job(db, liveness.new_run_id(), tag="unborn-tag")
    try:
        dead_workers.recover(quick, producer)
        assert db["jobs"].find_one({"_id": doc["_id"]}).get("resends") is None
    finally:
        db["jobs"].delete_one({"_id": doc["_id"]})


def test_another_holders_lock_and_a_restarted_job_are_not_touched(
    services: Services, quick: Services, db: Database, producer
) -> None:
    run = registered_run(services, alive=False)
    doc = running_job(db, run, tag="dead-tag-2")
    lock = f"mwap:exec:{doc['_id']}"
    services.redis.set(lock, "newer-node@somewhere:99:newer-tag", ex=600)  # a newer delivery's
    # A job that a newer delivery started between the pass's read and its write is not resent.
    stale_read = {**doc, "attempts": 0}
    assert resend_or_fail(services, publisher(producer), stale_read, now()) is None
    try:
        dead_workers.recover(quick, producer)
        assert services.redis.get(lock) == b"newer-node@somewhere:99:newer-tag"
        assert db["jobs"].find_one({"_id": doc["_id"]})["resends"] == 1
    finally:
        services.redis.delete(lock)
        db["jobs"].update_one({"_id": doc["_id"]}, {"$set": {"status": "cancelled"}})


def test_a_job_resent_too_often_is_failed_as_lost(
    services: Services, quick: Services, db: Database, producer
) -> None:
    run = registered_run(services, alive=False)
    doc = running_job(db, run, tag="lost-tag", resends=services.settings.max_resends)
    dead_workers.recover(quick, producer)
    final = db["jobs"].find_one({"_id": doc["_id"]})
    assert final["status"] == "failed"
    assert final["error"]["type"] == "JobLost"


def test_the_worker_records_its_run_and_lock_owner_and_keeps_its_heartbeat(
    services: Services, db: Database, worker: Child
) -> None:
    job = factories.enqueue_job(services, "system.echo", None, {}, message="who")
    done = factories.wait_final(db, job["_id"])
    run = done["workerRun"]
    assert run
    assert services.redis.sismember(liveness.RUNS_KEY, run)
    assert services.redis.get(liveness.alive_key(run)) == worker.hostname.encode()  # type: ignore[attr-defined]
    assert 0 < services.redis.ttl(liveness.alive_key(run)) <= services.settings.worker_heartbeat_ttl
    assert done["execOwner"].startswith(f"{done['worker']}:")
    assert run not in liveness.dead_runs(services.redis, ttl=services.settings.worker_heartbeat_ttl)


def test_the_heartbeat_thread_beats_while_the_process_is_busy(settings: Settings) -> None:
    fast = settings.model_copy(update={"worker_heartbeat_interval": 1, "worker_heartbeat_ttl": 4})
    beating = heartbeat.Heartbeat(fast, "busy-node@here")
    redis = redis_client(fast)
    beating.start()
    try:
        key = liveness.alive_key(beating.run)
        assert redis.get(key) == b"busy-node@here"  # written before start() returns
        # Pure-Python work holding the GIL for six beats: the thread still gets its turns, and
        # refreshes the key (its TTL never runs down past one missed beat and a margin).
        deadline = time.monotonic() + 6
        lowest_ttl = fast.worker_heartbeat_ttl
        while time.monotonic() < deadline:
            sum(range(20_000))
            lowest_ttl = min(lowest_ttl, redis.ttl(key))
        assert lowest_ttl >= 1
    finally:
        beating.stop()
    assert not redis.exists(liveness.alive_key(beating.run))  # stopped: gone at once...
    assert beating.run in liveness.dead_runs(redis, ttl=fast.worker_heartbeat_ttl)  # ...still registered
    liveness.forget(redis, [beating.run])


def test_the_defaults_notice_a_death_within_20_seconds_and_refuse_a_ttl_one_beat_long(
    settings: Settings,
) -> None:
    defaults = Settings.model_fields
    interval = defaults["worker_heartbeat_interval"].default
    ttl = defaults["worker_heartbeat_ttl"].default
    check = defaults["dead_worker_check_interval"].default
    assert ttl >= 3 * interval  # two late beats still leave a live worker alive
    assert ttl + check <= 20  # the last beat's expiry, then at most one check period
    with pytest.raises(ValidationError, match="MWAP_WORKER_HEARTBEAT_TTL"):
        settings.model_validate({**settings.model_dump(), "worker_heartbeat_interval": 10})
    entry = create_celery_app(settings).conf.beat_schedule["system.recover_dead_workers"]
    assert entry["schedule"] == float(settings.dead_worker_check_interval)
    assert entry["options"] == {"expires": float(settings.dead_worker_check_interval)}
    assert jobtypes.routes()["system.recover_dead_workers"] == {"queue": "maintenance"}
    assert schedule.DEAD_WORKERS == "system.recover_dead_workers"


def test_no_run_is_judged_dead_while_redis_is_younger_than_a_ttl(services: Services) -> None:
    # A restarted Redis may have lost live workers' keys that they have not written again yet.
    run = registered_run(services, alive=False)
    try:
        assert run in liveness.dead_runs(services.redis, ttl=1)
        assert liveness.dead_runs(services.redis, ttl=10**9) == []
    finally:
        liveness.forget(services.redis, [run])
