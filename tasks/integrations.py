"""An integration as the jobs use it: loaded with its tenant id, decrypted, connected.

``open_connection`` gives a provider client whose 401 handling goes through the single-flight
refresh of ``tasks.tokens``; ``Connection.close`` persists what the run changed (request count).
Decryption failures mark the integration ``error`` once, with the reason, so no job loops on it.
"""

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from pydantic import ValidationError

from mwap import audit, usage, webhooks
from mwap.crypto import (
    ACCESS_TOKEN,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    CryptoError,
    KeyRing,
    LegacyKeyMissingError,
    unseal,
)
from mwap.ids import oid
from mwap.ledger import now
from mwap.models import CloudIntegration, ProviderSlug
from mwap.registry import api_base_url
from mwap.services import Services
from mwap.store import TenantCollection
from tasks.providers import (
    DestinationRefused,
    OutboundPolicy,
    OutboundRefused,
    ProviderClient,
    ProviderConfig,
    RetryPolicy,
    Tokens,
    client_for,
)
from tasks.providers.outbound import default_policy

logger = logging.getLogger(__name__)

SUPPORTED = frozenset(slug.value for slug in ProviderSlug)


class Skip(Exception):  # a normal outcome, not an error
    """The job has nothing to do (integration gone, disabled, already done); its result says why."""


class InvalidDocument(Exception):
    """A stored document does not match its model; the job fails naming the fields."""


class IntegrationBroken(Exception):
    """The integration cannot be used until an operator or the user acts (marked ``error``)."""


@dataclass
class Connection:
    services: Services
    tenant_id: ObjectId
    integration: dict[str, Any]
    provider: dict[str, Any]
    client: ProviderClient
    integrations: TenantCollection
    counted: int = field(default=0)

    @property
    def integration_id(self) -> ObjectId:
        return self.integration["_id"]

    def record_usage(self) -> None:
        """Add the HTTP calls made since the last record to ``usage.totalRequests``."""
        delta = self.client.request_count - self.counted
        if delta:
            count_requests(self.integrations, self.integration_id, delta)
            usage.bump(self.services.redis, usage.PROVIDER_REQUESTS, self.tenant_id, delta)
            self.counted += delta


def count_requests(integrations: TenantCollection, integration_id: ObjectId, count: int) -> None:
    """Seed counters: ``usage.totalRequests`` grows by ``count``; ``usage.lastRequest`` is now."""
    integrations.update_one(
        {"_id": integration_id},
        {"$inc": {"usage.totalRequests": count}, "$set": {"usage.lastRequest": now()}},
    )


def tokens_of(ring: KeyRing, integration: dict[str, Any]) -> Tokens:
    """The integration's tokens in the clear (raises CryptoError naming the key id)."""
    tenant_id, integration_id = integration["tenantId"], integration["_id"]
    auth = integration["authData"]
    access = unseal(ring, ACCESS_TOKEN, auth["accessToken"], document_id=integration_id, tenant_id=tenant_id)
    refresh = (
        unseal(ring, REFRESH_TOKEN, auth["refreshToken"], document_id=integration_id, tenant_id=tenant_id)
        if auth.get("refreshToken")
        else ""
    )
    scope = auth.get("scope")
    return Tokens(
        access_token=access,
        refresh_token=refresh,
        expires_at=auth.get("expiresAt"),
        scope=" ".join(scope) if isinstance(scope, list) else scope,
    )


def provider_config(
    ring: KeyRing, provider: dict[str, Any], policy: OutboundPolicy | None = None
) -> ProviderConfig:
    """The provider's client settings, its secret decrypted and its API base resolved.

    Its token, consent and API URLs are checked against ``policy`` (default: the process
    settings') first: a URL the policy refuses raises ``DestinationRefused`` naming the field and
    host, before anything is decrypted or sent.
    """
    slug = provider.get("slug")
    if slug not in SUPPORTED:
        raise Skip(f"provider slug {str(slug)[:40]!r} has no adapter in mwap-tasks")
    policy = policy or default_policy()
    base = api_base_url(provider)
    for name, url in (
        ("tokenUrl", provider.get("tokenUrl")),
        ("authUrl", provider.get("authUrl")),
        ("metadata.apiBaseUrl", base),
    ):
        if name == "authUrl" and not url:
            continue  # optional: the jobs never open the consent page
        try:
            policy.check_url(str(url or ""), slug)
        except OutboundRefused as refused:
            raise DestinationRefused(f"provider {slug} {name}: {refused}") from None
    secret = unseal(ring, CLIENT_SECRET, provider["clientSecret"], document_id=provider["_id"])
    metadata = {**(provider.get("metadata") or {}), "apiBaseUrl": base}
    config = ProviderConfig.from_document({**provider, "clientSecret": secret, "metadata": metadata})
    return dataclasses.replace(config, policy=policy)


def mark_error(
    services: Services, tenant_id: ObjectId, integration_id: ObjectId, reason: str, *, action: str
) -> bool:
    """Set status ``error`` with ``reason`` unless already so; audit the change. True if changed."""
    integrations = services.store.tenant(tenant_id)["cloudIntegrations"]
    # The integration.auth_failed webhook event is written with the status change, or not at all.
    failed = webhooks.event(
        webhooks.IntegrationAuthFailed(integration_id=str(integration_id), reason=reason[:500])
    )
    changed = integrations.update_one(
        {"_id": integration_id, "status": {"$ne": "error"}},
        {
            # authFailedAt: the platform's own mark, cleared (with integration.recovered) by the
            # first successful health check once the integration is active again.
            "$set": {
                "status": "error",
                "mwapTasks.statusReason": reason[:500],
                "mwapTasks.authFailedAt": now(),
                "updatedAt": now(),
            },
            **webhooks.outbox_push(failed),
        },
    ).modified_count
    if changed:
        audit.record(
            services.db,
            tenant_id=tenant_id,
            action=action,
            target_type="integration",
            target_id=integration_id,
            details={"status": "error", "reason": reason[:500]},
        )
        logger.warning("integration %s marked error: %s", integration_id, reason)
    return bool(changed)


def ensure_tenant_live(services: Services, tenant_id: ObjectId) -> dict[str, Any]:
    """The tenant (its ``archived`` flag and feature switches); Skip when it is gone or archived:
    an archived tenant gets no work done."""
    tenant = services.store.global_collection("tenants").find_one(
        {"_id": tenant_id}, {"archived": 1, "settings.features.cloudIntegrations": 1}
    )
    if tenant is None:
        raise Skip("tenant no longer exists")
    if tenant.get("archived") is True:
        raise Skip("tenant is archived")
    return tenant


def cloud_integrations_enabled(tenant: dict[str, Any]) -> bool:
    """Seed 000's ``settings.features.cloudIntegrations``: only an explicit false turns them off."""
    features = (tenant.get("settings") or {}).get("features") or {}
    return features.get("cloudIntegrations") is not False


def load(
    services: Services, tenant_id: ObjectId | str, integration_id: ObjectId | str
) -> tuple[dict[str, Any], TenantCollection]:
    """The integration document, read with its tenant id; Skip when gone, not active, archived, or
    its tenant has cloud integrations turned off."""
    tenant_id = oid(tenant_id)
    if not cloud_integrations_enabled(ensure_tenant_live(services, tenant_id)):
        raise Skip("cloud integrations are turned off for this tenant (settings.features.cloudIntegrations)")
    integrations = services.store.tenant(tenant_id)["cloudIntegrations"]
    doc = integrations.find_one({"_id": oid(integration_id)})
    if doc is None:
        raise Skip("integration no longer exists")
    if doc.get("status") != "active":
        raise Skip(f"integration is {doc.get('status')}")
    try:
        CloudIntegration.model_validate(doc)
    except ValidationError as error:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in error.errors()})
        logger.warning("integration %s of tenant %s does not validate: %s", integration_id, tenant_id, fields)
        raise InvalidDocument(
            f"integration {integration_id} does not validate: bad fields {fields}"
        ) from None
    return doc, integrations


def open_connection(
    services: Services, tenant_id: ObjectId | str, integration_id: ObjectId | str
) -> Connection:
    """Load, decrypt and connect; 401s during the run refresh through the single-flight path."""
    from tasks import tokens  # noqa: PLC0415 - tokens builds connections too; import at use breaks the cycle

    integration, integrations = load(services, tenant_id, integration_id)
    # From here on, the ids as stored (ObjectIds), whichever form the caller named them in.
    stored_tenant_id: ObjectId = integration["tenantId"]
    stored_integration_id: ObjectId = integration["_id"]
    provider = services.store.global_collection("cloudProviders").find_one({"_id": integration["providerId"]})
    if provider is None:
        raise Skip(f"provider {integration['providerId']} is not registered")
    try:
        config = provider_config(services.ring, provider, OutboundPolicy.from_settings(services.settings))
        current = tokens_of(services.ring, integration)
    except LegacyKeyMissingError as error:
        # An operator's setting is missing, not a broken integration: fail this job, change nothing.
        raise IntegrationBroken(f"integration {stored_integration_id}: {error}") from None
    except CryptoError as error:
        mark_error(
            services,
            stored_tenant_id,
            stored_integration_id,
            f"credentials unreadable: {error}",
            action="integration.error",
        )
        raise IntegrationBroken(str(error)) from None
    settings = services.settings
    client = client_for(
        config,
        current,
        refresher=lambda: tokens.refresh_single_flight(
            services, stored_tenant_id, stored_integration_id, seen=current
        ),
        timeout=(settings.provider_connect_timeout, settings.provider_read_timeout),
        retry=RetryPolicy(max_inline_wait=settings.provider_max_inline_wait),
    )
    return Connection(services, stored_tenant_id, integration, provider, client, integrations)
