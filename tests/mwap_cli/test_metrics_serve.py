"""``mwap metrics serve``, as a worker or beat pod's sidecar runs it: a real server process reading
the files another real process wrote in multiprocess mode."""

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mwap.metrics import MULTIPROC_ENV
from mwap.settings import ENV_PREFIX, Settings
from mwap_cli.metrics import HEALTH_PATH, METRICS_PATH, EndpointSettings
from ops.processes import Child, await_ready, free_port, spawn

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-of-the-test-0123456789"
SERVE = [sys.executable, "-m", "mwap_cli", "metrics", "serve"]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# A worker process's share: what worker/signals.py records around a job, in multiprocess mode.
WRITER = """
import tasks
from mwap import metrics
tasks.load()
metrics.set_role("worker")
metrics.job_started("system.echo", 0.25)
metrics.job_outcome("system.echo", "succeeded")
metrics.provider_call("dropbox", "ok")
"""


def bare_env(**extra: str) -> dict[str, str]:
    """This environment without any setting or metrics directory: the sidecar gets only the token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX) and k != MULTIPROC_ENV}
    return {**env, **extra}


def write_metrics(directory: Path) -> None:
    subprocess.run(
        [sys.executable, "-c", WRITER],
        env=bare_env(**{MULTIPROC_ENV: str(directory)}),
        cwd=ROOT,
        check=True,
        timeout=60,
    )


def get(url: str, token: str | None = None, method: str = "GET") -> tuple[int, dict[str, str], str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers, method=method)  # noqa: S310 - http://127.0.0.1
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read().decode()


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"series exported twice: {key}"
            samples[key] = sample.value
    return samples


def serve(directory: Path, tmp_path: Path, **env: str) -> tuple[Child, str]:
    port = free_port()
    child = spawn(
        "metrics-serve",
        [*SERVE, "--port", str(port), "--dir", str(directory)],
        env=bare_env(**env),
        log_dir=tmp_path / "logs",
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    await_ready(child, lambda: get(base + HEALTH_PATH)[0] == 200, timeout=30)
    return child, base


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "metrics"
    directory.mkdir()
    write_metrics(directory)
    return directory


@pytest.fixture
def server(metrics_dir: Path, tmp_path: Path) -> Iterator[tuple[Child, str]]:
    child, base = serve(metrics_dir, tmp_path, **{f"{ENV_PREFIX}METRICS_TOKEN": TOKEN})
    yield child, base
    child.stop()


def test_it_serves_the_pods_processes_behind_the_token(server: tuple[Child, str], metrics_dir: Path) -> None:
    child, base = server

    for token in (None, "wrong-token-of-the-same-kind-0123"):
        status, headers, _ = get(base + METRICS_PATH, token)
        assert status == 401
        assert headers["WWW-Authenticate"] == 'Bearer realm="metrics"'

    status, headers, body = get(base + METRICS_PATH, TOKEN)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    samples = parse(body)
    echo = frozenset({("type", "system.echo")})
    assert samples[("mwap_jobs_started_total", echo)] == 1
    assert samples[("mwap_jobs_succeeded_total", echo)] == 1
    dropbox_ok = frozenset({("provider", "dropbox"), ("outcome", "ok")})
    assert samples[("mwap_provider_calls_total", dropbox_ok)] == 1
    names = {name for name, _ in samples}
    # No queue metrics (the API's pods export them) and not the server's own process.
    assert not {n for n in names if n.startswith(("mwap_queue_", "mwap_broker_"))}
    assert not {n for n in names if n.startswith(("process_", "python_"))}

    # Read at scrape time: another process's later values show on the next scrape.
    write_metrics(metrics_dir)
    assert parse(get(base + METRICS_PATH, TOKEN)[2])[("mwap_jobs_started_total", echo)] == 2

    # The server never writes into the directory it serves: the files are the two writers'.
    writers = {int(p.stem.rsplit("_", 1)[1]) for p in metrics_dir.glob("*.db")}
    assert len(writers) == 2
    assert child.pid not in writers

    assert get(base + HEALTH_PATH)[0] == 200  # the kubelet's probe carries no token
    assert get(base + "/other", TOKEN)[0] == 404
    assert get(base + METRICS_PATH, TOKEN, method="POST")[0] == 405


def test_sigterm_stops_it_at_once(server: tuple[Child, str]) -> None:
    """In a container it is PID 1, which ignores a SIGTERM it has no handler for."""
    child, _ = server
    child.popen.send_signal(signal.SIGTERM)
    assert child.popen.wait(timeout=10) == 0


def test_without_a_token_it_is_open(metrics_dir: Path, tmp_path: Path) -> None:
    child, base = serve(metrics_dir, tmp_path)
    try:
        status, _, body = get(base + METRICS_PATH)
        assert status == 200
        assert "mwap_jobs_started_total" in body
    finally:
        child.stop()


def test_a_token_the_settings_refuse_stops_it_at_start(metrics_dir: Path) -> None:
    result = subprocess.run(
        [*SERVE, "--port", str(free_port()), "--dir", str(metrics_dir)],
        env=bare_env(**{f"{ENV_PREFIX}METRICS_TOKEN": "short"}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{ENV_PREFIX}METRICS_TOKEN" in result.stderr


def test_the_endpoint_reads_the_token_as_the_settings_do() -> None:
    ours, theirs = EndpointSettings.model_fields["metrics_token"], Settings.model_fields["metrics_token"]
    assert ours.annotation == theirs.annotation
    assert ours.default == theirs.default
    assert ours.metadata == theirs.metadata
    assert EndpointSettings.model_config["env_prefix"] == Settings.model_config["env_prefix"]
