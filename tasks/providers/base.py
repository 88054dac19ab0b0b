"""The provider client interface: ``refresh``, ``account`` and ``changes``, and its provider hooks.

A client is cheap, holds one integration's tokens and is used by one thread; the pooled HTTP
session underneath is per process (see ``http.py``). The values it speaks in are in ``data.py``
and ``cursors.py``, the errors it raises in ``errors.py``, the sending in ``transport.py``.
"""

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import requests

from tasks.providers.cursors import Cursor
from tasks.providers.data import AccountInfo, ChangePage, ProviderConfig, Tokens, as_int
from tasks.providers.errors import (
    AuthExpired,
    CursorReset,
    ProviderError,
    ProviderRequestError,
    TransientProviderError,
)
from tasks.providers.http import DEFAULT_TIMEOUT, RetryPolicy, Timeout
from tasks.providers.outbound import OutboundPolicy, default_policy
from tasks.providers.transport import THROTTLE_STATUSES, Transport, json_object, throttled, token_error

type Refresher = Callable[[], Tokens]

# Refresh before a call when the access token expires this soon, so predictable 401s never happen.
REFRESH_AHEAD = 60.0


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
        self._refresher = refresher
        self._page_size = page_size or self.default_page_size
        self._transport = Transport(
            self.slug,
            policy or config.policy or default_policy(),
            session=session,
            timeout=timeout,
            retry=retry,
            sleep=sleep,
        )

    @property
    def tokens(self) -> Tokens:
        """The current tokens; persist them when they differ from the ones given."""
        return self._tokens

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far, retries and token calls included (``usage.totalRequests``)."""
        return self._transport.request_count

    @property
    def policy(self) -> OutboundPolicy:
        """Where this client's calls may go (checked before every request and redirect)."""
        return self._transport.policy

    @property
    def session(self) -> requests.Session:
        """The session given at construction, else this process's pooled one for the policy."""
        return self._transport.session

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
        response = self._transport.send(
            "POST",
            self.config.token_url,
            headers={"Accept": "application/json"},
            bearer=False,
            read_error=self._token_error,
            idempotent=not self.rotates_refresh_token,
            data=form,
        )
        body = json_object(response)
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

    # -- calls --------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.config.api_base_url}{path}"

    def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """An authenticated API call returning JSON: refreshes ahead of expiry, and once on 401."""
        if self._tokens.expires_within(REFRESH_AHEAD):
            self._renew_tokens()
        try:
            response = self._send_api(method, url, **kwargs)
        except AuthExpired:
            self._renew_tokens()
            response = self._send_api(method, url, **kwargs)
        return json_object(response)

    def _send_api(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        headers = {
            "Accept": "application/json",
            **kwargs.pop("headers", {}),
            "Authorization": f"Bearer {self._tokens.access_token}",
        }
        return self._transport.send(
            method, url, headers=headers, bearer=True, read_error=self._api_error, **kwargs
        )

    def _renew_tokens(self) -> None:
        # The refresher (the job layer's single-flight refresh) wins over our own exchange so
        # concurrent jobs of one integration never spend a rotating refresh token twice.
        self._tokens = self._refresher() if self._refresher is not None else self.refresh()

    def _api_error(self, response: requests.Response, attempt: int) -> ProviderError:
        """A failed API answer as a typed error, through the provider's hooks."""
        status = response.status_code
        message, code = self._error_message(response)
        special = self._special_error(response, message, code)
        if special is not None:
            return special
        if self._is_throttle(response, code):
            return throttled(response, message, self._transport.retry, attempt)
        if status == 401:
            return AuthExpired(message, status=status, code=code)
        if status >= 500:
            return TransientProviderError(message, status=status, code=code)
        return ProviderRequestError(message, status=status, code=code)

    def _token_error(self, response: requests.Response, attempt: int) -> ProviderError:
        return token_error(response, self._transport.retry, attempt)
