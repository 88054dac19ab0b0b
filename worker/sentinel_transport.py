"""kombu's Sentinel transport, made to survive the loss of its master.

When the master dies, Celery closes the broker connection and then the channel; closing the
channel restores unacknowledged messages, which needs a fresh pool, which kombu's
``SentinelChannel`` builds from the connection's parameters: gone by then, so an ``AttributeError``
escapes kombu's ``ignore_errors`` and ends the worker ("Unrecoverable error", seen in
tests/faults/test_sentinel_failover.py). Here that case is the connection error it is: the worker
reconnects to the promoted master, and the messages stay in Redis's unacked index, restored
after the visibility timeout (the reconciler resends their jobs long before).
"""

from typing import Any

import kombu.transport
from kombu.transport import redis as kombu_redis
from redis import exceptions as redis_exceptions

ALIAS = "sentinel"


class SentinelChannel(kombu_redis.SentinelChannel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise redis_exceptions.ConnectionError("broker connection already closed")
        return super()._connparams(asynchronous)  # type: ignore[misc]  # kombu's stubs omit it


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def install() -> None:
    """Make ``sentinel://`` broker URLs use this transport in this process."""
    kombu.transport.TRANSPORT_ALIASES[ALIAS] = f"{__name__}:SentinelTransport"
    # kombu caches each alias's class on first use (a control client may have resolved it already).
    cache: dict[str | None, object] = getattr(kombu.transport, "_transport_cache", {})
    cache.pop(ALIAS, None)
