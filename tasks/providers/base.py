"""The provider client interface, the types it speaks in and the errors the jobs handle.

A client is cheap, holds one integration's tokens and is used by one thread; the pooled HTTP
session underneath is per process (see ``http.py``).
"""

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self
from urllib.parse import urljoin, urlsplit

import requests

from mwap import metrics
from tasks.providers.http import DEFAULT_TIMEOUT, RetryPolicy, Timeout, parse_retry_after, process_session
from tasks.providers.outbound import OutboundPolicy, OutboundRefused, default_policy, normalize_host

# ---------------------------------------------------------------------------------------------
# Errors


class ProviderError(Exception):
    """Any failure talking to a provider; ``status`` is the HTTP status when there was one.

    ``args`` hold exactly the positional constructor arguments, so Celery's exception
    serialisation (``cls(*args)``) and the standard library's copy rebuild the same error type.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def __str__(self) -> str:
        return self.message


class RateLimited(ProviderError):
    """The provider asked us to wait longer than a client may sleep; re-enqueue after ``retry_after``."""

    def __init__(
        self, retry_after: float, message: str = "rate limited", *, status: int | None = None
    ) -> None:
        super().__init__(f"{message} (retry after {retry_after:.1f}s)", status=status)
        self.args = (retry_after, message)
        self.retry_after = retry_after


class TransientProviderError(ProviderError):
    """5xx, timeouts or connection failures that outlasted the client's bounded retries."""


class AuthExpired(ProviderError):
    """401 from the API, still there after one refresh and retry."""


class ReauthRequired(ProviderError):
    """The refresh token was refused (``invalid_grant``): only the user can reconnect."""


class CursorReset(ProviderError):
    """A cursor the provider no longer accepts; ``restart_url`` is where it says to start over."""

    def __init__(self, message: str, *, status: int | None = None, restart_url: str | None = None) -> None:
        super().__init__(message, status=status, code="cursor_reset")
        self.restart_url = restart_url


class ProviderRequestError(ProviderError):
    """Any other 4xx: retrying will not help; ``message`` is the provider's own text."""


class DestinationRefused(ProviderRequestError):
    """The outbound policy refused where a call (or a redirect) would go; nothing was sent there.

    The message names the host and why (scheme, host not on the provider's allow-list, private,
    loopback, link-local or metadata address, a redirect of a request with credentials or a body).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, code="outbound_refused")


# ---------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One ``cloudProviders`` document, secrets already decrypted by the caller."""

    slug: str
    token_url: str
    auth_url: str
    api_base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] = ()
    # The outbound policy the URLs were checked against (tasks.integrations.provider_config).
    policy: OutboundPolicy | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Self:
        """Build from a ``cloudProviders`` document (``clientSecret`` in plain text)."""
        scopes = doc.get("scopes") or ()
        if isinstance(scopes, str):
            scopes = scopes.split()
        metadata = doc.get("metadata") or {}
        return cls(
            slug=doc["slug"],
            token_url=doc["tokenUrl"],
            auth_url=doc.get("authUrl", ""),
            api_base_url=str(metadata["apiBaseUrl"]).rstrip("/"),
            client_id=doc["clientId"],
            client_secret=doc["clientSecret"],
            scopes=tuple(scopes),
        )


@dataclass(frozen=True, slots=True)
class Tokens:
    """An integration's OAuth tokens; ``expires_at`` is UTC (a naive value is taken as UTC).

    ``expires_at`` may be unknown (seed 000 makes ``authData.expiresAt`` optional): such a token is
    used until the provider answers 401, which refreshes it.
    """

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime | None
    scope: str | None = None

    def __post_init__(self) -> None:
        # pymongo hands datetimes back naive (in UTC) unless the client is tz_aware: accept them.
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            object.__setattr__(self, "expires_at", self.expires_at.replace(tzinfo=UTC))

    def expires_within(self, seconds: float, *, now: datetime | None = None) -> bool:
        """True when the access token is expired or will be within ``seconds`` (False if unknown)."""
        if self.expires_at is None:
            return False
        return self.expires_at <= (now or datetime.now(UTC)) + timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """What the health probe learns about the connected account."""

    account_id: str
    email: str | None
    display_name: str | None
    quota_total: int | None = None
    quota_used: int | None = None


@dataclass(frozen=True, slots=True)
class FileItem:
    """One file or folder as a provider lists it.

    ``path`` is best effort: Dropbox and Graph report it per item; Drive has no paths, so the
    Drive client resolves it from the folders it has seen in the same ``changes()`` run and leaves
    it None when an ancestor was not seen (typical in incremental syncs): use ``parent_id`` then.
    """

    provider_file_id: str
    name: str
    path: str | None
    parent_id: str | None
    is_folder: bool
    mime_type: str | None = None
    size: int | None = None
    modified_at: datetime | None = None
    content_hash: str | None = None
    etag: str | None = None
    web_url: str | None = None


@dataclass(frozen=True, slots=True)
class ChangePage:
    """One page of a listing; persist its effects, then checkpoint ``next_cursor``.

    ``reset=True`` marks a full relisting after a void cursor: once the page with ``done=True``
    is applied, delete every file of the integration not seen during the relisting.
    ``deleted_paths`` (Dropbox only, lower-case) name paths whose item *and everything below it*
    is gone: Dropbox reports deletions by path, never by id. Apply a page's deletions before its
    items, so an item moved within the page survives.
    """

    items: tuple[FileItem, ...]
    deletions: tuple[str, ...]
    next_cursor: str
    done: bool
    reset: bool = False
    deleted_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a listing stands; encoded to an opaque string the job layer stores as is.

    ``kind`` is provider-specific (Drive: ``files`` while listing, ``changes`` after);
    ``reset`` survives a checkpoint so a resumed relisting is still flagged as one.
    """

    slug: str
    kind: str
    token: str
    reset: bool = False
    start: str | None = None

    def encode(self) -> str:
        """The opaque string form."""
        data: dict[str, Any] = {"v": 1, "p": self.slug, "k": self.kind, "t": self.token}
        if self.reset:
            data["r"] = 1
        if self.start is not None:
            data["s"] = self.start
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str, slug: str) -> Self:
        """Parse ``text``; a cursor that is not ours is as void as one the provider rejects."""
        try:
            data = json.loads(text)
            if data.get("v") != 1 or data.get("p") != slug:
                raise CursorReset(f"cursor is not a {slug} cursor")
            return cls(
                slug=slug,
                kind=str(data["k"]),
                token=str(data["t"]),
                reset=bool(data.get("r")),
                start=data.get("s"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CursorReset("unreadable cursor") from exc


def parse_timestamp(value: str | None) -> datetime | None:
    """Parse a provider's RFC 3339 timestamp into an aware UTC datetime."""
    if not value:
        return None
    text = value.replace("Z", "+00:00")
    if "." in text:  # Graph sends up to 7 fractional digits; datetime takes at most 6
        head, _, tail = text.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        text = f"{head}.{tail[:digits][:6].ljust(6, '0')}{tail[digits:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def as_int(value: object) -> int | None:
    """Providers send sizes as numbers or (Drive) as decimal strings."""
    if value is None:
        return None
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Client

type Refresher = Callable[[], Tokens]

# Refresh before a call when the access token expires this soon, so predictable 401s never happen.
REFRESH_AHEAD = 60.0
THROTTLE_STATUSES = frozenset({429, 503})
# The most a provider answer may hold: listings and token answers are kilobytes; a page of 1,000
# Drive files is ~1 MB. A larger (or endless) body is an error, read no further, so a broken or
# hostile endpoint cannot make a worker hold it in memory.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_REDIRECTS = 3  # a GET's redirects followed (to the provider's own hosts only)
BODY_KWARGS = ("data", "json", "files")


def _bounded(response: requests.Response, limit: int = MAX_RESPONSE_BYTES) -> requests.Response:
    """``response`` with its body read, refusing (and closing) one longer than ``limit`` bytes."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        response.close()
        raise ProviderError(
            f"provider answered with {declared} bytes, more than {limit}", status=response.status_code
        )
    body = bytearray()
    for chunk in response.iter_content(chunk_size=64 * 1024):
        body += chunk
        if len(body) > limit:
            response.close()
            raise ProviderError(
                f"provider answered with more than {limit} bytes", status=response.status_code
            )
    response._content = bytes(body)  # requests' own cache of the body: .content, .text and .json() read it
    response._content_consumed = True  # type: ignore[attr-defined]  # requests' private flag, absent from its stubs
    response.close()
    return response


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme.lower())
    return parts.scheme.lower(), normalize_host(parts.hostname or ""), parts.port or default


def _outcome(error: ProviderError) -> str:
    """The metrics outcome of a failed call (a fixed set; see mwap.metrics.PROVIDER_OUTCOMES)."""
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, AuthExpired):
        return "auth_expired"
    if isinstance(error, ReauthRequired):
        return "reauth_required"
    if isinstance(error, TransientProviderError):
        return "server_error"
    if error.status == 404:
        return "not_found"
    return "error"


class ProviderClient(ABC):
    """One integration's view of a provider: ``refresh``, ``account`` and ``changes``."""

    slug: ClassVar[str]
    rotates_refresh_token: ClassVar[bool] = False
    default_page_size: ClassVar[int | None] = None

    def __init__(
        self,
        config: ProviderConfig,
        tokens: Tokens,
        *,
        session: requests.Session | None = None,
        refresher: Refresher | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        page_size: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        policy: OutboundPolicy | None = None,
    ) -> None:
        if config.slug != self.slug:
            raise ValueError(f"{type(self).__name__} cannot use a {config.slug!r} provider config")
        self.config = config
        self._tokens = tokens
        self._session = session
        self._refresher = refresher
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._page_size = page_size or self.default_page_size
        self._sleep = sleep
        self._request_count = 0
        self._policy = policy or config.policy or default_policy()

    @property
    def tokens(self) -> Tokens:
        """The current tokens; persist them when they differ from the ones given."""
        return self._tokens

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far, retries and token calls included (``usage.totalRequests``)."""
        return self._request_count

    @property
    def policy(self) -> OutboundPolicy:
        """Where this client's calls may go (checked before every request and redirect)."""
        return self._policy

    @property
    def session(self) -> requests.Session:
        """The session given at construction, else this process's pooled one for the policy."""
        return self._session or process_session(self._policy)

    # -- the interface ------------------------------------------------------------------------

    def refresh(self, tokens: Tokens | None = None) -> Tokens:
        """Exchange the refresh token (``tokens`` or the client's own) and adopt the result."""
        current = tokens or self._tokens
        form = {
            "grant_type": "refresh_token",
            "refresh_token": current.refresh_token,
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
            **self._refresh_extras(),
        }
        # Where the provider rotates refresh tokens, a refresh that timed out may have consumed
        # the old token; replaying it would turn a blip into invalid_grant, so no blind retries.
        response = self._send(
            "POST",
            self.config.token_url,
            bearer=False,
            idempotent=not self.rotates_refresh_token,
            data=form,
        )
        body = self._json(response)
        access_token = body.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise ProviderError("token response without an access_token", status=response.status_code)
        expires_in = as_int(body.get("expires_in")) or 3600
        self._tokens = Tokens(
            access_token=access_token,
            refresh_token=body.get("refresh_token") or current.refresh_token,
            expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
            scope=body.get("scope") or current.scope,
        )
        return self._tokens

    @abstractmethod
    def account(self) -> AccountInfo:
        """The cheapest authenticated call: who the account is (the health probe)."""

    def changes(self, cursor: str | None) -> Iterator[ChangePage]:
        """Pages of changes since ``cursor`` (None: a first full listing), fetched one at a time.

        A void cursor, whether the provider says so or it cannot be read, restarts as a full
        listing flagged ``reset``; a second void cursor in the same run raises ``CursorReset``.
        """
        try:
            position = Cursor.decode(cursor, self.slug) if cursor is not None else None
            yield from self._walk(position, reset=False)
        except CursorReset as exc:
            yield from self._walk(self._restart_position(exc), reset=True)

    # -- provider hooks -----------------------------------------------------------------------

    @abstractmethod
    def _walk(self, position: Cursor | None, *, reset: bool) -> Iterator[ChangePage]:
        """Pages from ``position``; None starts a full listing (flagged ``reset`` if asked)."""

    def _restart_position(self, error: CursorReset) -> Cursor | None:
        """Where to start over after a void cursor; None is a fresh full listing."""
        return None

    def _refresh_extras(self) -> dict[str, str]:
        """Provider-specific fields of the refresh_token grant."""
        return {}

    def _error_message(self, response: requests.Response) -> tuple[str, str | None]:
        """The provider's message and error code from a failed response."""
        return (response.text[:500] or response.reason or f"HTTP {response.status_code}", None)

    def _special_error(
        self, response: requests.Response, message: str, code: str | None
    ) -> ProviderError | None:
        """A provider-specific reading of a failed API response, or None for the generic one."""
        return None

    def _is_throttle(self, response: requests.Response, code: str | None) -> bool:
        """Whether a failed response asks us to slow down (429 and 503 everywhere)."""
        return response.status_code in THROTTLE_STATUSES

    # -- HTTP ---------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.config.api_base_url}{path}"

    def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """An authenticated API call returning JSON: refreshes ahead of expiry, and once on 401."""
        if self._tokens.expires_within(REFRESH_AHEAD):
            self._renew_tokens()
        try:
            response = self._send(method, url, bearer=True, **kwargs)
        except AuthExpired:
            self._renew_tokens()
            response = self._send(method, url, bearer=True, **kwargs)
        return self._json(response)

    def _renew_tokens(self) -> None:
        # The refresher (the job layer's single-flight refresh) wins over our own exchange so
        # concurrent jobs of one integration never spend a rotating refresh token twice.
        self._tokens = self._refresher() if self._refresher is not None else self.refresh()

    def _send(
        self, method: str, url: str, *, bearer: bool, idempotent: bool = True, **kwargs: Any
    ) -> requests.Response:
        """One logical call: bounded retries for throttles, 5xx and timeouts; typed errors out."""
        extra_headers = kwargs.pop("headers", {})
        kwargs.pop("allow_redirects", None)  # redirects are ours to follow (_exchange)
        attempt = 0
        while True:
            attempt += 1
            last_try = attempt >= self._retry.max_attempts
            headers = {"Accept": "application/json", **extra_headers}
            if bearer:
                headers["Authorization"] = f"Bearer {self._tokens.access_token}"
            try:
                response = self._exchange(method, url, headers, kwargs, bearer=bearer)
            except OutboundRefused as exc:
                metrics.provider_call(self.slug, "error")
                raise DestinationRefused(str(exc)) from None
            except requests.ConnectTimeout as exc:
                metrics.provider_call(self.slug, "timeout")
                # urllib3 already retried the connect (http.py); more tries would only stack timeouts.
                raise TransientProviderError(f"connect timeout: {exc}") from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                metrics.provider_call(self.slug, "timeout" if isinstance(exc, requests.Timeout) else "error")
                if last_try or not idempotent:
                    raise TransientProviderError(f"{type(exc).__name__}: {exc}") from exc
                self._sleep(self._retry.backoff(attempt))
                continue
            if response.status_code < 400:
                metrics.provider_call(self.slug, "ok")
                return response

            error = self._error_for(response, bearer=bearer, attempt=attempt)
            metrics.provider_call(self.slug, _outcome(error))
            response.close()
            if isinstance(error, RateLimited):
                if last_try or error.retry_after > self._retry.max_inline_wait:
                    raise error
                self._sleep(error.retry_after)
            elif isinstance(error, TransientProviderError) and idempotent and not last_try:
                self._sleep(self._retry.backoff(attempt))
            else:
                raise error

    def _exchange(
        self, method: str, url: str, headers: dict[str, str], kwargs: dict[str, Any], *, bearer: bool
    ) -> requests.Response:
        """One request and the redirects it may follow; ``OutboundRefused`` before any refused send.

        A redirect is followed only for a GET without a body, at most ``MAX_REDIRECTS`` times, to
        a URL the policy allows for this provider; the Authorization header goes along only to
        the same origin. A redirect of any other request (the token endpoint's form with the
        client secret and refresh token, API POSTs) is refused, never re-sent elsewhere.
        """
        self._policy.check_url(url, self.slug)
        hops = 0
        while True:
            self._request_count += 1
            response = self.session.request(
                method,
                url,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                stream=True,
                **kwargs,
            )
            if not response.is_redirect:
                return _bounded(response)
            status, location = response.status_code, response.headers["location"]
            response.close()
            target = urljoin(response.url or url, location)
            try:
                target_host = normalize_host(urlsplit(target).hostname or "") or location[:100]
            except ValueError:
                target_host = location[:100]
            source = "API" if bearer else "token endpoint"
            if (
                method.upper() != "GET"
                or not bearer
                or any(kwargs.get(key) is not None for key in BODY_KWARGS)
            ):
                raise OutboundRefused(
                    target_host,
                    f"{status} redirect from the {source} not followed: a {method.upper()} with credentials "
                    "or a body is never redirected",
                )
            if hops >= MAX_REDIRECTS:
                raise OutboundRefused(target_host, f"more than {MAX_REDIRECTS} redirects")
            try:
                self._policy.check_url(target, self.slug)
            except OutboundRefused as refused:
                raise OutboundRefused(refused.host, f"{status} redirect target: {refused.reason}") from None
            if _origin(target) != _origin(url):
                headers = {key: value for key, value in headers.items() if key.lower() != "authorization"}
            url, hops = target, hops + 1
            kwargs = {key: value for key, value in kwargs.items() if key != "params"}  # in the Location

    def _error_for(self, response: requests.Response, *, bearer: bool, attempt: int) -> ProviderError:
        status = response.status_code
        if not bearer:
            return self._token_error(response, attempt)
        message, code = self._error_message(response)
        special = self._special_error(response, message, code)
        if special is not None:
            return special
        if self._is_throttle(response, code):
            return self._throttled(response, message, attempt)
        if status == 401:
            return AuthExpired(message, status=status, code=code)
        if status >= 500:
            return TransientProviderError(message, status=status, code=code)
        return ProviderRequestError(message, status=status, code=code)

    def _throttled(self, response: requests.Response, message: str, attempt: int) -> RateLimited:
        wait = parse_retry_after(response.headers.get("Retry-After"))
        if wait is None:
            wait = self._retry.backoff(attempt)
        return RateLimited(wait, message, status=response.status_code)

    def _token_error(self, response: requests.Response, attempt: int) -> ProviderError:
        """Errors of the token endpoint, which speaks RFC 6749 §5.2 for every provider."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {}
        code = body.get("error") if isinstance(body, dict) else None
        description = body.get("error_description") if isinstance(body, dict) else None
        message = str(description or code or response.text[:500] or f"HTTP {status}")
        if code == "invalid_grant":
            return ReauthRequired(message, status=status, code=code)
        if status in THROTTLE_STATUSES:
            return self._throttled(response, message, attempt)
        if status >= 500:
            return TransientProviderError(message, status=status, code=code)
        return ProviderRequestError(message, status=status, code=code if isinstance(code, str) else None)

    @staticmethod
    def _json(response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise ProviderError("provider answered with invalid JSON", status=response.status_code) from exc
        if not isinstance(body, dict):
            raise ProviderError("provider answered with a non-object JSON body", status=response.status_code)
        return body
