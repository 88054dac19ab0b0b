"""The ``/metrics`` body: every process on this host, plus the broker queues; the metrics token check.

The API's ``GET /metrics`` serves ``render``: its host's processes and the queue depths. On
Kubernetes every pod has its own metrics directory, so worker and beat pods serve theirs with
``mwap metrics serve`` (``pod_registry``): their processes only, no queue metrics (the API's pods
export those; every worker pod repeating them would only multiply the series).
"""

import hmac
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.exposition import generate_latest
from pydantic import SecretStr

from mwap.metrics.multiprocess import HostCollector, multiprocess_dir
from mwap.metrics.queues import QueueCollector


def render(settings: object, *, queues: Iterable[str] | None = None) -> tuple[bytes, str]:
    """The ``/metrics`` body and content type: every process on this host plus the queues."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HostCollector(multiprocess_dir(settings)))
    registry.register(QueueCollector(settings, queues))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def pod_registry(path: Path) -> CollectorRegistry:
    """What a worker or beat pod exports: the multiprocess files under ``path``, nothing else (no
    queue metrics, not the reading process's own registry)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HostCollector(path, this_process=False))
    return registry


def authorized(authorization: str, token: SecretStr | None) -> bool:
    """Whether an ``Authorization`` header value may read metrics: always without a token set,
    else only ``Bearer <token>`` (compared in constant time)."""
    if token is None:
        return True
    scheme, _, given = authorization.partition(" ")
    expected = token.get_secret_value()
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())
