"""The list endpoints read at ``MWAP_MONGO_LIST_READ_PREFERENCE``; a job read by id stays on the
primary.

Observed at pymongo's ``Collection.find``, i.e. the read preference pymongo selects a server with
and sends as ``$readPreference`` to a mongos or a replica set. The MongoDB stand-in of the tests is
a standalone server, to which pymongo sends no ``$readPreference`` at all (any preference selects
it): so the commands on the wire cannot show it here, only that the requests still answer.
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import factories
import pytest
from api_support import forget_offline, offline_app, tenant_with_key
from flask import Flask
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.read_preferences import Primary, SecondaryPreferred

from mwap import webhooks
from mwap.settings import Settings

LISTED = SecondaryPreferred(max_staleness=120)


@pytest.fixture(scope="module")
def lists_on_secondaries(settings: Settings) -> Iterator[Flask]:
    yield offline_app(
        settings, mongo_list_read_preference="secondaryPreferred", mongo_list_max_staleness_seconds=120
    )
    forget_offline(settings)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """(collection, read preference) of every ``find`` the app makes."""
    seen: list[tuple[str, Any]] = []
    find = Collection.find

    def recording(self: Collection, *args: Any, **kwargs: Any) -> Any:
        seen.append((self.name, self.read_preference))
        return find(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "find", recording)
    return seen


def test_list_endpoints_read_at_the_configured_preference_and_a_job_by_id_on_the_primary(
    lists_on_secondaries: Flask, reads: list[tuple[str, Any]], db: Database, ring: Any, admin_headers: dict
) -> None:
    api = lists_on_secondaries.test_client()
    tenant, headers = tenant_with_key(db)
    integration = factories.integration(db, ring, tenant["_id"])
    factories.virtual_file(db, integration, "/a.txt")
    factories.usage_day(db, tenant["_id"], datetime.now(UTC).date())
    job = factories.job_document(
        db, "tenant.aggregate_usage", tenant["_id"], {"tenantId": str(tenant["_id"])}
    )
    endpoint, _ = webhooks.create_endpoint(
        db,
        ring,
        tenant["_id"],
        url="https://hooks.example.com/in",
        events=["job.failed"],
        actor=factories.ACTOR,
    )

    listings = {
        "/v1/jobs": "jobs",
        "/v1/integrations": "cloudIntegrations",
        f"/v1/integrations/{integration['_id']}/files": "virtualFiles",
        f"/v1/tenants/{tenant['_id']}/usage": "usageDaily",
        "/v1/webhooks": webhooks.ENDPOINTS,
        f"/v1/webhooks/{endpoint['_id']}/deliveries": webhooks.DELIVERIES,
    }
    for url, collection in listings.items():
        reads.clear()
        response = api.get(url, headers=headers)
        assert response.status_code == 200, (url, response.get_data(as_text=True))
        if "deliveries" not in url:  # (none made: the read is what is checked)
            assert response.get_json()["items" if "usage" not in url else "days"], url
        listed = [preference for name, preference in reads if name == collection]
        assert listed == [LISTED], (url, reads)
    # The admin's listing over every tenant too.
    reads.clear()
    assert api.get("/v1/jobs", headers=admin_headers).status_code == 200
    assert [p for name, p in reads if name == "jobs"] == [LISTED]

    # A job read by id (a client polls it right after creating it) and the lookups before a
    # listing (the integration, the endpoint) read the primary.
    reads.clear()
    assert api.get(f"/v1/jobs/{job['_id']}", headers=headers).status_code == 200
    assert [p for name, p in reads if name == "jobs"] == [Primary()]
    reads.clear()
    api.get(f"/v1/integrations/{integration['_id']}/files", headers=headers)
    assert ("cloudIntegrations", Primary()) in reads
