"""HTTP load for `mwap bench`, run as its own process: ``python -m ops.bench.loader SPEC_JSON``.

SPEC: ``url``, ``method``, ``headers``, ``body`` (a string), ``concurrency``, ``seconds``,
``loader`` (``wrk`` or ``python``). Prints one JSON object: ``requests`` (answered with 2xx),
``errors`` (other answers and failed connections), ``seconds``, ``rps``, ``latencyMs``
(``p50``, ``p99``), ``loader``.

wrk is used when asked for and on PATH; otherwise ``concurrency`` threads, each with its own
keep-alive ``http.client`` connection, send requests back to back until ``seconds`` are up.
"""

import contextlib
import http.client
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class Http:
    """One keep-alive connection; reconnects after an error."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None, timeout: float = 60) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self._conn.request(method, path, body=body, headers=self.headers)
            response = self._conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def json(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        body = None if payload is None else json.dumps(payload).encode()
        status, data = self.request(method, path, body)
        return status, json.loads(data) if data else None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def run_python(spec: dict[str, Any]) -> dict[str, Any]:
    parts = urlsplit(spec["url"])
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    base = f"{parts.scheme}://{parts.netloc}"
    body = spec.get("body", "").encode() or None
    concurrency, seconds = int(spec["concurrency"]), float(spec["seconds"])
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    statuses: list[Counter[int]] = [Counter() for _ in range(concurrency)]
    ready = threading.Barrier(concurrency + 1)
    ends = [0.0] * concurrency
    deadline = [0.0]

    def work(n: int) -> None:
        client = Http(base, spec.get("headers"))
        ready.wait()
        while time.perf_counter() < deadline[0]:
            started = time.perf_counter()
            try:
                status, _ = client.request(spec["method"], path, body)
            except (OSError, http.client.HTTPException):
                status = 0
            if 200 <= status < 300:
                latencies[n].append((time.perf_counter() - started) * 1000)
            statuses[n][status] += 1
        ends[n] = time.perf_counter()
        client.close()

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    deadline[0] = start + seconds
    ready.wait()
    for thread in threads:
        thread.join()
    elapsed = max(ends) - start  # requests in flight at the deadline finish and count
    flat = [value for per_thread in latencies for value in per_thread]
    total = sum(statuses, Counter())
    ok = len(flat)
    return {
        "loader": "python",
        "requests": ok,
        "errors": sum(total.values()) - ok,
        "statuses": {str(k): v for k, v in sorted(total.items())},
        "seconds": elapsed,
        "rps": ok / elapsed if elapsed > 0 else 0.0,
        "latencyMs": {
            "p50": percentile(flat, 0.50) if flat else None,
            "p99": percentile(flat, 0.99) if flat else None,
            "mean": statistics.fmean(flat) if flat else None,
        },
    }


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _duration_ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not found:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """The numbers of ``wrk --latency`` output."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if not done:
        raise ValueError(f"cannot read wrk output:\n{output}")
    answered, seconds = int(done.group(1)), _duration_ms(done.group(2) + done.group(3)) / 1000
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = (int(bad.group(1)) if bad else 0) + (
        sum(int(socket_errors.group(i)) for i in range(1, 5)) if socket_errors else 0
    )
    latency = {
        key: _duration_ms(m.group(1)) if (m := re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M)) else None
        for key, pct in (("p50", "50"), ("p99", "99"))
    }
    ok = max(0, answered - (int(bad.group(1)) if bad else 0))
    return {
        "loader": "wrk",
        "requests": ok,
        "errors": errors,
        "seconds": seconds,
        "rps": ok / seconds if seconds > 0 else 0.0,
        "latencyMs": {**latency, "mean": None},
    }


def run_wrk(spec: dict[str, Any]) -> dict[str, Any]:
    lines = [f"wrk.method = {json.dumps(spec['method'])}", f"wrk.body = {json.dumps(spec.get('body', ''))}"]
    headers = {"Content-Type": "application/json", **(spec.get("headers") or {})}
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    concurrency = int(spec["concurrency"])
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "request.lua"
        script.write_text("\n".join(lines) + "\n")
        argv = ["wrk", "-t", str(min(concurrency, 2)), "-c", str(concurrency)]
        argv += ["-d", f"{max(1, round(float(spec['seconds'])))}s", "--timeout", "30s", "--latency"]
        argv += ["-s", str(script), spec["url"]]
        output = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600).stdout
    return parse_wrk(output)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    if spec.get("loader") == "wrk" and shutil.which("wrk"):
        return run_wrk(spec)
    return run_python(spec)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    result = run(json.loads(args[0]))
    with contextlib.suppress(BrokenPipeError):
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
