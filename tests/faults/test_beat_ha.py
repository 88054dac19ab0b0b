"""Row 5: three, then two beats: one leader; each tick dispatched once; takeover when the leader dies.

(Moved here from tests/test_beat.py and extended, on a private Redis.) Three beats run 10 ticks,
the leader is SIGKILLed, a standby takes over; the two left run 10 ticks, the new leader is
SIGKILLed, and the last one takes over. Each takeover must come within two lease periods.
"""

import itertools
import json
import signal
from datetime import datetime
from pathlib import Path

from faultkit import Row, Stack, record, stopwatch

from ops.processes import Child, wait_for

INTERVAL = 1.0
LOCK_TIMEOUT = 5  # MWAP_BEAT_LOCK_TIMEOUT's minimum
TAKEOVER_BOUND = 2 * LOCK_TIMEOUT + INTERVAL
TICKS = 10
TASK = "dispatch.integration.health_check"


def ticks(stack: Stack) -> list[datetime]:
    """The expiry stamp of each dispatch message sent: one per tick, interval apart.

    No worker consumes this stack's queues, so the ``maintenance`` list keeps every one.
    """
    stamps = []
    for raw in stack.redis.lrange("maintenance", 0, -1):
        headers = json.loads(raw)["headers"]
        if headers["task"] == TASK:
            stamps.append(datetime.fromisoformat(headers["expires"]))
    return sorted(stamps)


def doubles(stamps: list[datetime]) -> list[float]:
    """Gaps between consecutive dispatches too short to be two ticks: one tick sent twice."""
    return [gap for a, b in itertools.pairwise(stamps) if (gap := (b - a).total_seconds()) <= INTERVAL / 2]


def leader_of(stack: Stack, beats: list[Child]) -> Child:
    """The one beat that logged taking the leader lock (exactly one may have)."""
    leaders = [beat for beat in beats if "beat: Acquired lock" in stack.tail(beat.name, 1000)]
    assert len(leaders) == 1, [beat.name for beat in leaders]
    return leaders[0]


def kill_leader_and_time_takeover(stack: Stack, beats: list[Child]) -> tuple[list[Child], float]:
    leader = leader_of(stack, beats)
    leader.signal(signal.SIGKILL)
    leader.popen.wait(10)
    seen = len(ticks(stack))
    with stopwatch() as since_kill:
        wait_for(lambda: len(ticks(stack)) > seen, timeout=TAKEOVER_BOUND, what="takeover")
        takeover = since_kill()
    return [beat for beat in beats if beat is not leader], takeover


def test_beats_dispatch_each_tick_once_and_survive_their_leaders(tmp_path: Path) -> None:
    overrides = {
        "MWAP_HEALTH_CHECK_INTERVAL": str(int(INTERVAL)),
        "MWAP_BEAT_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
    }
    with Stack(tmp_path, overrides=overrides) as stack, stopwatch() as elapsed:
        beats = [stack.beat("beat-0")]
        wait_for(lambda: len(ticks(stack)) >= 2, timeout=30, what="leader ticking")
        beats += [stack.beat(f"beat-{n}", leader=False) for n in (1, 2)]
        for standby in beats[1:]:  # started, and blocked on the leader lock
            wait_for(
                lambda s=standby: "beat: Starting" in stack.tail(s.name, 400), timeout=60, what=standby.name
            )

        takeovers = []
        for running in (3, 2):
            seen = len(ticks(stack))
            wait_for(
                lambda seen=seen: len(ticks(stack)) >= seen + TICKS,
                timeout=TICKS * INTERVAL + 20,
                what=f"{TICKS} ticks with {running} beats",
            )
            assert doubles(ticks(stack)) == []
            with stopwatch() as phase:
                beats, takeover = kill_leader_and_time_takeover(stack, beats)
            takeovers.append(takeover)
            assert all(beat.alive() for beat in beats)
            stamps = ticks(stack)
            record(
                Row(
                    f"{running} beats, leader SIGKILLed",
                    trials=running,
                    jobs=len(stamps),
                    duplicated=len(doubles(stamps)),
                    seconds=phase() + TICKS * INTERVAL,
                    note=f"{TICKS} ticks with {running} up, each once; takeover {takeover:.1f}s after the "
                    f"kill (bound {TAKEOVER_BOUND:.0f}s = two lease periods + a tick)",
                )
            )
        seen = len(ticks(stack))
        wait_for(lambda: len(ticks(stack)) >= seen + 3, timeout=30, what="ticks from the last beat")
        assert doubles(ticks(stack)) == []
        assert len(takeovers) == 2
        assert elapsed() < 120
