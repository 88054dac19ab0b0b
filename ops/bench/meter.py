"""What one measurement window costs, read from where each cost is counted, never estimated:

- CPU: user + system time of each process group, from ``/proc/<pid>/stat`` (10 ms ticks);
- Redis: ``INFO`` of the one Redis every side shares — ``commandstats`` (calls per command, as
  Redis counts them: each command of a pipeline or a MULTI, and each ``redis.call`` inside a Lua
  script, besides the ``EVALSHA`` itself) and ``total_net_input_bytes`` (every byte clients sent);
  the bench's own ``INFO`` requests are left out of both (their bytes are known exactly: the bench
  sent them);
- MongoDB, the platform's processes: ``mwap_mongo_commands_total{command,role}`` from the API's
  ``GET /metrics``, which adds up every process sharing the bench's ``PROMETHEUS_MULTIPROC_DIR``
  (the API, the workers, beat); code run in the bench process counts on its own listener
  (``ops.bench.mongo.CommandStats``).

A window is only as clean as what else runs during it: the scenarios pause (SIGSTOP) the other
sides' workers and beat while one side is measured, and scrape ``/metrics`` (which reads Redis)
outside the ``INFO`` snapshots.
"""

import contextlib
import http.client
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from ops.bench.harness import groups_cpu_seconds
from ops.bench.loader import Http
from ops.bench.mongo import CommandStats
from ops.processes import Child

MONGO_FAMILY = "mwap_mongo_commands"
PROBE_COMMANDS = frozenset({"info"})  # the bench's own INFO snapshots


def redis_commands(info: Mapping[str, Any]) -> Counter[str]:
    """Calls per command from ``INFO commandstats`` as redis-py parses it, the bench's probes left out."""
    calls: Counter[str] = Counter()
    for key, stats in info.items():
        if key.startswith("cmdstat_"):
            name = key.removeprefix("cmdstat_")
            if name not in PROBE_COMMANDS:
                calls[name] = int(stats["calls"])
    return calls


def mongo_commands(exposition: str) -> Counter[str]:
    """``role:command`` -> commands sent, from a ``/metrics`` body."""
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(exposition):
        if family.name != MONGO_FAMILY:
            continue
        for sample in family.samples:
            if sample.name == f"{MONGO_FAMILY}_total":
                counts[f"{sample.labels['role']}:{sample.labels['command']}"] += int(sample.value)
    return counts


def resp_length(*args: str) -> int:
    """Bytes of a command as a client sends it (RESP: an array of bulk strings)."""
    encoded = [arg.encode() for arg in args]
    return len(f"*{len(encoded)}\r\n".encode()) + sum(
        len(f"${len(arg)}\r\n".encode()) + len(arg) + 2 for arg in encoded
    )


@dataclass
class Cost:
    """What a window cost: seconds, CPU seconds per process group, Redis commands by name and bytes
    clients sent to Redis, MongoDB commands by ``role:command`` (the platform's processes and the
    bench's own listener, role ``bench``)."""

    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    redis: Counter[str] = field(default_factory=Counter)
    redis_bytes: int = 0
    mongo: Counter[str] = field(default_factory=Counter)

    def __add__(self, other: "Cost") -> "Cost":
        cpu = Counter(self.cpu)
        cpu.update(other.cpu)
        return Cost(
            self.seconds + other.seconds,
            dict(cpu),
            self.redis + other.redis,
            self.redis_bytes + other.redis_bytes,
            self.mongo + other.mongo,
        )

    @property
    def redis_total(self) -> int:
        return sum(self.redis.values())

    @property
    def mongo_total(self) -> int:
        return sum(self.mongo.values())


@dataclass
class _Snapshot:
    at: float
    cpu: dict[str, float]
    redis: Counter[str]
    redis_bytes: int
    mongo: Counter[str]


class Meter:
    """Snapshots before and after a window; ``with meter.window(groups) as cost: ...``."""

    def __init__(self, redis_url: str, api_url: str) -> None:
        self._redis = redis.Redis.from_url(redis_url)
        self._api = Http(api_url)
        self._probe_bytes = 0  # bytes of every INFO request this meter sent

    def _info(self, section: str) -> dict[str, Any]:
        self._probe_bytes += resp_length("INFO", section)
        return self._redis.info(section)

    def close(self) -> None:
        self._redis.close()
        self._api.close()

    def scrape(self) -> Counter[str]:
        """The platform's MongoDB commands so far, every process of the host (``GET /metrics``)."""
        try:
            status, body = self._api.request("GET", "/metrics")
        except (OSError, http.client.HTTPException):
            # gunicorn closes a keep-alive connection idle for 5 s: once more on a new one.
            status, body = self._api.request("GET", "/metrics")
        if status != 200:
            raise RuntimeError(f"GET /metrics answered {status}: {body[:200]!r}")
        return mongo_commands(body.decode())

    def info(self) -> tuple[Counter[str], int]:
        """Calls per command, and bytes clients sent to Redis less the bench's own INFO requests."""
        info = self._info("all")
        return redis_commands(info), int(info["total_net_input_bytes"]) - self._probe_bytes

    def keys(self, db: int) -> int:
        """Keys in Redis database ``db`` (``INFO keyspace``: a probe that counts as none of the sides')."""
        return int(self._info("keyspace").get(f"db{db}", {}).get("keys", 0))

    def lasting_keys(self, db: int) -> int:
        """Keys without an expiry in Redis database ``db`` (``INFO keyspace``, as ``keys``): queues,
        the unacked hash; not locks, leases or the workers' heartbeat keys, which come and go with
        time (a frozen worker's heartbeat expires and is written again when it resumes)."""
        space = self._info("keyspace").get(f"db{db}", {})
        return int(space.get("keys", 0)) - int(space.get("expires", 0))

    def _snapshot(
        self, groups: Mapping[str, Child | None], platform: bool, local: CommandStats | None, before: bool
    ) -> _Snapshot:
        # /metrics reads Redis (queue depths): scraped outside the INFO snapshots, first before the
        # window and last after it; the clock is read next to the window, the rest around it.
        mongo: Counter[str] = Counter()
        if before:
            if platform:
                mongo = self.scrape()
            calls, sent = self.info()
            cpu = groups_cpu_seconds(groups)
            at = time.perf_counter()
        else:
            at = time.perf_counter()
            cpu = groups_cpu_seconds(groups)
            calls, sent = self.info()
            if platform:
                mongo = self.scrape()
        if local is not None:
            for name, count in local.snapshot().commands.items():
                mongo[f"bench:{name}"] += count
        return _Snapshot(at, cpu, calls, sent, mongo)

    @contextlib.contextmanager
    def window(
        self,
        groups: Mapping[str, Child | None],
        *,
        platform: bool = False,
        local: CommandStats | None = None,
    ) -> Iterator[Cost]:
        """Measure the block: CPU of ``groups`` (name -> process group leader), Redis, and MongoDB
        (the platform's processes with ``platform``; ``local`` for commands sent by the bench)."""
        cost = Cost()
        start = self._snapshot(groups, platform, local, before=True)
        yield cost
        end = self._snapshot(groups, platform, local, before=False)
        cost.seconds = end.at - start.at
        cost.cpu = {name: end.cpu[name] - start.cpu[name] for name in end.cpu}
        cost.redis = end.redis - start.redis
        cost.redis_bytes = end.redis_bytes - start.redis_bytes
        cost.mongo = end.mongo - start.mongo
