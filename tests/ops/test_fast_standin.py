"""The fast stand-in's top-k selection (``ops.bench.fast_standin._top_k_natively``) returns what
mongoeco's own (``sorting.sort_documents_window``) returns, in the same order, ties included."""

import random
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

import mongoeco
import pytest
from bson import ObjectId
from mongoeco.compat import MONGODB_DIALECT_70
from mongoeco.core import sorting

from ops.bench import fast_standin

MONGOECO_TOP_K = fast_standin._sort_documents_window  # mongoeco's, kept before any patch
START = datetime(2026, 1, 1, tzinfo=UTC)


def _ledger(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    # Few distinct times, so equal keys (ties on the first field, and on both) are common.
    return [
        {"_id": f"{rng.randrange(50):04d}", "createdAt": START + timedelta(seconds=rng.randrange(20)), "n": i}
        for i in range(n)
    ]


@pytest.mark.parametrize("direction", [1, -1])
@pytest.mark.parametrize("window", [1, 7, 50, 500])
@pytest.mark.parametrize("seed", range(4))
def test_top_k_matches_mongoeco_on_natively_ordered_keys(direction: int, window: int, seed: int) -> None:
    documents = _ledger(300, seed)
    sort: Any = [("createdAt", direction), ("_id", direction)]
    ours = fast_standin._top_k_natively(iter(documents), sort, window=window)
    theirs = MONGOECO_TOP_K(iter(documents), sort, window=window)
    assert [doc["n"] for doc in ours] == [doc["n"] for doc in theirs]
    assert len(ours) == min(window, len(documents))


@pytest.mark.parametrize(
    ("values", "sort"),
    [
        # BSON type order (null < numbers < strings) is not Python's: mongoeco decides.
        ([None, 3, "a", 1, None, "b"], [("v", -1)]),
        ([START, START.replace(tzinfo=None)], [("v", 1)]),
        ([1.0, float("nan"), 0], [("v", 1)]),
        ([True, False, True], [("v", -1)]),
        # Mixed directions: mongoeco decides.
        ([1, 2, 3, 2], [("v", 1), ("n", -1)]),
    ],
)
def test_other_keys_are_left_to_mongoeco(values: list, sort: list) -> None:
    documents = [{"v": value, "n": n} for n, value in enumerate(values)]
    ours = fast_standin._top_k_natively(iter(documents), sort, window=3)
    theirs = MONGOECO_TOP_K(iter(documents), sort, window=3)
    assert [doc["n"] for doc in ours] == [doc["n"] for doc in theirs]


def test_numbers_of_both_kinds_sort_by_value() -> None:
    documents = [{"v": value, "n": n} for n, value in enumerate([2, 1.5, 3, -1, 1.5, 2.0])]
    ours = fast_standin._top_k_natively(iter(documents), [("v", -1)], window=4)
    assert [doc["n"] for doc in ours] == [n for n in (2, 0, 5, 1)]
    assert ours == MONGOECO_TOP_K(iter(documents), [("v", -1)], window=4)


# Every attribute ``fast_standin.patch()`` replaces.
PATCHED = [
    *(
        (fast_standin.MemoryEngine, name)
        for name in (
            "_ensure_unique_indexes",
            "_update_indexes_locked",
            "_rebuild_index_data_locked",
            "_indexed_candidate_storage_keys_for_plan_locked",
        )
    ),
    (sorting, "sort_documents_window"),
    (fast_standin.compat_base, "_compare_values_default"),
]


@contextmanager
def _patch_installed() -> Iterator[None]:
    """``fast_standin.patch()`` for the block; every attribute it replaces is restored after."""
    with pytest.MonkeyPatch.context() as restore:
        for owner, name in PATCHED:
            restore.setattr(owner, name, getattr(owner, name))
        fast_standin.patch()
        yield


def test_patch_installs_it_where_mongoeco_looks_it_up() -> None:
    with _patch_installed():
        assert sorting.sort_documents_window is fast_standin._top_k_natively
        documents = _ledger(100, 9)
        limited = sorting.sort_documents_limited(
            documents, [("createdAt", -1), ("_id", -1)], skip=5, limit=10
        )
        assert limited == MONGOECO_TOP_K(documents, [("createdAt", -1), ("_id", -1)], window=15)[5:]


def _mongoeco_patched(patched: bool) -> Iterator[Any]:
    """A mongoeco client on a new in-memory engine, with or without the fast stand-in's patches."""
    with _patch_installed() if patched else nullcontext():
        client = mongoeco.MongoClient(fast_standin.MemoryEngine())
        yield client
        client.close()


TENANTS = [ObjectId() for _ in range(4)]
QUERIES: list[dict[str, Any]] = [
    {"status": "failed"},
    {"status": {"$in": ["queued", "retrying"]}, "createdAt": {"$lt": START + timedelta(seconds=10)}},
    {"tenantId": TENANTS[1]},
    {"tenantId": TENANTS[2], "status": "succeeded"},
    {"$and": [{"status": "failed"}, {"$or": [{"type": "a"}, {"tags": "x"}]}]},
    {"status": "tagged"},  # only inside arrays: an element matches
    {"status": "failed", "createdAt": {"$gte": START + timedelta(seconds=5)}},
    {"status": {"$in": ["succeeded", "tagged"]}, "createdAt": {"$gt": START + timedelta(seconds=3)}},
    {
        "tenantId": TENANTS[0],
        "createdAt": {"$gt": START + timedelta(seconds=2), "$lte": START + timedelta(seconds=8)},
    },
    {"tenantId": TENANTS[3], "createdAt": {"$gte": "a"}},  # a bound of another kind: the value's documents
    {"tenantId": TENANTS[3], "createdAt": {"$lt": START + timedelta(seconds=15), "$gte": "0"}},
    {"status": None},  # a missing field: not pinned to strings, mongoeco scans
    {"type": "b"},  # no compound index leads with type here: mongoeco scans
]


def _results(patched: bool, documents: list[dict[str, Any]]) -> list[list[int]]:
    for client in _mongoeco_patched(patched):
        jobs = client["db"]["jobs"]
        jobs.create_index([("status", 1), ("createdAt", -1), ("_id", -1)], name="status_created_id")
        jobs.create_index([("tenantId", 1), ("createdAt", -1)], name="tenant_created")
        jobs.insert_many(documents[:150])
        jobs.create_index([("tenantId", 1), ("status", 1)], name="tenant_status")  # built over data
        jobs.insert_many(documents[150:])
        # Updates (a delete and an insert of the stored document) move documents between values.
        jobs.update_many({"n": {"$mod": [7, 0]}}, {"$set": {"status": "cancelled"}})
        jobs.delete_many({"n": {"$mod": [11, 0]}})
        return [
            [doc["n"] for doc in jobs.find(query).sort([("createdAt", -1), ("_id", -1)]).limit(40)]
            + [jobs.count_documents(query)]
            for query in QUERIES
        ]
    raise AssertionError("unreachable")


def test_candidates_from_leading_fields_find_what_a_scan_finds() -> None:
    rng = random.Random(3)
    statuses = ["queued", "retrying", "succeeded", "failed"]
    documents: list[dict[str, Any]] = []
    for n in range(300):
        doc: dict[str, Any] = {
            "_id": f"{n:05d}",
            "n": n,
            "tenantId": rng.choice(TENANTS),
            "type": rng.choice("ab"),
            "createdAt": START + timedelta(seconds=rng.randrange(20)),
        }
        if n % 50 == 0:
            doc["status"] = ["tagged", rng.choice(statuses)]  # an array in the leading field
        elif n % 37 != 0:  # else no status at all
            doc["status"] = rng.choice(statuses)
        if n % 13 == 0:  # the second field missing, or of another kind: that value's run is unordered
            doc.update(tenantId=TENANTS[3], status="queued")
            if n % 2:
                del doc["createdAt"]
            else:
                doc["createdAt"] = f"t{n}"
        documents.append(doc)
    stock, fast = _results(False, documents), _results(True, documents)
    assert fast == stock
    assert all(counts[-1] > 0 for counts in stock[:9])  # each pinned query matches something


def test_comparisons_match_mongoeco() -> None:
    order = MONGODB_DIALECT_70.bson_type_order
    values: list[Any] = [
        "a",
        "b",
        "",
        "é",
        "a\x00",
        START,
        START + timedelta(milliseconds=1),
        START.replace(tzinfo=None),
        1,
        2.5,
        None,
        ObjectId(),
        [1],
        {"a": 1},
        True,
    ]
    for left in values:
        for right in values:
            assert fast_standin._compare_natively(left, right, order) == fast_standin._compare_values(
                left, right, order
            ), (left, right)
