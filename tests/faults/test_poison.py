"""Row 11: a job that kills its worker every time is redelivered a bounded number of times, then
failed as a dead letter with the reason in the ledger; never an endless loop.

No job type can kill its own worker, and none is added for this: the test plays the poison. Each
time a delivery of the job is inside its body (running in the ledger for a moment), the test
SIGKILLs the pool process holding the job's execution lock, exactly what a crashing body does.
"""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from faultkit import Row, Stack, kill_pid, record, stopwatch

from ops.processes import wait_for
from worker.base import MAX_UNFINISHED_DELIVERIES

IN_BODY = timedelta(seconds=0.3)  # a delivery running this long is past the dead-letter check
BOUND_SECONDS = 60


def test_poison_job_is_dead_lettered_after_bounded_deliveries(tmp_path: Path) -> None:
    with Stack(tmp_path) as stack, stopwatch() as elapsed:
        worker = stack.worker("worker", concurrency=1)
        [job] = stack.echo(1, message="poison", sleepSeconds=30)
        job_id = job["_id"]
        killed: dict[int, int] = {}  # attempt -> pid of the pool process killed in it

        def poison() -> bool:
            """Kill each delivery once it is in the body; True once the ledger says the job is final."""
            doc = stack.job(job_id)
            if doc["status"] in ("succeeded", "failed"):
                return True
            started = doc.get("startedAt")
            in_body = doc["status"] == "running" and started and datetime.now(UTC) - started > IN_BODY
            # A new attempt (the ledger counted this delivery), not the previous one still shown running.
            if in_body and doc["attempts"] not in killed:
                pid = stack.executor_pid(job_id)
                if pid is not None and pid not in killed.values():
                    kill_pid(pid)
                    killed[doc["attempts"]] = pid
            return False

        wait_for(poison, timeout=BOUND_SECONDS, what="poison job dead-lettered", interval=0.05)
        final = stack.job(job_id)
        assert final["status"] == "failed"
        assert final["error"]["type"] == "PoisonJobError"
        assert "dead-lettered" in final["error"]["message"]
        # Bounded: the deliveries that died, then one that dead-lettered it.
        assert len(killed) == MAX_UNFINISHED_DELIVERIES + 1
        assert final["attempts"] == len(killed) + 1
        # Its last delivery is acknowledged: no message of it is left in the broker.
        wait_for(
            lambda: (
                not any(
                    job_id in raw.decode()
                    for raw in [*stack.redis.lrange("default", 0, -1), *stack.redis.hvals("unacked")]
                )
            ),
            timeout=10,
            what="no message of the dead letter left in the broker",
        )
        assert worker.alive()
        [after] = stack.echo(1, message="next")
        assert stack.wait_final(after["_id"], timeout=30)["status"] == "succeeded"
        assert stack.job(job_id)["attempts"] == final["attempts"]
        record(
            Row(
                "poison job (kills its worker)",
                trials=1,
                jobs=2,
                leaked=stack.leaks([]),
                seconds=elapsed(),
                note=f"{len(killed)} deliveries killed, then failed {json.dumps(final['error']['type'])} "
                f"on delivery {final['attempts']}",
            )
        )
