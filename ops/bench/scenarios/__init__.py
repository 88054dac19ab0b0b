"""The scenarios of ``mwap bench``, one module each, each with ``run(run: Run) -> Scenario``."""

import importlib
from types import ModuleType


def load(scenario_id: str) -> ModuleType:
    return importlib.import_module(f"ops.bench.scenarios.{scenario_id}")
