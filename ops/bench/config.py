"""The sizes of a bench run: ``--quick`` (a smoke run, under two minutes) or the full run."""

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ops.bench.harness import Harness


@dataclass(frozen=True, slots=True)
class Config:
    quick: bool
    rounds: int
    loader: str  # "wrk" or "python"
    standin: str  # "stock" (ops.mongo_server) or "fast" (ops.bench.fast_standin); unused with MWAP_MONGO_URL
    http_seconds: float  # per load of one endpoint
    e2e_jobs: int
    latency_samples: int
    sync_integrations: int
    sync_files: int
    dispatch_sizes: tuple[int, ...]
    memory_marks: tuple[int, int]  # RSS read after this many jobs, then after that many
    memory_chunk: int
    http_concurrency: int = 8  # the platform API's 2 gunicorn workers x 4 threads
    batch_concurrency: int = 4  # a batch is 100 jobs of work: fewer connections saturate it
    batch_size: int = 100  # the API's default MWAP_API_BATCH_MAX
    e2e_concurrency: int = 4
    poll_interval: float = 0.002  # between two GET /v1/jobs/{id} of one job timed alone
    burst_poll_interval: float = 0.01  # the same in a burst, where reads compete with the work
    worker_concurrency: int = 2
    # Small pages of few files: many provider calls for little writing, so that the provider's
    # latency, not the stand-in's O(n) upserts, sets the pace.
    sync_page_size: int = 2
    sync_concurrency: int = 8
    provider_latency_ms: int = 100
    dispatch_due: float = 0.1
    dispatch_insert_batch: int = 5000

    @classmethod
    def for_run(cls, *, quick: bool, rounds: int | None, loader: str, standin: str = "stock") -> "Config":
        if quick:
            return cls(
                quick=True,
                rounds=rounds or 3,
                loader=loader,
                standin=standin,
                http_seconds=0.75,
                e2e_jobs=100,
                latency_samples=15,
                sync_integrations=8,
                sync_files=6,
                dispatch_sizes=(1_000,),
                memory_marks=(200, 1_000),
                memory_chunk=200,
            )
        return cls(
            quick=False,
            rounds=rounds or 5,
            loader=loader,
            standin=standin,
            http_seconds=4.0,
            e2e_jobs=500,
            latency_samples=60,
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

    @property
    def basis(self) -> str:
        """Which platform number a target is judged on: raw against MongoDB, own on the stand-in."""
        return "raw" if self.external_mongo else "own"

    def log(self, message: str, **values: Any) -> None:
        suffix = "".join(f" {k}={v}" for k, v in values.items())
        print(
            f"[bench {time.monotonic() - self.started:6.1f}s] {message}{suffix}", file=sys.stderr, flush=True
        )
