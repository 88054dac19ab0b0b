"""Which worker processes are alive: a heartbeat key in Redis per worker run.

A worker's main process (``worker/heartbeat.py``) gets a *run id* at start, random, so a worker
restarted under the same node name (``worker@%h`` in a container restarted in place) is a new run,
and every job it starts records that run id in the ledger (``ledger.start``: ``workerRun``). While
the process lives, a thread of its own refreshes two things in one transaction:

- ``mwap:worker:alive:<run>`` (value: the node name), expiring ``worker_heartbeat_ttl`` seconds
  after the last refresh: present means alive. Redis's own clock expires it, so no two hosts'
  clocks are ever compared.
- ``mwap:workers``, the set of runs that ever beat: the dead-worker check (tasks/dead_workers.py)
  reads it and the runs' keys, two round trips whatever the number of jobs, and looks at the ledger
  only for a run whose key is gone. A run leaves the set once its jobs have been handed back.

A run is registered by its first beat, written before the worker consumes anything: a job can
only name a run that is in the set with a live key, or one that is dead.
"""

import secrets

from redis import Redis

RUNS_KEY = "mwap:workers"
ALIVE_PREFIX = "mwap:worker:alive:"


def new_run_id() -> str:
    """A worker run's id: random, unique across restarts of the same node name."""
    return secrets.token_hex(8)


def alive_key(run: str) -> str:
    return f"{ALIVE_PREFIX}{run}"


def beat(redis: Redis, run: str, node: str, *, ttl: int) -> None:
    """Say that ``run`` (worker ``node``) is alive for ``ttl`` more seconds, and registered."""
    pipe = redis.pipeline(transaction=True)  # never a registered run without its key, nor the reverse
    pipe.set(alive_key(run), node, ex=ttl)
    pipe.sadd(RUNS_KEY, run)
    pipe.execute()


def stop(redis: Redis, run: str) -> None:
    """A run ending: its key goes now, and it stays registered, so the next check hands back at once
    whatever the ledger still shows it running (an outcome whose write failed)."""
    redis.delete(alive_key(run))


def dead_runs(redis: Redis, *, ttl: int) -> list[str]:
    """Registered runs whose heartbeat key is gone: their worker stopped beating (died).

    None while Redis has been up for less than ``ttl`` seconds: a restarted Redis may have lost or
    expired keys that live workers, reconnecting, have not written again yet."""
    runs = sorted(_text(run) for run in redis.smembers(RUNS_KEY))
    if not runs:
        return []
    pipe = redis.pipeline(transaction=False)
    for run in runs:
        pipe.exists(alive_key(run))
    dead = [run for run, alive in zip(runs, pipe.execute(), strict=True) if not alive]
    if dead and int(redis.info("server").get("uptime_in_seconds", 0)) < ttl:
        return []
    return dead


def forget(redis: Redis, runs: list[str]) -> None:
    """Unregister runs whose jobs were handed back; a run that beats again registers itself again."""
    if runs:
        redis.srem(RUNS_KEY, *runs)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


BEAT_LEADER_KEY = "mwap:beat:leader"


def beat_leader(redis: Redis, identity: str, *, ttl: int) -> None:
    """The beat leader says who it is (``host:pid``) for ``ttl`` seconds (the operators' console)."""
    redis.set(BEAT_LEADER_KEY, identity, ex=ttl)
