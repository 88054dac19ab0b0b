"""Document models: seed 000's documents round-trip, bad ones are refused or skipped with their ids."""

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId
from pydantic import ValidationError

from mwap.models import CloudIntegration, CloudProvider, Project, Tenant, TenantSettings, VirtualFile
from mwap.store import valid_documents

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATER = datetime(2026, 6, 30, 12, 30, tzinfo=UTC)
TENANT_ID = ObjectId()
PROJECT_ID = ObjectId()
PROVIDER_ID = ObjectId()
INTEGRATION_ID = ObjectId()


# --- documents exactly as seed 000 ("Core Schema Definitions") shows them: every field ----------


def tenant_doc() -> dict[str, Any]:
    return {
        "_id": TENANT_ID,
        "name": "Acme",
        "description": "Acme Corp",
        "ownerId": "auth0|acme-owner",
        "settings": {
            "allowPublicProjects": True,
            "maxProjects": 25,
            "retentionDays": 30,
            "features": {"cloudIntegrations": True, "advancedSecurity": True, "customBranding": False},
        },
        "subscription": {"plan": "pro", "status": "active", "expiresAt": LATER, "features": ["sso", "audit"]},
        "metadata": {"totalProjects": 3, "totalMembers": 7, "storageUsed": 123456, "lastActivity": NOW},
        "createdAt": NOW,
        "updatedAt": LATER,
        "archived": False,
    }


def project_doc() -> dict[str, Any]:
    return {
        "_id": PROJECT_ID,
        "name": "Alpha",
        "description": "The alpha project",
        "tenantId": TENANT_ID,
        "projectTypeId": ObjectId(),
        "config": {"theme": "dark", "limits": {"files": 100}},
        "members": [
            {"userId": "auth0|acme-owner", "role": "OWNER", "addedAt": NOW, "addedBy": "auth0|acme-owner"},
            {"userId": "auth0|deputy", "role": "DEPUTY", "addedAt": NOW, "addedBy": "auth0|acme-owner"},
            {"userId": "auth0|member", "role": "MEMBER", "addedAt": LATER, "addedBy": "auth0|deputy"},
        ],
        "folderPath": "/Projects/Alpha",
        "integrations": [
            {"integrationId": INTEGRATION_ID, "enabled": True, "config": {"readOnly": True}},
            {"integrationId": ObjectId(), "enabled": False, "config": {}},
        ],
        "metadata": {"fileCount": 12, "totalSize": 4096, "lastSync": NOW},
        "createdAt": NOW,
        "updatedAt": LATER,
        "archived": False,
    }


def provider_doc() -> dict[str, Any]:
    return {
        "_id": PROVIDER_ID,
        "name": "Google Drive",
        "slug": "google-drive",
        "scopes": ["https://www.googleapis.com/auth/drive.readonly"],
        "authUrl": "https://accounts.google.com/o/oauth2/v2/auth",
        "tokenUrl": "https://oauth2.googleapis.com/token",
        "clientId": "client-id.apps.googleusercontent.com",
        "clientSecret": "0123456789abcdef0123456789abcdef:0123456789abcdef0123456789abcdef:00ff",
        "grantType": "authorization_code",
        "tokenMethod": "POST",
        "metadata": {"apiBaseUrl": "https://www.googleapis.com", "icon": "drive.svg"},
        "createdAt": NOW,
        "updatedAt": LATER,
        "createdBy": "auth0|admin",
    }


def integration_doc(**overrides: Any) -> dict[str, Any]:
    doc = {
        "_id": INTEGRATION_ID,
        "tenantId": TENANT_ID,
        "providerId": PROVIDER_ID,
        "status": "active",
        "authData": {
            "accessToken": "enc:v1:k1:access",
            "refreshToken": "enc:v1:k1:refresh",
            "expiresAt": LATER,
            "scope": ["drive.readonly", "email"],
        },
        "userInfo": {"email": "owner@acme.test", "name": "Acme Owner", "providerId": "1234567890"},
        "health": {"lastCheck": NOW, "status": "degraded", "errorCount": 2, "lastError": "HTTP 503"},
        "usage": {"totalRequests": 42, "lastRequest": NOW, "quotaUsed": 10, "quotaLimit": 1000},
        "createdAt": NOW,
        "updatedAt": LATER,
        "createdBy": "auth0|acme-owner",
    }
    doc.update(overrides)
    return doc


def virtual_file_doc() -> dict[str, Any]:
    return {
        "_id": ObjectId(),
        "projectId": PROJECT_ID,
        "integrationId": INTEGRATION_ID,
        "providerId": PROVIDER_ID,
        "providerFileId": "1AbCdEf",
        "name": "report.pdf",
        "path": "/Projects/Alpha/report.pdf",
        "type": "application/pdf",
        "size": 2048,
        "modifiedTime": NOW,
        "metadata": {
            "downloadUrl": "https://example.test/dl/1AbCdEf",
            "thumbnailUrl": "https://example.test/th/1AbCdEf",
            "permissions": ["read", "write"],
            "checksum": "md5:0cc175b9c0f1b6a831c399e269772661",
        },
        "syncStatus": {"lastSync": NOW, "status": "error", "error": "quota exceeded"},
        "createdAt": NOW,
        "updatedAt": LATER,
    }


SEED_DOCUMENTS = [
    pytest.param(Tenant, tenant_doc, set(), id="tenants"),
    pytest.param(Project, project_doc, set(), id="projects"),
    pytest.param(CloudProvider, provider_doc, set(), id="cloudProviders"),
    # The platform's own state on integrations and files: not in the seed, never required.
    pytest.param(CloudIntegration, integration_doc, {"mwapTasks"}, id="cloudIntegrations"),
    pytest.param(VirtualFile, virtual_file_doc, {"tenantId", "mwapTasks"}, id="virtualFiles"),
]


@pytest.mark.parametrize(("model", "make", "platform_fields"), SEED_DOCUMENTS)
def test_seed_documents_round_trip(model: type, make: Any, platform_fields: set[str]) -> None:
    doc = make()
    dumped = model.model_validate(doc).model_dump(by_alias=True)
    # Every seed field comes back under its stored name, with its type (ObjectId stays ObjectId,
    # datetimes stay datetimes): reading a backend document and writing it back changes nothing.
    assert {key: dumped.get(key) for key in doc} == doc
    assert set(dumped) - set(doc) == platform_fields
    for key in ("_id", "tenantId", "projectId", "integrationId", "providerId", "projectTypeId"):
        if key in doc:
            assert type(dumped[key]) is ObjectId
    # And in JSON every id is the 24-hex form.
    as_json = model.model_validate(doc).model_dump(by_alias=True, mode="json")
    assert as_json["_id"] == str(doc["_id"])


def test_hex_ids_are_read_as_object_ids() -> None:
    doc = integration_doc(_id=str(INTEGRATION_ID), tenantId=str(TENANT_ID), providerId=str(PROVIDER_ID))
    dumped = CloudIntegration.model_validate(doc).model_dump(by_alias=True)
    assert dumped["_id"] == INTEGRATION_ID
    assert dumped["tenantId"] == TENANT_ID
    assert dumped["providerId"] == PROVIDER_ID


def _at(value: Any, part: str) -> Any:
    return value[int(part)] if isinstance(value, list) else value[part]


def _without(doc: dict[str, Any], *paths: str) -> dict[str, Any]:
    for path in paths:
        *parents, leaf = path.split(".")
        target = doc
        for parent in parents:
            target = _at(target, parent)
        del target[leaf]
    return doc


OPTIONAL_ABSENT = [
    pytest.param(Tenant, tenant_doc, ["description", "subscription"], id="tenants"),
    pytest.param(
        Project,
        project_doc,
        ["description", "folderPath", "integrations.0.config", "integrations.1.config"],
        id="projects",
    ),
    pytest.param(CloudProvider, provider_doc, ["metadata"], id="cloudProviders"),
    pytest.param(
        CloudIntegration,
        integration_doc,
        [
            "authData.refreshToken",
            "authData.expiresAt",
            "userInfo",
            "health.lastError",
            "usage.quotaUsed",
            "usage.quotaLimit",
        ],
        id="cloudIntegrations",
    ),
    pytest.param(
        VirtualFile,
        virtual_file_doc,
        [
            "size",
            "modifiedTime",
            "metadata.downloadUrl",
            "metadata.thumbnailUrl",
            "metadata.checksum",
            "syncStatus.error",
        ],
        id="virtualFiles",
    ),
]


@pytest.mark.parametrize(("model", "make", "absent"), OPTIONAL_ABSENT)
def test_optional_seed_fields_may_be_absent(model: type, make: Any, absent: list[str]) -> None:
    doc = _without(make(), *absent)
    validated = model.model_validate(doc)
    # Nothing is invented on the way back: the absent fields stay absent in what is written.
    assert validated.model_dump(by_alias=True, exclude_unset=True) == doc
    dumped = validated.model_dump(by_alias=True)
    for path in absent:
        value: Any = dumped
        for part in path.split("."):
            value = _at(value, part)
        assert value is None, path


def test_unknown_fields_are_kept() -> None:
    doc = integration_doc(extraField={"kept": True})
    dumped = CloudIntegration.model_validate(doc).model_dump(by_alias=True)
    assert dumped["extraField"] == {"kept": True}
    assert dumped["authData"]["expiresAt"] == LATER


def test_defaults_for_a_minimal_tenant() -> None:
    tenant = Tenant.model_validate(
        {
            "_id": TENANT_ID,
            "name": "Acme",
            "ownerId": "auth0|x",
            "createdAt": NOW,
            "settings": {"retentionDays": 30},
        }
    )
    assert tenant.settings.retention_days == 30
    assert tenant.settings.max_projects == 10
    assert tenant.archived is False


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"maxProjects": 0}, "maxProjects"),
        ({"maxProjects": 101}, "maxProjects"),
        ({"retentionDays": 0}, "retentionDays"),
    ],
)
def test_tenant_settings_bounds(settings: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TenantSettings.model_validate(settings)
    assert caught.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(
    "overrides",
    [
        {"status": "exploded"},
        {"health": {"status": "sick"}},
        {"providerId": "google-drive"},
        {"authData": {"expiresAt": NOW, "scope": []}},
        {"authData": {"accessToken": "x", "scope": "drive"}},
        {"tenantId": ""},
        {"_id": "int-1"},
    ],
)
def test_bad_integration_documents_are_refused(overrides: dict) -> None:
    with pytest.raises(ValidationError):
        CloudIntegration.model_validate(integration_doc(**overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        {"role": "owner"},
        {"userId": ""},
    ],
)
def test_bad_project_members_are_refused(overrides: dict) -> None:
    doc = project_doc()
    doc["members"][0].update(overrides)
    with pytest.raises(ValidationError):
        Project.model_validate(doc)


def test_bad_virtual_file_sync_status_is_refused() -> None:
    doc = virtual_file_doc()
    doc["syncStatus"] = {"status": "teleported"}
    with pytest.raises(ValidationError):
        VirtualFile.model_validate(doc)


def test_invalid_documents_are_skipped_and_reported_with_ids(caplog: pytest.LogCaptureFixture) -> None:
    good, bad, good2 = ObjectId(), ObjectId(), ObjectId()
    docs = [
        integration_doc(_id=good),
        integration_doc(_id=bad, status="exploded"),
        integration_doc(_id=good2),
    ]
    with caplog.at_level(logging.WARNING, logger="mwap.store"):
        valid = [m.id for m in valid_documents(CloudIntegration, docs, collection="cloudIntegrations")]
    assert valid == [good, good2]
    assert f"_id={bad}" in caplog.text
    assert f"tenantId={TENANT_ID}" in caplog.text
    assert "status" in caplog.text
