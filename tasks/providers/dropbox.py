"""Dropbox API v2 client.

``files/list_folder`` (recursive) then ``files/list_folder/continue`` while ``has_more``; the last
cursor is the next sync's starting point. A 409 ``reset`` voids a cursor. Deletions carry a path,
never an id, so they are reported in ``ChangePage.deleted_paths``; Dropbox metadata has no parent
id either, so ``FileItem.parent_id`` is None and ``path`` (``path_display``) is the key to nest by.
"""

from collections.abc import Iterator
from typing import Any, ClassVar

import requests

from tasks.providers.base import ProviderClient
from tasks.providers.cursors import Cursor
from tasks.providers.data import AccountInfo, ChangePage, FileItem, as_int, parse_timestamp
from tasks.providers.errors import CursorReset, ProviderError, RateLimited


class DropboxClient(ProviderClient):
    """Dropbox v2 RPC endpoints over the apiBaseUrl (``https://api.dropboxapi.com``)."""

    slug: ClassVar[str] = "dropbox"

    def account(self) -> AccountInfo:
        """``users/get_current_account`` (no quota: that is another call, not worth a probe)."""
        # No-argument RPC endpoints take no body and no Content-Type.
        body = self._call("POST", self._url("/2/users/get_current_account"))
        name = body.get("name") or {}
        return AccountInfo(
            account_id=str(body.get("account_id") or ""),
            email=body.get("email"),
            display_name=name.get("display_name"),
        )

    def _walk(self, position: Cursor | None, *, reset: bool) -> Iterator[ChangePage]:
        if position is None:
            args: dict[str, Any] = {"path": "", "recursive": True, "include_deleted": False}
            if self._page_size:
                args["limit"] = self._page_size
            body = self._call("POST", self._url("/2/files/list_folder"), json=args)
        else:
            reset = reset or position.reset
            body = self._continue(position.token)
        while True:
            items: list[FileItem] = []
            deleted: list[str] = []
            for entry in body.get("entries") or ():
                tag = entry.get(".tag")
                if tag == "deleted":
                    deleted.append(str(entry.get("path_lower") or "").lower())
                elif tag in ("file", "folder"):
                    items.append(_item(entry))
            cursor = body.get("cursor")
            if not cursor:
                raise ProviderError("Dropbox listing page without a cursor")
            more = bool(body.get("has_more"))
            # While a relisting is still paging its cursor stays flagged, so a resumed run knows.
            encoded = Cursor(self.slug, "cursor", cursor, reset=reset and more).encode()
            yield ChangePage(
                tuple(items), (), encoded, done=not more, reset=reset, deleted_paths=tuple(deleted)
            )
            if not more:
                return
            body = self._continue(cursor)

    def _continue(self, cursor: str) -> dict[str, Any]:
        return self._call("POST", self._url("/2/files/list_folder/continue"), json={"cursor": cursor})

    # -- errors -------------------------------------------------------------------------------

    def _error_message(self, response: requests.Response) -> tuple[str, str | None]:
        # Endpoint errors are JSON {"error_summary", "error": {".tag"}}; 400s are plain text.
        try:
            body = response.json()
        except ValueError:
            return super()._error_message(response)
        if not isinstance(body, dict):
            return super()._error_message(response)
        error = body.get("error")
        tag = error.get(".tag") if isinstance(error, dict) else None
        return (str(body.get("error_summary") or tag or response.reason), tag)

    def _special_error(
        self, response: requests.Response, message: str, code: str | None
    ) -> ProviderError | None:
        if response.status_code == 409 and code == "reset":
            return CursorReset(message, status=409)
        if response.status_code == 429 and "Retry-After" not in response.headers:
            # The header is documented, but the body carries the same hint; use it if alone.
            hint = _body_retry_after(response)
            if hint is not None:
                return RateLimited(hint, message, status=429)
        return None


def _body_retry_after(response: requests.Response) -> float | None:
    try:
        error = response.json().get("error") or {}
        return float(error["retry_after"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _item(entry: dict[str, Any]) -> FileItem:
    is_folder = entry.get(".tag") == "folder"
    return FileItem(
        provider_file_id=str(entry["id"]),
        name=str(entry.get("name") or ""),
        path=entry.get("path_display") or entry.get("path_lower"),
        parent_id=None,
        is_folder=is_folder,
        size=None if is_folder else as_int(entry.get("size")),
        modified_at=parse_timestamp(entry.get("server_modified")),
        content_hash=entry.get("content_hash"),
        etag=entry.get("rev"),
    )
