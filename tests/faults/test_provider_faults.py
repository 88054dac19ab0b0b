"""Row 4: provider faults through real workers: 429 storms with Retry-After, 5xx bursts, timeouts,
``invalid_grant``, health states and the shared circuit breaker.

Retries are bounded (the client's 4 attempts per call, then the job's ``max_retries``); a
Retry-After longer than ``provider_max_inline_wait`` (5 s) re-enqueues the job with that countdown
instead of sleeping in a worker slot, so the single slot of the worker here stays free meanwhile.
"""

from pathlib import Path

from faultkit import Row, Stack, provider_secrets, record, stopwatch

from ops.fake_providers.control import FakeProviders
from ops.processes import wait_for
from tasks import sync as sync_task
from tasks.health import breaker_state

CLIENT_ATTEMPTS = 4  # tasks.providers.http.RetryPolicy.max_attempts


def files_match(stack: Stack, fake: FakeProviders, account_id: str, integration: dict) -> tuple[int, int]:
    """(missing, duplicated) virtual files of ``integration`` against the provider's set."""
    expected = {f["id"] for f in fake.files(account_id, limit=10_000)}
    docs = stack.virtual_files(integration)
    stored = {d["providerFileId"] for d in docs}
    return len(expected ^ stored), len(docs) - len(stored)


def test_long_retry_after_reenqueues_and_storms_are_bounded(tmp_path: Path) -> None:
    with Stack(tmp_path) as stack, stopwatch() as elapsed:
        fake = stack.fake()
        stack.worker("worker", concurrency=1)  # one slot: a job sleeping in it would block the rest

        # A storm of two 429s with a 6 s Retry-After (over the 5 s a client may sleep) on the second page of a listing.
        account = fake.create_account("dropbox", generate_files=12, page_size=4)
        integration = stack.integration_for(account)
        fake.fault(
            account.id, "status", status=429, retry_after=6, count=2, endpoint="dropbox.list_folder_continue"
        )
        job = stack.integration_job("integration.sync_files", integration)
        waiting = stack.wait_status(job["_id"], "retrying", timeout=30)
        assert waiting["error"]["type"] == "RateLimited"
        # Meanwhile the worker's only slot runs other jobs.
        with stopwatch() as took:
            others = [stack.wait_final(j["_id"], timeout=20) for j in stack.echo(3, message="meanwhile")]
            meanwhile = took()
        assert [o["status"] for o in others] == ["succeeded"] * 3
        assert stack.job(job["_id"])["status"] == "retrying"  # still waiting out its Retry-After
        done = stack.wait_final(job["_id"], timeout=60)
        assert done["status"] == "succeeded", done["error"]
        assert len(done["retries"]) == 2
        assert all(r["error"]["type"] == "RateLimited" for r in done["retries"])
        missing, duplicated = files_match(stack, fake, account.id, integration)
        assert (missing, duplicated) == (0, 0)

        # A storm that never ends: short Retry-Afters are slept inline (at most 5 s each), then the
        # job retries; after max_retries it fails. Every call is counted: the bound is exact.
        endless = fake.create_account("dropbox", files=["/a.txt"])
        endless_integration = stack.integration_for(endless)
        fake.fault(
            endless.id, "status", status=429, retry_after="0", count=None, endpoint="dropbox.list_folder"
        )
        failed = stack.wait_final(
            stack.integration_job("integration.sync_files", endless_integration)["_id"], timeout=90
        )
        assert failed["status"] == "failed"
        assert failed["error"]["type"] == "RateLimited"
        assert len(failed["retries"]) == sync_task.MAX_RETRIES
        calls = fake.stats(endless.id)["calls"].get("dropbox.list_folder", 0)
        assert calls == (sync_task.MAX_RETRIES + 1) * CLIENT_ATTEMPTS

        record(
            Row(
                "provider 429 storms (Retry-After 6s; endless)",
                trials=2,
                jobs=5,
                lost=missing,
                duplicated=duplicated,
                leaked=stack.leaks(provider_secrets(fake, account.id, endless.id)),
                seconds=elapsed(),
                note=f"3 jobs ran in {meanwhile:.1f}s on the 1-slot worker while the sync was retrying; "
                f"endless storm failed after {len(failed['retries'])} retries and {calls} calls",
            )
        )


def test_5xx_bursts_timeouts_and_invalid_grant(tmp_path: Path) -> None:
    # Read timeout 1 s, so a provider that hangs 3 s times out; connect timeout stays as is.
    with Stack(tmp_path, overrides={"MWAP_PROVIDER_READ_TIMEOUT": "1"}) as stack, stopwatch() as elapsed:
        fake = stack.fake()
        stack.worker("worker", concurrency=2)

        burst = fake.create_account("dropbox", generate_files=12, page_size=4)
        burst_integration = stack.integration_for(burst)
        # Six 500s: the first call's 4 attempts fail (the job retries), then two more, then success.
        fake.fault(burst.id, "status", status=500, count=6, endpoint="dropbox.list_folder_continue")
        slow = fake.create_account("google-drive", generate_files=12, page_size=4)
        slow_integration = stack.integration_for(slow)
        fake.fault(slow.id, "timeout", hang_seconds=3, count=2, endpoint="google.files.list")

        jobs = [
            stack.integration_job("integration.sync_files", burst_integration),
            stack.integration_job("integration.sync_files", slow_integration),
        ]
        burst_done, slow_done = (stack.wait_final(j["_id"], timeout=90) for j in jobs)
        assert burst_done["status"] == "succeeded", burst_done["error"]
        assert [r["error"]["type"] for r in burst_done["retries"]] == ["TransientProviderError"]
        assert slow_done["status"] == "succeeded", slow_done["error"]
        assert slow_done["retries"] == []  # two timeouts absorbed by the client's own attempts
        results = [
            files_match(stack, fake, burst.id, burst_integration),
            files_match(stack, fake, slow.id, slow_integration),
        ]
        assert results == [(0, 0), (0, 0)]

        # invalid_grant: no retry, the integration goes to error with the reason, jobs skip it.
        revoked = fake.create_account("onedrive")
        revoked_integration = stack.integration_for(revoked)
        fake.revoke_refresh_tokens(revoked.id)
        refused = stack.wait_final(
            stack.integration_job("integration.refresh_token", revoked_integration, force=True)["_id"],
            timeout=30,
        )
        assert refused["status"] == "failed"
        assert refused["error"]["type"] == "ReauthRequired"
        assert refused["attempts"] == 1
        assert refused["retries"] == []
        assert fake.stats(revoked.id)["refresh_grants"] == 1
        doc = stack.db["cloudIntegrations"].find_one({"_id": revoked_integration["_id"]})
        assert doc["status"] == "error"
        assert "re-authorization" in doc["mwapTasks"]["statusReason"]
        probe = stack.wait_final(
            stack.integration_job("integration.health_check", revoked_integration)["_id"], timeout=30
        )
        assert probe["result"] == {"skipped": "integration is error"}

        record(
            Row(
                "provider 5xx burst, timeouts, invalid_grant",
                trials=3,
                jobs=4,
                lost=sum(r[0] for r in results),
                duplicated=sum(r[1] for r in results),
                leaked=stack.leaks([*provider_secrets(fake, burst.id, slow.id), revoked.refresh_token]),
                seconds=elapsed(),
                note="500 x6: 1 job retry; hang 3s x2 with 1s read timeout: absorbed inline; "
                "invalid_grant: failed at once, integration error",
            )
        )


def test_health_states_and_breaker_through_workers(tmp_path: Path) -> None:
    overrides = {"MWAP_BREAKER_FAIL_MAX": "2", "MWAP_BREAKER_RESET_TIMEOUT": "3"}
    with Stack(tmp_path, overrides=overrides) as stack, stopwatch() as elapsed:
        fake = stack.fake()
        stack.worker("worker", concurrency=2)

        def check(integration: dict) -> dict:
            job = stack.wait_final(
                stack.integration_job("integration.health_check", integration)["_id"], timeout=60
            )
            assert job["status"] == "succeeded", job["error"]
            return job["result"]

        # Health: a failing probe degrades, three in a row make it unhealthy, one success heals.
        account = fake.create_account("google-drive")
        integration = stack.integration_for(account)
        assert check(integration)["status"] == "healthy"
        fake.fault(account.id, "status", status=400, count=None, endpoint="google.about")
        assert [check(integration)["status"] for _ in range(3)] == ["degraded", "degraded", "unhealthy"]
        fake.clear_faults(account.id)
        assert check(integration)["status"] == "healthy"

        # Breaker: two accounts whose probes end in 5xx open it for every worker of the provider.
        accounts = [fake.create_account("dropbox") for _ in range(3)]
        integrations = [stack.integration_for(a) for a in accounts]  # a tenant each
        for failing, failing_integration in zip(accounts[:2], integrations[:2], strict=True):
            fake.fault(failing.id, "status", status=500, count=None, endpoint="dropbox.account")
            assert check(failing_integration)["status"] == "degraded"
        assert breaker_state(stack.redis, "dropbox") == "open"
        healthy_account, healthy_integration = accounts[2], integrations[2]
        assert check(healthy_integration) == {"skipped": "dropbox circuit is open"}
        assert fake.stats(healthy_account.id)["calls"].get("dropbox.account", 0) == 0  # not even tried
        # After the reset timeout a trial call goes through and closes it.
        wait_for(
            lambda: check(healthy_integration).get("status") == "healthy",
            timeout=30,
            what="breaker trial closes it",
        )
        assert breaker_state(stack.redis, "dropbox") == "closed"
        health = stack.db["cloudIntegrations"].find_one({"_id": healthy_integration["_id"]})["health"]
        assert health["status"] == "healthy"

        record(
            Row(
                "provider health states and breaker",
                trials=2,
                jobs=stack.db["jobs"].count_documents({}),
                leaked=stack.leaks(provider_secrets(fake, account.id, *(a.id for a in accounts))),
                seconds=elapsed(),
                note="healthy->degraded->degraded->unhealthy->healthy; breaker open after 2 failing "
                "accounts, closed by a trial after 3s",
            )
        )
