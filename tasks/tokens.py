"""``integration.refresh_token``: OAuth refresh, single-flight per integration across all hosts.

Every refresh, scheduled or forced by a 401 in another job, goes through
``refresh_single_flight``: a Redis lock per integration (owner token, expiry), then a fresh read
of the integration, skipping the provider call when another worker refreshed meanwhile. So a
rotating refresh token (Graph) is spent once, however many jobs meet a 401 at the same moment.
"""

import logging
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pydantic import StrictBool
from pymongo import ASCENDING
from redis.exceptions import LockError

from mwap import audit, crypto, leases, metrics, usage
from mwap.ids import aware, oid
from mwap.indexes import Index
from mwap.jobtypes import JobType, Params, Queue, Retry, Schedule, Scope
from mwap.ledger import now
from mwap.services import Services
from mwap.settings import Settings
from mwap.store import TenantCollection
from tasks.dispatch import last_run_cutoff
from tasks.integrations import (
    Skip,
    count_requests,
    load,
    mark_error,
    provider_config,
    tokens_of,
)
from tasks.providers import (
    OutboundPolicy,
    ProviderError,
    RateLimited,
    ReauthRequired,
    RetryPolicy,
    Tokens,
    TransientProviderError,
    client_for,
)
from worker.base import Job, JobTask, job_task

logger = logging.getLogger(__name__)

LOCK_TTL = leases.REFRESH_LOCK_TTL
MAX_RETRIES = 3


class RefreshBusy(TransientProviderError):
    """Another worker held the integration's refresh lock for longer than we wait.

    ``retry_after``: seconds until that lock lapses, so a retry comes when it can succeed (a
    holder killed mid-refresh keeps the lock for up to ``LOCK_TTL``, longer than the retries'
    own backoff would wait in total).
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.args = (message, retry_after)
        self.retry_after = retry_after


def refresh_single_flight(
    services: Services,
    tenant_id: ObjectId | str,
    integration_id: ObjectId | str,
    *,
    seen: Tokens | None = None,
    seen_cipher: str | None = None,
) -> Tokens:
    """Fresh tokens for the integration, refreshing at the provider only if nobody else just did.

    ``seen``/``seen_cipher``: the tokens the caller holds (a 401 told it they are stale); when the
    stored access token differs from them, another worker refreshed and those tokens are returned.
    """
    lock = services.redis.lock(
        leases.refresh_lock_key(tenant_id, integration_id),
        timeout=LOCK_TTL,
        blocking_timeout=services.settings.refresh_wait,
    )
    if not lock.acquire():
        remaining_ms = services.redis.pttl(lock.name)
        raise RefreshBusy(
            f"refresh of {integration_id} held by another worker for {services.settings.refresh_wait}s",
            retry_after=max(1.0, remaining_ms / 1000) if remaining_ms > 0 else None,
        )
    try:
        doc, _ = load(services, tenant_id, integration_id)
        stored = tokens_of(services.ring, doc)
        if seen is not None and stored.access_token != seen.access_token:
            return stored
        if seen_cipher is not None and doc["authData"]["accessToken"] != seen_cipher:
            return stored
        return _refresh(services, doc, stored)
    finally:
        try:
            lock.release()
        except LockError:  # expired while we worked: the next refresher re-reads anyway
            logger.warning("refresh lock of %s expired before release", integration_id)


def _refresh(services: Services, doc: dict[str, Any], current: Tokens) -> Tokens:
    """Call the provider's token endpoint and store the answer encrypted, in one update."""
    tenant_id, integration_id = doc["tenantId"], doc["_id"]
    integrations = _integrations(services, tenant_id)
    provider = services.store.global_collection("cloudProviders").find_one({"_id": doc["providerId"]})
    if provider is None:
        raise Skip(f"provider {doc['providerId']} is not registered")
    settings = services.settings
    client = client_for(
        provider_config(services.ring, provider, OutboundPolicy.from_settings(settings)),
        current,
        timeout=(settings.provider_connect_timeout, settings.provider_read_timeout),
        retry=RetryPolicy(max_inline_wait=settings.provider_max_inline_wait),
    )
    try:
        fresh = client.refresh()
    except ReauthRequired as error:
        metrics.token_refresh(provider["slug"], "invalid_grant")
        mark_error(
            services,
            tenant_id,
            integration_id,
            f"needs re-authorization: {error.message}",
            action="token.refresh_failed",
        )
        raise
    except RateLimited:
        metrics.token_refresh(provider["slug"], "rate_limited")
        raise
    except TransientProviderError:
        metrics.token_refresh(provider["slug"], "timeout")
        raise
    except ProviderError:
        metrics.token_refresh(provider["slug"], "error")
        raise
    finally:
        if client.request_count:
            count_requests(integrations, integration_id, client.request_count)
            usage.bump(services.redis, usage.PROVIDER_REQUESTS, tenant_id, client.request_count)
    metrics.token_refresh(provider["slug"], "ok")
    ring = services.ring
    moment = now()
    update = {
        crypto.ACCESS_TOKEN.path: crypto.seal(
            ring, crypto.ACCESS_TOKEN, fresh.access_token, document_id=integration_id, tenant_id=tenant_id
        ),
        "authData.expiresAt": fresh.expires_at,
        "authData.scope": fresh.scope.split() if fresh.scope else (doc["authData"].get("scope") or []),
        "mwapTasks.lastRefreshAt": moment,
        "mwapTasks.refreshCooldownUntil": None,
        "updatedAt": moment,
    }
    if fresh.refresh_token:
        # A response without a new refresh token keeps the old one (tokens_of gave it back to us).
        update[crypto.REFRESH_TOKEN.path] = crypto.seal(
            ring, crypto.REFRESH_TOKEN, fresh.refresh_token, document_id=integration_id, tenant_id=tenant_id
        )
    integrations.update_one({"_id": integration_id}, {"$set": update})
    audit.record(
        services.db,
        tenant_id=tenant_id,
        action="token.refreshed",
        target_type="integration",
        target_id=integration_id,
        details={
            "expiresAt": fresh.expires_at.isoformat() if fresh.expires_at else None,
            "rotated": fresh.refresh_token != current.refresh_token,
        },
    )
    return fresh


def _integrations(services: Services, tenant_id: ObjectId | str) -> TenantCollection:
    return services.store.tenant(tenant_id)["cloudIntegrations"]


def idle_cutoff(settings: Settings, moment: datetime) -> datetime:
    """Refreshed (or created) before this: idle for the maximum age, less the dispatcher's
    half-tick tolerance (``last_run_cutoff``); the job's own check uses the same cutoff, so it
    never skips as fresh what the dispatcher found due."""
    return last_run_cutoff(moment, settings.token_refresh_max_age, tick=settings.token_refresh_interval)


def is_due(doc: dict[str, Any], services: Services) -> bool:
    """Expiring within the look-ahead, or not refreshed for the idle maximum."""
    settings = services.settings
    moment = now()
    expires = doc["authData"].get("expiresAt")
    if expires is not None and aware(expires) <= moment + timedelta(seconds=settings.token_refresh_lookahead):
        return True
    last = (doc.get("mwapTasks") or {}).get("lastRefreshAt") or doc.get("createdAt")
    return last is None or aware(last) <= idle_cutoff(settings, moment)


def refresh_job(
    services: Services, tenant_id: ObjectId | str, integration_id: ObjectId | str, *, force: bool
) -> dict[str, Any]:
    """The scheduled or requested refresh: skip when not due or cooling down, else single-flight."""
    doc, _ = load(services, tenant_id, integration_id)
    if not doc["authData"].get("refreshToken"):
        raise Skip("integration has no refresh token")
    cooldown = (doc.get("mwapTasks") or {}).get("refreshCooldownUntil")
    if not force and cooldown is not None and aware(cooldown) > now():
        raise Skip(f"cooling down after failures until {aware(cooldown).isoformat()}")
    if not force and not is_due(doc, services):
        raise Skip("token is fresh")
    fresh = refresh_single_flight(
        services, tenant_id, integration_id, seen_cipher=doc["authData"]["accessToken"]
    )
    return {"expiresAt": fresh.expires_at.isoformat() if fresh.expires_at else None}


def start_cooldown(
    services: Services, tenant_id: ObjectId | str, integration_id: ObjectId | str, error: Exception
) -> None:
    """After the last transient failure: no automatic attempt before the cooldown passes."""
    until = now() + timedelta(seconds=services.settings.refresh_cooldown)
    _integrations(services, tenant_id).update_one(
        {"_id": oid(integration_id)},
        {"$set": {"mwapTasks.refreshCooldownUntil": until, "mwapTasks.lastRefreshError": str(error)[:500]}},
    )


def _cool_down(services: Services, job: Job, error: Exception) -> None:
    """The last retry failed too: no automatic attempt before the cooldown passes."""
    start_cooldown(services, job.tenant, job.subject["integrationId"], error)


def due(settings: Settings, moment: datetime) -> dict[str, Any]:
    """Active integrations with a refresh token, expiring within the look-ahead or not refreshed
    (since created) for the idle maximum; a failing refresh waits out its cooldown."""
    expiring = moment + timedelta(seconds=settings.token_refresh_lookahead)
    idle = idle_cutoff(settings, moment)
    return {
        "status": "active",
        "authData.refreshToken": {"$type": "string"},
        "$or": [
            {"authData.expiresAt": {"$lt": expiring}},
            {"mwapTasks.lastRefreshAt": {"$lt": idle}},
            {"mwapTasks.lastRefreshAt": None, "createdAt": {"$lt": idle}},
        ],
        # Residual filter on the few due ones: a failing refresh waits out its cooldown.
        "mwapTasks.refreshCooldownUntil": {"$not": {"$gt": moment}},
    }


class RefreshParams(Params):
    force: StrictBool = False  # refresh even when the token is not close to expiry


REFRESH_TOKEN = JobType(
    "integration.refresh_token",
    Scope.INTEGRATION,
    Queue.DEFAULT,
    RefreshParams,
    "OAuth refresh_token grant; stores the new tokens encrypted.",
    schedule=Schedule(
        interval="token_refresh_interval",
        due=due,
        index=Index(
            "cloudIntegrations",
            "mwap_due_refresh",
            [("status", ASCENDING), ("mwapTasks.lastRefreshAt", ASCENDING)],
        ),
    ),
    retry=Retry(on=(TransientProviderError, RateLimited), max_retries=MAX_RETRIES, exhausted=_cool_down),
    skip_on=(Skip,),
)


@job_task(REFRESH_TOKEN)
def refresh_token(self: JobTask, job: Job) -> dict[str, Any]:
    force = bool(job.params.get("force"))
    return refresh_job(self.services(), job.tenant, job.subject["integrationId"], force=force)
