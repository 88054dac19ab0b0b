"""Document models: good documents validate, bad ones are refused or skipped with their ids."""

import logging
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from mwap.models import CloudIntegration, Project, Tenant, TenantSettings, VirtualFile
from mwap.store import valid_documents

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def integration_doc(**overrides: object) -> dict:
    doc = {
        "_id": "int-1",
        "tenantId": "t1",
        "providerId": "google-drive",
        "providerSlug": "google-drive",
        "status": "active",
        "authData": {"accessToken": "enc:v1:k1:x", "refreshToken": None, "expiresAt": NOW},
        "health": {"status": "healthy", "lastCheck": NOW, "errorCount": 0},
        "createdAt": NOW,
    }
    doc.update(overrides)
    return doc


def test_good_documents_validate() -> None:
    tenant = Tenant.model_validate(
        {"_id": "t1", "name": "Acme", "createdAt": NOW, "settings": {"retentionDays": 30}}
    )
    assert tenant.settings.retention_days == 30
    assert tenant.settings.max_projects == 10
    integration = CloudIntegration.model_validate(integration_doc())
    assert integration.health.status == "healthy"
    project = Project.model_validate(
        {
            "_id": "p1",
            "tenantId": "t1",
            "name": "P",
            "createdAt": NOW,
            "members": [{"userId": "u1", "role": "owner"}],
            "integrations": [{"integrationId": "int-1", "folderPath": "/Team"}],
        }
    )
    assert project.integrations[0].folder_path == "/Team"


def test_round_trip_keeps_camel_case_and_unknown_fields() -> None:
    doc = integration_doc(extraField={"kept": True})
    dumped = CloudIntegration.model_validate(doc).model_dump()
    assert dumped["tenantId"] == "t1"
    assert dumped["authData"]["expiresAt"] == NOW
    assert dumped["extraField"] == {"kept": True}


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
        {"providerSlug": "box"},
        {"authData": {"expiresAt": NOW}},
        {"tenantId": ""},
    ],
)
def test_bad_integration_documents_are_refused(overrides: dict) -> None:
    with pytest.raises(ValidationError):
        CloudIntegration.model_validate(integration_doc(**overrides))


def test_bad_virtual_file_sync_status_is_refused() -> None:
    with pytest.raises(ValidationError):
        VirtualFile.model_validate(
            {
                "_id": "f",
                "tenantId": "t",
                "integrationId": "i",
                "projectId": None,
                "providerFileId": "x",
                "name": "a",
                "path": "/a",
                "syncStatus": {"status": "teleported"},
                "createdAt": NOW,
            }
        )


def test_invalid_documents_are_skipped_and_reported_with_ids(caplog: pytest.LogCaptureFixture) -> None:
    docs = [
        integration_doc(_id="good"),
        integration_doc(_id="bad", status="exploded"),
        integration_doc(_id="good2"),
    ]
    with caplog.at_level(logging.WARNING, logger="mwap.store"):
        valid = [m.id for m in valid_documents(CloudIntegration, docs, collection="cloudIntegrations")]
    assert valid == ["good", "good2"]
    assert "_id=bad" in caplog.text
    assert "tenantId=t1" in caplog.text
    assert "status" in caplog.text
