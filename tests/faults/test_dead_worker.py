"""A dead worker gives its jobs back fast, by default: SIGKILL the sync worker with 8 syncs in flight.

The sync worker runs as the stack runs it (threads pool, ``sync`` queue, 8 threads), every sync
against a slow account of the fake providers. The whole worker is SIGKILLed (its process group),
then a replacement starts, as Kubernetes would replace the pod. Nothing is lowered for the test:
heartbeat, dead-worker check, reconciler and staleness all run at their defaults (set explicitly,
so a stack default changed elsewhere cannot help). The kill must be noticed by its expired
heartbeat (``worker_heartbeat_ttl``), the jobs resent by the next dead-worker check with their
execution locks freed and the dead worker's held messages dropped, and each sync must run to its
end once, on the replacement, with the provider's exact file set.
"""

import signal
from pathlib import Path

from faultkit import Row, Stack, provider_secrets, record, stopwatch

from mwap import broker
from mwap.settings import Settings
from ops.fake_providers.control import FakeAccount, FakeProviders
from ops.processes import wait_for

SYNCS = 8
# Kill -> every job running again on the replacement. The defaults notice a death within the
# heartbeat TTL (15 s) plus one check period (5 s); the rest is the replacement's start and pickup.
BOUND = 30.0
DEFAULTS = (
    "worker_heartbeat_interval",
    "worker_heartbeat_ttl",
    "dead_worker_check_interval",
    "reconcile_interval",
    "stale_job_after",
    "broker_visibility_timeout",
)
OVERRIDES = {f"MWAP_{name.upper()}": str(Settings.model_fields[name].default) for name in DEFAULTS}


def slow_account(stack: Stack, fake: FakeProviders) -> tuple[FakeAccount, dict]:
    """48 files in 3 folders listed 4 items a page, 1 s a call: a sync of ~15 s to interrupt."""
    account = fake.create_account("dropbox", generate_files=48, generate_folders=3, page_size=4)
    fake.set_account_latency(account.id, 1000)
    return account, stack.integration_for(account)


def stored(stack: Stack, integration: dict) -> tuple[dict[str, str], int]:
    docs = stack.virtual_files(integration)  # deleted files are hard-deleted: every one is live
    return {d["providerFileId"]: d["path"] for d in docs}, len(docs)


def file_errors(
    stack: Stack, fake: FakeProviders, account: FakeAccount, integration: dict
) -> tuple[int, int]:
    """(missing or wrong, duplicated) virtual files against the provider's set."""
    live, total = stored(stack, integration)
    expected = {f["id"]: f["path"] for f in fake.files(account.id, limit=10_000)}
    return len(set(live.items()) ^ set(expected.items())), total - len(live)


def test_sigkilled_sync_worker_gives_its_syncs_back_within_30s_with_default_settings(tmp_path: Path) -> None:
    with Stack(tmp_path, overrides=OVERRIDES) as stack, stopwatch() as elapsed:
        for name in DEFAULTS:  # nothing lowered
            assert getattr(stack.settings, name) == Settings.model_fields[name].default
        fake, _, victim = stack.parallel(
            stack.fake,
            lambda: stack.worker("worker", queues="default,maintenance,webhooks"),
            lambda: stack.worker("worker-sync", pool="threads", concurrency=SYNCS, queues="sync"),
        )
        accounts = [slow_account(stack, fake) for _ in range(SYNCS)]
        jobs = [stack.integration_job("integration.sync_files", integration) for _, integration in accounts]
        ids = [job["_id"] for job in jobs]
        stack.beat()  # after the syncs are enqueued: the sync dispatcher finds each one's lease held

        def in_flight() -> bool:
            return all(
                stack.job(job_id)["status"] == "running" and stored(stack, integration)[1] >= 4
                for job_id, (_, integration) in zip(ids, accounts, strict=True)
            )

        wait_for(in_flight, timeout=60, what="8 syncs in flight, each past its first page", interval=0.2)
        assert {stack.job(job_id)["worker"] for job_id in ids} == {victim.hostname}  # type: ignore[attr-defined]

        victim.signal(signal.SIGKILL)
        victim.popen.wait(10)
        with stopwatch() as since_kill:
            replacement = stack.worker("worker-sync-2", pool="threads", concurrency=SYNCS, queues="sync")
            started_after = since_kill()

            def back(job_id: str) -> bool:
                doc = stack.job(job_id)
                return doc["worker"] == replacement.hostname and doc["attempts"] >= 2  # type: ignore[attr-defined]

            wait_for(
                lambda: all(back(job_id) for job_id in ids),
                timeout=BOUND + 30,  # fail with the measured time below rather than a bare timeout
                what="every sync running again on the replacement",
                interval=0.2,
            )
            returned_after = since_kill()
        assert returned_after <= BOUND, f"jobs back {returned_after:.1f}s after the kill (bound {BOUND}s)"

        stack.wait_all_final(ids, timeout=90, what="every sync final")
        completions = stack.completions()
        lost = duplicated = 0
        for job_id, (account, integration) in zip(ids, accounts, strict=True):
            done = stack.job(job_id)
            assert done["status"] == "succeeded", done["error"]
            assert done["worker"] == replacement.hostname  # type: ignore[attr-defined]
            assert (done["attempts"], done["resends"]) == (2, 1)  # one kill, one resend, no second run
            assert completions[job_id] == 1
            missing, extra = file_errors(stack, fake, account, integration)
            lost += missing
            duplicated += extra + completions[job_id] - 1
        # The dead worker's held messages were dropped, not left for the visibility timeout (900 s)
        # to restore; the replacement acknowledged its own.
        assert not {held.job_id for held in broker.held_messages(stack.redis)} & set(ids)

        record(
            Row(
                "SIGKILL sync worker, 8 syncs in flight (heartbeat)",
                trials=1,
                jobs=SYNCS,
                lost=lost,
                duplicated=duplicated,
                leaked=stack.leaks(provider_secrets(fake, *(account.id for account, _ in accounts))),
                seconds=elapsed(),
                note=f"syncs back on the replacement {returned_after:.1f}s after the kill (bound "
                f"{BOUND:.0f}s; replacement ready at {started_after:.1f}s), default settings: heartbeat "
                f"{stack.settings.worker_heartbeat_interval}s/TTL {stack.settings.worker_heartbeat_ttl}s, "
                f"check every {stack.settings.dead_worker_check_interval}s",
            )
        )
