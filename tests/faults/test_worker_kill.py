"""Row 1 (and row 2's last part): SIGKILL a worker in the middle of a sync and of a token refresh.

A killed pool process: Celery requeues its message (``task_reject_on_worker_lost``) and the worker's
main process frees the job's execution lock, so the redelivery runs at once. A killed worker (main
process and pool, SIGKILL to the group): its unacknowledged messages sit in Redis until the
visibility timeout (900 s), so the reconciler (beat, every ``MWAP_RECONCILE_INTERVAL``) resends the
jobs the ledger still shows open once they are ``MWAP_STALE_JOB_AFTER`` old.

A refresher killed while holding the integration's single-flight refresh lock keeps it until the
lock expires (``tasks.tokens.LOCK_TTL``, 60 s); the whole-worker case runs on a second stack while
the first waits that out.
"""

import signal
from pathlib import Path

from faultkit import Row, Stack, kill_pid, provider_secrets, record, stopwatch

from ops.fake_providers.control import FakeAccount, FakeProviders
from ops.processes import wait_for
from tasks.integrations import tokens_of
from tasks.tokens import LOCK_TTL

RECONCILE_INTERVAL = 2
STALE_JOB_AFTER = 5
# Killed worker -> its jobs running again elsewhere: one reconcile period, the staleness threshold,
# and a margin for the reconciler's worker broadcast (1 s), publishing and pickup on a loaded host.
RETURN_BOUND = RECONCILE_INTERVAL + STALE_JOB_AFTER + 8
REDELIVERY_BOUND = 10  # killed pool process -> the job's next attempt running


def provider_set(fake: FakeProviders, account_id: str) -> dict[str, str]:
    return {f["id"]: f["path"] for f in fake.files(account_id, limit=10_000)}


def stored(stack: Stack, integration: dict) -> tuple[dict[str, str], int]:
    """Live files as provider id -> path, and how many documents the integration has in all."""
    docs = stack.virtual_files(integration)  # deleted files are hard-deleted: every one is live
    return {d["providerFileId"]: d["path"] for d in docs}, len(docs)


def slow_account(stack: Stack, fake: FakeProviders) -> tuple[FakeAccount, dict]:
    """A Dropbox account listed 4 items a page, 300 ms a call: a sync of several seconds to interrupt."""
    account = fake.create_account("dropbox", generate_files=48, generate_folders=3, page_size=4)
    fake.set_account_latency(account.id, 300)
    return account, stack.integration_for(account)


def mid_sync(stack: Stack, job_id: str, integration: dict) -> bool:
    """Running, with at least two pages checkpointed and more to come."""
    return stack.job(job_id)["status"] == "running" and stored(stack, integration)[1] >= 8


def check_files(
    stack: Stack, fake: FakeProviders, account: FakeAccount, integration: dict
) -> tuple[int, int]:
    """(missing or wrong, duplicated) virtual files against the provider's set; asserts both are 0."""
    live, total = stored(stack, integration)
    expected = provider_set(fake, account.id)
    assert live == expected  # no loss
    assert total == len(expected)  # no duplicate documents
    return len(set(live.items()) ^ set(expected.items())), total - len(expected)


def whole_worker_killed(root: Path, fake: FakeProviders) -> Row:
    """SIGKILL a worker (main process and pool) running a sync and an echo; the reconciler brings both back."""
    overrides = {
        "MWAP_RECONCILE_INTERVAL": str(RECONCILE_INTERVAL),
        "MWAP_STALE_JOB_AFTER": str(STALE_JOB_AFTER),
    }
    with Stack(root, overrides=overrides) as stack, stopwatch() as elapsed:
        stack.use_fake(fake)
        victim, _ = stack.parallel(lambda: stack.worker("victim", concurrency=2), stack.beat)
        account, integration = slow_account(stack, fake)
        sync_job = stack.integration_job("integration.sync_files", integration)
        [echo] = stack.echo(1, message="held", sleepSeconds=10)
        wait_for(lambda: mid_sync(stack, sync_job["_id"], integration), timeout=60, what="mid-sync")
        stack.wait_status(echo["_id"], "running", timeout=30)
        survivor = stack.worker("survivor", concurrency=2)

        victim.signal(signal.SIGKILL)
        victim.popen.wait(10)
        with stopwatch() as since_kill:
            for job_id in (sync_job["_id"], echo["_id"]):
                wait_for(
                    lambda job_id=job_id: (
                        (doc := stack.job(job_id))["attempts"] >= 2
                        or doc["status"] in ("succeeded", "failed")
                    ),
                    timeout=RETURN_BOUND,
                    what=f"job {job_id} back within {RETURN_BOUND}s",
                )
            returned_after = since_kill()
        for job_id in (sync_job["_id"], echo["_id"]):
            done = stack.wait_final(job_id, timeout=90)
            assert done["status"] == "succeeded", done["error"]
            assert done["worker"] == survivor.hostname  # type: ignore[attr-defined]
        assert stack.job(echo["_id"])["result"] == {"message": "held", "retries": 0}
        lost, duplicated = check_files(stack, fake, account, integration)
        return Row(
            "SIGKILL whole worker (reconciler resend)",
            trials=1,
            jobs=2,
            lost=lost,
            duplicated=duplicated,
            leaked=stack.leaks(provider_secrets(fake, account.id)),
            seconds=elapsed(),
            note=f"jobs back {returned_after:.1f}s after the kill; bound {RETURN_BOUND}s = reconcile "
            f"{RECONCILE_INTERVAL}s + stale {STALE_JOB_AFTER}s + 8s margin (visibility timeout: 900s)",
        )


def test_sigkill_mid_sync_mid_graph_refresh_and_whole_worker(tmp_path: Path) -> None:
    with Stack(tmp_path / "pool") as stack, stopwatch() as elapsed:
        fake, _ = stack.parallel(stack.fake, lambda: stack.worker("worker", concurrency=2))
        account, integration = slow_account(stack, fake)
        graph = fake.create_account("onedrive")
        graph_integration = stack.integration_for(graph)
        original_refresh = graph.refresh_token
        # The first token call is throttled with a short Retry-After: the client sleeps it out
        # inline, holding the single-flight refresh lock; that is where the process dies.
        fake.fault(graph.id, "status", status=429, retry_after=4, endpoint="*.token", count=1)

        sync_job = stack.integration_job("integration.sync_files", integration)
        refresh_job = stack.integration_job("integration.refresh_token", graph_integration, force=True)
        wait_for(lambda: mid_sync(stack, sync_job["_id"], integration), timeout=60, what="mid-sync")
        wait_for(
            lambda: (
                fake.stats(graph.id)["refresh_grants"] == 1
                and stack.job(refresh_job["_id"])["status"] == "running"
            ),
            timeout=30,
            what="refresh in its Retry-After wait",
        )
        victims = {stack.executor_pid(sync_job["_id"]), stack.executor_pid(refresh_job["_id"])}
        assert None not in victims
        assert len(victims) == 2
        for pid in victims:
            kill_pid(pid)

        # Redelivered at once by the same worker's new pool processes (not after the lock expires).
        with stopwatch() as since_kill:
            wait_for(
                lambda: (doc := stack.job(sync_job["_id"]))["attempts"] == 2 and doc["status"] == "running",
                timeout=REDELIVERY_BOUND,
                what="the sync's second attempt",
            )
            redelivered_after = since_kill()
        done = stack.wait_final(sync_job["_id"], timeout=90)
        assert done["status"] == "succeeded", done["error"]
        lost, duplicated = check_files(stack, fake, account, integration)

        # While the refresh waits out the dead holder's lock: a whole worker killed, on its own stack.
        whole = whole_worker_killed(tmp_path / "whole", fake)

        refreshed = stack.wait_final(refresh_job["_id"], timeout=LOCK_TTL + 30)
        assert refreshed["status"] == "succeeded", refreshed["error"]
        assert refreshed["attempts"] <= 3
        stats = fake.stats(graph.id)
        # Two grant requests reached the token endpoint: the throttled one (refused, nothing spent)
        # and one that rotated the refresh token. A second spend of the original would be invalid_grant.
        assert stats["refresh_grants"] == 2
        stored_tokens = tokens_of(
            stack.ring, stack.db["cloudIntegrations"].find_one({"_id": graph_integration["_id"]})
        )
        valid = fake.tokens(graph.id)["refresh_tokens"]
        assert original_refresh not in valid
        assert valid == [stored_tokens.refresh_token]
        # ... and the stored refresh token still works.
        again = stack.wait_final(
            stack.integration_job("integration.refresh_token", graph_integration, force=True)["_id"],
            timeout=60,
        )
        assert again["status"] == "succeeded", again["error"]
        assert stack.db["cloudIntegrations"].find_one({"_id": graph_integration["_id"]})["status"] == "active"

        secrets = [*provider_secrets(fake, account.id, graph.id), original_refresh, graph.access_token]
        record(
            Row(
                "SIGKILL pool process mid-sync and mid-refresh",
                trials=2,
                jobs=3,
                lost=lost,
                duplicated=duplicated + (stats["refresh_grants"] - 2),
                leaked=stack.leaks(secrets),
                seconds=elapsed(),
                note=f"sync redelivered {redelivered_after:.1f}s after the kill; refresh waited the dead "
                f"holder's lock (<= {LOCK_TTL}s), {len(refreshed['retries'])} retry",
            )
        )
        record(whole)
