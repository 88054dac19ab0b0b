"""The errors a provider call ends in: one small hierarchy the jobs catch by type.

``ProviderError`` is the root; the job layer retries ``TransientProviderError``, re-enqueues after
``RateLimited.retry_after``, refreshes on ``AuthExpired``, marks the integration for reconnection
on ``ReauthRequired`` and relists on ``CursorReset``; any other ``ProviderRequestError`` is final.
"""


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
