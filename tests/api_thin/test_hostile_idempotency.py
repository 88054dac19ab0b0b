"""Hostile input: the Idempotency-Key store as a memory bomb.

The attack: one tenant key posts 100-job batches, each with a new Idempotency-Key. Before, every
key kept its whole answer (~54 KB) in the broker's Redis for 24 h with no cap: 10,000 keys are
half a gigabyte, and a key at its rate limit fills gigabytes a day for everyone on the broker.
Now a record keeps what a replay needs (fingerprint, status, job ids) and each tenant has a byte
budget, oldest keys forgotten first; replays still answer with the same status and job ids.
"""

from collections.abc import Iterator
from typing import Any

import factories
import pytest
from api_support import assert_problem, forget_offline, offline_app, offline_redis_url, tenant_with_key
from flask import Flask
from pymongo.database import Database
from redis import Redis

from api_thin import auth, idempotency
from mwap.settings import Settings

BUDGET = 256_000  # bytes, this test's idempotency_tenant_bytes
FLOOD = 10_000
# The stated bound: what MEMORY USAGE says one tenant's records take stays within its budget (the
# accounting charges each record more than Redis spends on it), give or take the one record that
# is always kept.
MEMORY_BOUND = BUDGET + 8_000


@pytest.fixture(scope="module")
def app(settings: Settings) -> Iterator[Flask]:
    # No worker reads the offline database, so the jobs stay as they were queued; no rate limit,
    # so the flood is the only thing measured.
    yield offline_app(settings, idempotency_tenant_bytes=BUDGET, rate_limit_per_minute=0)
    forget_offline(settings)


@pytest.fixture(scope="module")
def redis(settings: Settings) -> Iterator[Redis]:
    client = Redis.from_url(offline_redis_url(settings))
    yield client
    client.close()


def scope_memory(redis: Redis, scope: str) -> tuple[int, int]:
    """(number of keys, bytes MEMORY USAGE says they take) of one scope's idempotency records."""
    keys = list(redis.scan_iter(match=idempotency.scope_keys(scope), count=1000))
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return len(keys), sum(size or 0 for size in pipe.execute())


def batch_of_100(db: Database, ring: Any, tenant_id: Any) -> list[dict[str, Any]]:
    """A full batch: 11 distinct jobs (one open job per type and subject), then repeats, each
    item answered with the whole job."""
    integrations = [
        factories.integration(db, ring, tenant_id, slug=slug)
        for slug in ("google-drive", "dropbox", "onedrive")
    ]
    distinct = [
        {"type": job_type, "integrationId": str(integration["_id"])}
        for integration in integrations
        for job_type in ("integration.sync_files", "integration.refresh_token", "integration.health_check")
    ]
    distinct += [{"type": "tenant.aggregate_usage"}, {"type": "tenant.apply_retention"}]
    return [distinct[n % len(distinct)] for n in range(100)]


def summary(response: Any) -> list[tuple[int, str]]:
    return [(item["status"], item["job"]["id"]) for item in response.get_json()["items"]]


def test_ten_thousand_keys_of_one_tenant_stay_within_its_budget(
    app: Flask, redis: Redis, db: Database, ring: Any
) -> None:
    client = app.test_client()
    tenant, headers = tenant_with_key(db)
    _, bystander_headers = tenant_with_key(db)
    scope = f"tenant:{tenant['_id']}"
    body = {"jobs": batch_of_100(db, ring, tenant["_id"])}

    # A bystander tenant's key, stored before the flood.
    kept = {**bystander_headers, "Idempotency-Key": "bystander-1"}
    theirs = client.post("/v1/jobs", json={"type": "tenant.apply_retention"}, headers=kept)
    assert theirs.status_code == 202

    first = client.post("/v1/jobs/batch", json=body, headers={**headers, "Idempotency-Key": "flood-0"})
    assert first.status_code == 202, first.get_data(as_text=True)
    answer = summary(first)
    assert len(answer) == 100
    assert {status for status, _ in answer} == {200, 202}

    # In spirit: the old store kept every answer whole, so the flood would have kept this much.
    would_have_kept = FLOOD * len(first.get_data())
    assert would_have_kept > 400_000_000  # ~54 KB a key: half a gigabyte from one tenant key

    memory_before = redis.info("memory")["used_memory"]
    # The flood, through the real code path (idempotency.begin / Claim.complete on the real Redis,
    # in a request like the first) rather than 10,000 HTTP round trips.
    with app.test_request_context("/v1/jobs/batch", method="POST", json=body, headers=headers):
        principal = auth.authenticate()
    for n in range(1, FLOOD):
        key = {**headers, "Idempotency-Key": f"flood-{n}"}
        with app.test_request_context("/v1/jobs/batch", method="POST", json=body, headers=key):
            claim = idempotency.begin(principal)
            assert isinstance(claim, idempotency.Claim)
            claim.complete(first)
    grown = redis.info("memory")["used_memory"] - memory_before

    count, used = scope_memory(redis, scope)
    print(f"flood: {count} keys, {used} bytes, server grew {grown} bytes, old store {would_have_kept}")
    assert used <= MEMORY_BOUND, f"{used} bytes for {count} keys"
    assert 2 < count < FLOOD / 10  # the oldest keys were forgotten, not all of them
    # The whole server grew by about that much, not by the flood (allocator slack aside).
    assert grown < 4 * BUDGET < would_have_kept / 100

    # Replays of recent keys, through the HTTP path, answer as the first did: same status, same
    # jobs in the same order, same 200/202 per item; nothing is enqueued again.
    jobs_before = db["jobs"].count_documents({"tenantId": tenant["_id"]})
    for n in (0, FLOOD - 1, FLOOD - 2):
        replay = client.post(
            "/v1/jobs/batch", json=body, headers={**headers, "Idempotency-Key": f"flood-{n}"}
        )
        assert replay.status_code == 202
        if n:
            assert replay.headers["Idempotent-Replayed"] == "true"
            assert summary(replay) == answer
            assert replay.get_data() == first.get_data()  # rebuilt from the ledger, byte for byte
        else:
            # flood-0 was forgotten (oldest first): the request runs again and, its jobs being
            # open, gets the same jobs (each 200: the open one) without creating any.
            assert "Idempotent-Replayed" not in replay.headers
            assert summary(replay) == [(200, job_id) for _, job_id in answer]
    assert db["jobs"].count_documents({"tenantId": tenant["_id"]}) == jobs_before

    # Nothing crossed: the bystander's key still replays.
    again = client.post("/v1/jobs", json={"type": "tenant.apply_retention"}, headers=kept)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == theirs.get_json()["id"]


def test_a_record_keeps_ids_not_bodies_and_names_the_tenant(app: Flask, redis: Redis, db: Database) -> None:
    client = app.test_client()
    tenant, headers = tenant_with_key(db)
    key = {**headers, "Idempotency-Key": factories.uid("idem")}
    message = {"type": "tenant.aggregate_usage", "params": {"from": "2026-01-01", "to": "2026-01-02"}}
    first = client.post("/v1/jobs", json=message, headers=key)
    assert first.status_code == 202
    records = [
        redis.get(name)
        for name in redis.scan_iter(match=idempotency.scope_keys(f"tenant:{tenant['_id']}"))
        if redis.type(name) == b"string"
    ]
    assert len(records) == 1
    assert b"2026-01-01" not in records[0]  # the job's params live in the ledger only
    assert first.get_json()["id"].encode() in records[0]
    assert len(records[0]) < len(first.get_data()) / 2

    # The job moved on in the ledger: a replay shows it as it is now, same status code and id.
    db["jobs"].update_one({"_id": first.get_json()["id"]}, {"$set": {"status": "succeeded"}})
    replay = client.post("/v1/jobs", json=message, headers=key)
    assert (replay.status_code, replay.headers["Location"]) == (202, first.headers["Location"])
    assert replay.get_json()["id"] == first.get_json()["id"]
    assert replay.get_json()["status"] == "succeeded"


def test_a_replay_whose_job_was_deleted_is_409_not_500(app: Flask, db: Database) -> None:
    client = app.test_client()
    _, headers = tenant_with_key(db)
    key = {**headers, "Idempotency-Key": factories.uid("idem")}
    first = client.post("/v1/jobs", json={"type": "tenant.apply_retention"}, headers=key)
    assert first.status_code == 202
    db["jobs"].delete_one({"_id": first.get_json()["id"]})
    replay = client.post("/v1/jobs", json={"type": "tenant.apply_retention"}, headers=key)
    assert_problem(replay, 409, "idempotency-key-expired")
