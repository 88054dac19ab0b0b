"""One logical provider call: bounded retries, vetted redirects, capped bodies, typed errors out.

The clients (``base.py``) say what to call and how to read a provider's error answers; this
module sends it. Why the retries for throttles, 5xx and read timeouts live here and not in
urllib3 is in ``http.py``'s docstring. Every request sent, retries and redirects included, is
counted (``usage.totalRequests``) and its outcome metered (``mwap_provider_calls``).
"""

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from mwap import metrics
from tasks.providers.errors import (
    AuthExpired,
    DestinationRefused,
    ProviderError,
    ProviderRequestError,
    RateLimited,
    ReauthRequired,
    TransientProviderError,
)
from tasks.providers.http import DEFAULT_TIMEOUT, RetryPolicy, Timeout, parse_retry_after, process_session
from tasks.providers.outbound import OutboundPolicy, OutboundRefused, normalize_host

THROTTLE_STATUSES = frozenset({429, 503})
# The most a provider answer may hold: listings and token answers are kilobytes; a page of 1,000
# Drive files is ~1 MB. A larger (or endless) body is an error, read no further, so a broken or
# hostile endpoint cannot make a worker hold it in memory.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_REDIRECTS = 3  # a GET's redirects followed (to the provider's own hosts only)
BODY_KWARGS = ("data", "json", "files")

# How a failed response becomes a typed error: given the response and the 1-based attempt.
type ErrorReader = Callable[[requests.Response, int], ProviderError]


class Transport:
    """The HTTP side of one client: where calls may go, how long they wait, how often they retry."""

    def __init__(
        self,
        slug: str,
        policy: OutboundPolicy,
        *,
        session: requests.Session | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.slug = slug
        self.policy = policy
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.request_count = 0
        self._session = session
        self._sleep = sleep

    @property
    def session(self) -> requests.Session:
        """The session given at construction, else this process's pooled one for the policy."""
        return self._session or process_session(self.policy)

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        bearer: bool,
        read_error: ErrorReader,
        idempotent: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        """One logical call: bounded retries for throttles, 5xx and timeouts; typed errors out.

        ``bearer``: an API call carrying the access token (False for the token endpoint). A
        non-``idempotent`` call is never re-sent after a failure that may have reached the provider.
        """
        kwargs.pop("allow_redirects", None)  # redirects are ours to follow (_exchange)
        attempt = 0
        while True:
            attempt += 1
            last_try = attempt >= self.retry.max_attempts
            try:
                response = self._exchange(method, url, dict(headers), kwargs, bearer=bearer)
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
                self._sleep(self.retry.backoff(attempt))
                continue
            if response.status_code < 400:
                metrics.provider_call(self.slug, "ok")
                return response

            error = read_error(response, attempt)
            metrics.provider_call(self.slug, _outcome(error))
            response.close()
            if isinstance(error, RateLimited):
                if last_try or error.retry_after > self.retry.max_inline_wait:
                    raise error
                self._sleep(error.retry_after)
            elif isinstance(error, TransientProviderError) and idempotent and not last_try:
                self._sleep(self.retry.backoff(attempt))
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
        self.policy.check_url(url, self.slug)
        hops = 0
        while True:
            self.request_count += 1
            response = self.session.request(
                method,
                url,
                headers=headers,
                timeout=self.timeout,
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
                self.policy.check_url(target, self.slug)
            except OutboundRefused as refused:
                raise OutboundRefused(refused.host, f"{status} redirect target: {refused.reason}") from None
            if _origin(target) != _origin(url):
                headers = {key: value for key, value in headers.items() if key.lower() != "authorization"}
            url, hops = target, hops + 1
            kwargs = {key: value for key, value in kwargs.items() if key != "params"}  # in the Location


# --- reading answers ---------------------------------------------------------------------------


def throttled(response: requests.Response, message: str, retry: RetryPolicy, attempt: int) -> RateLimited:
    """A throttle answer: wait its ``Retry-After``, else the attempt's backoff."""
    wait = parse_retry_after(response.headers.get("Retry-After"))
    if wait is None:
        wait = retry.backoff(attempt)
    return RateLimited(wait, message, status=response.status_code)


def token_error(response: requests.Response, retry: RetryPolicy, attempt: int) -> ProviderError:
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
        return throttled(response, message, retry, attempt)
    if status >= 500:
        return TransientProviderError(message, status=status, code=code)
    return ProviderRequestError(message, status=status, code=code if isinstance(code, str) else None)


def json_object(response: requests.Response) -> dict[str, Any]:
    """The answer's JSON object; anything else is a ``ProviderError``."""
    try:
        body = response.json()
    except ValueError as exc:
        raise ProviderError("provider answered with invalid JSON", status=response.status_code) from exc
    if not isinstance(body, dict):
        raise ProviderError("provider answered with a non-object JSON body", status=response.status_code)
    return body


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
