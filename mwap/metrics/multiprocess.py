"""prometheus-client's multiprocess mode: where processes write, cleaning up, reading them all.

Workers, beat and gunicorn run many processes, so every process that has
``PROMETHEUS_MULTIPROC_DIR`` in its environment *when it imports prometheus_client* writes its
values to files there, and the API's ``GET /metrics`` merges the files of every process on the
host (``HostCollector``). The directory must exist and be wiped before the processes start
(``reset_multiprocess_dir``; ``ops/run`` does both). A process without the variable (a test
runner hosting the API in-process, a one-off script) keeps its values in memory; the collector
then serves those merged with whatever the directory holds.
"""

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client import values as prometheus_values
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir(settings: object) -> Path | None:
    """Where this host's processes write metrics: ``settings.metrics_dir``, else the env variable."""
    configured = getattr(settings, "metrics_dir", None) or os.environ.get(MULTIPROC_ENV)
    return Path(configured) if configured else None


def in_multiprocess_mode() -> bool:
    """True when this process writes its metrics to files (the variable was set at import)."""
    return bool(getattr(prometheus_values.ValueClass, "_multiprocess", False))


def reset_multiprocess_dir(path: Path) -> Path:
    """Create ``path`` and delete metric files a previous run left (they would be summed in)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path


def process_exited(pid: int | None = None) -> None:
    """Drop a finished process's live gauges (breaker, leader) so they stop counting."""
    if in_multiprocess_mode():
        mark_process_dead(pid or os.getpid())


class HostCollector(Collector):
    """The metrics of every process on this host: the multiprocess files, plus this process's
    in-memory registry when it does not write files itself (families merged by name).

    ``this_process=False`` leaves this process's registry out: a reader that is not itself one of
    the metered processes (``mwap metrics serve``) would add its own zero-valued families, some
    repeating a series the files already carry, and its process metrics under the pod's name."""

    def __init__(self, path: Path | None, *, this_process: bool = True) -> None:
        self.path = path
        self.this_process = this_process

    def collect(self) -> Iterator[Metric]:
        sources: list[Iterable[Metric]] = []
        if self.path is not None and self.path.is_dir():
            sources.append(MultiProcessCollector(None, path=str(self.path)).collect())
        if self.this_process and not in_multiprocess_mode():
            sources.append(REGISTRY.collect())
        families: dict[str, Metric] = {}
        for source in sources:
            for family in source:
                if family.name in families:
                    families[family.name].samples.extend(family.samples)
                else:
                    families[family.name] = family
        yield from families.values()
