"""The model's inputs, read from a ``mwap bench`` results file (by default the published
``ops/bench/results/latest.json``): medians of measured columns only, each named with its source.

- sync: scenario 3 (``io_sync``), the thread pool as deployed: wall time x concurrency ÷ syncs,
  worker CPU, Redis and MongoDB commands per sync, provider calls per sync and their latency;
- health check and token refresh: scenario 6 (``capacity``), phase 1;
- an API request: scenario 2 (``end_to_end``), a trivial job posted and read back once; the
  time it holds a worker slot from scenario 5 (``memory``: jobs/s through one pool process).
"""

import json
import statistics
from pathlib import Path
from typing import Any

from ops.capacity.model import ApiCost, Costs, JobCost

PUBLISHED = Path(__file__).resolve().parents[1] / "bench" / "results" / "latest.json"
SIDE = "platform"


class MissingCost(LookupError):
    """The results file does not measure a cost the model needs."""


def _index(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {scenario["id"]: scenario for scenario in results.get("scenarios", [])}


def _median(scenarios: dict[str, dict[str, Any]], scenario_id: str, metric_id: str) -> float:
    scenario = scenarios.get(scenario_id)
    metric = next((m for m in (scenario or {}).get("metrics", []) if m["id"] == metric_id), None)
    values = (metric or {}).get("values", {}).get(SIDE)
    if not values:
        raise MissingCost(
            f"{scenario_id}/{metric_id} is not measured in these results: run `mwap bench` "
            "(the published ones: `mwap bench --publish`)"
        )
    return float(statistics.median(values))


def _extra(scenarios: dict[str, dict[str, Any]], scenario_id: str, key: str) -> Any:
    try:
        return scenarios[scenario_id]["extra"][key]
    except KeyError:
        raise MissingCost(f"{scenario_id}: no {key!r} in these results: run `mwap bench`") from None


def costs_from_results(results: dict[str, Any]) -> Costs:
    """The model's costs from a results dict (``mwap bench --out``'s JSON)."""
    s = _index(results)
    config = results.get("meta", {}).get("config", {})
    io_latency = float(_extra(s, "io_sync", "latencyMs"))
    sync = JobCost(
        slot_seconds=_median(s, "io_sync", "threads.seconds")
        * float(_extra(s, "io_sync", "concurrency"))
        / float(_extra(s, "io_sync", "integrations")),
        cpu_ms=_median(s, "io_sync", "threads.cpu.worker"),
        redis=_median(s, "io_sync", "threads.redis"),
        mongo=_median(s, "io_sync", "threads.mongo"),
        calls=float(_extra(s, "io_sync", "callsPerSync")),
        latency_ms=io_latency,
    )
    cap_latency = float(config.get("provider_latency_ms", io_latency))

    def capacity_job(kind: str) -> JobCost:
        return JobCost(
            slot_seconds=_median(s, "capacity", f"costs.{kind}.slot_seconds"),
            cpu_ms=_median(s, "capacity", f"costs.{kind}.cpu.worker"),
            redis=_median(s, "capacity", f"costs.{kind}.redis"),
            mongo=_median(s, "capacity", f"costs.{kind}.mongo"),
            calls=1.0,
            latency_ms=cap_latency,
        )

    api = ApiCost(
        cpu_ms=_median(s, "end_to_end", "burst.cpu.api"),
        redis=_median(s, "end_to_end", "burst.redis"),
        mongo=_median(s, "end_to_end", "burst.mongo"),
        worker_cpu_ms=_median(s, "end_to_end", "burst.cpu.worker"),
        worker_slot_seconds=1 / _median(s, "memory", "rate"),
    )
    return Costs(
        sync=sync,
        health=capacity_job("health"),
        token=capacity_job("token"),
        api=api,
        sync_files=int(config.get("sync_files", 10)),
        sync_page_size=int(config.get("sync_page_size", 2)),
        sources={
            "sync": "io_sync (threads x8)",
            "health": "capacity phase 1",
            "token": "capacity phase 1",
            "api": "end_to_end burst; memory rate",
            "measured": str(results.get("meta", {}).get("startedAt", "")),
        },
    )


def load_costs(path: Path = PUBLISHED) -> Costs:
    """The costs a results file measured (the published run by default)."""
    return costs_from_results(json.loads(path.read_text()))
