"""``mwap metrics serve``: a worker or beat pod's metrics over HTTP, for Prometheus to scrape.

On one host (docker-compose, ``ops/run``) every process writes to one ``PROMETHEUS_MULTIPROC_DIR``
and the API's ``GET /metrics`` serves them all. On Kubernetes each pod has its own directory (an
emptyDir), so each worker and beat pod runs this command in a sidecar container that mounts the
pod's directory read-only and serves it (``mwap.metrics.pod_registry``): the pod's processes'
families, no queue metrics (the API exports those once per API pod), not this process's own.

The sidecar gets the directory with ``--dir`` and must not have ``PROMETHEUS_MULTIPROC_DIR`` in its
environment: a process with the variable writes files there named by its PID, and a sidecar's PIDs
(another PID namespace) would be the worker's. Files of exited processes are the writers' to drop
(the worker's ``worker_process_shutdown`` signal marks them dead): this process cannot see their PIDs.

It reads one setting, ``MWAP_METRICS_TOKEN`` (as the API reads it: then every ``GET /metrics``
needs ``Authorization: Bearer <token>``), so a sidecar holds no other secret. ``/health`` answers
without the token, for the kubelet's probe.
"""

import signal
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import click
from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from mwap.settings import ENV_PREFIX, describe_errors

DEFAULT_PORT = 9108
METRICS_PATH = "/metrics"
HEALTH_PATH = "/health"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class EndpointSettings(BaseSettings):
    """The one setting this endpoint reads, under the name and rule of ``Settings.metrics_token``
    (tests/mwap_cli/test_metrics_serve.py holds the two together)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    metrics_token: SecretStr | None = Field(default=None, min_length=16)


def endpoint_app(directory: Path, token: SecretStr | None) -> WSGIApp:
    """``GET /metrics``: the pod's metrics (behind the token when one is set); ``GET /health``: ok."""
    from mwap.metrics import authorized, pod_registry  # noqa: PLC0415 - `mwap --help` stays fast

    metrics_app = make_wsgi_app(pod_registry(directory))

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in {METRICS_PATH, HEALTH_PATH}:
            return _plain(start_response, "404 Not Found", "not found")
        if environ.get("REQUEST_METHOD") not in {"GET", "HEAD"}:
            return _plain(
                start_response, "405 Method Not Allowed", "method not allowed", [("Allow", "GET, HEAD")]
            )
        if path == HEALTH_PATH:
            return _plain(start_response, "200 OK", "ok")
        if not authorized(environ.get("HTTP_AUTHORIZATION", ""), token):
            challenge = [("WWW-Authenticate", 'Bearer realm="metrics"')]
            return _plain(start_response, "401 Unauthorized", "metrics need the metrics token", challenge)
        return metrics_app(environ, start_response)

    return app


def _plain(
    start_response: Callable[..., Any], status: str, text: str, headers: list[tuple[str, str]] | None = None
) -> list[bytes]:
    body = f"{text}\n".encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), *(headers or [])])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape and probe."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _server_class(host: str, port: int) -> type[ThreadingWSGIServer]:
    """A threaded WSGI server of ``host``'s address family (IPv4 or IPv6), as prometheus_client's own."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    return Server


def _stop(signum: int, _frame: FrameType | None) -> None:
    # As PID 1 of its container, a process without a handler ignores SIGTERM: the pod would wait
    # out its whole grace period.
    raise SystemExit(0)


@click.group()
def metrics() -> None:
    """Metrics."""


@metrics.command("serve")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 in a pod)."
)
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option(
    "--dir",
    "directory",
    type=click.Path(exists=True, file_okay=False, readable=True, path_type=Path),
    envvar="PROMETHEUS_MULTIPROC_DIR",
    required=True,
    help="The pod's metrics directory (default: PROMETHEUS_MULTIPROC_DIR; in a sidecar pass it, unset the variable).",
)
def metrics_serve(host: str, port: int, directory: Path) -> None:
    """Serve this pod's multiprocess metrics on GET /metrics until SIGTERM."""
    try:
        token = EndpointSettings().metrics_token
    except ValidationError as error:
        raise click.UsageError(describe_errors(error)) from None
    try:
        server = make_server(
            host, port, endpoint_app(directory, token), _server_class(host, port), _QuietHandler
        )
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error}") from None
    signal.signal(signal.SIGTERM, _stop)
    click.echo(f"serving {directory} on http://{host}:{server.server_port}{METRICS_PATH}", err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
