"""The migration lock: one document ``{_id: "lock"}`` in the ``migrations`` collection.

Taken with one conditional upsert: it matches the lock document only once that has expired (by
the server's clock — its ``hello`` time and ``$$NOW`` — so the deploy machines' clocks do not
matter), and when the document exists and is live the upsert's insert fails on the unique
``_id``: the lock is held. Every write is acknowledged by a majority, so a replica-set failover cannot hand the lock to a
second migrator. A thread renews it while the migration runs; a migrator that crashes stops
renewing and its lock expires after ``ttl``. A migrator that cannot renew (a partition, a
takeover after a long pause) marks the lock lost and stops at its next batch: ``check()`` raises
before it writes again.
"""

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Self

from pymongo import WriteConcern
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from mwap.store import Document

logger = logging.getLogger(__name__)

COLLECTION = "migrations"
LOCK_ID = "lock"
TTL = 60.0  # seconds a lock lives without renewal
POLL = 0.5  # seconds between attempts while waiting for another migrator


class LockBusyError(Exception):
    """Another migrator holds the lock and did not let go within the wait."""

    def __init__(self, holder: dict[str, Any] | None, waited: float) -> None:
        self.holder = holder or {}
        owner = self.holder.get("owner", "another migrator")
        until = self.holder.get("expiresAt")
        super().__init__(
            f"the migration lock is held by {owner}"
            + (f" (running `{self.holder['command']}`)" if self.holder.get("command") else "")
            + (f", live until {until.isoformat()} unless renewed" if isinstance(until, datetime) else "")
            + f"; gave up after {waited:.0f}s"
        )


class LockLostError(Exception):
    """This migrator could not renew its lock in time: another one may have taken it."""


def owner_name() -> str:
    """``host:pid:random``: who holds the lock, readable in ``mwap db status``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class MigrationLock:
    """``with MigrationLock(db, command=...).acquire(wait=...)``: held, renewed, released."""

    def __init__(
        self, db: Database[Document], *, command: str, ttl: float = TTL, owner: str | None = None
    ) -> None:
        self._db = db
        self.collection: Collection[Document] = db[COLLECTION].with_options(
            write_concern=WriteConcern("majority")
        )
        self.command = command
        self.ttl = ttl
        self.owner = owner or owner_name()
        self._renewed_at = 0.0  # monotonic time of the last acknowledged take or renewal
        self._lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free or expired; False if another migrator holds it."""
        taken_at = time.monotonic()
        # The server's clock, not this machine's: every migrator compares against the same one.
        # (MongoDB refuses $expr, hence $$NOW, in the query of an upsert: the time is read first.)
        server_now = self._db.command("hello")["localTime"]
        try:
            self.collection.update_one(
                {"_id": LOCK_ID, "expiresAt": {"$lt": server_now}},
                [
                    {
                        "$set": {
                            "owner": self.owner,
                            "command": self.command,
                            "acquiredAt": "$$NOW",
                            "expiresAt": {"$add": ["$$NOW", int(self.ttl * 1000)]},
                        }
                    }
                ],
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        self._renewed_at = taken_at
        return True

    def acquire(self, *, wait: float, on_wait: Callable[[dict[str, Any]], None] | None = None) -> Self:
        """Take the lock, waiting up to ``wait`` seconds for its holder; raises LockBusyError."""
        started = time.monotonic()
        told = False
        while not self.try_acquire():
            holder = self.holder()
            waited = time.monotonic() - started
            if waited >= wait:
                raise LockBusyError(holder, waited)
            if on_wait is not None and not told and holder is not None:
                on_wait(holder)
                told = True
            time.sleep(min(POLL, max(wait - waited, 0.01)))
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="migration-lock", daemon=True)
        self._thread.start()
        return self

    def holder(self) -> dict[str, Any] | None:
        """The lock document, or None when nobody holds it."""
        return self.collection.find_one({"_id": LOCK_ID})

    def check(self) -> None:
        """Raise LockLostError unless the lock is still ours with time to spare."""
        # A renewal may have been acknowledged up to ttl ago at the latest; stop well before the
        # server could let another migrator in.
        if self._lost or time.monotonic() - self._renewed_at > self.ttl * 0.75:
            self._lost = True
            raise LockLostError(
                f"lost the migration lock ({self.owner}): not renewed for {self.ttl * 0.75:.0f}s; "
                "stopped before writing again — rerun the command"
            )

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            started = time.monotonic()
            try:
                renewed = self.collection.update_one(
                    {"_id": LOCK_ID, "owner": self.owner},
                    [{"$set": {"expiresAt": {"$add": ["$$NOW", int(self.ttl * 1000)]}}}],
                )
            except PyMongoError as error:
                logger.warning("could not renew the migration lock: %s", error)
                continue  # check() decides when too long has passed
            if renewed.matched_count == 0:
                self._lost = True
                logger.error("the migration lock was taken over: %s no longer holds it", self.owner)
                return
            self._renewed_at = started

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self.collection.delete_one({"_id": LOCK_ID, "owner": self.owner})
        except PyMongoError as error:  # it expires on its own
            logger.warning("could not release the migration lock (it expires in %.0fs): %s", self.ttl, error)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
