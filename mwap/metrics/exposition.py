"""The ``/metrics`` body: every process on this host, plus the broker queues."""

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.exposition import generate_latest

from mwap.metrics.multiprocess import HostCollector, multiprocess_dir
from mwap.metrics.queues import QueueCollector


def render(settings: object, *, queues: Iterable[str] | None = None) -> tuple[bytes, str]:
    """The ``/metrics`` body and content type: every process on this host plus the queues."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HostCollector(multiprocess_dir(settings)))
    registry.register(QueueCollector(settings, queues))
    return generate_latest(registry), CONTENT_TYPE_LATEST
