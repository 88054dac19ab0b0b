"""Hostile use of the tenant-scoped store: every way out of the tenant is refused before MongoDB.

Each case is an operation a careless or hostile caller of ``Store(db).tenant(a)`` could write to
read or write tenant B's documents, or to strip/move tenant A's ``tenantId`` so a document escapes
every tenant filter. The table shows, per case, what the raw collection would have done (where the
MongoDB stand-in runs it) and that the scoped collection refuses it and changes nothing.
"""

from collections.abc import Callable
from typing import Any

import factories
import pytest
from pymongo.database import Database

from mwap.store import Store, TenantBoundaryError, TenantCollection, check_pipeline, check_update


@pytest.fixture
def tenants(db: Database, ring) -> tuple[Any, Any]:
    a, b = factories.tenant(db)["_id"], factories.tenant(db)["_id"]
    for tenant_id in (a, b):
        factories.project(db, tenant_id, name=f"p-{tenant_id}")
    return a, b


def snapshot(db: Database) -> list[dict[str, Any]]:
    return sorted(db["projects"].find({}), key=lambda d: str(d["_id"]))


# (case, operation on tenant A's scoped `projects`) -- each must raise TenantBoundaryError.
AGGREGATIONS: list[tuple[str, list[dict[str, Any]]]] = [
    (
        "$lookup reads another collection",
        [{"$lookup": {"from": "cloudIntegrations", "pipeline": [], "as": "x"}}],
    ),
    ("$unionWith reads every tenant", [{"$unionWith": {"coll": "projects"}}]),
    (
        "$graphLookup walks other documents",
        [
            {
                "$graphLookup": {
                    "from": "projects",
                    "startWith": "$name",
                    "connectFromField": "name",
                    "connectToField": "name",
                    "as": "x",
                }
            }
        ],
    ),
    ("$out overwrites a collection", [{"$out": "projects"}]),
    ("$merge writes into any collection", [{"$merge": {"into": "tenants"}}]),
    ("$documents injects documents", [{"$documents": [{"tenantId": 1}]}]),
    ("$collStats reads server state", [{"$collStats": {"count": {}}}]),
    ("$facet hides a $unionWith", [{"$facet": {"x": [{"$unionWith": {"coll": "projects"}}]}}]),
    (
        "$function runs JavaScript",
        [{"$addFields": {"x": {"$function": {"body": "function(){return 1}", "args": [], "lang": "js"}}}}],
    ),
]

UPDATES: list[tuple[str, Any]] = [
    ("$set tenantId to another tenant", {"$set": {"tenantId": "B"}}),
    ("$set a path under tenantId", {"$set": {"tenantId.x": 1}}),
    ("$unset tenantId", {"$unset": {"tenantId": ""}}),
    ("$rename tenantId away", {"$rename": {"tenantId": "formerTenant"}}),
    ("$rename a field onto tenantId", {"$rename": {"name": "tenantId"}}),
    ("$setOnInsert another tenant", {"$setOnInsert": {"tenantId": "B"}}),
    ("unknown operator", {"$replaceRoot": {"newRoot": {}}}),
    ("replacement document", {"name": "replaced"}),
    ("pipeline $replaceWith drops tenantId", [{"$replaceWith": {"name": "x"}}]),
    ("pipeline $replaceRoot", [{"$replaceRoot": {"newRoot": {"name": "x"}}}]),
    ("pipeline $project keeps only some fields", [{"$project": {"name": 1}}]),
    ("pipeline $unset tenantId", [{"$unset": "tenantId"}]),
    ("pipeline $unset a list with tenantId", [{"$unset": ["name", "tenantId"]}]),
    ("pipeline $set tenantId", [{"$set": {"tenantId": "$name"}}]),
]

FILTERS: list[tuple[str, dict[str, Any]]] = [
    ("$where runs JavaScript", {"$where": "sleep(100) || true"}),
    ("$where nested in $or", {"$or": [{"name": "x"}, {"$where": "true"}]}),
    (
        "$function in $expr",
        {"$expr": {"$function": {"body": "function(){return true}", "args": [], "lang": "js"}}},
    ),
]


def _b(value: Any, b: Any) -> Any:
    """The case's placeholder "B" replaced by tenant B's real id."""
    if value == "B":
        return b
    if isinstance(value, dict):
        return {k: _b(v, b) for k, v in value.items()}
    if isinstance(value, list):
        return [_b(v, b) for v in value]
    return value


@pytest.mark.parametrize(("case", "pipeline"), AGGREGATIONS, ids=[c for c, _ in AGGREGATIONS])
def test_aggregation_stages_that_leave_the_tenant_are_refused(
    db: Database, tenants: tuple[Any, Any], case: str, pipeline: list[dict[str, Any]]
) -> None:
    a, _ = tenants
    before = snapshot(db)
    projects: TenantCollection = Store(db).tenant(a)["projects"]
    assert check_pipeline(pipeline) is not None, case
    with pytest.raises(TenantBoundaryError):
        list(projects.aggregate(pipeline))
    assert snapshot(db) == before


@pytest.mark.parametrize(("case", "update"), UPDATES, ids=[c for c, _ in UPDATES])
def test_updates_that_change_or_drop_the_tenant_are_refused(
    db: Database, tenants: tuple[Any, Any], case: str, update: Any
) -> None:
    a, b = tenants
    update = _b(update, b)
    before = snapshot(db)
    projects = Store(db).tenant(a)["projects"]
    assert check_update(update, a) is not None, case
    operations: list[Callable[[], Any]] = [
        lambda: projects.update_one({}, update),
        lambda: projects.update_many({}, update),
        lambda: projects.find_one_and_update({}, update),
        lambda: projects.bulk_update([({}, update, False)]),
    ]
    for operation in operations:
        with pytest.raises(TenantBoundaryError):
            operation()
    assert snapshot(db) == before


def test_what_a_refused_update_would_have_done(db: Database, tenants: tuple[Any, Any]) -> None:
    """In spirit: on the raw collection, $rename moves tenant A's project out of every tenant."""
    a, _ = tenants
    raw = db["projects"]
    raw.update_one({"tenantId": a}, {"$rename": {"tenantId": "formerTenant"}})
    assert Store(db).tenant(a)["projects"].count_documents({}) == 0  # escaped the tenant filter
    raw.update_one({"formerTenant": a}, {"$rename": {"formerTenant": "tenantId"}})
    assert Store(db).tenant(a)["projects"].count_documents({}) == 1


@pytest.mark.parametrize(("case", "query"), FILTERS, ids=[c for c, _ in FILTERS])
def test_filters_running_javascript_are_refused(
    db: Database, tenants: tuple[Any, Any], case: str, query: dict[str, Any]
) -> None:
    a, _ = tenants
    projects = Store(db).tenant(a)["projects"]
    for operation in (
        lambda: projects.find_one(query),
        lambda: projects.count_documents(query),
        lambda: projects.delete_many(query),
    ):
        with pytest.raises(TenantBoundaryError):
            operation()


def test_the_platforms_own_updates_and_pipelines_still_pass(db: Database, tenants: tuple[Any, Any]) -> None:
    a, b = tenants
    projects = Store(db).tenant(a)["projects"]
    allowed_updates = [
        {"$set": {"metadata.fileCount": 1}, "$inc": {"metadata.totalSize": 5}},
        {"$push": {"integrations": {"$each": []}}, "$set": {"updatedAt": None}},
        {"$setOnInsert": {"tenantId": a, "createdAt": None}},
        {"$rename": {"oldName": "newName"}},
        [{"$set": {"x": 1}}, {"$unset": ["x"]}],
    ]
    for update in allowed_updates:
        assert check_update(update, a) is None, update
    assert projects.update_many({}, {"$set": {"config.touched": True}}).matched_count == 1
    assert db["projects"].count_documents({"tenantId": b, "config.touched": True}) == 0
    rows = list(projects.aggregate([{"$group": {"_id": "$tenantId", "n": {"$sum": 1}}}]))
    assert rows == [{"_id": a, "n": 1}]
