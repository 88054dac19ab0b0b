"""The tenant boundary of the data layer, and the index bootstrap, against the MongoDB server."""

import factories
import pytest
from bson import ObjectId
from pymongo.database import Database

from mwap.indexes import ensure_indexes, indexes, missing_indexes
from mwap.settings import Settings
from mwap.store import Store, TenantBoundaryError


@pytest.fixture
def two_tenants(db: Database, ring) -> tuple[str, str]:
    a = factories.tenant(db)["_id"]
    b = factories.tenant(db)["_id"]
    for tenant_id in (a, b):
        factories.integration(db, ring, tenant_id)
        factories.project(db, tenant_id, name=f"shared-name-{tenant_id}")
    return a, b


def test_reads_see_only_the_tenant(db: Database, two_tenants: tuple[str, str]) -> None:
    a, b = two_tenants
    scope = Store(db).tenant(a)
    assert {d["tenantId"] for d in scope["cloudIntegrations"].find({})} == {a}
    b_integration = db["cloudIntegrations"].find_one({"tenantId": b})
    assert scope["cloudIntegrations"].find_one({"_id": b_integration["_id"]}) is None
    assert scope["cloudIntegrations"].count_documents({"_id": b_integration["_id"]}) == 0
    assert {d["_id"] for d in scope["projects"].aggregate([{"$group": {"_id": "$tenantId"}}])} == {a}
    # The hex form of the id is the same tenant: the filter still holds the stored ObjectId.
    hex_scope = Store(db).tenant(str(a))
    assert {d["tenantId"] for d in hex_scope["cloudIntegrations"].find({"tenantId": str(a)})} == {a}


def test_a_query_naming_another_tenant_is_refused(db: Database, two_tenants: tuple[str, str]) -> None:
    a, b = two_tenants
    scope = Store(db).tenant(a)
    for other in (b, str(b)):
        with pytest.raises(TenantBoundaryError):
            scope["cloudIntegrations"].find_one({"tenantId": other})


def test_writes_never_touch_another_tenant(db: Database, two_tenants: tuple[str, str]) -> None:
    a, b = two_tenants
    scope = Store(db).tenant(a)
    before = list(db["cloudIntegrations"].find({"tenantId": b}))
    b_id = before[0]["_id"]
    assert (
        scope["cloudIntegrations"].update_one({"_id": b_id}, {"$set": {"name": "hijacked"}}).matched_count
        == 0
    )
    assert scope["cloudIntegrations"].update_many({}, {"$set": {"name": "renamed"}}).matched_count == 1
    assert scope["cloudIntegrations"].delete_many({"_id": b_id}).deleted_count == 0
    assert scope["projects"].bulk_update([({"tenantId": a}, {"$set": {"x": 1}}, False)]).matched_count == 1
    assert list(db["cloudIntegrations"].find({"tenantId": b})) == before
    with pytest.raises(TenantBoundaryError):
        scope["cloudIntegrations"].update_one({"_id": "x"}, {"$set": {"tenantId": b}})
    with pytest.raises(TenantBoundaryError):
        scope["projects"].insert_one({"_id": "p-x", "tenantId": b, "name": "x"})


def test_inserts_are_stamped_and_pipelines_cannot_escape(db: Database, two_tenants: tuple[str, str]) -> None:
    a, _ = two_tenants
    scope = Store(db).tenant(a)
    audit_id = factories.uid("audit")
    scope["auditLogs"].insert_one({"_id": audit_id, "action": "x"})
    assert scope["auditLogs"].count_documents({"action": "x"}) == 1
    assert type(db["auditLogs"].find_one({"_id": audit_id})["tenantId"]) is ObjectId
    with pytest.raises(TenantBoundaryError):
        scope["projects"].aggregate([{"$lookup": {"from": "cloudIntegrations", "as": "x", "pipeline": []}}])


def test_a_tenant_id_is_required(db: Database) -> None:
    # Tenant ids are ObjectIds (or their 24-hex form); anything else is refused before any query.
    for bad in ("", None, "t", "acme", "0" * 23, "z" * 24, 42):
        with pytest.raises(TenantBoundaryError):
            Store(db).tenant(bad)  # type: ignore[arg-type]
    tenant_id = ObjectId()
    assert Store(db).tenant(str(tenant_id)).tenant_id == tenant_id
    assert Store(db).tenant(tenant_id)["projects"].scoped({}) == {"tenantId": tenant_id}
    with pytest.raises(KeyError):
        Store(db).tenant(tenant_id)["tenants"]
    with pytest.raises(KeyError):
        Store(db).global_collection("cloudIntegrations")


def test_index_bootstrap_is_complete_and_idempotent(db: Database, settings: Settings) -> None:
    assert missing_indexes(db, settings) == []
    assert ensure_indexes(db, settings) == []
    info = db["virtualFiles"].index_information()
    # Seed 000's file uniqueness, tenant first (migration 0004, mwap/sharding.py); its index stays.
    assert info["mwap_tenant_integration_file"]["unique"] is True
    assert "providerFileId_1_integrationId_1" in info
    assert (
        db["jobs"].index_information()["finished_ttl"]["expireAfterSeconds"]
        == settings.job_retention_days * 86400
    )
    names = {(i.collection, i.name) for i in indexes(settings)}
    assert ("cloudIntegrations", "mwap_due_sync") in names
    assert ("cloudIntegrations", "tenantId_1_providerId_1") in names
    assert ("usageDaily", "tenant_day_unique") in names


def test_missing_indexes_are_named(db: Database, settings: Settings) -> None:
    db["apiKeys"].drop_index("tenant")
    try:
        assert missing_indexes(db, settings) == ["apiKeys.tenant"]
    finally:
        assert ensure_indexes(db, settings) == ["apiKeys.tenant"]
