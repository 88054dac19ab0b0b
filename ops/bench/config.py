"""The sizes of a bench run: ``--quick`` (a smoke run, about four minutes) or the full run."""

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ops.bench.harness import PLATFORM_DB, Harness
from ops.bench.meter import Meter


@dataclass(frozen=True, slots=True)
class Config:
    quick: bool
    rounds: int
    loader: str  # "wrk" or "python"
    standin: str  # "stock" (ops.mongo_server) or "fast" (ops.bench.fast_standin); unused with MWAP_MONGO_URL
    http_seconds: float  # per load of one endpoint
    e2e_jobs: int
    latency_samples: int
    step_jobs: int  # jobs of the step-by-step count (enqueue, run, read) per side
    sync_integrations: int
    sync_files: int
    dispatch_sizes: tuple[int, ...]
    memory_marks: tuple[int, int]  # RSS read after this many jobs, then after that many
    memory_chunk: int
    http_concurrency: int = 8  # the platform API's 2 gunicorn workers x 4 threads
    batch_concurrency: int = 4  # a batch is 100 jobs of work: fewer connections saturate it
    batch_size: int = 100  # the API's default MWAP_API_BATCH_MAX
    # Posting and reading threads of a burst: no more readers than one API process may hold waiting
    # (MWAP_JOB_WAITERS_PER_PROCESS, 3), so that however the connections spread over the API's
    # processes every read can wait instead of answering at once.
    e2e_concurrency: int = 3
    wait_seconds: int = 5  # GET /v1/jobs/{id}?wait=5
    worker_concurrency: int = 2  # the platform's default worker: prefork, 2 processes
    # Small pages of few files: many provider calls for little writing, so that the provider's
    # latency, not the stand-in's O(n) upserts, sets the pace.
    sync_page_size: int = 2
    sync_concurrency: int = 8
    provider_latency_ms: int = 100
    dispatch_due: float = 0.1
    # Every command of the stand-in holds its one event loop (a ping waits for it): a batch of 1,000
    # is a second or two there, far inside pymongo's heartbeat and socket timeouts.
    dispatch_insert_batch: int = 1000
    # The capacity simulation: integrations, the sync interval (and dispatcher tick), its length,
    # per-job cost probes per round, files per fake account (pages of sync_page_size).
    # Full size: one tick within the run (the stand-in answers the next tick's lease re-check of
    # ~9,000 queued jobs, `_id: {$in: [...]}` per chunk, by scanning the ledger: minutes of a
    # blocked server where MongoDB reads an index); the quick run (800) has three ticks.
    capacity_integrations: int = 10_000
    capacity_interval: float = 120.0
    capacity_seconds: float = 110.0
    capacity_probe_jobs: int = 64  # 8 waves of the sync worker's 8 slots: the last wave's tail is small
    capacity_files: int = 4
    # The console's pages over a ledger of this many jobs, of this many tenants (scenario 7).
    console_jobs: int = 100_000
    console_tenants: int = 200

    @classmethod
    def for_run(cls, *, quick: bool, rounds: int | None, loader: str, standin: str = "stock") -> "Config":
        if quick:
            return cls(
                quick=True,
                rounds=rounds or 3,
                loader=loader,
                standin=standin,
                http_seconds=0.75,
                e2e_jobs=60,
                latency_samples=10,
                step_jobs=20,
                sync_integrations=8,
                sync_files=6,
                dispatch_sizes=(1_000,),
                memory_marks=(200, 1_000),
                memory_chunk=200,
                capacity_integrations=800,
                capacity_interval=15.0,
                capacity_seconds=40.0,
                capacity_probe_jobs=32,
                console_jobs=5_000,
                console_tenants=50,
            )
        return cls(
            quick=False,
            rounds=rounds or 5,
            loader=loader,
            standin=standin,
            http_seconds=4.0,
            e2e_jobs=500,
            latency_samples=60,
            step_jobs=200,
            sync_integrations=32,
            sync_files=10,
            dispatch_sizes=(1_000, 10_000, 100_000),
            memory_marks=(1_000, 10_000),
            memory_chunk=500,
        )


@dataclass
class Run:
    """What every scenario gets: the processes, the sizes, and a progress line to stderr."""

    harness: Harness
    config: Config
    started: float = field(default_factory=time.monotonic)
    external_mongo: bool = False
    _meter: Meter | None = None

    @property
    def meter(self) -> Meter:
        """Measurement windows on the shared Redis and the platform's /metrics (once both are up)."""
        if self._meter is None:
            self._meter = Meter(self.harness.redis_url(PLATFORM_DB), self.harness.api_url)
        return self._meter

    def close(self) -> None:
        if self._meter is not None:
            self._meter.close()

    def log(self, message: str, **values: Any) -> None:
        suffix = "".join(f" {k}={v}" for k, v in values.items())
        print(
            f"[bench {time.monotonic() - self.started:6.1f}s] {message}{suffix}", file=sys.stderr, flush=True
        )
