"""Webhook rows: a receiver down for a while, a worker killed mid-delivery, a slow receiver.

Events are written as the jobs write them (``job.failed`` in the ledger's final write, an outbox
entry); beat's ``webhooks.sweep`` (every second here) relays them and resends due deliveries, and a
real worker delivers them to a receiver on loopback. Every event must reach the receiver with a 2xx
(at least once, the same ``webhook-id`` on every try), and no worker slot may wait past the timeout.
"""

import signal
import time
from pathlib import Path
from typing import Any

import factories
from faultkit import Row, Stack, record, stopwatch
from standardwebhooks.webhooks import Webhook
from webhook_receiver import Receiver, receiver

from mwap import ledger, webhooks
from ops.processes import wait_for

FAST = {
    "MWAP_WEBHOOK_SWEEP_INTERVAL": "1",
    "MWAP_WEBHOOK_RETRY_SCHEDULE": "0.5,1,1,2,2,3,3,5,5,5",
    "MWAP_WEBHOOK_TIMEOUT": "1",
}


def endpoint(stack: Stack, url: str) -> tuple[Any, str]:
    tenant = factories.tenant(stack.db)
    doc, secret = webhooks.create_endpoint(
        stack.db, stack.ring, tenant["_id"], url=url, events=["job.failed"]
    )
    return doc, secret


def emit_failures(stack: Stack, tenant_id: Any, n: int) -> list[str]:
    """``n`` failed jobs, each with its job.failed event in the ledger's final write."""
    ids = []
    for _ in range(n):
        job = ledger.new_job("integration.sync_files", tenant_id=tenant_id, queue="sync")
        stack.db["jobs"].insert_one(job)
        entry = webhooks.event(
            webhooks.JobFailed(
                job_id=job["_id"], type=job["type"], subject={}, error={"type": "E", "message": "x"}
            )
        )
        ledger.fail(stack.db, job["_id"], {"type": "E", "message": "x"}, extra=webhooks.outbox_push(entry))
        ids.append(entry["id"])
    return ids


def accepted(hook: Receiver, statuses: dict[int, int]) -> set[str]:
    """Event ids the receiver answered with a 2xx."""
    with hook.lock:
        return {
            r.headers["webhook-id"] for n, r in enumerate(hook.requests) if 200 <= statuses.get(n, 200) < 300
        }


def test_receiver_down_then_back_every_event_delivered(tmp_path: Path) -> None:
    with Stack(tmp_path, overrides=FAST) as stack, stopwatch() as elapsed, receiver() as hook:
        statuses: dict[int, int] = {}
        first: list[float] = []

        def answer(n: int) -> tuple[int, float, dict[str, str]]:
            # Down for 4 s from the first request on, then back.
            first.append(time.monotonic())
            statuses[n] = 503 if time.monotonic() < first[0] + 4 else 200
            return statuses[n], 0.0, {}

        hook.answer = answer
        doc, secret = endpoint(stack, hook.url)
        stack.parallel(lambda: stack.worker(queues="webhooks"), stack.beat)
        events = emit_failures(stack, doc["tenantId"], 6)
        wait_for(lambda: set(events) <= accepted(hook, statuses), timeout=60, what="every event delivered")
        lost = len(set(events) - accepted(hook, statuses))
        refused = sum(1 for s in statuses.values() if s == 503)
        assert refused >= len(events)  # the outage was real: each event was refused at least once
        for request in hook.requests:
            Webhook(secret).verify(request.body, request.headers)
        deliveries = list(stack.db[webhooks.DELIVERIES].find({"endpointId": doc["_id"]}))
        wait_for(
            lambda: all(
                d["status"] == "delivered"
                for d in stack.db[webhooks.DELIVERIES].find({"endpointId": doc["_id"]})
            ),
            timeout=15,
            what="every delivery recorded delivered",
        )
        assert len(deliveries) == len(events)
        record(
            Row(
                "webhook receiver down 4 s, then back",
                trials=1,
                jobs=len(events),
                lost=lost,
                seconds=elapsed(),
                note=f"{refused} attempts refused with 503 before it came back",
            )
        )


def test_worker_killed_mid_delivery_is_delivered_again_same_id(tmp_path: Path) -> None:
    with Stack(tmp_path, overrides=FAST) as stack, stopwatch() as elapsed, receiver() as hook:
        hook.answer = lambda n: (200, 30.0 if n == 0 else 0.0, {})  # the first request hangs
        doc, secret = endpoint(stack, hook.url)
        victim = stack.worker("victim", queues="webhooks")
        stack.beat()
        (event,) = emit_failures(stack, doc["tenantId"], 1)
        wait_for(lambda: hook.requests, timeout=30, what="the first attempt in flight")
        victim.signal(signal.SIGKILL)  # the main process and its pool, mid-request
        hook.release.set()
        stack.worker("rescuer", queues="webhooks")
        wait_for(lambda: len(hook.requests) >= 2, timeout=60, what="the delivery sent again")
        delivery = wait_for(
            lambda: stack.db[webhooks.DELIVERIES].find_one({"eventId": event, "status": "delivered"}),
            timeout=30,
            what="the delivery recorded delivered",
        )
        ids = set(hook.ids())
        assert ids == {event}  # possibly twice, always the same webhook-id
        for request in hook.requests:
            Webhook(secret).verify(request.body, request.headers)
        record(
            Row(
                "worker SIGKILLed mid webhook delivery",
                trials=1,
                jobs=1,
                lost=0 if delivery else 1,
                seconds=elapsed(),
                note=f"received {len(hook.requests)} times with one webhook-id (at-least-once)",
            )
        )


def test_slow_receiver_holds_no_slot_past_the_timeout(tmp_path: Path) -> None:
    with (
        Stack(tmp_path, overrides=FAST) as stack,
        stopwatch() as elapsed,
        receiver() as slow,
        receiver() as fast,
    ):
        slow.answer = lambda _n: (200, 30.0, {})  # answers far past MWAP_WEBHOOK_TIMEOUT (1 s)
        slow_doc, _ = endpoint(stack, slow.url)
        fast_doc, _ = endpoint(stack, fast.url)
        stack.worker(queues="webhooks", concurrency=1)  # one slot: a held slot would block the fast one
        stack.beat()
        (slow_event,) = emit_failures(stack, slow_doc["tenantId"], 1)
        wait_for(lambda: slow.requests, timeout=30, what="the slow receiver called")
        (fast_event,) = emit_failures(stack, fast_doc["tenantId"], 1)
        started = time.monotonic()
        wait_for(lambda: fast.requests, timeout=30, what="the fast receiver reached past the slow one")
        waited = time.monotonic() - started
        attempt = wait_for(
            lambda: (
                (d := stack.db[webhooks.DELIVERIES].find_one({"eventId": slow_event}))
                and d["attempts"]
                and d["attempts"][0]
            ),
            timeout=30,
            what="the slow attempt recorded",
        )
        assert attempt["outcome"] == "timeout"
        assert attempt["durationMs"] < 4000  # the 1 s read timeout, not the receiver's 30 s
        assert waited < 15
        assert fast.ids()[0] == fast_event
        slow.release.set()
        record(
            Row(
                "slow webhook receiver (30 s, timeout 1 s)",
                trials=1,
                jobs=2,
                seconds=elapsed(),
                note=f"slow attempt cut at {attempt['durationMs']} ms; fast receiver reached in {waited:.1f} s",
            )
        )
