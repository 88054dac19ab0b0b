"""Webhook relay and delivery: Celery tasks on the ``webhooks`` queue (not ledger job types: a
delivery's record is its ``webhookDeliveries`` document, which carries every attempt).

``webhooks.relay`` moves outbox entries into events and deliveries (``mwap.webhooks.relay``) and
sends one ``webhooks.deliver`` per new delivery; a job that emitted an event kicks it right after
its write, and ``webhooks.sweep`` (beat) runs it too and resends due deliveries. ``webhooks.deliver``
claims the delivery, POSTs the signed event through the outbound guard (no redirects, no private
addresses unless allowed, the timeout from the settings), records the attempt and schedules the next.
"""

import json
import logging
import random
import time
from datetime import datetime, timedelta
from typing import Any

import requests
from celery import Task, shared_task

from mwap import metrics, webhooks
from mwap.crypto import KeyRing
from mwap.ledger import now
from mwap.services import Services
from mwap.settings import Settings
from mwap.store import Document, Store
from mwap.webhooks import DeliveryStatus
from tasks.providers.outbound import GuardedAdapter, OutboundPolicy, OutboundRefused
from worker.base import services_of

logger = logging.getLogger(__name__)

RELAY = "webhooks.relay"
DELIVER = "webhooks.deliver"
SWEEP = "webhooks.sweep"
QUEUE = "webhooks"
USER_AGENT = "mwap-webhooks/1"
_sessions: dict[OutboundPolicy, requests.Session] = {}


def session(policy: OutboundPolicy) -> requests.Session:
    """This process's session for ``policy``: every connection through the outbound guard."""
    found = _sessions.get(policy)
    if found is None:
        found = requests.Session()
        found.trust_env = False  # no proxies from the environment: the guard refuses them anyway
        adapter = GuardedAdapter(policy, max_retries=0)
        found.mount("https://", adapter)
        found.mount("http://", adapter)
        _sessions[policy] = found
    return found


def check_url(url: str, policy: OutboundPolicy) -> str | None:
    """Why a webhook URL is refused (scheme, credentials, length, an IP literal the guard refuses),
    or None. Any host name is allowed; its addresses are checked at each connection."""
    if len(url) > webhooks.MAX_URL_CHARS:
        return f"URL longer than {webhooks.MAX_URL_CHARS} characters"
    try:
        policy.check_webhook_url(url)
    except OutboundRefused as refused:
        return refused.reason
    return None


def next_wait(settings: Settings, attempt: int) -> float | None:
    """Seconds before retry number ``attempt`` (1-based) with +-20% jitter; None when out of retries."""
    delays = settings.webhook_retry_delays()
    if attempt > len(delays):
        return None
    step = delays[attempt - 1]
    return step * random.uniform(0.8, 1.2)  # noqa: S311 - spreading retries, not a secret


def _send(settings: Settings, ring: KeyRing, endpoint: Document, event: Document) -> dict[str, Any]:
    """One POST; the attempt as stored (status code, outcome, duration, the answer's first bytes)."""
    moment = now()
    timestamp = int(time.time())
    body = json.dumps(
        {
            "id": event["_id"],
            "type": event["type"],
            "timestamp": event["createdAt"].isoformat().replace("+00:00", "Z"),
            "tenantId": str(event["tenantId"]),
            "data": event["data"],
        },
        separators=(",", ":"),
    ).encode()
    secrets_ = webhooks.signing_secrets(ring, endpoint, moment)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event["_id"],
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhooks.signatures(secrets_, event["_id"], timestamp, body),
    }
    attempt: dict[str, Any] = {"at": moment, "statusCode": None, "outcome": "error", "error": None}
    started = time.monotonic()
    policy = OutboundPolicy.from_settings(settings)
    try:
        refusal = check_url(endpoint["url"], policy)
        if refusal:
            raise OutboundRefused(endpoint["url"][:100], refusal)
        with session(policy).post(
            endpoint["url"],
            data=body,
            headers=headers,
            timeout=(min(3.05, settings.webhook_timeout), settings.webhook_timeout),
            allow_redirects=False,
            stream=True,
        ) as answer:
            attempt["statusCode"] = answer.status_code
            # A small cap read within the deadline: a receiver cannot hold the slot with a slow body.
            attempt["responseBody"] = next(answer.iter_content(webhooks.RESPONSE_BODY_CAP), b"").decode(
                "utf-8", "replace"
            )[: webhooks.RESPONSE_BODY_CAP]
            if 200 <= answer.status_code < 300:
                attempt["outcome"] = "delivered"
            elif answer.status_code == 410:
                attempt["outcome"] = "gone"
            elif 300 <= answer.status_code < 400:
                attempt["outcome"] = "redirect"
            else:
                attempt["outcome"] = "http_error"
    except OutboundRefused as refused:
        attempt["outcome"], attempt["error"] = "refused", str(refused)[:300]
    except requests.Timeout:
        attempt["outcome"], attempt["error"] = "timeout", f"no answer within {settings.webhook_timeout}s"
    except requests.RequestException as error:
        attempt["outcome"], attempt["error"] = "connection_error", type(error).__name__
    attempt["durationMs"] = int((time.monotonic() - started) * 1000)
    return attempt


def deliver_once(services: Services, delivery_id: str) -> str | None:
    """Claim and attempt one delivery; the outcome, or None when it was not due (nothing sent)."""
    settings, db = services.settings, services.db
    hold = settings.webhook_timeout * 2 + 5  # past the attempt's longest run: the sweep retakes it then
    delivery = webhooks.claim(db, delivery_id, hold_seconds=hold)
    if delivery is None:
        return None
    scope = Store(db).tenant(delivery["tenantId"])
    endpoint = scope[webhooks.ENDPOINTS].find_one({"_id": delivery["endpointId"]})
    event = scope[webhooks.EVENTS].find_one({"_id": delivery["eventId"]})
    if endpoint is None or not endpoint.get("enabled") or event is None:
        webhooks.record_attempt(
            db,
            delivery,
            {"at": now(), "outcome": "endpoint_disabled", "statusCode": None, "durationMs": 0},
            status=DeliveryStatus.FAILED,
            next_attempt_at=None,
        )
        metrics.webhook_delivery("endpoint_disabled", None)
        return "endpoint_disabled"
    attempt = _send(settings, services.ring, endpoint, event)
    outcome = attempt["outcome"]
    metrics.webhook_delivery(outcome, attempt["durationMs"] / 1000)
    if outcome == "delivered":
        webhooks.record_attempt(db, delivery, attempt, status=DeliveryStatus.DELIVERED, next_attempt_at=None)
        webhooks.mark_healthy(db, endpoint)
        return outcome
    if outcome == "gone":
        webhooks.disable_endpoint(
            db, delivery["tenantId"], endpoint["_id"], reason="receiver answered 410 Gone"
        )
        webhooks.record_attempt(db, delivery, attempt, status=DeliveryStatus.FAILED, next_attempt_at=None)
        return outcome
    since = webhooks.mark_failing(db, endpoint, attempt["at"])
    if attempt["at"] - since >= timedelta(days=settings.webhook_disable_after_days):
        webhooks.disable_endpoint(
            db,
            delivery["tenantId"],
            endpoint["_id"],
            reason=f"failing for {settings.webhook_disable_after_days:g} days",
        )
    wait = next_wait(settings, delivery["attemptCount"])
    if wait is None:
        webhooks.record_attempt(db, delivery, attempt, status=DeliveryStatus.FAILED, next_attempt_at=None)
        return outcome
    due = attempt["at"] + timedelta(seconds=wait)
    webhooks.record_attempt(db, delivery, attempt, status=DeliveryStatus.PENDING, next_attempt_at=due)
    return outcome


def _countdown_limit(settings: Settings) -> float:
    # A broker countdown longer than the visibility timeout would be redelivered early: the sweep
    # sends those when they are due instead.
    return settings.broker_visibility_timeout * 0.8


def send_deliveries(app: Any, ids: list[str], *, countdown: float | None = None) -> None:
    for delivery_id in ids:
        app.send_task(DELIVER, args=[delivery_id], queue=QUEUE, countdown=countdown)


@shared_task(bind=True, name=RELAY, acks_late=True, ignore_result=True)
def relay(self: Task) -> int:
    """Outbox entries to events and deliveries; one delivery message per new delivery."""
    services = services_of(self.app)
    created = webhooks.relay(services.db)
    send_deliveries(self.app, created)
    return len(created)


# A hard bound beside the per-read timeout (a receiver trickling its headers byte by byte resets
# that one): past it the attempt is cut, its delivery stays pending and the sweep retries it.
@shared_task(bind=True, name=DELIVER, acks_late=True, ignore_result=True, soft_time_limit=75, time_limit=90)
def deliver(self: Task, delivery_id: str) -> str | None:
    """One attempt of one delivery; a retry due soon is sent with a countdown, a later one by the sweep."""
    if not isinstance(delivery_id, str) or len(delivery_id) > 64:
        logger.error("refused a %s message: its argument is not a delivery id", DELIVER)
        return None
    services = services_of(self.app)
    settings, db = services.settings, services.db
    outcome = deliver_once(services, delivery_id)
    if outcome is not None and outcome != "delivered":
        doc = (
            Store(db)
            .unscoped(webhooks.DELIVERIES)
            .find_one({"_id": delivery_id}, {"status": 1, "nextAttemptAt": 1})
        )
        if doc and doc["status"] == DeliveryStatus.PENDING.value and doc.get("nextAttemptAt"):
            wait = (_aware(doc["nextAttemptAt"]) - now()).total_seconds()
            if wait <= _countdown_limit(settings):
                # A little past the due time: a message arriving a hair early would find it not due.
                send_deliveries(self.app, [delivery_id], countdown=max(0.0, wait) + 0.05)
    return outcome


@shared_task(bind=True, name=SWEEP, acks_late=True, ignore_result=True)
def sweep(self: Task) -> int:
    """Beat's backstop: relay what is left in outboxes, send every due pending delivery."""
    services = services_of(self.app)
    ids = webhooks.relay(services.db)
    ids += [i for i in webhooks.due_deliveries(services.db, now()) if i not in ids]
    send_deliveries(self.app, ids)
    metrics.webhook_backlog(webhooks.backlog(services.db))
    return len(ids)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=now().tzinfo)
