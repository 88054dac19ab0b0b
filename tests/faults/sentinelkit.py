"""A Redis Sentinel topology on loopback for the fault suite: a primary, a replica, three sentinels.

Every server has a password (``requirepass``/``masterauth``, the master's), and the sentinels one of
their own, as a production deployment would; both live in config files of mode 0600, never on a
command line. Sentinels judge a master down after ``DOWN_AFTER_MS`` and fail over with a quorum of
two. ``SentinelStack`` is faultkit's ``Stack`` on that topology instead of a lone redis-server.
"""

import contextlib
import os
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path

import redis
from faultkit import Stack

from mwap import redis_urls
from ops import processes
from ops.processes import Child, wait_for

MASTER = "mwap"
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # the servers need nothing else of ours


def _config(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Topology:
    """Primary, replica and sentinels as child processes; ``close`` stops whatever is left."""

    root: Path
    password: str = field(default_factory=lambda: "redis-" + secrets.token_urlsafe(18))
    sentinel_password: str = field(default_factory=lambda: "sentinel-" + secrets.token_urlsafe(18))
    redis_ports: list[int] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)
    children: dict[int, Child] = field(default_factory=dict)  # by port

    def __enter__(self) -> "Topology":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.redis_ports = [processes.free_port(), processes.free_port()]
        self.sentinel_ports = [processes.free_port() for _ in range(3)]
        primary, replica = self.redis_ports
        self._server(primary)
        self._server(replica, replica_of=primary)
        wait_for(lambda: self._linked(replica), timeout=20, what="replica in sync")
        for port in self.sentinel_ports:
            self._sentinel(port, primary)
        wait_for(self._sentinels_agree, timeout=30, what="sentinels know each other and the replica")

    def _server(self, port: int, *, replica_of: int | None = None) -> None:
        directory = self.root / f"redis-{port}"
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            'save ""',
            "appendonly no",
            f"dir {directory}",
            f"requirepass {self.password}",
            f"masterauth {self.password}",  # either may become the other's replica
        ]
        if replica_of is not None:
            lines.append(f"replicaof 127.0.0.1 {replica_of}")
        conf = _config(directory / "redis.conf", lines)
        argv = ["redis-server", str(conf)]
        child = processes.spawn(f"redis-{port}", argv, env=_ENV, log_dir=self.root / "logs")
        self.children[port] = child
        processes.await_ready(child, lambda: self.node(port).ping(), timeout=20)

    def _sentinel(self, port: int, primary: int) -> None:
        directory = self.root / f"sentinel-{port}"
        conf = _config(
            directory / "sentinel.conf",  # sentinel rewrites its file: it must be its own and writable
            [
                f"port {port}",
                "bind 127.0.0.1",
                f"dir {directory}",
                f"requirepass {self.sentinel_password}",
                f"sentinel sentinel-pass {self.sentinel_password}",
                f"sentinel monitor {MASTER} 127.0.0.1 {primary} {QUORUM}",
                f"sentinel auth-pass {MASTER} {self.password}",
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {MASTER} 1",
            ],
        )
        argv = ["redis-server", str(conf), "--sentinel"]
        child = processes.spawn(f"sentinel-{port}", argv, env=_ENV, log_dir=self.root / "logs")
        self.children[port] = child
        processes.await_ready(child, lambda: self.sentinel(port).ping(), timeout=20)

    # -- clients

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, socket_timeout=2, socket_connect_timeout=2)

    def sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(
            port=port, password=self.sentinel_password, socket_timeout=2, socket_connect_timeout=2
        )

    def _linked(self, replica: int) -> bool:
        with self.node(replica) as client:
            return client.info("replication").get("master_link_status") == "up"

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            with self.sentinel(port) as client:
                state = client.sentinel_master(MASTER)
            if state["num-other-sentinels"] != len(self.sentinel_ports) - 1 or state["num-slaves"] < 1:
                return False
        return True

    def master_port(self) -> int | None:
        """The master's port as a majority of the reachable sentinels name it."""
        named: list[int] = []
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.RedisError), self.sentinel(port) as client:
                address = client.sentinel_get_master_addr_by_name(MASTER)
                if address:
                    named.append(int(address[1]))
        best = max(set(named), key=named.count, default=None)
        return best if best is not None and named.count(best) >= QUORUM else None

    # -- the platform's view

    @property
    def url(self) -> str:
        """``MWAP_REDIS_URL``: the master's password on the first sentinel URL only (kombu's form)."""
        first, *rest = self.sentinel_ports
        return ";".join(
            [f"sentinel://:{self.password}@127.0.0.1:{first}/0"]
            + [f"sentinel://127.0.0.1:{port}" for port in rest]
        )

    def env(self) -> dict[str, str]:
        return {
            "MWAP_REDIS_URL": self.url,
            "MWAP_REDIS_SENTINEL_MASTER": MASTER,
            "MWAP_REDIS_SENTINEL_PASSWORD": self.sentinel_password,
        }

    def kill(self, port: int) -> None:
        child = self.children[port]
        child.signal(signal.SIGKILL)
        child.popen.wait(10)

    def close(self) -> None:
        for child in reversed(list(self.children.values())):
            child.stop(timeout=10)


class SentinelStack(Stack):
    """faultkit's ``Stack`` with its Redis behind ``topology``'s sentinels (no lone redis-server)."""

    def __init__(self, root: Path, topology: Topology, overrides: dict[str, str] | None = None) -> None:
        self.topology = topology
        super().__init__(root, overrides={**topology.env(), **(overrides or {})})

    def start_redis(self, *, persist: bool | None = None) -> Child:
        return self.topology.children[self.topology.redis_ports[0]]

    def close(self) -> None:
        self.redis_child = None  # the topology's, stopped by the topology
        super().close()

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis_urls.redis_client(
                self.settings.redis_url,
                self.settings.redis_sentinel_master,
                self.topology.sentinel_password,
                timeout=3,
            )
        return self._redis
