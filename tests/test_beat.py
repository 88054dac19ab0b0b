"""Beat high availability: several beats, one leader; each tick dispatched once; takeover on death."""

import itertools
import json
import signal
from datetime import datetime
from pathlib import Path

import pytest
import redis

from ops import processes
from ops.processes import wait_for

INTERVAL = 1.0
LOCK_TIMEOUT = 5
TASK = "dispatch.integration.health_check"


@pytest.fixture
def beat_env(stack_env: dict[str, str]) -> dict[str, str]:
    """Beats on Redis db 8, where no worker consumes: the queue keeps every dispatch they send."""
    url = stack_env["MWAP_REDIS_URL"].rsplit("/", 1)[0] + "/8"
    redis.Redis.from_url(url).flushdb()
    return {
        **stack_env,
        "MWAP_REDIS_URL": url,
        "MWAP_HEALTH_CHECK_INTERVAL": str(int(INTERVAL)),
        "MWAP_BEAT_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
    }


def ticks(url: str) -> list[datetime]:
    """The expiry stamp of each dispatch message sent: one per tick, interval apart."""
    stamps = []
    for raw in redis.Redis.from_url(url).lrange("maintenance", 0, -1):
        headers = json.loads(raw)["headers"]
        if headers["task"] == TASK:
            stamps.append(datetime.fromisoformat(headers["expires"]))
    return sorted(stamps)


def assert_no_doubles(stamps: list[datetime]) -> None:
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    assert min(gaps) > INTERVAL / 2, f"two dispatches of one tick: gaps {gaps}"


def test_three_beats_dispatch_each_tick_once_and_survive_the_leader(
    beat_env: dict[str, str], tmp_path: Path
) -> None:
    url = beat_env["MWAP_REDIS_URL"]
    leader = processes.start_beat(env=beat_env, log_dir=tmp_path, schedule_path=tmp_path / "a", name="beat-a")
    standbys = []
    try:
        wait_for(lambda: len(ticks(url)) >= 2, timeout=30, what="leader ticking")
        standbys = [
            processes.start_beat(env=beat_env, log_dir=tmp_path, schedule_path=tmp_path / n, name=f"beat-{n}")
            for n in ("b", "c")
        ]
        wait_for(lambda: len(ticks(url)) >= 12, timeout=40, what="ten more ticks")
        assert_no_doubles(ticks(url))

        leader.signal(signal.SIGKILL)
        leader.popen.wait(10)
        seen = len(ticks(url))
        # A standby takes the lock once it expires: within two lease periods.
        wait_for(lambda: len(ticks(url)) > seen, timeout=2 * LOCK_TIMEOUT + INTERVAL, what="takeover")
        wait_for(lambda: len(ticks(url)) >= seen + 5, timeout=30, what="ticks after takeover")
        assert_no_doubles(ticks(url))
        assert all(beat.alive() for beat in standbys)
    finally:
        for beat in [leader, *standbys]:
            beat.stop()
