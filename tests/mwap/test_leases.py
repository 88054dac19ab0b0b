"""mwap.leases against a redis-server of its own (its command statistics are this module's alone)."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from mwap import leases
from ops import processes


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    port = processes.free_port()
    logs: Path = tmp_path_factory.mktemp("leases-redis")
    child = processes.start_redis(port, data_dir=None, log_dir=logs, env=os.environ)
    client = Redis(host="127.0.0.1", port=port)
    yield client
    client.close()
    child.stop()


def script_calls(redis: Redis) -> dict[str, int]:
    stats = redis.info("commandstats")
    return {name: int((stats.get(f"cmdstat_{name}") or {}).get("calls", 0)) for name in ("eval", "evalsha")}


def test_release_is_compare_and_delete(redis: Redis) -> None:
    key = leases.key("integration.sync_files", "int-1", "tenant-a")
    assert leases.acquire(redis, key, "job-1", 60)
    assert not leases.acquire(redis, key, "job-2", 60)
    assert not leases.release(redis, key, "job-2")  # a late finisher never frees a newer owner's lease
    assert redis.get(key) == b"job-1"
    assert leases.release(redis, key, "job-1")
    assert redis.get(key) is None


def test_an_execution_lock_is_freed_only_for_its_dead_holder(redis: Redis) -> None:
    key = leases.exec_key("job-7")
    assert leases.acquire(redis, key, "host-a:12:7", 60)
    assert not leases.release_if_held_by(redis, key, "host-a:1:")  # pid 1, not 12
    assert not leases.release_if_held_by(redis, key, "host-b:12:")
    assert redis.get(key) == b"host-a:12:7"
    assert leases.release_if_held_by(redis, key, "host-a:12:")
    assert redis.get(key) is None


def test_slots_count_holders_and_free_on_release(redis: Redis) -> None:
    key = leases.slot_key("tenant-running", "tenant-a")
    assert leases.acquire_slot(redis, key, "job-1", limit=2, ttl=60)
    assert leases.acquire_slot(redis, key, "job-2", limit=2, ttl=60)
    assert not leases.acquire_slot(redis, key, "job-3", limit=2, ttl=60)
    assert leases.acquire_slot(redis, key, "job-1", limit=2, ttl=60)  # re-entrant
    leases.release_slot(redis, key, "job-1")
    assert leases.acquire_slot(redis, key, "job-3", limit=2, ttl=60)


def test_scripts_run_by_sha_and_reload_after_a_flush(redis: Redis) -> None:
    """Registered once per client: every call is an EVALSHA (no script text sent each time), and a
    Redis that forgot its scripts (restart, SCRIPT FLUSH) gets them again."""
    key = leases.exec_key("job-9")
    before = script_calls(redis)
    for round_ in range(3):
        assert leases.acquire(redis, key, f"host:1:{round_}", 60)
        assert leases.release(redis, key, f"host:1:{round_}")
    redis.script_flush()
    assert leases.acquire(redis, key, "host:1:9", 60)
    assert leases.release_if_held_by(redis, key, "host:1:")
    after = script_calls(redis)
    assert after["eval"] == before["eval"]
    # Three releases and the one after the flush (answered NOSCRIPT, loaded, run again).
    assert after["evalsha"] - before["evalsha"] >= 4


def test_keys_carry_the_tenant_where_one_tenant_must_not_meet_another() -> None:
    assert leases.refresh_lock_key("tenant-a", "int-1") != leases.refresh_lock_key("tenant-b", "int-1")
    assert leases.key("integration.sync_files", "int-1", "tenant-a") != leases.key(
        "integration.sync_files", "int-1", "tenant-b"
    )


def test_let_go_frees_what_is_owned_drops_slots_and_publishes_in_one_call(redis: Redis) -> None:
    lease = leases.key("integration.sync_files", "int-2", "tenant-a")
    newer = leases.key("integration.sync_files", "int-3", "tenant-a")
    lock = leases.exec_key("job-20")
    slots = leases.slot_key("tenant-running", "tenant-c")
    assert leases.acquire(redis, lease, "job-20", 60)
    assert leases.acquire(redis, newer, "job-31", 60)  # a newer job's lease: not ours to free
    assert leases.acquire(redis, lock, "host:1:20", 60)
    assert leases.acquire_slot(redis, slots, "job-20", limit=2, ttl=60)
    assert leases.acquire_slot(redis, slots, "job-21", limit=2, ttl=60)
    listener = redis.pubsub()
    listener.subscribe("mwap:test-ended")
    assert listener.get_message(timeout=5)["type"] == "subscribe"
    leases.let_go(redis, owned=[("mwap:test-absent", "nobody")])  # the script loaded once
    before = script_calls(redis)["evalsha"]

    leases.let_go(
        redis,
        owned=[(lease, "job-20"), (newer, "job-30")],
        dropped=[lock],
        slots=[(slots, "job-20")],
        publish=("mwap:test-ended", "succeeded"),
    )

    assert script_calls(redis)["evalsha"] - before == 1  # one round trip for all of it
    assert redis.get(lease) is None
    assert redis.get(newer) == b"job-31"
    assert redis.get(lock) is None
    assert redis.zrange(slots, 0, -1) == [b"job-21"]
    message = listener.get_message(timeout=5)
    assert message is not None
    assert message["data"] == b"succeeded"
    listener.close()


def test_let_go_without_a_compare_is_a_plain_pipeline(redis: Redis) -> None:
    lock = leases.exec_key("job-40")
    slots = leases.slot_key("tenant-running", "tenant-b")
    assert leases.acquire(redis, lock, "host:1:40", 60)
    assert leases.acquire_slot(redis, slots, "job-40", limit=1, ttl=60)
    before = script_calls(redis)["evalsha"]
    leases.let_go(redis, dropped=[lock], slots=[(slots, "job-40")])
    leases.let_go(redis)  # nothing to do
    assert script_calls(redis)["evalsha"] == before
    assert redis.get(lock) is None
    assert leases.acquire_slot(redis, slots, "job-41", limit=1, ttl=60)
