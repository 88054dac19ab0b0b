"""Hostile input to the secret scrubber (``mwap.redact``): text built to make its patterns backtrack.

The scrubber runs on text a client controls with no key at all (request paths logged on a 503,
provider error bodies, Sentry events). Its old ``name=value`` pattern backtracked: ``"/" +
"token" * 2000`` took seconds per pass, enough to stall a gunicorn worker past its heartbeat. Each
test shows the old pattern's cost growing faster than its input, then the current one bounded: 100 KB
of each hostile shape costs a small multiple of 100 KB of plain log text (ratios only, no absolute
timings), a longer text is cut before scrubbing, and a secret next to the hostile run still goes.
"""

import re
import secrets
import time
from collections.abc import Callable

import pytest

from mwap import redact

SIZE = 100_000
# Hostile text may cost this many times plain text of the same length. Linear patterns measure about
# 1-8x here (the hostile shapes put a candidate start at every few characters, plain text has few);
# the old patterns were millions of times slower at this size (they could not finish it in a test
# run). Plain text scrubs at well over 10 MB/s, so this bound keeps 100 KB under 50 ms.
BOUND = 12.0

# The name=value pattern as it was: a name is any run of word characters containing a secret word,
# so every start in a long run re-scans the run both ways.
OLD_ASSIGNMENT = re.compile(
    r"""(?ix)
    (?P<name>[\w.-]*(?:token|secret|passw(?:or)?d|api[_-]?key|apikey|authorization|signature|cookie|credential)[\w.-]*)
    (?P<sep>['"]?\s*[:=]\s*['"]?)
    (?P<scheme>(?:bearer|basic)\s+)?
    (?P<value>[^\s'"&,;}\])]+)
    """
)


def fill(unit: str, size: int = SIZE) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def plain(size: int = SIZE) -> str:
    """Log text with nothing to hide, as the API and workers write it."""
    line = (
        "GET /v1/integrations/65f0c2a4e1b2c3d4e5f60718/files answered 200 in 12 ms; provider dropbox "
        "listed 40 entries for project 65f0c2a4e1b2c3d4e5f60719, cursor unchanged, next run at 10:15. "
    )
    return fill(line, size)


# Each shape aims at one pattern: runs of a secret word, schemes, separators, base64url runs,
# URL-credential look-alikes, key prefixes.
SHAPES = {
    "path of tokens": "/" + fill("token", SIZE - 1),
    "bearer runs": fill("bearer "),
    "Bearer and a short value": fill("Bearer x"),
    "equals runs": fill("="),
    "token-space runs": fill("token "),
    "token then spaces": "token" + " " * (SIZE - 5),
    "quoted names": fill("'token':"),
    "api_key runs": fill("api_key"),
    "secret-dash runs": fill("secret-"),
    "password runs": fill("passwordd"),
    "url credentials, one run": "http://" + fill("a:", SIZE - 7),
    "url credentials, many": fill("http://a:"),
    "schemes": fill("x://"),
    "dotted runs": fill("a."),
    "jwt heads": fill("eyJ-"),
    "jwt segments": fill("eyJaaaaa."),
    "key prefixes": fill("mwap_-"),
    "key prefix, lower case": "mwap_" + fill("a_", SIZE - 5),
    "basic runs": fill("Basic "),
    "google tokens": fill("ya29."),
    "key ids": fill("key id "),
    "host-like runs": fill("a.b-"),
}


def best_of(fn: Callable[[str], object], text: str, repeat: int = 5) -> float:
    """The fastest of ``repeat`` runs: the least disturbed by whatever else the machine does."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - started)
    return best


def ratio(fn: Callable[[str], object], hostile: str, baseline: str, repeat: int = 7) -> float:
    """Cost of ``hostile`` over cost of ``baseline``, measured in turns so that a busy machine
    slows both alike; the fastest run of each."""
    best_hostile = best_baseline = float("inf")
    for _ in range(repeat):
        best_hostile = min(best_hostile, best_of(fn, hostile, repeat=1))
        best_baseline = min(best_baseline, best_of(fn, baseline, repeat=1))
    return best_hostile / best_baseline


def test_the_old_pattern_grew_faster_than_its_input() -> None:
    """In spirit, the attack: twice the input took several times as long (cubic: ~8x)."""
    small, large = "/" + "token" * 40, "/" + "token" * 80
    assert ratio(lambda text: OLD_ASSIGNMENT.sub("", text), large, small, repeat=3) > 3.5
    # The same doubling costs the current scrubber about twice as much, at 250 times the size.
    assert ratio(redact.scrub, "/" + "token" * 20_000, "/" + "token" * 10_000) < 3.0


@pytest.mark.parametrize("shape", SHAPES)
def test_hostile_text_costs_a_small_multiple_of_plain_text(shape: str) -> None:
    hostile = SHAPES[shape]
    assert len(hostile) == SIZE
    # ``scrub`` is the whole pattern pass without the length cap: the patterns alone are linear.
    measured = ratio(redact.scrub, hostile, plain())
    assert measured < BOUND, f"{shape}: {measured:.1f}x plain text"
    # What a tenant may read of a job error goes through more patterns; they are linear too.
    measured = ratio(redact.public_text, hostile, plain())
    assert measured < BOUND, f"{shape} (public_text): {measured:.1f}x plain text"


@pytest.mark.parametrize("shape", ["path of tokens", "url credentials, many", "jwt heads"])
def test_a_secret_next_to_the_hostile_run_is_still_hidden(shape: str) -> None:
    key = "mwap_" + secrets.token_urlsafe(32)
    opaque = secrets.token_urlsafe(24)
    text = f"{SHAPES[shape][:20_000]} access_token={opaque} sent {key} mongodb://u:{opaque}@h/x"
    scrubbed = redact.redact_text(text)
    assert key not in scrubbed
    assert opaque not in scrubbed
    assert "access_token=[Filtered]" in scrubbed


def test_text_beyond_the_cap_is_cut_before_scrubbing() -> None:
    """A megabyte of hostile text costs what the cap allows, keeps head and tail, and says so."""
    head_key, tail_key = ("mwap_" + secrets.token_urlsafe(32) for _ in range(2))
    huge = head_key + " " + fill("token", 1_000_000) + " " + tail_key
    scrubbed = redact.redact_text(huge)
    cut = len(huge) - redact.MAX_SCRUB_CHARS
    assert redact.TRUNCATED.format(cut) in scrubbed
    assert len(scrubbed) <= redact.MAX_SCRUB_CHARS + len(redact.TRUNCATED.format(cut))
    assert head_key not in scrubbed
    assert tail_key not in scrubbed
    assert scrubbed.startswith(redact.FILTERED)
    assert scrubbed.endswith(redact.FILTERED)
    # Ten times the input of the cap, and it costs about what the capped text costs.
    capped = fill("token", redact.MAX_SCRUB_CHARS)
    assert best_of(redact.redact_text, huge) / best_of(redact.scrub, capped) < 3.0
    # Nested values (log extras, Sentry events) are cut string by string.
    assert len(redact.redact({"a": [huge]})["a"][0]) == len(scrubbed)
