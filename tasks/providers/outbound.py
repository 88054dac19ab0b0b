"""Where provider calls may go: schemes, hosts per provider and the addresses behind them.

Three checks, all before a byte of a request leaves the process:

* **URL** (``OutboundPolicy.check_url``): ``https`` only (``http`` when
  ``MWAP_OUTBOUND_ALLOW_HTTP``), no user info, and the host on the provider slug's allow-list
  (``PROVIDER_HOSTS`` plus ``MWAP_OUTBOUND_EXTRA_HOSTS``). An IP literal is judged as an address
  at once.
* **Address** (``OutboundPolicy.address_refusal``): the resolved peer must be a global address.
  Loopback and private ranges (RFC 1918, ULA, CGNAT) pass only with
  ``MWAP_OUTBOUND_ALLOW_PRIVATE``; link-local (``169.254.0.0/16``, ``fe80::/10``), the cloud
  metadata addresses, multicast, unspecified and reserved ranges never do, in any IPv6 spelling
  that carries an IPv4 address (``::ffff:169.254.169.254``, 6to4, Teredo, NAT64).
* **Connection** (``GuardedAdapter``): the requests adapter's urllib3 connections resolve the
  host themselves, refuse the connection if *any* resolved address fails the address check, then
  connect to the vetted address (never a second lookup, so DNS rebinding between check and
  connect cannot swap in another address) and check the peer once more. TLS still verifies the
  certificate against the host name. Proxies are refused: behind one the peer is the proxy.

Redirects are never followed by requests itself (``allow_redirects=False``); the clients follow
them explicitly, only for bodiless GETs and only to hosts that pass the URL check (see base.py).
"""

import functools
import ipaddress
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import SplitResult, urlsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

type Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Each provider's own hosts: API, token and consent endpoints (Google: Drive API v3 and OAuth 2.0
# for web server apps; Dropbox: HTTP API v2 and OAuth guide; Microsoft identity platform v2.0
# and Graph v1.0, global cloud). Sovereign clouds and self-hosted fakes: MWAP_OUTBOUND_EXTRA_HOSTS.
PROVIDER_HOSTS: Mapping[str, frozenset[str]] = {
    "google-drive": frozenset(
        {"www.googleapis.com", "oauth2.googleapis.com", "accounts.google.com", "content.googleapis.com"}
    ),
    "dropbox": frozenset(
        {"api.dropboxapi.com", "content.dropboxapi.com", "api.dropbox.com", "www.dropbox.com"}
    ),
    "onedrive": frozenset({"graph.microsoft.com", "login.microsoftonline.com"}),
}

# Never reachable, whatever the settings: instance metadata services (AWS/GCP/Azure/OpenStack
# 169.254.169.254 is link-local anyway; AWS's IPv6 one sits in ULA space; Alibaba's in CGNAT).
METADATA_NETWORKS = tuple(
    ipaddress.ip_network(net) for net in ("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32")
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
CGNAT = ipaddress.ip_network("100.64.0.0/10")
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # connecting to 0.x reaches this host on Linux

# What the dev stack, the bench and the tests run with: the fake providers on loopback over http.
DEV_LOOPBACK_ENV: Mapping[str, str] = {
    "MWAP_OUTBOUND_ALLOW_HTTP": "true",
    "MWAP_OUTBOUND_ALLOW_PRIVATE": "true",
    "MWAP_OUTBOUND_EXTRA_HOSTS": "127.0.0.1,localhost,::1",
}


class OutboundRefused(ValueError):
    """A provider call the outbound policy does not allow; nothing was sent. Names the host."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"outbound request to {host!r} refused: {reason}")
        self.args = (host, reason)
        self.host = host
        self.reason = reason

    def __str__(self) -> str:
        return f"outbound request to {self.host!r} refused: {self.reason}"


def normalize_host(host: str) -> str:
    """Lower case, no brackets, no trailing dot; IP literals in their canonical form."""
    text = host.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo server and client, NAT64)."""
    if address.version == 4:
        return []
    assert isinstance(address, ipaddress.IPv6Address)
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """The rules one process applies to provider calls; hashable (sessions are kept per policy)."""

    allow_http: bool = False
    allow_private: bool = False
    # Extra hosts: "host" for every provider, "slug=host" for one.
    extra_hosts: frozenset[str] = frozenset()

    STRICT: ClassVar["OutboundPolicy"]

    @classmethod
    def from_settings(cls, settings: Any) -> "OutboundPolicy":
        """From ``mwap.settings.Settings`` (``outbound_*`` fields)."""
        return cls(
            allow_http=bool(settings.outbound_allow_http),
            allow_private=bool(settings.outbound_allow_private),
            extra_hosts=parse_extra_hosts(settings.outbound_extra_hosts),
        )

    def hosts_for(self, slug: str) -> frozenset[str]:
        """The hosts a provider's calls may go to."""
        extra = set()
        for entry in self.extra_hosts:
            scope, sep, host = entry.partition("=")
            if not sep:
                extra.add(scope)
            elif scope == slug:
                extra.add(host)
        return PROVIDER_HOSTS.get(slug, frozenset()) | extra

    def check_url(self, url: str, slug: str) -> SplitResult:
        """The parsed URL if a call of provider ``slug`` may go there; else ``OutboundRefused``."""
        parts, host = self._check_target(url)
        if host not in self.hosts_for(slug):
            raise OutboundRefused(
                host, f"not an allowed host for provider {slug!r} (add it to MWAP_OUTBOUND_EXTRA_HOSTS)"
            )
        return parts

    def check_webhook_url(self, url: str) -> SplitResult:
        """The parsed URL if a webhook may be sent there: the scheme, credential and address rules
        of provider calls, any host (its addresses are checked at each connection, ``GuardedAdapter``)."""
        return self._check_target(url)[0]

    def _check_target(self, url: str) -> tuple[SplitResult, str]:
        """Scheme, credentials and an IP literal's address checked; the parts and the normalized host."""
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise OutboundRefused(str(url)[:100], "malformed URL") from None
        if not host:
            raise OutboundRefused(str(url)[:100], "URL has no host")
        host = normalize_host(host)
        scheme = parts.scheme.lower()
        if scheme != "https" and not (scheme == "http" and self.allow_http):
            allowed = "https (http only with MWAP_OUTBOUND_ALLOW_HTTP)"
            raise OutboundRefused(host, f"scheme {scheme!r} not allowed, only {allowed}")
        if parts.username is not None or parts.password is not None:
            raise OutboundRefused(host, "credentials in the URL are not allowed")
        try:
            literal: Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None and (why := self.address_refusal(literal)):
            raise OutboundRefused(host, why)
        return parts, host

    def address_refusal(self, address: Address | str) -> str | None:  # noqa: PLR0911 - one rule a line
        """Why a peer address is refused, or None if a provider call may connect to it."""
        if isinstance(address, str):
            address = ipaddress.ip_address(address.split("%", 1)[0].strip("[]"))
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return self.address_refusal(address.ipv4_mapped)  # judged exactly as the IPv4 address
        for inner in embedded_ipv4(address):
            if why := self.address_refusal(inner):
                return f"{why} (embedded in {address})"
        if any(address in net for net in METADATA_NETWORKS if net.version == address.version):
            return f"{address} is a cloud metadata address"
        if address.is_link_local:
            return f"{address} is a link-local address"
        if (
            address.is_unspecified
            or address.is_multicast
            or (address.version == 4 and address in THIS_NETWORK)
        ):
            return f"{address} is not a unicast host address"
        private_ok = "allowed only with MWAP_OUTBOUND_ALLOW_PRIVATE"
        if address.is_loopback:
            return None if self.allow_private else f"{address} is a loopback address ({private_ok})"
        if address.is_reserved:
            return f"{address} is a reserved address"
        if address.is_private or (address.version == 4 and address in CGNAT):
            return None if self.allow_private else f"{address} is a private address ({private_ok})"
        if not address.is_global:
            return f"{address} is not a global address"
        return None


OutboundPolicy.STRICT = OutboundPolicy()


def parse_extra_hosts(text: str | None) -> frozenset[str]:
    """``"a.example, onedrive=graph.microsoft.us"`` -> normalized entries."""
    entries = set()
    for raw in (text or "").split(","):
        scope, sep, host = raw.strip().partition("=")
        if sep:
            if host.strip():
                entries.add(f"{scope.strip().lower()}={normalize_host(host)}")
        elif scope:
            entries.add(normalize_host(scope))
    return frozenset(entries)


# The policy DEV_LOOPBACK_ENV gives, for code that builds clients without settings (tests).
DEV_LOOPBACK = OutboundPolicy(
    allow_http=True,
    allow_private=True,
    extra_hosts=parse_extra_hosts(DEV_LOOPBACK_ENV["MWAP_OUTBOUND_EXTRA_HOSTS"]),
)


def default_policy() -> OutboundPolicy:
    """The process's policy from its settings; strict when the settings cannot be read."""
    from mwap.settings import SettingsError, get_settings  # noqa: PLC0415 - settings import the crypto stack

    try:
        return OutboundPolicy.from_settings(get_settings())
    except SettingsError:
        return OutboundPolicy.STRICT


# ---------------------------------------------------------------------------------------------
# The connection guard


class _GuardedConnection:
    """Mixin over urllib3's connections: resolve, vet every address, connect to a vetted one."""

    outbound_policy: ClassVar[OutboundPolicy] = OutboundPolicy.STRICT
    # urllib3's attributes, declared for the type checker.
    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        policy = self.outbound_policy
        try:
            infos = socket.getaddrinfo(
                self._dns_host, self.port, urllib3_connection.allowed_gai_family(), socket.SOCK_STREAM
            )
        except socket.gaierror as error:
            raise NameResolutionError(self.host, self, error) from error  # type: ignore[arg-type]
        if not infos:
            raise NameResolutionError(self.host, self, socket.gaierror("no addresses"))  # type: ignore[arg-type]
        vetted: list[str] = []
        for *_, sockaddr in infos:
            text = str(sockaddr[0])
            if why := policy.address_refusal(text):
                raise OutboundRefused(normalize_host(self.host), f"resolves to a refused address: {why}")
            if text not in vetted:
                vetted.append(text)
        last: OSError | None = None
        for address in vetted:
            try:
                sock = urllib3_connection.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as error:
                raise ConnectTimeoutError(
                    self,
                    f"Connection to {self.host} timed out. (connect timeout={self.timeout})",
                ) from error
            except OSError as error:
                last = error
                continue
            peer = str(sock.getpeername()[0])
            if why := policy.address_refusal(peer):  # what we reached, not what we asked for
                sock.close()
                raise OutboundRefused(normalize_host(self.host), f"connected to a refused address: {why}")
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        raise NewConnectionError(
            self,  # type: ignore[arg-type]
            f"Failed to establish a new connection: {last}",
        ) from last


@functools.cache
def guarded_pool_classes(policy: OutboundPolicy) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pool classes whose connections apply ``policy`` (one set per policy)."""
    http_conn = type(
        "GuardedHTTPConnection", (_GuardedConnection, HTTPConnection), {"outbound_policy": policy}
    )
    https_conn = type(
        "GuardedHTTPSConnection", (_GuardedConnection, HTTPSConnection), {"outbound_policy": policy}
    )
    return {
        "http": type("GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
        "https": type("GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
    }


class GuardedAdapter(HTTPAdapter):
    """requests' adapter whose connections refuse addresses the policy refuses; no proxies."""

    __attrs__ = [*HTTPAdapter.__attrs__, "outbound_policy"]

    def __init__(self, policy: OutboundPolicy, **kwargs: Any) -> None:
        self.outbound_policy = policy  # before super().__init__, which builds the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = guarded_pool_classes(self.outbound_policy)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        host = urlsplit(proxy).hostname or proxy
        raise OutboundRefused(normalize_host(host), "provider calls do not go through proxies")
