"""``integration.health_check``: the provider's account probe, health states and a shared breaker.

healthy -> degraded after a failure -> unhealthy after ``health_unhealthy_after`` consecutive
failures -> healthy on the next success. A circuit breaker per provider (pybreaker, state in
Redis, so shared by every worker) opens after ``breaker_fail_max`` consecutive provider-wide
failures (5xx, timeouts), stops probing that provider for ``breaker_reset_timeout`` seconds, then
lets a trial call through.
"""

import logging
from datetime import datetime
from typing import Any

import pybreaker
from bson import ObjectId
from pymongo import ASCENDING
from redis import Redis

from mwap import metrics, webhooks
from mwap.indexes import Index
from mwap.jobtypes import JobType, NoParams, Queue, Schedule, Scope
from mwap.ledger import now
from mwap.services import Services
from mwap.settings import Settings
from tasks.dispatch import due_or_never, last_run_cutoff
from tasks.integrations import Connection, Skip, mark_error, open_connection
from tasks.providers import AccountInfo, ProviderError, ReauthRequired, TransientProviderError
from worker.base import Job, JobTask, job_task

logger = logging.getLogger(__name__)

_breakers: dict[tuple[int, str], pybreaker.CircuitBreaker] = {}


def _provider_wide(error: BaseException) -> bool:
    """Only failures of the provider itself count toward opening its breaker."""
    return isinstance(error, TransientProviderError)


def breaker(services: Services, slug: str) -> pybreaker.CircuitBreaker:
    """This process's breaker object for ``slug``; its state lives in Redis."""
    key = (id(services.redis), slug)
    found = _breakers.get(key)
    if found is None:
        found = pybreaker.CircuitBreaker(
            fail_max=services.settings.breaker_fail_max,
            reset_timeout=services.settings.breaker_reset_timeout,
            state_storage=pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED, services.redis, namespace=f"mwap:breaker:{slug}"
            ),
            exclude=[lambda error: not _provider_wide(error)],
            name=slug,
            # The call that trips the breaker still failed at the provider: record that failure.
            throw_new_error_on_trip=False,
        )
        _breakers[key] = found
    return found


def breaker_state(redis: Redis, slug: str) -> str:
    state = redis.get(f"mwap:breaker:{slug}:pybreaker:state")
    if not state:
        return pybreaker.STATE_CLOSED
    return state.decode() if isinstance(state, bytes) else state


def _write_health(conn: Connection, update: dict[str, Any], health: dict[str, Any]) -> None:
    """Write the new health; when its status changes, the ``integration.health_changed`` webhook
    event goes in the same update, conditional on the status read (a concurrent change: none)."""
    before = (conn.integration.get("health") or {}).get("status")
    if before == health["status"]:
        conn.integrations.update_one({"_id": conn.integration_id}, {"$set": update})
        return
    changed = webhooks.event(
        webhooks.IntegrationHealthChanged(
            integration_id=str(conn.integration_id),
            previous=before,
            status=health["status"],
            error_count=health["errorCount"],
            last_error=health.get("lastError"),
        )
    )
    written = conn.integrations.update_one(
        {"_id": conn.integration_id, "health.status": before},
        {"$set": update, **webhooks.outbox_push(changed)},
    ).matched_count
    if not written:
        conn.integrations.update_one({"_id": conn.integration_id}, {"$set": update})


def _record(conn: Connection, *, ok: bool, error: str | None = None) -> dict[str, Any]:
    """Write the probe's outcome; returns the new health sub-document."""
    settings = conn.services.settings
    moment = now()
    checked = {"health.lastCheck": moment, "mwapTasks.healthCheckedAt": moment}
    if ok:
        update = {"health.status": "healthy", "health.errorCount": 0, "health.lastError": None}
        health: dict[str, Any] = {"status": "healthy", "errorCount": 0}
        _write_health(conn, {**update, **checked}, health)
        _note_recovery(conn)
        return health
    previous = int((conn.integration.get("health") or {}).get("errorCount") or 0)
    count = previous + 1
    status = "unhealthy" if count >= settings.health_unhealthy_after else "degraded"
    health = {"status": status, "errorCount": count, "lastError": (error or "")[:500]}
    update = {"health.status": status, "health.errorCount": count, "health.lastError": health["lastError"]}
    _write_health(conn, {**update, **checked}, health)
    return health


def _note_recovery(conn: Connection) -> None:
    """An integration the platform marked ``error`` for its authorization is active and answering
    again (the MWAP backend had it re-authorized): clear the mark, and emit
    ``integration.recovered`` in that same write (once: the write is conditional on the mark)."""
    if not (conn.integration.get("mwapTasks") or {}).get("authFailedAt"):
        return
    recovered = webhooks.event(webhooks.IntegrationRecovered(integration_id=str(conn.integration_id)))
    conn.integrations.update_one(
        {"_id": conn.integration_id, "status": "active", "mwapTasks.authFailedAt": {"$ne": None}},
        {"$unset": {"mwapTasks.authFailedAt": ""}, **webhooks.outbox_push(recovered)},
    )


def _record_account(conn: Connection, info: AccountInfo) -> None:
    """The seed's ``userInfo`` and quota fields, from what the probe learned (written when changed)."""
    known = conn.integration.get("userInfo") or {}
    user_info = {
        **known,
        "email": info.email or known.get("email") or "",
        "name": info.display_name or known.get("name") or "",
        "providerId": info.account_id or known.get("providerId") or "",
    }
    update: dict[str, Any] = {}
    if user_info != known:
        update["userInfo"] = user_info  # whole: a backend document may hold userInfo: null
    usage = conn.integration.get("usage") or {}
    if info.quota_used is not None and usage.get("quotaUsed") != info.quota_used:
        update["usage.quotaUsed"] = info.quota_used
    if info.quota_total is not None and usage.get("quotaLimit") != info.quota_total:
        update["usage.quotaLimit"] = info.quota_total
    if update:
        conn.integrations.update_one({"_id": conn.integration_id}, {"$set": update})


def check(services: Services, tenant_id: ObjectId | str, integration_id: ObjectId | str) -> dict[str, Any]:
    """Probe the account once; the result says the new health, or why nothing was probed."""
    conn = open_connection(services, tenant_id, integration_id)
    tenant_id, integration_id = conn.tenant_id, conn.integration_id
    circuit = breaker(services, conn.provider["slug"])
    try:
        info = circuit.call(conn.client.account)
    except pybreaker.CircuitBreakerError:
        metrics.breaker(conn.provider["slug"], is_open=True)
        # The provider is failing everywhere: do not spend this account's check on it.
        raise Skip(f"{conn.provider['slug']} circuit is open") from None
    except ReauthRequired as error:
        mark_error(
            services,
            tenant_id,
            integration_id,
            f"needs re-authorization: {error.message}",
            action="health.failed",
        )
        return _record(conn, ok=False, error=f"needs re-authorization: {error.message}")
    except ProviderError as error:
        return _record(conn, ok=False, error=f"{type(error).__name__}: {error.message}")
    finally:
        conn.record_usage()
        metrics.breaker(conn.provider["slug"], is_open=circuit.current_state == pybreaker.STATE_OPEN)
    health = _record(conn, ok=True)
    _record_account(conn, info)
    return health


def due(settings: Settings, moment: datetime) -> dict[str, Any]:
    """Active integrations never checked by the platform (``mwapTasks.healthCheckedAt`` unset, so a
    new integration is checked on the next tick) or whose ``health.lastCheck`` is older than the
    interval (less the half-tick tolerance of ``last_run_cutoff``)."""
    cutoff = last_run_cutoff(moment, settings.health_check_interval, tick=_tick(settings))
    return {
        "status": "active",
        "$or": [{"mwapTasks.healthCheckedAt": None}, *due_or_never("health.lastCheck", cutoff)],
    }


def _tick(settings: Settings) -> float:
    # New integrations are due at once: tick often enough to check them within the bound.
    return min(settings.health_check_interval, settings.new_integration_check_within)


HEALTH_CHECK = JobType(
    "integration.health_check",
    Scope.INTEGRATION,
    Queue.DEFAULT,
    NoParams,
    "Cheap authenticated provider call; updates the integration's health.",
    schedule=Schedule(
        interval=_tick,
        due=due,
        index=Index(
            "cloudIntegrations",
            "mwap_due_health",
            [("status", ASCENDING), ("mwapTasks.healthCheckedAt", ASCENDING)],
        ),
    ),
    # No retries: a failed probe is an outcome (recorded in health); the next tick probes again.
    skip_on=(Skip,),
)


@job_task(HEALTH_CHECK)
def health_check(self: JobTask, job: Job) -> dict[str, Any]:
    return check(self.services(), job.tenant, job.subject["integrationId"])
