"""What a migration's ``up`` and ``down`` receive: the database, batches with checkpoints, counted
bulk writes that a dry run only counts, and the lock check between batches."""

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pymongo.database import Database
from pymongo.operations import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne

from mwap.crypto import KeyRing
from mwap.settings import Settings
from mwap.store import Document

logger = logging.getLogger(__name__)

type WriteRequest = (
    InsertOne[Document] | ReplaceOne[Document] | UpdateOne | UpdateMany | DeleteOne | DeleteMany
)
# Called after each batch: (the batch's checkpoint key, batches done under that key so far).
type BatchHook = Callable[[str, int], None]


class MigrationError(Exception):
    """A migration cannot finish (conflicting data, an unreadable secret); the message says what to
    fix. Nothing is marked applied; the rerun resumes."""


@dataclass
class Run:
    """One run of one migration, up or down."""

    db: Database[Document]
    settings: Settings
    dry_run: bool = False
    batch_size: int = 500
    # Position of each resumable scan (checkpoint key -> last ``_id`` done), as stored by the runner.
    checkpoints: dict[str, Any] = field(default_factory=dict)
    # What changed (or, in a dry run, would change), by what: shown by the command, kept in the record.
    counts: dict[str, int] = field(default_factory=dict)
    # Names worth listing beside the counts (the indexes created, the conflicts found).
    details: dict[str, list[str]] = field(default_factory=dict)
    save_checkpoint: Callable[[str, Any], None] = lambda _key, _position: None
    check_lock: Callable[[], None] = lambda: None
    on_batch: BatchHook | None = None

    @cached_property
    def ring(self) -> KeyRing:
        return self.settings.key_ring()

    def count(self, what: str, n: int = 1) -> None:
        if n:
            self.counts[what] = self.counts.get(what, 0) + n

    def note(self, what: str, names: list[str]) -> None:
        if names:
            self.details.setdefault(what, []).extend(names)

    def batches(
        self,
        collection: str,
        query: Mapping[str, Any],
        *,
        key: str,
        projection: Mapping[str, Any] | None = None,
    ) -> Iterator[list[Document]]:
        """``query``'s documents in ``_id`` order, ``batch_size`` at a time, from the checkpoint ``key``.

        The checkpoint moves past a batch once the caller asks for the next one (or finishes), so
        a run stopped mid-batch does that batch again: the batch's writes must be idempotent. A
        dry run reads the same batches and saves nothing.
        """
        done = 0
        last = self.checkpoints.get(key)
        while True:
            bounded: dict[str, Any] = dict(query)
            if last is not None:
                bounded["_id"] = {**bounded.get("_id", {}), "$gt": last}
            batch = list(
                self.db[collection]
                .find(bounded, dict(projection) if projection is not None else None)
                .sort("_id", 1)
                .limit(self.batch_size)
            )
            if not batch:
                return
            self.check_lock()
            yield batch
            last = batch[-1]["_id"]
            done += 1
            if not self.dry_run:
                self.checkpoints[key] = last
                self.save_checkpoint(key, last)
            if self.on_batch is not None:
                self.on_batch(key, done)

    def write(self, collection: str, requests: Sequence[WriteRequest]) -> None:
        """One unordered bulk write (nothing in a dry run). Requests must be idempotent."""
        if not requests or self.dry_run:
            return
        self.check_lock()
        self.db[collection].bulk_write(list(requests), ordered=False)
