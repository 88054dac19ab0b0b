"""Tenant-scoped access to MongoDB: tenant data cannot be read or written without a tenant id.

``Store(db).tenant(tid)`` hands out ``TenantCollection`` objects that add ``tenantId`` to every
filter, stamp it on every inserted document, refuse a filter or update naming another tenant and
start every aggregation with a ``$match`` on it. Cross-tenant work (the dispatchers' due-item
queries) uses ``Store.unscoped`` by name, so it is visible in review.
"""

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from bson import ObjectId
from pydantic import BaseModel, ValidationError
from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.cursor import Cursor
from pymongo.database import Database
from pymongo.results import BulkWriteResult, DeleteResult, InsertManyResult, InsertOneResult, UpdateResult

from mwap.ids import InvalidIdError, is_oid, oid

logger = logging.getLogger(__name__)

# pymongo's default document class: what every collection of the platform reads and writes.
type Document = dict[str, Any]

TENANT_FIELD = "tenantId"
TENANT_OWNED = frozenset(
    {"projects", "cloudIntegrations", "virtualFiles", "auditLogs", "usageDaily", "apiKeys", "jobs"}
    # webhooks (mwap/webhooks.py)
    | {"webhookEndpoints", "webhookEvents", "webhookDeliveries"}
)
GLOBAL = frozenset({"tenants", "cloudProviders", "projectTypes"})
# Stages that read or write other collections (or the server's state) would step around the
# tenant filter; $facet's sub-pipelines are checked too.
_FORBIDDEN_STAGES = frozenset(
    {
        "$lookup",
        "$unionWith",
        "$graphLookup",
        "$out",
        "$merge",
        "$documents",
        "$changeStream",
        "$collStats",
        "$indexStats",
        "$currentOp",
        "$listSessions",
        "$listLocalSessions",
        "$planCacheStats",
    }
)
# Server-side JavaScript in a filter or expression: nothing here needs it, so nothing may use it.
_FORBIDDEN_QUERY_OPERATORS = frozenset({"$where", "$function", "$accumulator"})
# Update operators a tenant-scoped write may use; each names fields, checked below.
_UPDATE_OPERATORS = frozenset(
    {
        "$set",
        "$setOnInsert",
        "$unset",
        "$inc",
        "$mul",
        "$min",
        "$max",
        "$currentDate",
        "$push",
        "$pull",
        "$pullAll",
        "$addToSet",
        "$pop",
        "$bit",
        "$rename",
    }
)
# Pipeline-update stages that only add or remove named fields (never replace the document).
_PIPELINE_UPDATE_STAGES = frozenset({"$set", "$addFields", "$unset"})
_MAX_DEPTH = 64


class TenantBoundaryError(ValueError):
    """A query or write tried to reach outside its tenant."""


def tenant_oid(tenant_id: object) -> ObjectId:
    """The tenant id as stored (an ObjectId); anything else is refused before any query runs."""
    try:
        return oid(tenant_id)
    except InvalidIdError:
        raise TenantBoundaryError("a tenant id (ObjectId) is required") from None


def _same(value: object, tenant_id: ObjectId) -> bool:
    return is_oid(value) and oid(value) == tenant_id


class TenantCollection:
    """One tenant's view of a tenant-owned collection."""

    def __init__(self, collection: Collection[Document], tenant_id: ObjectId | str) -> None:
        self.collection = collection
        self.tenant_id = tenant_oid(tenant_id)

    @property
    def name(self) -> str:
        return self.collection.name

    def scoped(self, query: Mapping[str, Any] | None) -> dict[str, Any]:
        """``query`` with this tenant's id added; a different tenant id in it is an error."""
        scoped = dict(query or {})
        if _has_key(scoped, _FORBIDDEN_QUERY_OPERATORS):
            raise TenantBoundaryError(f"query on {self.name} uses server-side JavaScript")
        if TENANT_FIELD in scoped and not _same(scoped[TENANT_FIELD], self.tenant_id):
            raise TenantBoundaryError(f"query on {self.name} names another tenant")
        scoped[TENANT_FIELD] = self.tenant_id
        return scoped

    def _check_update(self, update: Mapping[str, Any] | list[Any]) -> None:
        """Refuse any update that could change, drop or move ``tenantId`` (see ``check_update``)."""
        problem = check_update(update, self.tenant_id)
        if problem:
            raise TenantBoundaryError(f"an update on {self.name} {problem}")

    def _stamp(self, document: Mapping[str, Any]) -> dict[str, Any]:
        stamped = dict(document)
        if not _same(stamped.setdefault(TENANT_FIELD, self.tenant_id), self.tenant_id):
            raise TenantBoundaryError(f"document for {self.name} belongs to another tenant")
        stamped[TENANT_FIELD] = self.tenant_id
        return stamped

    # Reads
    def find(self, query: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any) -> Cursor[Document]:
        return self.collection.find(self.scoped(query), *args, **kwargs)

    def find_one(self, query: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any) -> Document | None:
        return self.collection.find_one(self.scoped(query), *args, **kwargs)

    def count_documents(self, query: Mapping[str, Any] | None = None, **kwargs: Any) -> int:
        return self.collection.count_documents(self.scoped(query), **kwargs)

    def aggregate(self, pipeline: list[dict[str, Any]], **kwargs: Any) -> Any:
        problem = check_pipeline(pipeline)
        if problem:
            raise TenantBoundaryError(f"aggregation on {self.name}: {problem}")
        return self.collection.aggregate([{"$match": {TENANT_FIELD: self.tenant_id}}, *pipeline], **kwargs)

    # Writes
    def insert_one(self, document: Mapping[str, Any], **kwargs: Any) -> InsertOneResult:
        return self.collection.insert_one(self._stamp(document), **kwargs)

    def insert_many(self, documents: Iterable[Mapping[str, Any]], **kwargs: Any) -> InsertManyResult:
        return self.collection.insert_many([self._stamp(d) for d in documents], **kwargs)

    def update_one(self, query: Mapping[str, Any], update: Any, **kwargs: Any) -> UpdateResult:
        self._check_update(update)
        return self.collection.update_one(self.scoped(query), update, **kwargs)

    def update_many(self, query: Mapping[str, Any], update: Any, **kwargs: Any) -> UpdateResult:
        self._check_update(update)
        return self.collection.update_many(self.scoped(query), update, **kwargs)

    def find_one_and_update(self, query: Mapping[str, Any], update: Any, **kwargs: Any) -> Document | None:
        self._check_update(update)
        return self.collection.find_one_and_update(self.scoped(query), update, **kwargs)

    def delete_one(self, query: Mapping[str, Any], **kwargs: Any) -> DeleteResult:
        return self.collection.delete_one(self.scoped(query), **kwargs)

    def delete_many(self, query: Mapping[str, Any], **kwargs: Any) -> DeleteResult:
        return self.collection.delete_many(self.scoped(query), **kwargs)

    def bulk_update(
        self, operations: Iterable[tuple[Mapping[str, Any], Any, bool]], *, ordered: bool = False
    ) -> BulkWriteResult | None:
        """Unordered bulk of (query, update, upsert) in one round trip; None when empty."""
        requests = []
        for query, update, upsert in operations:
            self._check_update(update)
            requests.append(UpdateOne(self.scoped(query), update, upsert=upsert))
        if not requests:
            return None
        return self.collection.bulk_write(requests, ordered=ordered)


def _is_tenant_path(path: object) -> bool:
    return isinstance(path, str) and (path == TENANT_FIELD or path.startswith(TENANT_FIELD + "."))


def _has_key(value: object, names: frozenset[str], depth: int = 0) -> bool:
    """True if any mapping key in ``value`` (searched recursively, bounded) is one of ``names``."""
    if depth > _MAX_DEPTH:
        return True  # deeper than any query the platform writes: refuse rather than walk it
    if isinstance(value, Mapping):
        return any(k in names or _has_key(v, names, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_key(v, names, depth + 1) for v in value)
    return False


def check_pipeline(pipeline: list[dict[str, Any]], depth: int = 0) -> str | None:
    """Why an aggregation pipeline cannot be tenant-scoped, or None if it can."""
    if not isinstance(pipeline, list) or depth > 4:
        return "pipeline must be a list (nesting bounded)"
    for stage in pipeline:
        if not isinstance(stage, Mapping) or len(stage) != 1:
            return "each stage must be one operator"
        ((name, body),) = stage.items()
        if name in _FORBIDDEN_STAGES:
            return f"{name} reads or writes outside the tenant's documents"
        if _has_key(body, _FORBIDDEN_QUERY_OPERATORS):
            return "server-side JavaScript is not allowed"
        if name == "$facet":
            for sub in (body or {}).values():
                problem = check_pipeline(sub, depth + 1)
                if problem:
                    return problem
    return None


def check_update(update: Mapping[str, Any] | list[Any], tenant_id: ObjectId) -> str | None:
    """Why ``update`` could change, drop or move the tenant field, or None if it cannot.

    Operator updates may use only the known field operators, none naming ``tenantId`` (or a path
    under it) as a field or as a ``$rename`` target; ``$setOnInsert`` may set it to this tenant.
    Pipeline updates may only ``$set``/``$addFields``/``$unset`` fields other than ``tenantId``:
    a ``$replaceWith``, ``$replaceRoot`` or ``$project`` would drop it.
    """
    if isinstance(update, list):
        return _check_pipeline_update(update)
    if not isinstance(update, Mapping) or not update:
        return "must be an update document"
    for operator, fields in update.items():
        if operator not in _UPDATE_OPERATORS or not isinstance(fields, Mapping):
            return f"may not use {operator!s:.40} this way"
        problem = _check_fields(operator, fields, tenant_id)
        if problem:
            return problem
    return None


def _check_fields(operator: str, fields: Mapping[str, Any], tenant_id: ObjectId) -> str | None:
    for path, value in fields.items():
        if _is_tenant_path(path):
            if operator == "$setOnInsert" and path == TENANT_FIELD and _same(value, tenant_id):
                continue
            return f"may not change {TENANT_FIELD}"
        if operator == "$rename" and _is_tenant_path(value):
            return f"may not rename a field onto {TENANT_FIELD}"
    return None


def _check_pipeline_update(stages: list[Any]) -> str | None:
    for stage in stages:
        if not isinstance(stage, Mapping) or len(stage) != 1:
            return "has a malformed pipeline stage"
        ((name, body),) = stage.items()
        if name not in _PIPELINE_UPDATE_STAGES:
            return f"may not use pipeline stage {name!s:.40} (it could replace the document)"
        if _has_key(body, _FORBIDDEN_QUERY_OPERATORS):
            return "may not use server-side JavaScript"
        names = [body] if isinstance(body, str) else list(body) if isinstance(body, list | Mapping) else []
        if any(_is_tenant_path(n) for n in names):
            return f"may not change {TENANT_FIELD}"
    return None


class TenantScope:
    """Every tenant-owned collection of one tenant."""

    def __init__(self, db: Database[Document], tenant_id: ObjectId | str) -> None:
        self.db = db
        self.tenant_id = tenant_oid(tenant_id)

    def __getitem__(self, name: str) -> TenantCollection:
        if name not in TENANT_OWNED:
            raise KeyError(f"{name} is not a tenant-owned collection")
        return TenantCollection(self.db[name], self.tenant_id)

    @property
    def tenant(self) -> Document | None:
        return self.db["tenants"].find_one({"_id": self.tenant_id})


class Store:
    """The entry point: tenant scopes, global collections, and named unscoped access."""

    def __init__(self, db: Database[Document]) -> None:
        self.db = db

    def tenant(self, tenant_id: ObjectId | str) -> TenantScope:
        return TenantScope(self.db, tenant_id)

    def global_collection(self, name: str) -> Collection[Document]:
        if name not in GLOBAL:
            raise KeyError(f"{name} is tenant-owned: use Store.tenant(...)[{name!r}]")
        return self.db[name]

    def unscoped(self, name: str) -> Collection[Document]:
        """Cross-tenant access for dispatchers and operators' tools only."""
        return self.db[name]


def valid_documents[M: BaseModel](
    model: type[M], documents: Iterable[Mapping[str, Any]], *, collection: str
) -> Iterator[M]:
    """The documents that validate as ``model``; each one that does not is logged with its ids and skipped."""
    for document in documents:
        try:
            yield model.model_validate(document)
        except ValidationError as error:
            fields = sorted({".".join(str(p) for p in e["loc"]) for e in error.errors()})
            logger.warning(
                "skipping invalid %s document _id=%s tenantId=%s: bad fields %s",
                collection,
                document.get("_id"),
                document.get(TENANT_FIELD),
                fields,
            )
