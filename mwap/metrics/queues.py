"""Broker queue depth and oldest-message age, read from Redis (``mwap.broker``) at scrape time."""

import time
from collections.abc import Iterable, Iterator

import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mwap import broker
from mwap.connections import redis_client


class QueueCollector(Collector):
    """``mwap_broker_up``, ``mwap_queue_depth`` and ``mwap_queue_oldest_message_age_seconds``."""

    def __init__(self, settings: object, queues: Iterable[str] | None = None) -> None:
        self.settings = settings
        self.queues = list(queues or broker.all_queues())

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("mwap_broker_up", "1 when the broker answered the queue metrics scrape")
        try:
            stats = broker.queue_stats(redis_client(self.settings), self.queues)  # type: ignore[arg-type]
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        depth = GaugeMetricFamily(
            "mwap_queue_depth",
            "Messages waiting in a broker queue (not yet taken by a worker)",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "mwap_queue_oldest_message_age_seconds",
            "Age of the oldest waiting message in a broker queue (0 when empty)",
            labels=["queue"],
        )
        now = time.time()
        for queue, stat in stats.items():
            depth.add_metric([queue], stat.depth)
            oldest_age = stat.oldest_age(now)
            if oldest_age is not None:  # unknown when the oldest message carries no publish time
                age.add_metric([queue], oldest_age)
        yield from (up, depth, age)
