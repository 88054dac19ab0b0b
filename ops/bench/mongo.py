"""What the bench measures of MongoDB: commands and time inside them (pymongo command monitoring)
for code run in the bench process, and the server's operation counters for everything else."""

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pymongo
from pymongo import monitoring
from pymongo.database import Database

# serverStatus counters that are the work of clients; "command" also counts every client's
# monitoring heartbeats, so it is left out (findAndModify is counted in "update" by the stand-in,
# in "command" by MongoDB).
DATA_OPS = ("insert", "query", "update", "delete", "getmore")


@dataclass(frozen=True, slots=True)
class Usage:
    """Commands by name, the time spent inside them (seconds) and the documents cursors returned,
    between two snapshots."""

    commands: Counter[str]
    seconds: float
    documents: int = 0

    @property
    def total(self) -> int:
        return sum(self.commands.values())

    def __sub__(self, other: "Usage") -> "Usage":
        return Usage(
            self.commands - other.commands, self.seconds - other.seconds, self.documents - other.documents
        )

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            self.commands + other.commands, self.seconds + other.seconds, self.documents + other.documents
        )

    @classmethod
    def zero(cls) -> "Usage":
        return cls(Counter(), 0.0)


class CommandStats(monitoring.CommandListener):
    """Counts commands and adds up their durations, for every thread of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._commands: Counter[str] = Counter()
        self._micros = 0
        self._documents = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        cursor = event.reply.get("cursor") if isinstance(event.reply, dict) else None
        batch = (cursor.get("firstBatch") or cursor.get("nextBatch") or []) if cursor else []
        self._record(event.command_name, event.duration_micros, len(batch))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._record(event.command_name, event.duration_micros, 0)

    def _record(self, name: str, micros: int, documents: int) -> None:
        with self._lock:
            self._commands[name] += 1
            self._micros += micros
            self._documents += documents

    def snapshot(self) -> Usage:
        with self._lock:
            return Usage(Counter(self._commands), self._micros / 1e6, self._documents)


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


def server_ops(db: Database) -> Counter[str]:
    """The server's operation counters now (``serverStatus.opcounters``, data operations only)."""
    counters = db.command("serverStatus").get("opcounters", {})
    return Counter({name: int(counters.get(name, 0)) for name in DATA_OPS})


def per_job(usage: Usage, jobs: int) -> dict[str, Any]:
    """Commands and MongoDB milliseconds per job, with the commands by name."""
    jobs = max(jobs, 1)
    return {
        "commandsPerJob": usage.total / jobs,
        "mongoMsPerJob": usage.seconds * 1000 / jobs,
        "documentsReadPerJob": usage.documents / jobs,
        "commands": dict(sorted(usage.commands.items())),
    }
