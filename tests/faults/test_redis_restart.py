"""Row 2: Redis restarts while jobs are queued and running, with its data and without it.

With the append-only file the broker's queues come back; without it only MongoDB knows the jobs,
and the reconciler (beat, every 2 s here) resends the open ones once they are 5 s stale. Either way
workers, beat and the API reconnect on their own and every job the API accepted (202) completes,
none with a doubled effect: no job body runs to completion twice, no synced file is stored twice.
"""

import signal
from collections import Counter
from pathlib import Path

import pytest
from faultkit import BEAT_LOCK, Row, Stack, provider_secrets, record, stopwatch

from ops.processes import wait_for

OVERRIDES = {"MWAP_RECONCILE_INTERVAL": "2", "MWAP_STALE_JOB_AFTER": "5"}
ECHO_JOBS = 24
OUTAGE = 4  # seconds Redis stays down
OUTAGE_PROBE_LIMIT = 15  # seconds an API answer may take while Redis is down (no hanging)
COMPLETION_BOUND = 90  # seconds, after Redis is back, for every accepted job to be final


def post_echo(stack: Stack, tag: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        response = stack.post(
            "/v1/jobs", {"type": "system.echo", "params": {"message": f"{tag}-{i}", "sleepSeconds": 0.5}}
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


@pytest.mark.parametrize("persist", [True, False], ids=["with-aof", "data-lost"])
def test_redis_restart_under_load(tmp_path: Path, persist: bool) -> None:
    with Stack(tmp_path, redis_persist=persist, overrides=OVERRIDES) as stack, stopwatch() as elapsed:
        fake = stack.fake()
        accounts = [
            fake.create_account("dropbox", generate_files=30, generate_folders=2, page_size=4)
            for _ in range(2)
        ]
        for account in accounts:
            fake.set_account_latency(account.id, 150)
        integrations = [stack.integration_for(a) for a in accounts]  # a tenant each
        *workers, _, beat = stack.parallel(
            lambda: stack.worker("w1", concurrency=2),
            lambda: stack.worker("w2", concurrency=2),
            stack.api,
            stack.beat,
        )

        accepted = post_echo(stack, "before", ECHO_JOBS)
        for integration in integrations:
            response = stack.post(f"/v1/integrations/{integration['_id']}/sync", {})
            # 200: beat's sync dispatcher (due at its first tick) already enqueued this one.
            assert response.status_code in (200, 202), response.text
            accepted.append(response.json()["id"])
        sync_ids = accepted[-2:]
        wait_for(lambda: stack.statuses(accepted)["running"] >= 2, timeout=30, what="jobs running")
        assert stack.statuses(accepted)["queued"] > 0  # queued and running at the moment Redis goes

        if persist:
            stack.redis_child.stop()  # an orderly restart: the append-only file is flushed
        else:
            stack.redis_child.signal(signal.SIGKILL)
            stack.redis_child.popen.wait(10)
        # Down for OUTAGE seconds, probed all along: readiness and a job submission each time.
        answers: Counter[str] = Counter()
        slowest = 0.0
        with stopwatch() as down_for:
            while down_for() < OUTAGE:
                for method, path, body in (
                    ("GET", "/ready", None),
                    ("POST", "/v1/jobs", {"type": "system.echo"}),
                ):
                    with stopwatch() as took:
                        response = stack.http.request(
                            method, stack.api_url + path, json=body, timeout=OUTAGE_PROBE_LIMIT
                        )
                    slowest = max(slowest, took())
                    retry_after = " Retry-After" if response.headers.get("Retry-After") else ""
                    answers[f"{method} {path} {response.status_code}{retry_after}"] += 1
        # 503 with Retry-After, fast: not a 500, not a hang.
        assert set(answers) == {"GET /ready 503 Retry-After", "POST /v1/jobs 503 Retry-After"}, answers
        assert slowest < OUTAGE_PROBE_LIMIT

        stack.start_redis(persist=persist)
        wait_for(lambda: stack.get("/ready").status_code == 200, timeout=30, what="API ready again")
        accepted += post_echo(stack, "after", 6)

        with stopwatch() as since_back:
            stack.wait_all_final(accepted, timeout=COMPLETION_BOUND, what="every accepted job final")
            completed_in = since_back()
        statuses = stack.statuses(accepted)
        assert statuses == {"succeeded": len(accepted)}, statuses
        runs = stack.completions()
        echo_ids = [job_id for job_id in accepted if job_id not in sync_ids]
        assert all(runs[job_id] == 1 for job_id in accepted), {j: runs[j] for j in accepted if runs[j] != 1}
        for job_id in echo_ids:
            assert stack.job(job_id)["result"]["message"].startswith(("before-", "after-"))
        duplicated_files = missing_files = 0
        for account, integration in zip(accounts, integrations, strict=True):
            expected = {f["id"] for f in fake.files(account.id, limit=10_000)}
            docs = stack.virtual_files(integration)
            duplicated_files += len(docs) - len({d["providerFileId"] for d in docs})
            missing_files += len(expected - {d["providerFileId"] for d in docs})
        # Everyone reconnected by themselves: no process was restarted by the test.
        assert all(worker.alive() for worker in workers)
        assert beat.alive()
        assert stack.redis.exists(BEAT_LOCK)
        reconnected = stack.echo(1, message="after-restart")[0]["_id"]
        assert stack.wait_final(reconnected, timeout=30)["status"] == "succeeded"

        record(
            Row(
                f"Redis restart ({'append-only file' if persist else 'data lost'})",
                trials=1,
                jobs=len(accepted),
                lost=sum(1 for j in accepted if runs[j] == 0) + missing_files,
                duplicated=sum(1 for j in accepted if runs[j] > 1) + duplicated_files,
                server_errors=sum(answers.values()),
                leaked=stack.leaks(provider_secrets(fake, *(a.id for a in accounts))),
                seconds=elapsed(),
                note=f"down {OUTAGE}s: {sum(answers.values())} answers, all 503 + Retry-After (slowest "
                f"{slowest:.1f}s); all final {completed_in:.0f}s after Redis was back",
            )
        )
