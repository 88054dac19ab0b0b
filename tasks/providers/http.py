"""Transport pieces shared by the provider clients: the per-process session and retry timing.

Retry split, decided after checking urllib3's ``Retry``:

* urllib3 ``Retry`` (mounted through requests' ``HTTPAdapter``) handles *connect* failures only.
  Nothing reached the provider, so retrying is safe for every method and costs no quota.
* Everything that depends on a response (429/503 ``Retry-After``, other 5xx, read timeouts, 401,
  Drive's 403 rate-limit reasons) is handled by the clients' own thin loop (``transport.py``),
  because urllib3 would (a) sleep for any ``Retry-After`` however long, which must never happen
  in a worker slot, (b) hide each retried attempt from ``request_count`` (``usage.totalRequests``
  must see every call), and (c) cannot read a JSON body to tell a Drive rate limit from a
  permission error.

Sessions are kept per process *and* per outbound policy: their adapter is ``GuardedAdapter``
(outbound.py), which vets every address a connection goes to. ``trust_env`` is off, so neither
proxy variables nor ``~/.netrc`` credentials are applied to provider calls.
"""

import email.utils
import os
import random
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from urllib3.util.retry import Retry

from tasks.providers.outbound import GuardedAdapter, OutboundPolicy

type Timeout = tuple[float, float]

DEFAULT_TIMEOUT: Timeout = (3.05, 20.0)
POOL_CONNECTIONS = 8  # distinct hosts kept pooled: three providers and their token endpoints
POOL_MAXSIZE = 16  # sockets per host; a prefork child rarely uses more than one at a time

_sessions: dict[tuple[int, OutboundPolicy], requests.Session] = {}
_sessions_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a client retries one call before giving the decision back to the job."""

    max_attempts: int = 4  # first try plus three retries
    backoff_base: float = 0.5  # seconds; doubled per attempt, then jittered
    backoff_cap: float = 30.0
    # Longest wait slept inside the client; anything longer raises RateLimited so the job
    # re-enqueues itself with that countdown instead of holding a worker slot.
    max_inline_wait: float = 5.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter for the given 1-based attempt."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        # "Equal jitter": never less than half the step, so retries still spread out.
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means the zone was "-0000"
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _new_session(policy: OutboundPolicy) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies from the environment, no ~/.netrc credentials
    connect_only = Retry(
        total=None,
        connect=2,
        read=False,  # re-raise read errors at once: the client loop decides (see module doc)
        status=0,
        other=0,
        redirect=False,
        backoff_factor=0.2,
        backoff_jitter=0.2,
        raise_on_status=False,
    )
    adapter = GuardedAdapter(
        policy, pool_connections=POOL_CONNECTIONS, pool_maxsize=POOL_MAXSIZE, max_retries=connect_only
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def process_session(policy: OutboundPolicy = OutboundPolicy.STRICT) -> requests.Session:
    """The pooled session of the current process for ``policy``, created on first use after a fork."""
    pid = os.getpid()
    session = _sessions.get((pid, policy))
    if session is not None:
        return session
    with _sessions_lock:
        session = _sessions.get((pid, policy))
        if session is None:
            # A forked child inherits the parent's entries; drop them without closing them, since
            # their sockets are shared with the parent and closing them would break its pools.
            for key in [key for key in _sessions if key[0] != pid]:
                del _sessions[key]
            session = _sessions[pid, policy] = _new_session(policy)
        return session
