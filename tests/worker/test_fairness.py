"""Fairness: a per-tenant cap on running jobs across workers, so one tenant cannot starve another."""

import itertools

import factories
import pytest
from pymongo.database import Database

from mwap.connections import redis_client
from mwap.services import Services
from ops import processes


@pytest.fixture
def capped(stack_env: dict[str, str], settings, services: Services, log_dir):
    """A worker with a cap of one running job per tenant and three pool processes, on its own Redis db."""
    url = stack_env["MWAP_REDIS_URL"].rsplit("/", 1)[0] + "/6"
    env = {**stack_env, "MWAP_REDIS_URL": url, "MWAP_TENANT_MAX_RUNNING_JOBS": "1"}
    own = settings.model_copy(update={"redis_url": url, "tenant_max_running_jobs": 1})
    redis_client(own).flushdb()
    child = processes.start_worker(env=env, log_dir=log_dir, name="worker-capped", concurrency=3)
    yield Services(own, services.db, redis_client(own), services.ring)
    child.stop()


def test_one_tenant_runs_one_job_at_a_time_while_another_gets_through(capped: Services, db: Database) -> None:
    busy_tenant, quiet_tenant = factories.tenant(db)["_id"], factories.tenant(db)["_id"]
    busy = [factories.enqueue_job(capped, "system.echo", busy_tenant, {}, sleepSeconds=1.5) for _ in range(3)]
    quiet = factories.enqueue_job(capped, "system.echo", quiet_tenant, {}, sleepSeconds=0.1)
    done = [factories.wait_final(db, job["_id"], timeout=60) for job in busy]
    other = factories.wait_final(db, quiet["_id"], timeout=60)
    assert {job["status"] for job in [*done, other]} == {"succeeded"}
    assert {job["tenantId"] for job in done} == {busy_tenant}

    spans = sorted((job["startedAt"], job["finishedAt"]) for job in done)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, "two jobs of one tenant ran at once"
    assert sum(job.get("deferrals", 0) for job in done) > 0  # they stepped aside, not piled up
    assert other["finishedAt"] < spans[-1][1]  # the quiet tenant did not wait for the busy one
    assert all(job["attempts"] == 1 for job in done)  # deferral is not an attempt
