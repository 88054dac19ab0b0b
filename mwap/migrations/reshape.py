"""Reversible reshaping of documents, for migrations that change the data contract.

A ``Shape`` says which documents of a collection are in the old shape (a field that is a string
there: ``_id`` or ``tenantId``) and lists ``Op``s; each op changes the document on the way up and
records in the document's stash entry what its way down needs (the value it replaced, a field it
added). The way down starts from the document *as it is then*: a value the platform changed since
is converted back, one it did not is restored exactly.

The stash (collection ``migrationStash``) holds one entry per converted document ``{c, id,
legacyId, was, added}``, and documents that have no place in the new shape, set aside whole
(``removed``). When ``_id`` changes the document is swapped, and a swap survives a kill at any
point: the entry is written first with the new document (``swap: "up"``, ``pending``), then the
old document is deleted, the new one written and the mark cleared — a rerun completes the swaps it
finds marked before it converts anything else (so a unique index on another field, such as a
provider's slug, never sees both copies). Every step is a bulk write per batch.
"""

import copy
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.operations import DeleteMany, ReplaceOne, UpdateMany, UpdateOne

from mwap.crypto import CryptoError, Secret
from mwap.migrations.context import MigrationError, Run, WriteRequest
from mwap.store import Document

STASH = "migrationStash"
_HEX24 = re.compile(r"^[0-9a-fA-F]{24}$")
_SHOWN = 5


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def seed_id(collection: str, legacy: str) -> ObjectId:
    """The ObjectId a string id of ``collection`` becomes, the same on every run (references
    convert without a lookup): its own value if it is 24 hex digits, else 12 bytes of a SHA-256 of
    it (such an id's leading bytes are not a creation time)."""
    if _HEX24.match(legacy):
        return ObjectId(legacy)
    return ObjectId(hashlib.sha256(f"mwap-legacy-id|{collection}|{legacy}".encode()).digest()[:12])


def get(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


def put(doc: dict[str, Any], path: str, value: Any) -> list[str]:
    """Set ``path``, making its missing parents; returns those it made (for ``prune``)."""
    *parents, last = path.split(".")
    made = []
    for depth, part in enumerate(parents):
        if part not in doc:
            made.append(".".join(parents[: depth + 1]))
        doc = doc.setdefault(part, {})
    doc[last] = value
    return made


def prune(doc: dict[str, Any], made: list[str]) -> None:
    """Remove the parents ``put`` made, deepest first, that are empty again."""
    for path in reversed(made):
        if get(doc, path) == {}:
            pop(doc, path)


def pop(doc: dict[str, Any], path: str) -> Any:
    *parents, last = path.split(".")
    for part in parents:
        child = doc.get(part)
        if not isinstance(child, dict):
            return MISSING
        doc = child
    return doc.pop(last, MISSING)


class ConversionError(Exception):
    """This document cannot be converted (e.g. a secret that does not decrypt); the others can."""


@dataclass
class State:
    """One document's way up or down: its ids and its stash entry's record."""

    run: Run
    legacy_id: Any
    new_id: Any
    was: dict[str, Any] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    extra: Mapping[str, Any] = field(default_factory=dict)  # a batch's lookups (Shape.prepare)
    notes: list[str] = field(default_factory=list)  # counted by the migration

    def legacy_of(self, collection: str, new_id: Any) -> Any:
        """The old id of a converted document of ``collection`` (for a reference the platform
        changed after the way up; the unchanged ones come from ``was``)."""
        if not isinstance(new_id, ObjectId):
            return new_id
        entry = self.run.db[STASH].find_one({"c": collection, "id": new_id}, {"legacyId": 1})
        return entry["legacyId"] if entry and "legacyId" in entry else str(new_id)


class Op(Protocol):
    def up(self, doc: dict[str, Any], state: State) -> None: ...

    def down(self, doc: dict[str, Any], state: State) -> None: ...


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to a document of ``collection``: its string id becomes that document's new id."""

    path: str
    collection: str

    def up(self, doc: dict[str, Any], state: State) -> None:
        value = get(doc, self.path)
        if isinstance(value, str):
            state.was[self.path] = value
            put(doc, self.path, seed_id(self.collection, value))

    def down(self, doc: dict[str, Any], state: State) -> None:
        if self.path not in state.was:
            return
        legacy, current = state.was[self.path], get(doc, self.path)
        if current == seed_id(self.collection, legacy):
            put(doc, self.path, legacy)
        elif current is not MISSING:
            put(doc, self.path, state.legacy_of(self.collection, current))


@dataclass(frozen=True, slots=True)
class Rename:
    old: str
    new: str

    def up(self, doc: dict[str, Any], state: State) -> None:
        value = pop(doc, self.old)
        if value is not MISSING:
            state.was[f"rename:{self.old}"] = put(doc, self.new, value)

    def down(self, doc: dict[str, Any], state: State) -> None:
        made = state.was.get(f"rename:{self.old}")
        if made is None:
            return
        if (value := pop(doc, self.new)) is not MISSING:
            put(doc, self.old, value)
        prune(doc, made)


@dataclass(frozen=True, slots=True)
class MoveAll:
    """Every field of the sub-document ``old`` into ``new`` (which may hold others)."""

    old: str
    new: str

    def up(self, doc: dict[str, Any], state: State) -> None:
        moved = get(doc, self.old)
        if not isinstance(moved, dict):
            return
        pop(doc, self.old)
        existed = isinstance(get(doc, self.new), dict)
        for name, value in moved.items():
            put(doc, f"{self.new}.{name}", value)
        state.was[f"move:{self.old}"] = {"names": list(moved), "created": not existed}

    def down(self, doc: dict[str, Any], state: State) -> None:
        record = state.was.get(f"move:{self.old}")
        if record is None:
            return
        put(doc, self.old, {})
        for name in record["names"]:
            if (value := pop(doc, f"{self.new}.{name}")) is not MISSING:
                put(doc, f"{self.old}.{name}", value)
        if record["created"] and get(doc, self.new) == {}:
            pop(doc, self.new)


@dataclass(frozen=True, slots=True)
class Drop:
    """A field the new shape has no place for: kept in the stash, put back on the way down."""

    path: str

    def up(self, doc: dict[str, Any], state: State) -> None:
        value = pop(doc, self.path)
        if value is not MISSING:
            state.was[self.path] = value

    def down(self, doc: dict[str, Any], state: State) -> None:
        if self.path in state.was and get(doc, self.path) is MISSING:
            put(doc, self.path, state.was[self.path])


@dataclass(frozen=True, slots=True)
class Default:
    """A field the new shape requires and the old one lacked: ``value(doc)`` when absent."""

    path: str
    value: Callable[[dict[str, Any], State], Any]

    def up(self, doc: dict[str, Any], state: State) -> None:
        if get(doc, self.path) is MISSING:
            state.added.append(self.path)
            state.added.extend(f"parent:{made}" for made in put(doc, self.path, self.value(doc, state)))

    def down(self, doc: dict[str, Any], state: State) -> None:
        if self.path in state.added:
            pop(doc, self.path)
            prune(doc, [a.removeprefix("parent:") for a in state.added if a.startswith("parent:")])


@dataclass(frozen=True, slots=True)
class Convert:
    """A value mapped by ``forth``; on the way down the old value if the platform left the new one
    as it was, else ``back`` of what it holds now."""

    path: str
    forth: Callable[[Any], Any]
    back: Callable[[Any, State], Any]

    def up(self, doc: dict[str, Any], state: State) -> None:
        value = get(doc, self.path)
        if value is MISSING:
            return
        converted = self.forth(value)
        if converted != value:
            state.was[self.path] = value
            put(doc, self.path, converted)

    def down(self, doc: dict[str, Any], state: State) -> None:
        if self.path not in state.was:
            return
        old, current = state.was[self.path], get(doc, self.path)
        if current is not MISSING:
            put(doc, self.path, old if current == self.forth(old) else self.back(current, state))


@dataclass(frozen=True, slots=True)
class Reseal:
    """An ``enc:v1`` secret bound to the document's old ids, sealed again under its new ids (its
    associated data names the document and tenant). Values in another format are left as they are.
    Put it last: it reads the ids the other ops converted."""

    secret: Secret

    def _bindings(self, doc: dict[str, Any], state: State) -> tuple[Any, Any]:
        tenant = doc.get("tenantId")
        old = self.secret.binding(state.legacy_id, state.was.get("tenantId", tenant))
        return old, self.secret.binding(state.new_id, tenant)

    def up(self, doc: dict[str, Any], state: State) -> None:
        value = get(doc, self.secret.path)
        if not (isinstance(value, str) and value.startswith("enc:v1:")) or state.legacy_id == state.new_id:
            return
        old, new = self._bindings(doc, state)
        ring = state.run.ring
        try:
            put(doc, self.secret.path, ring.encrypt(ring.decrypt(value, old), new))
        except CryptoError as error:
            raise ConversionError(f"{self.secret.path}: {error}") from None
        state.was[f"seal:{self.secret.path}"] = value

    def down(self, doc: dict[str, Any], state: State) -> None:
        value, before = get(doc, self.secret.path), state.was.get(f"seal:{self.secret.path}")
        if before is None or not (isinstance(value, str) and value.startswith("enc:v1:")):
            return
        old, new = self._bindings(doc, state)
        ring = state.run.ring
        try:
            plaintext = ring.decrypt(value, new)
            # The very ciphertext of before when the secret did not change since (a refresh may have).
            put(
                doc,
                self.secret.path,
                before if ring.decrypt(before, old) == plaintext else ring.encrypt(plaintext, old),
            )
        except CryptoError as error:
            raise ConversionError(f"{self.secret.path}: {error}") from None


@dataclass(frozen=True, slots=True)
class Shape:
    """How the old documents of ``collection`` become new ones."""

    collection: str
    ops: Sequence[Op]
    # The field that is a string in the old shape only; ``_id`` means the id itself changes.
    marker: str = "_id"
    # Why an old document has no place in the new shape (it is set aside in the stash), or None.
    set_aside: Callable[[Document, Mapping[str, Any]], str | None] | None = None
    # Lookups for a batch, handed to the ops (``State.extra``) and to ``set_aside``.
    prepare: Callable[[Run, list[Document]], Mapping[str, Any]] | None = None
    # Keys unique in the new shape: ``check_unique`` (call it before converting anything) stops the
    # migration if old documents would share one.
    unique: Sequence[Sequence[str]] = ()

    @property
    def swaps_id(self) -> bool:
        return self.marker == "_id"

    def is_old(self, doc: Mapping[str, Any]) -> bool:
        return isinstance(get(doc, self.marker), str)


def ensure_stash(run: Run) -> None:
    if run.dry_run:
        return
    stash = run.db[STASH]
    stash.create_index([("c", ASCENDING), ("id", ASCENDING)], name="c_id", unique=True)
    # Only the entries of an unfinished swap carry ``swap``: the index holds a batch at most.
    stash.create_index([("swap", ASCENDING)], name="swap", sparse=True)


def drop_stash_if_empty(run: Run) -> None:
    if not run.dry_run and run.db[STASH].count_documents({}, limit=1) == 0:
        run.db.drop_collection(STASH)


def _entry(shape: Shape, state: State) -> dict[str, Any]:
    entry: dict[str, Any] = {"c": shape.collection, "id": state.new_id}
    if shape.swaps_id:
        entry["legacyId"] = state.legacy_id
    if state.was:
        entry["was"] = [[key, value] for key, value in state.was.items()]
    if state.added:
        entry["added"] = state.added
    return entry


def finish_swaps(run: Run, shape: Shape) -> None:
    """Complete the swaps a killed run left half done, in both directions."""
    if run.dry_run or not shape.swaps_id:
        return
    stash = run.db[STASH]
    for direction, old_key, new_key in (("up", "legacyId", "id"), ("down", "id", "legacyId")):
        entries = list(stash.find({"c": shape.collection, "swap": direction}))
        if not entries:
            continue
        run.write(shape.collection, [DeleteMany({"_id": {"$in": [e[old_key] for e in entries]}})])
        run.write(
            shape.collection, [ReplaceOne({"_id": e[new_key]}, e["pending"], upsert=True) for e in entries]
        )
        ids = [e["_id"] for e in entries]
        if direction == "up":
            run.write(STASH, [UpdateMany({"_id": {"$in": ids}}, {"$unset": {"swap": "", "pending": ""}})])
        else:
            run.write(STASH, [DeleteMany({"_id": {"$in": ids}})])


def check_unique(run: Run, shape: Shape) -> None:
    """Old documents sharing a key the new shape's unique indexes allow once stop the migration
    before anything of the collection is converted, naming them."""
    clashes = []
    for key in shape.unique:
        groups = run.db[shape.collection].aggregate(
            [
                {
                    "$group": {
                        "_id": {name: f"${name}" for name in key},
                        "n": {"$sum": 1},
                        "ids": {"$push": "$_id"},
                    }
                },
                {"$match": {"n": {"$gt": 1}}},
            ]
        )
        for group in groups:
            if any(isinstance(doc_id, str) for doc_id in group["ids"]):
                clashes.append(f"{shape.collection} {group['_id']}: {', '.join(map(repr, group['ids']))}")
    if clashes:
        raise MigrationError(
            f"{len(clashes)} keys would be shared by several documents, which the seed's unique indexes "
            f"forbid ({'; '.join(clashes[:_SHOWN])}); merge or remove the extra documents and rerun"
        )


def up(run: Run, shape: Shape) -> None:
    """Convert every old document of ``shape.collection``, a batch at a time."""
    finish_swaps(run, shape)
    name = shape.collection
    for batch in run.batches(name, {shape.marker: {"$type": "string"}}, key=name):
        extra = shape.prepare(run, batch) if shape.prepare else {}
        converted: list[tuple[Document, dict[str, Any], State]] = []
        aside: list[Document] = []
        failures = []
        for old in batch:
            reason = shape.set_aside(old, extra) if shape.set_aside else None
            if reason is not None:
                aside.append(old)
                run.count(f"{name} set aside ({reason})")
                continue
            new_id = seed_id(name, old["_id"]) if shape.swaps_id else old["_id"]
            state = State(run, old["_id"], new_id, extra=extra)
            doc = copy.deepcopy(old)
            doc["_id"] = new_id
            try:
                for op in shape.ops:
                    op.up(doc, state)
            except ConversionError as error:
                failures.append(f"{name}/{old['_id']}: {error}")
                continue
            converted.append((old, doc, state))
            for note in state.notes:
                run.count(note)
        run.count(name, len(converted))
        _write_up(run, shape, converted, aside)
        if failures:
            # Before the checkpoint passes this batch: the rerun starts here, the rest is done.
            raise MigrationError(
                f"{len(failures)} documents could not be converted ({'; '.join(failures[:_SHOWN])}); "
                "fix them (for a secret: add the key it was sealed with to MWAP_ENCRYPTION_KEYS) and rerun"
            )


def _write_up(
    run: Run, shape: Shape, converted: list[tuple[Document, dict[str, Any], State]], aside: list[Document]
) -> None:
    name = shape.collection
    if shape.swaps_id and converted:
        taken = run.db[name].find({"_id": {"$in": [doc["_id"] for _, doc, _ in converted]}}, {"_id": 1})
        if clash := [str(doc["_id"]) for doc in taken]:
            raise MigrationError(
                f"{name}: documents already hold the ids the old ones would take ({', '.join(clash[:_SHOWN])})"
            )
    entries: list[WriteRequest] = [
        ReplaceOne(
            {"c": name, "id": state.new_id},
            {**_entry(shape, state), **({"swap": "up", "pending": doc} if shape.swaps_id else {})},
            upsert=True,
        )
        for _, doc, state in converted
    ]
    entries += [
        ReplaceOne({"c": name, "id": old["_id"]}, {"c": name, "id": old["_id"], "removed": old}, upsert=True)
        for old in aside
    ]
    run.write(STASH, entries)
    if aside:
        run.write(name, [DeleteMany({"_id": {"$in": [old["_id"] for old in aside]}})])
    if not converted:
        return
    if shape.swaps_id:
        run.write(name, [DeleteMany({"_id": {"$in": [old["_id"] for old, _, _ in converted]}})])
        run.write(name, [ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) for _, doc, _ in converted])
        new_ids = [state.new_id for _, _, state in converted]
        run.write(
            STASH, [UpdateMany({"c": name, "id": {"$in": new_ids}}, {"$unset": {"swap": "", "pending": ""}})]
        )
    else:
        # Only a document still in the old shape: a rerun never converts one twice.
        run.write(
            name,
            [
                ReplaceOne({"_id": old["_id"], shape.marker: {"$type": "string"}}, doc)
                for old, doc, _ in converted
            ],
        )


def down(run: Run, shape: Shape) -> None:
    """Convert back every document converted by ``up`` (and put back those set aside)."""
    finish_swaps(run, shape)
    name = shape.collection
    for batch in run.batches(STASH, {"c": name}, key=name):
        kept = [entry for entry in batch if "removed" not in entry]
        current = {doc["_id"]: doc for doc in run.db[name].find({"_id": {"$in": [e["id"] for e in kept]}})}
        restored: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (entry, old document)
        for entry in kept:
            doc = current.get(entry["id"])
            if doc is None or shape.is_old(doc):
                continue  # deleted since, or already converted back by a killed run
            state = State(
                run,
                entry.get("legacyId", entry["id"]),
                entry["id"],
                was=dict(entry.get("was", [])),
                added=list(entry.get("added", [])),
            )
            doc = copy.deepcopy(doc)
            try:
                for op in reversed(shape.ops):
                    op.down(doc, state)
            except ConversionError as error:
                raise MigrationError(f"{name}/{entry['id']} cannot be converted back: {error}") from None
            doc["_id"] = state.legacy_id
            restored.append((entry, doc))
        aside = [entry["removed"] for entry in batch if "removed" in entry]
        run.count(f"{name} restored", len(restored))
        run.count(f"{name} put back", len(aside))
        if shape.swaps_id:
            run.write(
                STASH,
                [
                    UpdateOne({"_id": e["_id"]}, {"$set": {"swap": "down", "pending": doc}})
                    for e, doc in restored
                ],
            )
            run.write(name, [DeleteMany({"_id": {"$in": [e["id"] for e, _ in restored]}})])
            run.write(name, [ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) for _, doc in restored])
        else:
            run.write(
                name,
                [
                    ReplaceOne({"_id": doc["_id"], shape.marker: {"$not": {"$type": "string"}}}, doc)
                    for _, doc in restored
                ],
            )
        run.write(name, [ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) for doc in aside])
        run.write(STASH, [DeleteMany({"_id": {"$in": [entry["_id"] for entry in batch]}})])
