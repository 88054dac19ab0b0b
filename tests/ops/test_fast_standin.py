"""The fast stand-in's top-k selection (``ops.bench.fast_standin._top_k_natively``) returns what
mongoeco's own (``sorting.sort_documents_window``) returns, in the same order, ties included."""

import random
from datetime import UTC, datetime, timedelta

import pytest
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
    sort = [("createdAt", direction), ("_id", direction)]
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


def test_patch_installs_it_where_mongoeco_looks_it_up() -> None:
    engine = fast_standin.MemoryEngine
    names = ("_ensure_unique_indexes", "_update_indexes_locked", "_rebuild_index_data_locked")
    before, engine_before = sorting.sort_documents_window, {name: getattr(engine, name) for name in names}
    try:
        fast_standin.patch()
        assert sorting.sort_documents_window is fast_standin._top_k_natively
        documents = _ledger(100, 9)
        limited = sorting.sort_documents_limited(
            documents, [("createdAt", -1), ("_id", -1)], skip=5, limit=10
        )
        assert limited == MONGOECO_TOP_K(documents, [("createdAt", -1), ("_id", -1)], window=15)[5:]
    finally:
        sorting.sort_documents_window = before
        for name, method in engine_before.items():
            setattr(engine, name, method)
