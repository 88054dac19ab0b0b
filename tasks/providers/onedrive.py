"""Microsoft Graph (OneDrive) client.

``me/drive/root/delta`` pages via ``@odata.nextLink``; the final ``@odata.deltaLink`` is the next
sync's cursor. A 410 (``resyncRequired``) voids it and names in ``Location`` where to enumerate
again. The token endpoint rotates refresh tokens: the old one stops working, so the new one in
``client.tokens`` must be stored.
"""

from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import unquote

import requests

from tasks.providers.base import ProviderClient
from tasks.providers.cursors import Cursor
from tasks.providers.data import AccountInfo, ChangePage, FileItem, as_int, parse_timestamp
from tasks.providers.errors import CursorReset, ProviderError

ROOT_PATH_PREFIX = "/drive/root:"


class OneDriveClient(ProviderClient):
    """Graph v1.0 over the apiBaseUrl (``https://graph.microsoft.com``)."""

    slug: ClassVar[str] = "onedrive"
    rotates_refresh_token: ClassVar[bool] = True

    def account(self) -> AccountInfo:
        """``me/drive``: the drive's owner and quota."""
        body = self._call("GET", self._url("/v1.0/me/drive"))
        user = (body.get("owner") or {}).get("user") or {}
        quota = body.get("quota") or {}
        return AccountInfo(
            account_id=str(user.get("id") or body.get("id") or ""),
            email=user.get("email"),
            display_name=user.get("displayName"),
            quota_total=as_int(quota.get("total")),
            quota_used=as_int(quota.get("used")),
        )

    def _refresh_extras(self) -> dict[str, str]:
        # The v2.0 endpoint wants the scopes again; offline_access among them keeps a refresh token.
        return {"scope": " ".join(self.config.scopes)} if self.config.scopes else {}

    # -- listing ------------------------------------------------------------------------------

    def _walk(self, position: Cursor | None, *, reset: bool) -> Iterator[ChangePage]:
        if position is None:
            url = self._url("/v1.0/me/drive/root/delta")
            params: dict[str, Any] | None = {"$top": self._page_size} if self._page_size else None
        else:
            url, params, reset = position.token, None, reset or position.reset
            if not self._is_ours(url):
                # Links carry our bearer token, so only ever follow them to the configured API.
                raise CursorReset("Graph cursor does not point at the configured apiBaseUrl")
        while True:
            body = self._call("GET", url, params=params)
            items: list[FileItem] = []
            deletions: list[str] = []
            for entry in body.get("value") or ():
                if "deleted" in entry:
                    deletions.append(str(entry["id"]))
                elif "root" not in entry:  # the root itself is listed; we keep only its contents
                    items.append(_item(entry))
            next_link = body.get("@odata.nextLink")
            if next_link:
                cursor = Cursor(self.slug, "next", next_link, reset=reset)
            elif body.get("@odata.deltaLink"):
                cursor = Cursor(self.slug, "delta", body["@odata.deltaLink"])
            else:
                raise ProviderError("Graph delta page without @odata.nextLink or @odata.deltaLink")
            yield ChangePage(tuple(items), tuple(deletions), cursor.encode(), done=not next_link, reset=reset)
            if not next_link:
                return
            if not self._is_ours(next_link):
                raise ProviderError("Graph nextLink does not point at the configured apiBaseUrl")
            url, params = next_link, None

    def _restart_position(self, error: CursorReset) -> Cursor | None:
        if error.restart_url and self._is_ours(error.restart_url):
            return Cursor(self.slug, "next", error.restart_url, reset=True)
        return None

    def _is_ours(self, url: str) -> bool:
        return url.startswith(self.config.api_base_url + "/")

    # -- errors -------------------------------------------------------------------------------

    def _error_message(self, response: requests.Response) -> tuple[str, str | None]:
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            error = None
        if not isinstance(error, dict):
            return super()._error_message(response)
        return (str(error.get("message") or error.get("code") or response.reason), error.get("code"))

    def _special_error(
        self, response: requests.Response, message: str, code: str | None
    ) -> ProviderError | None:
        if response.status_code == 410:
            return CursorReset(message, status=410, restart_url=response.headers.get("Location"))
        return None


def _item(entry: dict[str, Any]) -> FileItem:
    name = str(entry.get("name") or "")
    parent = entry.get("parentReference") or {}
    file_facet = entry.get("file") or {}
    hashes = file_facet.get("hashes") or {}
    is_folder = "folder" in entry
    return FileItem(
        provider_file_id=str(entry["id"]),
        name=name,
        path=_path(parent.get("path"), name),
        parent_id=parent.get("id"),
        is_folder=is_folder,
        mime_type=file_facet.get("mimeType"),
        size=None if is_folder else as_int(entry.get("size")),
        modified_at=parse_timestamp(entry.get("lastModifiedDateTime")),
        # Personal accounts report sha1Hash; business ones only quickXorHash.
        content_hash=hashes.get("sha1Hash") or hashes.get("quickXorHash"),
        etag=entry.get("eTag"),
        web_url=entry.get("webUrl"),
    )


def _path(parent_path: str | None, name: str) -> str | None:
    """``/drive/root:/a/b`` + ``c`` -> ``/a/b/c``; delta often omits the parent path (-> None)."""
    if not parent_path or not parent_path.startswith(ROOT_PATH_PREFIX):
        return None
    folder = unquote(parent_path.removeprefix(ROOT_PATH_PREFIX)).rstrip("/")
    return f"{folder}/{name}"
