"""The MongoDB stand-in of ``ops.mongo_server`` without its per-insert collection scan, for the
dispatch-scale scenario only: ``python -m ops.bench.fast_standin --port N``.

Over the wire every inserted document goes through mongoeco's single-document path, which
compares the new ``_id`` with the ``_id`` of every stored document (to catch ``1`` vs ``1.0``),
so seeding n documents costs O(n²): 100,000 integrations would take hours, and any command
that runs longer than pymongo's heartbeat timeout gets the connection cancelled. Here that scan
is skipped for ``_id`` values that hold no number (strings, ObjectIds) — the exact-key duplicate
check stays — which is what MongoDB's ``_id`` index gives. The stand-in also checks a unique index
of several fields (seed 000's ``ownerId_1_name_1``, ``tenantId_1_providerId_1``) by scanning the
whole collection per insert, another O(n²); here those checks are skipped too (MongoDB answers
them from the index). The bench writes no duplicates; nothing else changes.
"""

from typing import Any

from mongoeco.core.identity import id_contains_numeric_value
from mongoeco.engines.memory import MemoryEngine

from ops import mongo_server

_ensure_unique_indexes = MemoryEngine._ensure_unique_indexes


def _without_payload_scan(
    self: MemoryEngine, db_name: str, coll_name: str, candidate: Any, **options: Any
) -> Any:
    if options.get("scan_payload_id") and not id_contains_numeric_value(candidate.get("_id")):
        options["scan_payload_id"] = False
    if options.get("indexes_view") is None:
        indexes = self._indexes.get(db_name, {}).get(coll_name, [])
        single = [index for index in indexes if not (index.get("unique") and len(index["fields"]) > 1)]
        if len(single) != len(indexes):
            options["indexes_view"] = {db_name: {coll_name: single}}
    return _ensure_unique_indexes(self, db_name, coll_name, candidate, **options)


def main() -> None:
    MemoryEngine._ensure_unique_indexes = _without_payload_scan  # type: ignore[method-assign]  # the patch itself
    mongo_server.main()


if __name__ == "__main__":
    main()
