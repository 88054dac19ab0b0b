"""The fake providers' HTTP server: one threaded loopback server for all three providers.

Every provider call goes through ``dispatch``: find the route, attribute the call to an account
(bearer token, refresh token or code), count it, wait the global plus the account's latency,
apply a queued fault if one matches, authenticate, then run the endpoint under the store lock.
Latency and hangs are waited outside the lock, so a slow call never stalls the others.
"""

import signal
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, ModuleType
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

from ops.fake_providers import control_api, dropbox, google, graph, oauth
from ops.fake_providers.store import DROPBOX, GOOGLE, ONEDRIVE, Account, ControlError, Fault, Store
from ops.fake_providers.web import Context, Reply, Request, Route, json_reply

ROUTES: list[Route] = [*google.ROUTES, *dropbox.ROUTES, *graph.ROUTES, *oauth.ROUTES, *control_api.ROUTES]
API_MODULES: dict[str, ModuleType] = {GOOGLE: google, DROPBOX: dropbox, ONEDRIVE: graph}


def _match(request: Request) -> tuple[Route, dict[str, str]] | Reply:
    allowed = False
    for candidate in ROUTES:
        found = candidate.pattern.match(request.path)
        if found is None:
            continue
        if candidate.method == request.method:
            return candidate, found.groupdict()
        allowed = True
    if allowed:
        return json_reply(405, {"error": f"{request.method} not allowed on {request.path}"})
    return json_reply(404, {"error": f"no endpoint {request.path}"})


def _owner(store: Store, route: Route, request: Request) -> Account | None:
    if route.kind == "api":
        return store.by_access_token(request.bearer())[0]
    if route.kind == "token":
        return oauth.grant_owner(store, request)
    if route.kind == "authorize":
        return store.accounts.get(request.query.get("login_hint", ""))
    return None


def _fault_reply(route: Route, fault: Fault) -> Reply:
    message = fault.message or f"fake: injected {fault.kind}"
    if route.kind == "token":
        if fault.kind == "invalid_grant":
            return oauth.error(400, "invalid_grant", message)
        if fault.kind == "unauthorized":
            return oauth.error(401, "invalid_client", message)
        status = 403 if fault.kind == "drive_rate_limit" else fault.status
        code = (
            "temporarily_unavailable"
            if status in (429, 503)
            else "server_error"
            if status >= 500
            else "invalid_request"
        )
        return oauth.error(status, code, message, retry_after=fault.retry_after)
    module = API_MODULES[route.provider or ""]
    if fault.kind in ("unauthorized", "invalid_grant"):
        return module.api_error(401, message)
    if fault.kind == "drive_rate_limit":
        reason = fault.reason or "userRateLimitExceeded"
        return module.api_error(403, message, reason=reason, retry_after=fault.retry_after)
    return module.api_error(fault.status, message, reason=fault.reason, retry_after=fault.retry_after)


def dispatch(store: Store, stop: threading.Event, request: Request) -> Reply:
    """Answer one request (see the module docstring for the order of things)."""
    matched = _match(request)
    if isinstance(matched, Reply):
        return matched
    route, params = matched
    try:
        if route.kind == "control":
            with store.lock:
                return route.handler(Context(store, request, params))
        return _provider_call(store, stop, route, Context(store, request, params))
    except ControlError as exc:
        return json_reply(exc.status, {"error": exc.message})
    except (KeyError, TypeError, ValueError) as exc:
        # Malformed input to an endpoint: a 400 with the reason beats a dropped connection.
        return json_reply(400, {"error": f"bad request: {exc!r}"})


def _provider_call(store: Store, stop: threading.Event, route: Route, context: Context) -> Reply:
    request = context.request
    with store.lock:
        owner = _owner(store, route, request)
        fault = None
        if owner is None:
            store.unattributed[route.name] += 1
        else:
            owner.calls[route.name] += 1
            if route.kind == "token" and request.form().get("grant_type") == "refresh_token":
                owner.refresh_grants += 1
            fault = owner.take_fault(route.name)
        delay = store.latency + (owner.latency if owner else 0.0)
    if delay > 0:
        stop.wait(delay)
    if fault is not None and fault.kind != "timeout":
        return _fault_reply(route, fault)
    if fault is not None:
        stop.wait(fault.hang_seconds)  # then answer normally, long after the client gave up
    with store.lock:
        if route.kind == "api":
            account, valid = store.by_access_token(request.bearer())
            if account is None or not valid:
                module = API_MODULES[route.provider or ""]
                return module.api_error(401, "The access token is missing, invalid or expired.")
            context.account = account
        return route.handler(context)


class FakeProviderServer(ThreadingHTTPServer):
    """A threaded HTTP server holding the store; its handler threads never block shutdown."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], store: Store, *, verbose: bool = False) -> None:
        self.store = store
        self.stop = threading.Event()
        self.verbose = verbose
        super().__init__(address, Handler)

    @property
    def base_url(self) -> str:
        """``http://host:port`` as bound."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and left is expected here (hang faults), not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    """Parses a request, dispatches it and writes the reply, keeping connections alive."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeProviders/1.0"
    timeout = 120  # idle keep-alive connections are closed after this
    # One buffered write per reply, sent at once: otherwise headers and body leave as two small
    # segments and Nagle plus delayed ACKs add ~40 ms to every call.
    disable_nagle_algorithm = True
    wbufsize = -1
    server: FakeProviderServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        host = self.headers.get("Host") or self.server.base_url.removeprefix("http://")
        request = Request(
            method=self.command,
            path=unquote(parts.path),
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=self.headers,  # type: ignore[arg-type] - an email.message.Message maps like one
            body=body,
            base_url=f"http://{host}",
        )
        reply = dispatch(self.server.store, self.server.stop, request)
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except ConnectionError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


def serve(
    host: str,
    port: int,
    *,
    store: Store | None = None,
    seed: Callable[[Store], None] | None = None,
    verbose: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Run until SIGTERM or SIGINT; print ``ready <base url>`` once listening."""
    server = FakeProviderServer((host, port), store or Store(), verbose=verbose)
    if seed is not None:
        seed(server.store)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop.set()
        # shutdown() waits for serve_forever() to return, so it cannot run on the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"ready {server.base_url}", file=out, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.stop.set()
        server.server_close()
    return 0


class BackgroundServer:
    """The fake server on a thread of the current process, for benchmarks and scripts."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, store: Store | None = None) -> None:
        self.server = FakeProviderServer((host, port), store or Store())
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-providers", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """Where it listens."""
        return self.server.base_url

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
