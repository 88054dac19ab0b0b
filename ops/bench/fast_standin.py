"""The MongoDB stand-in of ``ops.mongo_server`` without its per-insert collection scans, for the
dispatch-scale scenario only: ``python -m ops.bench.fast_standin --port N``.

Over the wire ``insert_many`` reaches mongoeco one document at a time, and two checks of its
``MemoryEngine._ensure_unique_indexes`` scan every stored document for each one inserted, so
seeding n documents costs O(n²) (at ~3,000 documents a batch already outlasts pymongo's timeouts;
100,000 integrations would take many hours). Both are answered here from what MongoDB answers
them with, an index; nothing else changes:

- **The ``_id`` payload scan.** A single-document insert compares the new ``_id`` with the ``_id``
  of every stored document, to catch ``1`` vs ``1.0``. It is skipped for ``_id`` values that hold
  no number (strings, ObjectIds): for those the exact-key duplicate check mongoeco still does is
  what MongoDB's ``_id`` index gives.
- **Unique indexes of several fields** (seed 000's ``ownerId_1_name_1``,
  ``tenantId_1_providerId_1``…). mongoeco checks a unique index of one field against its index
  map, but one of several fields by comparing the candidate with every stored document (its map
  keeps only the first value of each field, so it cannot answer for arrays). Here such an index
  is checked against that same map — one lookup, as MongoDB checks its unique index — whenever
  the map is exact: the candidate holds no array on the index's paths, and no document indexed
  by an index of that name ever did (``_MULTIKEY``, set on insert and on index build and never
  cleared, like MongoDB's multikey flag). Otherwise, and for indexes with a collation or without
  a map, mongoeco's scan runs as before. A missing field and ``null`` are the same key, as in
  MongoDB (and in mongoeco's scan): both spellings are looked up. The error raised for a
  duplicate is mongoeco's own.

The bench writes no duplicates and no arrays in those fields, so with or without these patches
every write succeeds and stores the same documents.

- **Sorted finds with a limit** (the console's newest-first pages). mongoeco keeps the top k in a
  heap whose every comparison goes through its BSON comparator in Python (~10 µs); a ledger
  inserted oldest first and read newest first replaces the heap's top for nearly every document.
  When every sort key of the scanned documents is of one natively ordered kind per field (strings,
  dates of one timezone-awareness, or numbers without NaN), no collation, and one direction for
  all fields, the same top k comes from ``heapq`` on the keys as tuples: the BSON order of those
  values is their Python order (UTF-8 byte order is code point order), and ``heapq``'s selection
  is stable, as mongoeco's heap is (equal keys keep their scan order). Anything else goes to
  mongoeco's own. The documents scanned and matched are the same; only the comparisons are cheaper.
- **Comparing two strings or two dates** (a filter's ``$gte`` on ``createdAt``): mongoeco's
  comparator wraps, ranks and normalizes both values (~3 µs); here two values of one such kind
  (dates of one timezone-awareness) compare by ``<``, which is their BSON order; anything else
  goes to mongoeco's.
- **An equality or ``$in`` on a compound index's first field** (the console's counts of a status
  since a time on ``status_created_id``, a tenant's jobs on ``tenant_created``). mongoeco takes
  candidates only from a single-field index and otherwise scans the whole collection, where MongoDB
  walks the compound index's prefix. Here, for the fields that lead a compound index, a map from
  each value to the documents that ever held it (``_SEEN``: added to on every insert, an update
  being a delete and an insert, and on index build; never taken from, so a superset; an array adds
  each element) gives the candidates when the query pins such a field to strings or ObjectIds.
  When the query also bounds the index's second field (``createdAt >= since``), the candidates
  are only those within the bounds, from a list per value kept in the order of that field
  (``_RUNS``; dates of one awareness or strings; a value whose documents held anything else there
  falls back to all of its documents), as MongoDB reads only the keys within the range.
  The whole filter still runs on each candidate, so a query returns what a scan returns (tested
  against the stock engine); only documents that cannot match are skipped. Candidates that are
  more than half the collection (the dispatchers' ``status: "active"``) are left to the scan, which
  costs less than gathering and ordering them.
"""

import bisect
import heapq
import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

from mongoeco._types._bson_objectid import is_object_id_like
from mongoeco.compat import MONGODB_DIALECT_70
from mongoeco.compat import base as compat_base
from mongoeco.core import sorting
from mongoeco.core.filtering import QueryEngine
from mongoeco.core.identity import id_contains_numeric_value
from mongoeco.core.query_plan import (
    AndCondition,
    EqualsCondition,
    GreaterThanCondition,
    GreaterThanOrEqualCondition,
    InCondition,
    LessThanCondition,
    LessThanOrEqualCondition,
)
from mongoeco.engines.memory import MemoryEngine, _MemoryIndexedCandidates
from mongoeco.engines.virtual_indexes import document_in_virtual_index

from ops import mongo_server

_ensure_unique_indexes = MemoryEngine._ensure_unique_indexes
_update_indexes_locked = MemoryEngine._update_indexes_locked
_rebuild_index_data_locked = MemoryEngine._rebuild_index_data_locked
_sort_documents_window = sorting.sort_documents_window
_compare_values = compat_base._compare_values_default
_indexed_candidates = MemoryEngine._indexed_candidate_storage_keys_for_plan_locked

# (database, collection, field) -> index key of a value -> storage key of every document that ever
# held that value in that field, for the fields that lead a compound index. Added to on every
# insert (an update is a delete and an insert) and index build, never taken from: a superset.
_SEEN: dict[tuple[str, str, str], dict[Any, set[Any]]] = {}


@dataclass
class _Run:
    """The documents that ever held one value in a compound index's first field, in the order of
    their second field's value (dates of one awareness, or strings); ``kind`` None once one held
    anything else there (missing, an array, another type): then only ``_SEEN`` answers."""

    kind: tuple[Any, ...] | None = None
    values: list[Any] = field(default_factory=list)
    storage_keys: list[Any] = field(default_factory=list)
    ordered: bool = True


RANGES = (GreaterThanCondition, GreaterThanOrEqualCondition, LessThanCondition, LessThanOrEqualCondition)
# (database, collection, first field, second field) -> first field's index key -> its run.
_RUNS: dict[tuple[str, str, str, str], dict[Any, _Run]] = {}


def _kind(value: Any) -> tuple[Any, ...] | None:
    if isinstance(value, str):
        return (str,)
    if isinstance(value, datetime):
        return (datetime, value.tzinfo is None)
    return None


# Names of the compound unique indexes that ever indexed a document holding an array on their
# paths (any database, any collection: by name only, so a renamed collection keeps it).
_MULTIKEY: set[str] = set()
# How mongoeco's index map spells a missing field and a null one; MongoDB indexes both as null.
_MISSING, _NULL = None, ("none", None)


def _compound(index: Any) -> bool:
    return len(index["fields"]) > 1 and index.get("collation") is None


def _compound_unique(index: Any) -> bool:
    return bool(index.get("unique")) and _compound(index)


def _leading_fields(indexes: list[Any]) -> list[str]:
    return sorted({index["fields"][0] for index in indexes if _compound(index)})


def _record(
    engine: MemoryEngine, namespace: tuple[str, str], indexes: list[Any], storage_key: Any, document: Any
) -> None:
    """Add the document to ``_SEEN`` and ``_RUNS`` for these indexes' first two fields."""
    compound = [index["fields"] for index in indexes if _compound(index)]
    firsts: dict[str, set[Any]] = {}
    for first in {fields[0] for fields in compound}:
        seen = _SEEN.setdefault((*namespace, first), {})
        firsts[first] = {key for (key,) in engine._index_keys(document, [first])}  # an array: each element
        for key in firsts[first]:
            seen.setdefault(key, set()).add(storage_key)
    for first, second in {(fields[0], fields[1]) for fields in compound}:
        values = QueryEngine.extract_values(document, second)
        value = values[0] if len(values) == 1 else None
        kind = _kind(value)
        runs = _RUNS.setdefault((*namespace, first, second), {})
        for key in firsts[first]:
            run = runs.setdefault(key, _Run(kind=kind))
            if not run.ordered or kind is None or kind != run.kind:
                run.ordered = False
                continue
            at = bisect.bisect_right(run.values, value)
            run.values.insert(at, value)
            run.storage_keys.insert(at, storage_key)


def _holds_array(engine: MemoryEngine, document: Any, fields: list[str]) -> bool:
    return bool(engine._compound_multikey_array_paths(document, fields))


def _with_indexed_unique_checks(
    self: MemoryEngine, db_name: str, coll_name: str, candidate: Any, **options: Any
) -> Any:
    if options.get("scan_payload_id") and not id_contains_numeric_value(candidate.get("_id")):
        options["scan_payload_id"] = False
    indexes_view = options.get("indexes_view")
    indexes = (self._indexes if indexes_view is None else indexes_view).get(db_name, {}).get(coll_name, [])
    index_data_view = options.get("index_data_view")
    index_data = (
        (self._index_data if index_data_view is None else index_data_view).get(db_name, {}).get(coll_name, {})
    )
    checked = []
    for index in indexes:
        index_map = index_data.get(index["name"])
        fields = index["fields"]
        if (
            not _compound_unique(index)
            or index_map is None
            or index["name"] in _MULTIKEY
            or _holds_array(self, candidate, fields)
        ):
            continue
        checked.append(index)
        if not document_in_virtual_index(candidate, index):
            continue
        exclude = _normalized_exclude(self, db_name, coll_name, options)
        key = self._index_key(candidate, fields)
        spellings = [(_MISSING, _NULL) if part in (_MISSING, _NULL) else (part,) for part in key]
        for spelling in itertools.product(*spellings):
            matches = index_map.get(spelling)
            if matches and (exclude is None or any(match != exclude for match in matches)):
                raise self._unique_key_error(
                    f"Duplicate key for unique index '{index['name']}': {fields}={spelling!r}",
                    f"{db_name}.{coll_name}",
                    candidate,
                    index=index,
                    conflict=spelling,
                )
    if checked:
        rest = [index for index in indexes if not any(index is done for done in checked)]
        options["indexes_view"] = {db_name: {coll_name: rest}}
    return _ensure_unique_indexes(self, db_name, coll_name, candidate, **options)


def _normalized_exclude(self: MemoryEngine, db_name: str, coll_name: str, options: dict[str, Any]) -> Any:
    """The storage key of the document being replaced (an update), as mongoeco normalizes it."""
    exclude = options.get("exclude_storage_key")
    if exclude is None:
        return None
    storage_view = options.get("storage_view")
    coll = (self._storage if storage_view is None else storage_view).get(db_name, {}).get(coll_name, {})
    return exclude if exclude in coll else self._storage_key(exclude)


def _marking_multikey_on_insert(
    self: MemoryEngine, db_name: str, coll_name: str, storage_key: Any, document: Any, **options: Any
) -> Any:
    if options.get("action", "insert") == "insert":
        indexes_view = options.get("indexes_view")
        indexes = (
            (self._indexes if indexes_view is None else indexes_view).get(db_name, {}).get(coll_name, [])
        )
        for index in indexes:
            if _compound_unique(index) and _holds_array(self, document, index["fields"]):
                _MULTIKEY.add(index["name"])
        _record(self, (db_name, coll_name), indexes, storage_key, document)
    return _update_indexes_locked(self, db_name, coll_name, storage_key, document, **options)


def _marking_multikey_on_build(
    self: MemoryEngine, db_name: str, coll_name: str, index: Any, **options: Any
) -> Any:
    storage_view = options.get("storage_view")
    coll = (self._storage if storage_view is None else storage_view).get(db_name, {}).get(coll_name, {})
    if _compound(index):
        for storage_key, data in coll.items():
            document = self._borrow_storage_document(data)
            _record(self, (db_name, coll_name), [index], storage_key, document)
    if _compound_unique(index) and index["name"] not in _MULTIKEY:
        for data in coll.values():
            if _holds_array(self, self._borrow_storage_document(data), index["fields"]):
                _MULTIKEY.add(index["name"])
                break
    return _rebuild_index_data_locked(self, db_name, coll_name, index, **options)


def _natively_ordered(values: list[Any]) -> bool:
    """Whether these values (one field's, across documents) sort in BSON order by Python's ``<``."""
    kinds = {type(value) for value in values}
    if kinds == {str}:
        return True
    if kinds == {datetime}:
        return len({value.tzinfo is None for value in values}) == 1
    return kinds <= {int, float} and not any(
        isinstance(value, float) and math.isnan(value) for value in values
    )


def _top_k_natively(
    documents: Iterable[Any],
    sort: Any,
    *,
    window: int | None,
    dialect: Any = MONGODB_DIALECT_70,
    collation: Any = None,
    deadline: float | None = None,
) -> list[Any]:
    """``sorting.sort_documents_window`` (mongoeco's top k of a sorted find), by ``heapq`` on the
    sort keys when they are natively ordered (module docstring); otherwise mongoeco's own."""
    directions = {direction for _field, direction in sort or ()}
    if (
        window is None
        or window <= 0
        or collation is not None
        or deadline is not None
        or dialect is not MONGODB_DIALECT_70
        or directions not in ({1}, {-1})
    ):
        return _sort_documents_window(
            documents, sort, window=window, dialect=dialect, collation=collation, deadline=deadline
        )
    keyed = [(tuple(sorting._document_sort_keys(doc, sort)), doc) for doc in documents]
    if not all(_natively_ordered([keys[n] for keys, _doc in keyed]) for n in range(len(sort))):
        return _sort_documents_window(
            [doc for _keys, doc in keyed], sort, window=window, dialect=dialect, collation=collation
        )
    select = heapq.nlargest if directions == {-1} else heapq.nsmallest
    return [doc for _keys, doc in select(window, keyed, key=itemgetter(0))]


def _compare_natively(left: Any, right: Any, bson_type_order: Any) -> int:
    """mongoeco's BSON comparison of two values (a filter's ``$gte`` on a date), by ``<`` when both
    are strings, or dates of one timezone-awareness: their BSON order is their Python order."""
    kind = type(left)
    if kind is type(right) and (
        kind is str or (kind is datetime and (left.tzinfo is None) == (right.tzinfo is None))
    ):
        return (left > right) - (left < right)
    return _compare_values(left, right, bson_type_order)


def _pinned_values(node: Any, field: str) -> list[Any] | None:
    """The values an equality or ``$in`` on ``field`` in plan ``node`` (or in one of its ``$and``
    clauses) allows, when they are strings or ObjectIds; None otherwise."""
    if isinstance(node, AndCondition):
        for clause in node.clauses:
            values = _pinned_values(clause, field)
            if values is not None:
                return values
        return None
    if isinstance(node, EqualsCondition) and node.field == field and not node.null_matches_undefined:
        values = [node.value]
    elif isinstance(node, InCondition) and node.field == field and not node.null_matches_undefined:
        values = list(node.values)
    else:
        return None
    return values if all(isinstance(value, str) or is_object_id_like(value) for value in values) else None


def _namespace(engine: MemoryEngine, indexes: list[Any]) -> tuple[str, str] | None:
    for db_name, collections in engine._indexes.items():
        for coll_name, declared in collections.items():
            if declared is indexes:
                return db_name, coll_name
    return None


def _with_leading_fields(
    self: MemoryEngine,
    indexes: list[Any],
    index_data: dict[str, Any],
    query_plan: Any,
    *,
    dialect: Any,
    collation: Any,
) -> Any:
    """mongoeco's candidates (an equality on a single-field index); else, for an equality or
    ``$in`` on the first field of a compound index, the documents that ever held those values in
    that field, only those within the query's range on its second field when it has one (module
    docstring); else None, a scan."""
    found = _indexed_candidates(self, indexes, index_data, query_plan, dialect=dialect, collation=collation)
    namespace = _namespace(self, indexes) if found is None and collation is None else None
    if namespace is None:
        return found
    # Like MongoDB's planner, prefer an index whose second field the query bounds.
    compound = [index for index in indexes if _compound(index)]
    compound.sort(key=lambda index: _bounds(query_plan, index["fields"][1]) == (None, None))
    for index in compound:
        first, second = index["fields"][:2]
        values = _pinned_values(query_plan, first)
        seen = _SEEN.get((*namespace, first))
        if values is None or seen is None:
            continue
        low, high = _bounds(query_plan, second)
        runs = _RUNS.get((*namespace, first, second), {})
        storage_keys: set[Any] = set()
        for value in values:
            key = self._index_equality_key(value)
            run = runs.get(key)
            in_range = _in_range(run, low, high)
            if in_range is not None:
                storage_keys.update(in_range)
                continue
            storage_keys.update(seen.get(key, ()))
        stored = len(self._storage.get(namespace[0], {}).get(namespace[1], {}))
        if len(storage_keys) > stored // 2:
            return None  # most of the collection (the dispatchers' "active"): a scan costs less
        return _MemoryIndexedCandidates(storage_keys)
    return None


def _in_range(run: _Run | None, low: Any, high: Any) -> list[Any] | None:
    """The storage keys of ``run`` whose second field lies within [low, high]; None when the run
    cannot say (no run, not ordered, no bound, or a bound of another kind)."""
    bounds = [bound for bound in (low, high) if bound is not None]
    if run is None or not run.ordered or not bounds or any(_kind(bound) != run.kind for bound in bounds):
        return None
    start = 0 if low is None else bisect.bisect_left(run.values, low)
    stop = len(run.values) if high is None else bisect.bisect_right(run.values, high)
    return run.storage_keys[start:stop]


def _conjuncts(node: Any) -> Iterator[Any]:
    """The conditions ``node`` requires all of: itself, or its ``$and``'s, nested ones included."""
    if isinstance(node, AndCondition):
        for clause in node.clauses:
            yield from _conjuncts(clause)
    else:
        yield node


def _bounds(node: Any, field: str) -> tuple[Any, Any]:
    """The tightest bounds ``$gt``/``$gte`` and ``$lt``/``$lte`` on ``field`` in plan ``node`` and its
    ``$and`` clauses put (both inclusive here: the candidates may be more than the matches)."""
    low: Any = None
    high: Any = None
    clause: Any
    for clause in _conjuncts(node):
        if not isinstance(clause, RANGES) or clause.field != field or _kind(clause.value) is None:
            continue
        if isinstance(clause, GreaterThanCondition | GreaterThanOrEqualCondition):
            low = clause.value if low is None or _kind(low) != _kind(clause.value) else max(low, clause.value)
        elif isinstance(clause, LessThanCondition | LessThanOrEqualCondition):
            high = (
                clause.value
                if high is None or _kind(high) != _kind(clause.value)
                else min(high, clause.value)
            )
    return low, high


def patch() -> None:
    """Install the patches on mongoeco's ``MemoryEngine`` (this process only)."""
    MemoryEngine._ensure_unique_indexes = _with_indexed_unique_checks  # type: ignore[method-assign]
    MemoryEngine._update_indexes_locked = _marking_multikey_on_insert  # type: ignore[method-assign]
    MemoryEngine._rebuild_index_data_locked = _marking_multikey_on_build  # type: ignore[method-assign]
    sorting.sort_documents_window = _top_k_natively
    compat_base._compare_values_default = _compare_natively
    MemoryEngine._indexed_candidate_storage_keys_for_plan_locked = _with_leading_fields  # type: ignore[method-assign]


def main() -> None:
    patch()
    mongo_server.main()


if __name__ == "__main__":
    main()
