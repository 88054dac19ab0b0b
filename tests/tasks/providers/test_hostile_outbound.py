"""Outbound provider calls: no plain http, no foreign hosts, no internal addresses, no redirects
that carry the client secret or a bearer token somewhere else.

A provider document is operator data and a provider's answer is remote data: either can point a
worker at the cloud metadata service (``169.254.169.254``), at a service on the worker's own
network, or bounce the token endpoint's form (client secret, refresh token) to another host.
Each test first shows what plain ``requests`` would do with the same input (the attack
"succeeding in spirit", always against a loopback listener the test owns, never a real internal
address), then that the platform's clients refuse it, sending nothing there, and that the job
fails naming the host. The servers are real: loopback HTTP listeners, the MongoDB wire server,
Redis and a Celery worker.
"""

import ipaddress
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import factories
import pytest
import requests

from mwap.connections import mongo_client, redis_client
from mwap.crypto import KeyRing
from mwap.indexes import ensure_indexes
from mwap.services import Services
from mwap.settings import Settings
from ops import processes
from tasks.integrations import provider_config, tokens_of
from tasks.providers import (
    DestinationRefused,
    GoogleDriveClient,
    OutboundPolicy,
    OutboundRefused,
    ProviderConfig,
    ProviderError,
    RetryPolicy,
    Tokens,
    client_for,
)
from tasks.providers.http import process_session
from tasks.providers.outbound import DEV_LOOPBACK, PROVIDER_HOSTS, parse_extra_hosts
from tasks.providers.transport import MAX_RESPONSE_BYTES

METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
REDIS_DB = 11  # the worker of this module has a broker database of its own
CLIENT_SECRET = "hostile-outbound-client-secret"
ABOUT = {"user": {"permissionId": "p1", "emailAddress": "a@example.test", "displayName": "A"}}


# ---------------------------------------------------------------------------------------------
# Loopback listeners


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Listener:
    """A real HTTP server on a loopback address, answering canned routes and recording all it got.

    ``connections`` counts accepted TCP connections, so "nothing reached it" means not even a
    handshake. Requests are recorded before the answer is sent: once a client has its answer (or
    its refusal), the record is complete.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requests: list[Seen] = []
        self.connections = 0
        self.routes: dict[tuple[str, str], tuple[int, dict[str, str], bytes]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append(Seen(self.command, self.path, dict(self.headers), body))
                route = (self.command, urlsplit(self.path).path)
                status, headers, payload = outer.routes.get(route, (404, {}, b'{"error": "no route"}'))
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                outer.connections += 1
                return True

        self.server = Server((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def route(self, method: str, path: str, status: int = 200, body: Any = None, **headers: str) -> None:
        payload = json.dumps(body if body is not None else {}).encode()
        self.routes[method, path] = (status, headers, payload)

    def redirect(self, method: str, path: str, location: str, status: int = 307) -> None:
        self.route(method, path, status, {}, Location=location)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def listen() -> Iterator[Callable[..., Listener]]:
    started: list[Listener] = []

    def start(host: str = "127.0.0.1") -> Listener:
        started.append(Listener(host))
        return started[-1]

    yield start
    for listener in started:
        listener.close()


def drive_config(base: str, *, token_url: str | None = None) -> ProviderConfig:
    return ProviderConfig(
        slug="google-drive",
        token_url=token_url or f"{base}/token",
        auth_url=f"{base}/auth",
        api_base_url=base,
        client_id="client-id",
        client_secret=CLIENT_SECRET,
    )


def drive_client(config: ProviderConfig, policy: OutboundPolicy) -> GoogleDriveClient:
    tokens = Tokens("access-token-1", "refresh-token-1", datetime.now(UTC) + timedelta(hours=1))
    client = client_for(
        config, tokens, policy=policy, retry=RetryPolicy(max_attempts=1), sleep=lambda _: None
    )
    assert isinstance(client, GoogleDriveClient)
    return client


# ---------------------------------------------------------------------------------------------
# The policy: schemes, hosts, addresses


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://www.googleapis.com/drive/v3/about", "scheme 'http'"),
        ("ftp://www.googleapis.com/x", "scheme 'ftp'"),
        ("https://evil.example/token", "not an allowed host for provider 'google-drive'"),
        ("https://graph.microsoft.com/v1.0/me", "not an allowed host"),  # another provider's host
        ("https://www.googleapis.com.evil.example/", "not an allowed host"),
        ("https://user:pw@www.googleapis.com/", "credentials in the URL"),
        ("https://169.254.169.254/latest/meta-data/", "cloud metadata address"),
        ("https://[::ffff:169.254.169.254]/", "cloud metadata address"),
        ("https://[::ffff:a9fe:a9fe]/", "cloud metadata address"),
        ("https://[::1]/", "loopback address"),
        ("https://127.0.0.1/", "loopback address"),
        ("https://10.1.2.3/", "private address"),
        ("https://[fe80::1]/", "link-local address"),
        ("https://0.0.0.0/", "not a unicast host address"),
        ("https:///no-host", "no host"),
    ],
)
def test_strict_policy_refuses(url: str, fragment: str) -> None:
    with pytest.raises(OutboundRefused) as refused:
        OutboundPolicy.STRICT.check_url(url, "google-drive")
    assert fragment in refused.value.reason


@pytest.mark.parametrize(
    ("slug", "url"),
    [
        ("google-drive", "https://www.googleapis.com/drive/v3/about"),
        ("google-drive", "https://oauth2.googleapis.com/token"),
        ("google-drive", "https://accounts.google.com/o/oauth2/v2/auth"),
        ("google-drive", "https://WWW.GoogleAPIs.com./drive/v3/files"),  # case and trailing dot
        ("dropbox", "https://api.dropboxapi.com/oauth2/token"),
        ("dropbox", "https://www.dropbox.com/oauth2/authorize"),
        ("onedrive", "https://login.microsoftonline.com/common/oauth2/v2.0/token"),
        ("onedrive", "https://graph.microsoft.com/v1.0/me/drive/root/delta"),
    ],
)
def test_strict_policy_allows_each_providers_own_hosts(slug: str, url: str) -> None:
    assert OutboundPolicy.STRICT.check_url(url, slug).scheme == "https"
    others = [other for other in PROVIDER_HOSTS if other != slug]
    for other in others:  # a host of one provider is not a host of another
        with pytest.raises(OutboundRefused):
            OutboundPolicy.STRICT.check_url(url, other)


def test_extra_hosts_widen_one_provider_or_all_and_http_needs_its_setting() -> None:
    policy = OutboundPolicy(extra_hosts=parse_extra_hosts("onedrive=graph.microsoft.us, files.corp.example"))
    policy.check_url("https://graph.microsoft.us/v1.0/me", "onedrive")
    policy.check_url("https://files.corp.example/x", "dropbox")
    with pytest.raises(OutboundRefused, match="not an allowed host"):
        policy.check_url("https://graph.microsoft.us/v1.0/me", "google-drive")
    with pytest.raises(OutboundRefused, match="scheme 'http'"):
        policy.check_url("http://files.corp.example/x", "dropbox")
    OutboundPolicy(allow_http=True, extra_hosts=policy.extra_hosts).check_url(
        "http://files.corp.example/", "dropbox"
    )


def test_the_dev_policy_allows_loopback_but_never_metadata_or_link_local() -> None:
    DEV_LOOPBACK.check_url("http://127.0.0.1:8080/google/token", "google-drive")
    DEV_LOOPBACK.check_url("http://[::1]:8080/graph", "onedrive")
    # Listed or not, link-local and metadata addresses stay refused.
    widened = OutboundPolicy(True, True, parse_extra_hosts("169.254.169.254,fe80::1,fd00:ec2::254"))
    for url in ("http://169.254.169.254/", "http://[fe80::1]/", "http://[fd00:ec2::254]/"):
        with pytest.raises(OutboundRefused):
            widened.check_url(url, "dropbox")
    with pytest.raises(OutboundRefused, match="not an allowed host"):
        DEV_LOOPBACK.check_url("http://127.0.0.2:8080/", "dropbox")  # loopback, but not listed


@pytest.mark.parametrize(
    ("address", "strict", "dev"),
    [
        ("8.8.8.8", True, True),
        ("2001:4860:4860::8888", True, True),
        ("::ffff:8.8.8.8", True, True),
        ("127.0.0.1", False, True),
        ("127.8.9.10", False, True),
        ("::1", False, True),
        ("::ffff:127.0.0.1", False, True),
        ("10.0.0.1", False, True),
        ("172.16.5.4", False, True),
        ("192.168.1.1", False, True),
        ("100.64.0.1", False, True),  # carrier-grade NAT
        ("fc00::1", False, True),
        ("169.254.169.254", False, False),
        ("169.254.0.1", False, False),
        ("::ffff:169.254.169.254", False, False),
        ("2002:a9fe:a9fe::1", False, False),  # 6to4 carrying 169.254.169.254
        ("64:ff9b::a9fe:a9fe", False, False),  # NAT64 carrying 169.254.169.254
        ("fd00:ec2::254", False, False),  # AWS IMDS over IPv6 (ULA space)
        ("100.100.100.200", False, False),  # Alibaba metadata (CGNAT space)
        ("fe80::1", False, False),
        ("fe80::1%eth0", False, False),
        ("0.0.0.0", False, False),
        ("0.1.2.3", False, False),
        ("::", False, False),
        ("224.0.0.1", False, False),
        ("ff02::1", False, False),
        ("240.0.0.1", False, False),
        ("255.255.255.255", False, False),
    ],
)
def test_address_table(address: str, strict: bool, dev: bool) -> None:
    assert (OutboundPolicy.STRICT.address_refusal(address) is None) is strict
    assert (DEV_LOOPBACK.address_refusal(address) is None) is dev


def test_provider_config_fails_naming_the_field_and_host(ring: KeyRing) -> None:
    provider = {
        "_id": None,
        "slug": "dropbox",
        "tokenUrl": "https://api.dropboxapi.com/oauth2/token",
        "authUrl": "https://www.dropbox.com/oauth2/authorize",
        "clientSecret": "never decrypted",
        "metadata": {"apiBaseUrl": "https://files.attacker.example/2"},
    }
    with pytest.raises(DestinationRefused) as refused:
        provider_config(ring, provider, OutboundPolicy.STRICT)
    assert "metadata.apiBaseUrl" in refused.value.message
    assert "'files.attacker.example'" in refused.value.message
    assert refused.value.code == "outbound_refused"

    fake_shaped = {**provider, "tokenUrl": "http://127.0.0.1:9/dropbox/oauth2/token"}
    with pytest.raises(DestinationRefused, match=r"tokenUrl: .*scheme 'http'"):
        provider_config(ring, fake_shaped, OutboundPolicy.STRICT)


# ---------------------------------------------------------------------------------------------
# Redirects, against real listeners


def test_a_token_endpoint_redirect_is_never_followed(listen: Callable[..., Listener]) -> None:
    token_server, elsewhere = listen(), listen()
    token_server.redirect("POST", "/token", f"{elsewhere.url}/collect", status=307)
    elsewhere.route("POST", "/collect", body={"access_token": "stolen", "expires_in": 3600})

    # In spirit: plain requests re-sends the form (client secret, refresh token) on a 307.
    plain = requests.post(f"{token_server.url}/token", data={"client_secret": CLIENT_SECRET}, timeout=10)
    assert plain.status_code == 200
    assert CLIENT_SECRET in elsewhere.requests[0].body.decode()
    elsewhere.requests.clear()
    connections_before = elsewhere.connections

    client = drive_client(drive_config(token_server.url), DEV_LOOPBACK)
    with pytest.raises(DestinationRefused) as refused:
        client.refresh()
    assert "307 redirect from the token endpoint not followed" in refused.value.message
    assert f"'{elsewhere.host}'" in refused.value.message
    assert elsewhere.requests == []
    assert elsewhere.connections == connections_before
    assert [seen.method for seen in token_server.requests] == ["POST", "POST"]  # plain one, then ours


def test_a_redirect_to_the_metadata_service_is_refused(listen: Callable[..., Listener]) -> None:
    server = listen()
    server.redirect("POST", "/token", METADATA, status=307)
    server.redirect("GET", "/drive/v3/about", METADATA, status=302)
    client = drive_client(drive_config(server.url), DEV_LOOPBACK)

    with pytest.raises(DestinationRefused, match=r"'169\.254\.169\.254'"):
        client.refresh()
    with pytest.raises(DestinationRefused) as refused:
        client.account()  # a bodiless GET: followed only where the policy allows, not here
    assert "302 redirect target: 169.254.169.254 is a cloud metadata address" in refused.value.message
    assert len(server.requests) == 2


def test_an_api_redirect_is_followed_only_to_allowed_hosts_and_never_with_the_bearer(
    listen: Callable[..., Listener],
) -> None:
    api, mirror, foreign = listen(), listen(), listen("127.0.0.2")
    mirror.route("GET", "/about", body=ABOUT)
    api.redirect("GET", "/drive/v3/about", f"{mirror.url}/about", status=302)
    client = drive_client(drive_config(api.url), DEV_LOOPBACK)

    # Another origin on an allowed host: followed, but without the Authorization header.
    assert client.account().email == "a@example.test"
    assert api.requests[0].headers.get("Authorization") == "Bearer access-token-1"
    assert "Authorization" not in mirror.requests[0].headers
    assert client.request_count == 2

    # Same origin: the header goes along.
    api.route("GET", "/about", body=ABOUT)
    api.redirect("GET", "/drive/v3/about", "/about", status=301)
    client.account()
    assert api.requests[-1].path == "/about"
    assert api.requests[-1].headers.get("Authorization") == "Bearer access-token-1"

    # A loopback host that is not on the list: refused, not even a connection.
    api.redirect("GET", "/drive/v3/about", f"{foreign.url}/about", status=302)
    with pytest.raises(DestinationRefused, match=r"'127\.0\.0\.2'.*not an allowed host"):
        client.account()
    assert foreign.connections == 0

    # A loop: bounded.
    api.redirect("GET", "/drive/v3/about", "/drive/v3/about", status=302)
    with pytest.raises(DestinationRefused, match="more than 3 redirects"):
        client.account()


# ---------------------------------------------------------------------------------------------
# The connection guard: the address actually connected to


def test_a_listed_name_resolving_to_a_refused_address_gets_no_connection(
    listen: Callable[..., Listener],
) -> None:
    server = listen()
    server.route("GET", "/drive/v3/about", body=ABOUT)
    url = f"http://localhost:{server.port}"
    # In spirit: "localhost" is a name, the URL check passes it, and it lands on this machine.
    assert requests.get(f"{url}/drive/v3/about", timeout=10).status_code == 200
    before = server.connections

    policy = OutboundPolicy(allow_http=True, extra_hosts=parse_extra_hosts("localhost"))  # no private
    policy.check_url(url, "google-drive")  # the name itself is allowed...
    with pytest.raises(DestinationRefused, match=r"'localhost'.*resolves to a refused address.*loopback"):
        drive_client(drive_config(url), policy).account()  # ...what it resolves to is not
    assert server.connections == before


def test_dns_rebinding_cannot_swap_the_address_after_the_check(
    listen: Callable[..., Listener], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resolver (as a rebinding DNS server answers) gives a vetted address, then another."""
    server = listen()
    server.route("GET", "/drive/v3/about", body=ABOUT)
    real = socket.getaddrinfo
    answers: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        answers.append("127.0.0.1" if not answers else "0.0.0.0")
        return real(answers[-1], port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    policy = OutboundPolicy(True, True, parse_extra_hosts("rebind.test"))
    url = f"http://rebind.test:{server.port}"

    # In spirit: check first (resolve, vet), then let requests connect: it resolves again.
    assert policy.address_refusal(rebinding("rebind.test", server.port)[0][4][0]) is None
    requests.get(f"{url}/drive/v3/about", timeout=10)
    assert answers == ["127.0.0.1", "0.0.0.0"]
    assert policy.address_refusal(answers[-1]) is not None  # connected where the check said no

    # The guard resolves once per connection and connects to exactly what it vetted.
    answers.clear()
    assert drive_client(drive_config(url), policy).account().email == "a@example.test"
    assert answers == ["127.0.0.1"]

    # And an address refused at the first answer never gets a connection.
    answers[:] = ["primed"]  # the next answer is the rebound one
    before = server.connections
    with pytest.raises(DestinationRefused, match=r"0\.0\.0\.0 is not a unicast host address"):
        drive_client(drive_config(url), policy).account()
    assert server.connections == before


def test_proxies_and_netrc_are_not_used(
    listen: Callable[..., Listener], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server, proxy = listen(), listen()
    server.route("GET", "/drive/v3/about", body=ABOUT)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("http_proxy", proxy.url)

    # In spirit: plain requests sends the call through the environment's proxy.
    requests.get(f"{server.url}/drive/v3/about", timeout=10)
    assert proxy.connections == 1
    proxied = proxy.connections

    client = drive_client(drive_config(server.url), DEV_LOOPBACK)
    assert client.account().email == "a@example.test"
    assert proxy.connections == proxied  # went direct
    assert "Authorization" in server.requests[-1].headers
    assert server.requests[-1].headers["Authorization"] == "Bearer access-token-1"  # not netrc's

    with pytest.raises(OutboundRefused, match="do not go through proxies"):
        process_session(DEV_LOOPBACK).get(f"{server.url}/x", proxies={"http": proxy.url}, timeout=10)
    assert proxy.connections == proxied


# ---------------------------------------------------------------------------------------------
# Jobs through a real worker: the refresh fails in the ledger, naming the host


@pytest.fixture(scope="module")
def own(
    settings: Settings, stack_env: dict[str, str], ring: KeyRing, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    """A worker on a database and broker of its own, so its google-drive provider can be hostile."""
    name = factories.uid("outbound").replace("-", "_")
    redis_url = settings.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    mine = settings.model_copy(update={"mongo_db": name, "redis_url": redis_url})
    database = mongo_client(mine)[name]
    ensure_indexes(database, mine)
    broker = redis_client(mine)
    broker.flushdb()
    env = {**stack_env, "MWAP_MONGO_DB": name, "MWAP_REDIS_URL": redis_url}
    logs = tmp_path_factory.mktemp("hostile-outbound")
    child = processes.start_worker(env=env, log_dir=logs, name="worker-outbound", concurrency=1)
    try:
        yield Services(mine, database, broker, ring)
    finally:
        child.stop()
        broker.flushdb()
        mongo_client(mine).drop_database(name)


def hostile_integration(own: Services, *, token_url: str, api_base: str) -> dict[str, Any]:
    factories.point_provider_at(
        own.db,
        own.ring,
        {
            "slug": "google-drive",
            "authUrl": f"{api_base}/auth",
            "tokenUrl": token_url,
            "clientId": "client-id",
            "clientSecret": CLIENT_SECRET,
            "scopes": [],
            "metadata": {"apiBaseUrl": api_base},
        },
    )
    tenant_id = factories.tenant(own.db)["_id"]
    return factories.integration(
        own.db, own.ring, tenant_id, access_token="job-access", refresh_token="job-refresh"
    )


def test_refresh_job_redirected_to_the_metadata_service_fails_naming_it(
    own: Services, listen: Callable[..., Listener]
) -> None:
    server = listen()
    server.redirect("POST", "/token", METADATA, status=307)
    integration = hostile_integration(own, token_url=f"{server.url}/token", api_base=server.url)

    job = factories.run_integration_job(own, "integration.refresh_token", integration, force=True)

    assert job["status"] == "failed"
    assert job["error"]["type"] == "DestinationRefused"
    assert "169.254.169.254" in job["error"]["message"]
    assert "redirect from the token endpoint not followed" in job["error"]["message"]
    assert job["attempts"] == 1  # not retried: the answer will not change
    [seen] = server.requests  # the worker asked once and went nowhere else
    assert seen.method == "POST"
    assert parse_qs(seen.body.decode())["client_secret"] == [CLIENT_SECRET]
    stored = own.db["cloudIntegrations"].find_one({"_id": integration["_id"]})
    assert stored["status"] == "active"  # the provider's fault, not the account's
    assert tokens_of(own.ring, stored).refresh_token == "job-refresh"


def test_refresh_job_redirected_to_another_listener_sends_it_nothing(
    own: Services, listen: Callable[..., Listener]
) -> None:
    server, elsewhere = listen(), listen()
    server.redirect("POST", "/token", f"{elsewhere.url}/token", status=308)
    elsewhere.route("POST", "/token", body={"access_token": "planted", "expires_in": 3600})
    integration = hostile_integration(own, token_url=f"{server.url}/token", api_base=server.url)

    job = factories.run_integration_job(own, "integration.refresh_token", integration, force=True)

    assert job["status"] == "failed"
    assert job["error"]["type"] == "DestinationRefused"
    assert len(server.requests) == 1
    assert elsewhere.requests == []
    assert elsewhere.connections == 0
    stored = own.db["cloudIntegrations"].find_one({"_id": integration["_id"]})
    assert tokens_of(own.ring, stored).access_token == "job-access"  # nothing planted


def test_jobs_of_a_provider_pointed_off_its_hosts_fail_before_any_request(
    own: Services, listen: Callable[..., Listener]
) -> None:
    foreign = listen("127.0.0.2")  # loopback, reachable, but not on the allow-list
    foreign.route("POST", "/token", body={"access_token": "x", "expires_in": 3600})
    # In spirit: nothing but the check stands between the worker and this listener.
    assert requests.post(f"{foreign.url}/token", timeout=10).status_code == 200
    reached = foreign.connections
    integration = hostile_integration(own, token_url=f"{foreign.url}/token", api_base=foreign.url)

    refresh = factories.run_integration_job(own, "integration.refresh_token", integration, force=True)
    health = factories.run_integration_job(own, "integration.health_check", integration)

    for job in (refresh, health):
        assert job["status"] == "failed"
        assert job["error"]["type"] == "DestinationRefused"
        assert "'127.0.0.2'" in job["error"]["message"]
        assert "tokenUrl" in job["error"]["message"]
    assert foreign.connections == reached
    assert ipaddress.ip_address(foreign.host).is_loopback


# ---------------------------------------------------------------------------------------------
# Answers too large to hold


class EndlessBody:
    """A loopback server answering every request with a chunked body that never ends."""

    def __init__(self) -> None:
        self.sent = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"[" + b" " * 65533 + b"\r\n"
            framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
            try:
                while self.sent < 1024 * 1024 * 1024:  # a gigabyte, unless the client hangs up first
                    conn.sendall(framed)
                    self.sent += len(chunk)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


def test_an_endless_or_oversized_answer_is_refused_not_held(listen: Callable[..., Listener]) -> None:
    endless = EndlessBody()
    try:
        client = drive_client(drive_config(f"http://127.0.0.1:{endless.port}"), DEV_LOOPBACK)
        with pytest.raises(ProviderError, match="more than"):
            client.account()
        # Read no further than the bound (plus what was in flight), not the gigabyte on offer.
        assert endless.sent < 4 * MAX_RESPONSE_BYTES
    finally:
        endless.close()
    api = listen()
    api.route("GET", "/drive/v3/about", body={"padding": "x" * (MAX_RESPONSE_BYTES + 1)})
    client = drive_client(drive_config(api.url), DEV_LOOPBACK)
    with pytest.raises(ProviderError, match=r"answered with \d+ bytes, more than"):
        client.account()
