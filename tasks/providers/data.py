"""The values the provider clients take and return, and the parsing of provider fields into them.

All frozen dataclasses: a client hands them to the job layer, which persists them as seed-shaped
documents (``tasks/sync.py``, ``tasks/health.py``, ``tasks/tokens.py``).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from tasks.providers.outbound import OutboundPolicy


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
