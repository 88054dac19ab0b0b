"""Provider clients (Google Drive, Dropbox, OneDrive) behind one small interface.

Build one with ``client_for(ProviderConfig.from_document(doc), tokens, refresher=...)``; call
``account()`` as the health probe; iterate ``changes(cursor)`` one page at a time, applying each
page and checkpointing its ``next_cursor``; then persist ``client.tokens`` (they may have been
refreshed) and add ``client.request_count`` to the integration's usage.

Every call is checked against an ``OutboundPolicy`` (outbound.py): the one given to
``client_for``, else the config's (``tasks.integrations.provider_config`` sets it), else the
process settings' (``MWAP_OUTBOUND_*``), else the strict default. A refusal is
``DestinationRefused`` and nothing is sent.
"""

from collections.abc import Callable

import requests

from tasks.providers.base import ProviderClient, Refresher
from tasks.providers.data import AccountInfo, ChangePage, FileItem, ProviderConfig, Tokens
from tasks.providers.dropbox import DropboxClient
from tasks.providers.errors import (
    AuthExpired,
    CursorReset,
    DestinationRefused,
    ProviderError,
    ProviderRequestError,
    RateLimited,
    ReauthRequired,
    TransientProviderError,
)
from tasks.providers.google_drive import GoogleDriveClient
from tasks.providers.http import DEFAULT_TIMEOUT, RetryPolicy, Timeout, process_session
from tasks.providers.onedrive import OneDriveClient
from tasks.providers.outbound import OutboundPolicy, OutboundRefused

CLIENTS: dict[str, type[ProviderClient]] = {
    cls.slug: cls for cls in (GoogleDriveClient, DropboxClient, OneDriveClient)
}

__all__ = [
    "CLIENTS",
    "DEFAULT_TIMEOUT",
    "AccountInfo",
    "AuthExpired",
    "ChangePage",
    "CursorReset",
    "DestinationRefused",
    "DropboxClient",
    "FileItem",
    "GoogleDriveClient",
    "OneDriveClient",
    "OutboundPolicy",
    "OutboundRefused",
    "ProviderClient",
    "ProviderConfig",
    "ProviderError",
    "ProviderRequestError",
    "RateLimited",
    "ReauthRequired",
    "Refresher",
    "RetryPolicy",
    "Timeout",
    "Tokens",
    "TransientProviderError",
    "client_for",
    "process_session",
]


def client_for(
    config: ProviderConfig,
    tokens: Tokens,
    *,
    session: requests.Session | None = None,
    refresher: Refresher | None = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    retry: RetryPolicy | None = None,
    page_size: int | None = None,
    sleep: Callable[[float], None] | None = None,
    policy: OutboundPolicy | None = None,
) -> ProviderClient:
    """The client for ``config.slug``; ``refresher`` replaces the client's own refresh on 401.

    ``policy``: where its calls may go; default the config's, else the process settings'.
    """
    try:
        cls = CLIENTS[config.slug]
    except KeyError:
        raise ValueError(f"no provider client for slug {config.slug!r}") from None
    extra = {"sleep": sleep} if sleep is not None else {}
    return cls(
        config,
        tokens,
        session=session,
        refresher=refresher,
        timeout=timeout,
        retry=retry,
        page_size=page_size,
        policy=policy,
        **extra,
    )
