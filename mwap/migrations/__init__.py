"""Versioned migrations of the database: ``mwap db migrate | rollback | status``.

A migration is a module ``mNNNN_<name>.py`` of this package (NNNN = its version, from 1 without
gaps) whose docstring's first line describes it, with ``up(run)`` and ``down(run)`` taking a
``context.Run``, and optionally ``reconcile(run)``, run by every ``migrate`` once it is applied
(the index set follows the code that way). The schema version of a database is the highest
version applied. The ``migrations`` collection holds one record per version (``_id`` = version;
``state`` running | applied | rolling_back; the checkpoints of an unfinished run) and the lock
(``lock.py``). Records exist only for applied or unfinished versions: a rollback deletes them.

Every run holds the lock; each migration is applied once (its record is re-read under the lock),
its batches are idempotent and checkpointed, so a killed run is finished by the next one. A dry
run takes no lock and writes nothing, not even a record.
"""

import importlib
import logging
import pkgutil
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from types import ModuleType
from typing import Any

from pymongo import WriteConcern
from pymongo.collection import Collection
from pymongo.database import Database

from mwap.ledger import now
from mwap.migrations.context import BatchHook, MigrationError, Run
from mwap.migrations.lock import COLLECTION, TTL, LockBusyError, LockLostError, MigrationLock
from mwap.settings import Settings
from mwap.store import Document

__all__ = [
    "LockBusyError",
    "LockLostError",
    "MigrationError",
    "SchemaTooNewError",
    "check_schema",
    "head",
    "known",
    "migrate",
    "rollback",
    "schema_version",
    "status",
]

logger = logging.getLogger(__name__)

APPLIED = "applied"
RUNNING = "running"  # an up that has not finished: `migrate` resumes it
ROLLING_BACK = "rolling_back"  # a down that has not finished: `rollback` resumes it
WAIT = 300.0  # default seconds to wait for another migrator's lock
BATCH = 500
_MODULE = re.compile(r"^m(\d{4})_(\w+)$")


class SchemaTooNewError(Exception):
    """The database was migrated by a newer build than this one."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    description: str
    module: ModuleType

    @property
    def label(self) -> str:
        return f"{self.version:04d} {self.name}"

    def up(self, run: Run) -> None:
        self.module.up(run)

    def down(self, run: Run) -> None:
        self.module.down(run)

    def reconcile(self, run: Run) -> bool:
        """Run the module's ``reconcile`` if it has one."""
        step: Callable[[Run], None] | None = getattr(self.module, "reconcile", None)
        if step is None:
            return False
        step(run)
        return True


@cache
def known() -> tuple[Migration, ...]:
    """This build's migrations in order; their versions run 1, 2, 3 … without gaps."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if match := _MODULE.match(info.name):
            module = importlib.import_module(f"{__name__}.{info.name}")
            description = (module.__doc__ or info.name).strip().splitlines()[0]
            found.append(Migration(int(match[1]), match[2], description, module))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must run 1..N without gaps, found {versions}")
    return tuple(found)


def head() -> int:
    """The newest schema version this build knows."""
    return len(known())


def _records(db: Database[Document]) -> dict[int, Document]:
    return {doc["_id"]: doc for doc in db[COLLECTION].find({"_id": {"$type": "int"}})}


def schema_version(db: Database[Document]) -> int:
    """The highest version applied to ``db`` (0: none)."""
    return max((v for v, doc in _records(db).items() if doc.get("state") == APPLIED), default=0)


def check_schema(db: Database[Document], component: str, *, warn: bool = True) -> int:
    """At a process's start: raise SchemaTooNewError if a newer build migrated ``db``; with ``warn``,
    log (naming ``mwap db migrate``) the migrations of this build not applied yet. Returns the
    version."""
    records = _records(db)
    newest, ours = max(records, default=0), head()
    if newest > ours:
        raise SchemaTooNewError(
            f"{component}: the database's schema is at version {newest} ({records[newest].get('name')}, "
            f"{records[newest].get('state')}), newer than this build knows (up to {ours}); run the "
            f"build that migrated it, or roll the database back with that build's "
            f"`mwap db rollback --to {ours}`"
        )
    version = max((v for v, doc in records.items() if doc.get("state") == APPLIED), default=0)
    pending = [m.label for m in known() if records.get(m.version, {}).get("state") != APPLIED]
    if pending and warn:
        logger.warning(
            "%s: the database's schema is at version %d, older than this build's %d (not applied: %s); "
            "run `mwap db migrate`",
            component,
            version,
            ours,
            ", ".join(pending),
        )
    return version


@dataclass
class Step:
    version: int
    name: str
    direction: str  # up | down | reconcile
    counts: dict[str, int] = field(default_factory=dict)
    details: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    resumed: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "direction": self.direction,
            "counts": self.counts,
            **({"details": self.details} if self.details else {}),
            "seconds": round(self.seconds, 3),
            "resumed": self.resumed,
        }


@dataclass
class Report:
    before: int
    after: int
    dry_run: bool = False
    steps: list[Step] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.before,
            "to": self.after,
            "dryRun": self.dry_run,
            "steps": [step.as_json() for step in self.steps],
        }


def _records_collection(db: Database[Document]) -> Collection[Document]:
    return db[COLLECTION].with_options(write_concern=WriteConcern("majority"))


def _run_step(
    db: Database[Document],
    settings: Settings,
    migration: Migration,
    direction: str,
    record: Document | None,
    *,
    lock: MigrationLock,
    batch_size: int,
    on_batch: BatchHook | None,
) -> Step:
    """Run ``migration.up`` or ``.down`` under the lock, its record following (and resuming)."""
    records = _records_collection(db)
    state = RUNNING if direction == "up" else ROLLING_BACK
    # Resume only a run in the same direction: an up's positions mean nothing to a down.
    resumed = record is not None and record.get("state") == state
    checkpoints: dict[str, Any] = dict(record.get("checkpoint") or {}) if resumed and record else {}
    lock.check()
    records.update_one(
        {"_id": migration.version},
        {
            "$set": {
                "name": migration.name,
                "state": state,
                "owner": lock.owner,
                "startedAt": now(),
                "checkpoint": checkpoints,
            },
        },
        upsert=True,
    )

    def save_checkpoint(key: str, position: Any) -> None:
        records.update_one({"_id": migration.version}, {"$set": {f"checkpoint.{key}": position}})

    run = Run(
        db,
        settings,
        batch_size=batch_size,
        checkpoints=checkpoints,
        save_checkpoint=save_checkpoint,
        check_lock=lock.check,
        on_batch=on_batch,
    )
    started = time.monotonic()
    if direction == "up":
        migration.up(run)
    else:
        migration.down(run)
    seconds = time.monotonic() - started
    lock.check()
    if direction == "up":
        records.update_one(
            {"_id": migration.version},
            {
                "$set": {
                    "state": APPLIED,
                    "appliedAt": now(),
                    "seconds": round(seconds, 3),
                    "counts": run.counts,
                },
                "$unset": {"checkpoint": ""},
            },
        )
    else:
        records.delete_one({"_id": migration.version})
    return Step(migration.version, migration.name, direction, run.counts, run.details, seconds, resumed)


def _refuse_newer(records: dict[int, Document], command: str) -> None:
    newest = max(records, default=0)
    if newest > head():
        raise SchemaTooNewError(
            f"the database has migration {newest} ({records[newest].get('name')}), which this build "
            f"does not know (it knows 1..{head()}): run `{command}` with the newer build"
        )


def migrate(
    db: Database[Document],
    settings: Settings,
    *,
    to: int | None = None,
    dry_run: bool = False,
    wait: float = WAIT,
    batch_size: int = BATCH,
    lock_ttl: float = TTL,
    on_batch: BatchHook | None = None,
    on_wait: Callable[[dict[str, Any]], None] | None = None,
) -> Report:
    """Apply every migration up to ``to`` (default: all) that is not applied, then reconcile."""
    target = head() if to is None else to
    if not 0 <= target <= head():
        raise MigrationError(f"--to must be between 0 and {head()}, got {target}")
    if dry_run:
        return _dry_run(db, settings, target, batch_size)
    with MigrationLock(db, command="mwap db migrate", ttl=lock_ttl).acquire(
        wait=wait, on_wait=on_wait
    ) as lock:
        records = _records(db)  # under the lock: what another migrator did is seen here
        _refuse_newer(records, "mwap db migrate")
        report = Report(before=schema_version(db), after=0)
        if target < report.before:
            raise MigrationError(
                f"the database is at version {report.before}; use `mwap db rollback --to {target}`"
            )
        for migration in known():
            record = records.get(migration.version)
            if migration.version > target or (record is not None and record.get("state") == APPLIED):
                continue
            logger.info("migration %s: up", migration.label)
            report.steps.append(
                _run_step(
                    db,
                    settings,
                    migration,
                    "up",
                    record,
                    lock=lock,
                    batch_size=batch_size,
                    on_batch=on_batch,
                )
            )
        for migration in known()[:target]:
            run = Run(db, settings, batch_size=batch_size, check_lock=lock.check)
            started = time.monotonic()
            if migration.reconcile(run) and (run.counts or run.details):
                step = Step(migration.version, migration.name, "reconcile", run.counts, run.details)
                step.seconds = time.monotonic() - started
                report.steps.append(step)
        report.after = schema_version(db)
        return report


def _dry_run(db: Database[Document], settings: Settings, target: int, batch_size: int) -> Report:
    """What ``migrate`` would do, each pending migration planned against the database as it is now
    (so a later migration's counts do not include what an earlier one would convert first)."""
    records = _records(db)
    _refuse_newer(records, "mwap db migrate")
    version = schema_version(db)
    if target < version:
        raise MigrationError(f"the database is at version {version}; use `mwap db rollback --to {target}`")
    report = Report(before=version, after=target, dry_run=True)
    for migration in known()[:target]:
        run = Run(db, settings, dry_run=True, batch_size=batch_size)
        if records.get(migration.version, {}).get("state") == APPLIED:
            if migration.reconcile(run) and (run.counts or run.details):
                report.steps.append(
                    Step(migration.version, migration.name, "reconcile", run.counts, run.details)
                )
            continue
        migration.up(run)
        report.steps.append(Step(migration.version, migration.name, "up", run.counts, run.details))
    return report


def rollback(
    db: Database[Document],
    settings: Settings,
    *,
    to: int,
    wait: float = WAIT,
    batch_size: int = BATCH,
    lock_ttl: float = TTL,
    on_batch: BatchHook | None = None,
    on_wait: Callable[[dict[str, Any]], None] | None = None,
) -> Report:
    """Run ``down`` of every applied (or unfinished) migration above ``to``, newest first."""
    if not 0 <= to <= head():
        raise MigrationError(f"--to must be between 0 and {head()}, got {to}")
    with MigrationLock(db, command="mwap db rollback", ttl=lock_ttl).acquire(
        wait=wait, on_wait=on_wait
    ) as lock:
        records = _records(db)
        _refuse_newer(records, "mwap db rollback")
        report = Report(before=schema_version(db), after=0)
        for migration in reversed(known()):
            record = records.get(migration.version)
            if migration.version <= to or record is None:
                continue
            logger.info("migration %s: down", migration.label)
            report.steps.append(
                _run_step(
                    db,
                    settings,
                    migration,
                    "down",
                    record,
                    lock=lock,
                    batch_size=batch_size,
                    on_batch=on_batch,
                )
            )
        report.after = schema_version(db)
        return report


def status(db: Database[Document]) -> dict[str, Any]:
    """The schema version, each migration's state, and the lock's holder (if any)."""
    records = _records(db)
    lock = db[COLLECTION].find_one({"_id": "lock"})
    migrations = []
    for migration in known():
        record = records.get(migration.version, {})
        migrations.append(
            {
                "version": migration.version,
                "name": migration.name,
                "description": migration.description,
                "state": record.get("state", "pending"),
                "appliedAt": record.get("appliedAt"),
                **({"checkpoint": record["checkpoint"]} if record.get("checkpoint") else {}),
            }
        )
    unknown = sorted(v for v in records if v > head())
    return {
        "version": schema_version(db),
        "head": head(),
        "migrations": migrations,
        "unknown": [
            {"version": v, "name": records[v].get("name"), "state": records[v].get("state")} for v in unknown
        ],
        "lock": None
        if lock is None
        else {k: lock.get(k) for k in ("owner", "command", "acquiredAt", "expiresAt")},
    }
