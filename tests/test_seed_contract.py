"""Documents exactly as the MWAP backend writes them (seed 000), served by every job end to end.

The fixture below writes raw dictionaries in seed 000's shapes, tokens and the client secret in the
backend's legacy ``iv:authTag:ciphertext`` format, without any platform code. Then the real worker
refreshes the token (reading the legacy values), checks health, syncs files into seed-shaped
``virtualFiles``, keeps the seed's usage counters, and applies retention by ``retentionDays``.
"""

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import factories
import pytest
from bson import ObjectId
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pymongo.database import Database

from mwap.crypto import KeyRing
from mwap.models import CloudIntegration, Project, Tenant, VirtualFile
from mwap.services import Services
from mwap.store import Store
from ops.fake_providers.control import FakeProviders
from tasks.dispatch import due_integrations
from tasks.health import check
from tasks.integrations import IntegrationBroken

DAY = timedelta(days=1)


def node_create_cipher(plaintext: str, password: str) -> str:
    """What the backend's ``crypto.createCipher('aes-256-gcm', password)`` + AAD writes."""
    derived, block = b"", b""
    while len(derived) < 44:  # OpenSSL EVP_BytesToKey(MD5, 1 round, no salt): key 32 + nonce 12
        block = hashlib.md5(block + password.encode()).digest()  # noqa: S324 - Node's derivation
        derived += block
    sealed = AESGCM(derived[:32]).encrypt(derived[32:44], plaintext.encode(), b"MWAP-AUTH-DATA")
    return f"{os.urandom(16).hex()}:{sealed[-16:].hex()}:{sealed[:-16].hex()}"


def test_the_fixture_encrypts_like_node() -> None:
    # A value Node v20 printed for this password (the iv part is random and unused).
    node = "9328c9308e11d56c086cae0dc7021b64:8fc91c80e49cc5e7ab8480bb511cbeb1:ed0e584681e262a167bb44419c4d93fc264f2176bd5b49f5"
    ours = node_create_cipher("ya29.legacy-access-token", "0123456789abcdef0123456789abcdef")
    assert ours.split(":")[1:] == node.split(":")[1:]


@pytest.fixture
def seeded(db: Database, fake: FakeProviders) -> Iterator[dict[str, Any]]:
    """A tenant, two projects, the Dropbox provider and an integration, as the backend writes them."""
    account = fake.create_account(
        "dropbox",
        files=["/Shared/Alpha/a.txt", "/Shared/Alpha/b.txt", "/Shared/Beta/c.txt", "/Other/d.txt"],
    )
    moment = datetime.now(UTC).replace(microsecond=0)
    tenant_id, alpha_id, beta_id, integration_id = ObjectId(), ObjectId(), ObjectId(), ObjectId()
    original_provider = db["cloudProviders"].find_one({"slug": "dropbox"})
    provider_id = original_provider["_id"]
    served = fake.document("dropbox")
    db["cloudProviders"].replace_one(
        {"_id": provider_id},
        {
            "_id": provider_id,
            "name": "Dropbox",
            "slug": "dropbox",
            "scopes": ["account_info.read", "files.metadata.read"],
            "authUrl": served["authUrl"],
            "tokenUrl": served["tokenUrl"],
            "clientId": served["clientId"],
            "clientSecret": node_create_cipher(served["clientSecret"], factories.LEGACY_PASSWORD),
            "grantType": "authorization_code",
            "tokenMethod": "POST",
            "metadata": {"apiBaseUrl": served["metadata"]["apiBaseUrl"]},
            "createdAt": moment,
            "updatedAt": moment,
            "createdBy": "auth0|platform-admin",
        },
    )
    db["tenants"].insert_one(
        {
            "_id": tenant_id,
            "name": "Seed Tenant",
            "description": "written as the backend does",
            "ownerId": f"auth0|{tenant_id}",
            "settings": {
                "allowPublicProjects": False,
                "maxProjects": 10,
                "retentionDays": 7,
                "features": {"cloudIntegrations": True, "advancedSecurity": False, "customBranding": False},
            },
            "subscription": {
                "plan": "pro",
                "status": "active",
                "expiresAt": moment + 300 * DAY,
                "features": ["sync"],
            },
            "metadata": {"totalProjects": 0, "totalMembers": 0, "storageUsed": 0, "lastActivity": moment},
            "createdAt": moment,
            "updatedAt": moment,
            "archived": False,
        }
    )

    def project(project_id: ObjectId, name: str, folder: str, *, enabled: bool, members: list[str]) -> dict:
        return {
            "_id": project_id,
            "name": name,
            "description": f"{name} files",
            "tenantId": tenant_id,
            "projectTypeId": ObjectId(),
            "config": {"color": "blue"},
            "members": [
                {"userId": user, "role": role, "addedAt": moment, "addedBy": members[0]}
                for user, role in zip(members, ["OWNER", "DEPUTY", "MEMBER"], strict=False)
            ],
            "folderPath": folder,
            "integrations": [{"integrationId": integration_id, "enabled": enabled, "config": {}}],
            "metadata": {"fileCount": 0, "totalSize": 0, "lastSync": moment},
            "createdAt": moment,
            "updatedAt": moment,
            "archived": False,
        }

    db["projects"].insert_many(
        [
            project(alpha_id, "Alpha", "/Shared/Alpha", enabled=True, members=["auth0|ann", "auth0|bob"]),
            project(beta_id, "Beta", "/Shared/Beta", enabled=False, members=["auth0|ann", "auth0|cy"]),
        ]
    )
    db["cloudIntegrations"].insert_one(
        {
            "_id": integration_id,
            "tenantId": tenant_id,
            "providerId": provider_id,
            "status": "active",
            "authData": {
                "accessToken": node_create_cipher(account.access_token, factories.LEGACY_PASSWORD),
                "refreshToken": node_create_cipher(account.refresh_token, factories.LEGACY_PASSWORD),
                "expiresAt": moment + timedelta(minutes=2),  # inside the look-ahead: refresh is due
                "scope": ["account_info.read", "files.metadata.read"],
            },
            "userInfo": {"email": "ann@example.test", "name": "Ann", "providerId": "dbid:ann"},
            "health": {"lastCheck": moment, "status": "healthy", "errorCount": 0},
            "usage": {"totalRequests": 0, "lastRequest": moment},
            "createdAt": moment,
            "updatedAt": moment,
            "createdBy": "auth0|ann",
        }
    )
    db["auditLogs"].insert_many(
        [
            {"tenantId": tenant_id, "action": "old", "createdAt": moment - 30 * DAY},
            {"tenantId": tenant_id, "action": "recent", "createdAt": moment - 2 * DAY},
        ]
    )
    yield {
        "tenant": tenant_id,
        "alpha": alpha_id,
        "beta": beta_id,
        "provider": provider_id,
        "integration": integration_id,
        "account": account,
    }
    db["cloudProviders"].replace_one({"_id": provider_id}, original_provider)
    db["cloudIntegrations"].delete_one({"_id": integration_id})


def test_seed_documents_are_served_by_every_job(
    services: Services, db: Database, worker, seeded: dict[str, Any]
) -> None:
    tenant_id, integration_id = seeded["tenant"], seeded["integration"]
    integrations = db["cloudIntegrations"]
    # Every seed document validates as the platform's model, unchanged.
    Tenant.model_validate(db["tenants"].find_one({"_id": tenant_id}))
    for doc in db["projects"].find({"tenantId": tenant_id}):
        Project.model_validate(doc)
    CloudIntegration.model_validate(integrations.find_one({"_id": integration_id}))

    # Dispatch selects it by the seed's fields: never health-checked by the platform, token expiring.
    for job_type in ("integration.health_check", "integration.refresh_token", "integration.sync_files"):
        query = {**due_integrations(services, job_type), "_id": integration_id}
        assert Store(db).unscoped("cloudIntegrations").find_one(query) is not None, job_type

    integration = {"_id": integration_id, "tenantId": tenant_id}
    refreshed = factories.run_integration_job(services, "integration.refresh_token", integration)
    assert refreshed["status"] == "succeeded", refreshed["error"]
    doc = integrations.find_one({"_id": integration_id})
    # Read the legacy access/refresh token and client secret; wrote the new token in the platform's format.
    assert doc["authData"]["accessToken"].startswith("enc:v1:")
    assert doc["authData"]["expiresAt"] > datetime.now(UTC) + timedelta(minutes=30)
    assert doc["authData"]["scope"] == ["account_info.read", "files.metadata.read"]
    assert doc["mwapTasks"]["lastRefreshAt"] is not None

    health = factories.run_integration_job(services, "integration.health_check", integration)
    assert health["status"] == "succeeded", health["error"]
    doc = integrations.find_one({"_id": integration_id})
    assert doc["health"]["status"] == "healthy"
    assert doc["health"]["errorCount"] == 0
    assert doc["mwapTasks"]["healthCheckedAt"] is not None
    assert set(doc["userInfo"]) >= {"email", "name", "providerId"}

    synced = factories.run_integration_job(services, "integration.sync_files", integration)
    assert synced["status"] == "succeeded", synced["error"]
    files = list(db["virtualFiles"].find({"integrationId": integration_id}))
    by_path = {f["path"]: f for f in files}
    # Only the enabled link's folder: Beta's link is disabled and /Other is in no project.
    assert set(by_path) == {"/Shared/Alpha", "/Shared/Alpha/a.txt", "/Shared/Alpha/b.txt"}
    for file in files:
        VirtualFile.model_validate(file)
        assert file["projectId"] == seeded["alpha"]
        assert file["providerId"] == seeded["provider"]
        assert file["tenantId"] == tenant_id
        assert isinstance(file["_id"], ObjectId)
        assert file["syncStatus"]["status"] == "synced"
        assert file["metadata"]["permissions"] == []
    assert by_path["/Shared/Alpha/a.txt"]["type"] == "text/plain"
    assert by_path["/Shared/Alpha"]["type"] == "inode/directory"

    usage = factories.run_tenant_job(services, "tenant.aggregate_usage", tenant_id)
    assert usage["status"] == "succeeded", usage["error"]
    tenant = db["tenants"].find_one({"_id": tenant_id})
    sizes = sum(f["size"] for p, f in by_path.items() if p != "/Shared/Alpha")
    assert tenant["metadata"]["totalProjects"] == 2
    assert tenant["metadata"]["totalMembers"] == 3  # ann, bob, cy
    assert tenant["metadata"]["storageUsed"] == sizes
    alpha = db["projects"].find_one({"_id": seeded["alpha"]})
    beta = db["projects"].find_one({"_id": seeded["beta"]})
    assert (alpha["metadata"]["fileCount"], alpha["metadata"]["totalSize"]) == (2, sizes)
    assert beta["metadata"]["fileCount"] == 0
    doc = integrations.find_one({"_id": integration_id})
    assert doc["usage"]["totalRequests"] >= 3  # refresh, account probe, listing
    assert doc["usage"]["lastRequest"] > doc["createdAt"]

    retention = factories.run_tenant_job(services, "tenant.apply_retention", tenant_id)
    assert retention["status"] == "succeeded", retention["error"]
    assert retention["result"]["removed"]["auditLogs"] == 1
    actions = {a["action"] for a in db["auditLogs"].find({"tenantId": tenant_id})}
    assert "old" not in actions
    assert "recent" in actions


def test_legacy_value_without_the_legacy_key_is_a_clear_job_error(
    settings, db: Database, seeded: dict[str, Any], services: Services
) -> None:
    ring = KeyRing.parse(settings.encryption_keys.get_secret_value())  # no legacy password
    without = Services(settings, db, services.redis, ring)
    with pytest.raises(IntegrationBroken, match="MWAP_LEGACY_ENCRYPTION_KEY"):
        check(without, seeded["tenant"], seeded["integration"])
    # An operator's missing setting leaves the integration as it was.
    assert db["cloudIntegrations"].find_one({"_id": seeded["integration"]})["status"] == "active"


def test_an_archived_tenant_gets_no_jobs(
    services: Services, db: Database, worker, seeded: dict[str, Any]
) -> None:
    db["tenants"].update_one({"_id": seeded["tenant"]}, {"$set": {"archived": True}})
    from tasks.dispatch import archived_tenants  # noqa: PLC0415

    assert seeded["tenant"] in archived_tenants(services)
    integration = {"_id": seeded["integration"], "tenantId": seeded["tenant"]}
    job = factories.run_integration_job(services, "integration.sync_files", integration)
    assert job["status"] == "succeeded"
    assert job["result"] == {"skipped": "tenant is archived"}
    assert db["virtualFiles"].count_documents({"integrationId": seeded["integration"]}) == 0
