"""MongoDB commands sent by code the bench runs in its own process (the dispatchers, its producer),
counted by pymongo command monitoring on a client of its own; the platform's processes count theirs
in ``mwap_mongo_commands_total`` (``ops.bench.meter``)."""

import threading
from collections import Counter
from dataclasses import dataclass

import pymongo
from pymongo import monitoring


@dataclass(frozen=True, slots=True)
class Usage:
    """Commands by name and the documents cursors returned, between two snapshots."""

    commands: Counter[str]
    documents: int = 0

    @property
    def total(self) -> int:
        return sum(self.commands.values())

    def __sub__(self, other: "Usage") -> "Usage":
        return Usage(self.commands - other.commands, self.documents - other.documents)

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.commands + other.commands, self.documents + other.documents)

    @classmethod
    def zero(cls) -> "Usage":
        return cls(Counter())


class CommandStats(monitoring.CommandListener):
    """Counts commands and the documents their cursors returned, for every thread of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._commands: Counter[str] = Counter()
        self._documents = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        cursor = event.reply.get("cursor") if isinstance(event.reply, dict) else None
        batch = (cursor.get("firstBatch") or cursor.get("nextBatch") or []) if cursor else []
        self._record(event.command_name, len(batch))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._record(event.command_name, 0)

    def _record(self, name: str, documents: int) -> None:
        with self._lock:
            self._commands[name] += 1
            self._documents += documents

    def snapshot(self) -> Usage:
        with self._lock:
            return Usage(Counter(self._commands), self._documents)


def monitored_client(url: str, stats: CommandStats) -> pymongo.MongoClient:
    """A client like the platform's (``mwap.connections``) whose commands ``stats`` sees."""
    return pymongo.MongoClient(
        url,
        tz_aware=True,
        appname="mwap-bench",
        serverSelectionTimeoutMS=10_000,
        socketTimeoutMS=120_000,
        event_listeners=[stats],
    )
