"""Google Drive API v3 client.

First sync: take ``changes/startPageToken``, then page through ``files`` (``pageToken``); later
syncs follow ``changes`` from that token (``nextPageToken`` while paging, ``newStartPageToken`` at
the end). Drive has no paths: they are resolved from the folders seen in the same run (see
``FileItem``).
"""

from collections.abc import Iterator
from typing import Any, ClassVar

import requests

from tasks.providers.base import ProviderClient
from tasks.providers.cursors import Cursor
from tasks.providers.data import AccountInfo, ChangePage, FileItem, as_int, parse_timestamp
from tasks.providers.errors import CursorReset, ProviderError

FOLDER_MIME = "application/vnd.google-apps.folder"
FILE_FIELDS = "id,name,mimeType,size,modifiedTime,parents,md5Checksum,trashed,webViewLink"
CHANGE_FIELDS = f"nextPageToken,newStartPageToken,changes(changeType,fileId,removed,file({FILE_FIELDS}))"
RATE_LIMIT_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded"})
MAX_DEPTH = 256  # guards path resolution against a parent cycle in bad data


class GoogleDriveClient(ProviderClient):
    """Drive v3 over the ``cloudProviders`` apiBaseUrl (``https://www.googleapis.com``)."""

    slug: ClassVar[str] = "google-drive"
    default_page_size: ClassVar[int | None] = 1000  # the API's maximum; its default is 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._root_id: str | None = None
        self._folders: dict[str, tuple[str, str | None]] = {}  # id -> (name, parent id)

    def account(self) -> AccountInfo:
        """``about`` with the user and the storage quota."""
        body = self._call("GET", self._url("/drive/v3/about"), params={"fields": "user,storageQuota"})
        user = body.get("user") or {}
        quota = body.get("storageQuota") or {}
        return AccountInfo(
            account_id=str(user.get("permissionId") or user.get("emailAddress") or ""),
            email=user.get("emailAddress"),
            display_name=user.get("displayName"),
            quota_total=as_int(quota.get("limit")),  # absent on unlimited plans
            quota_used=as_int(quota.get("usage")),
        )

    # -- listing ------------------------------------------------------------------------------

    def _walk(self, position: Cursor | None, *, reset: bool) -> Iterator[ChangePage]:
        if position is None or position.kind == "files":
            yield from self._list_files(position, reset=reset)
        elif position.kind == "changes":
            yield from self._follow_changes(position.token)
        else:
            raise CursorReset(f"unknown Drive cursor kind {position.kind!r}")

    def _list_files(self, position: Cursor | None, *, reset: bool) -> Iterator[ChangePage]:
        if position is None:
            # Taken before listing so that changes made while we list are replayed afterwards.
            start_body = self._call("GET", self._url("/drive/v3/changes/startPageToken"))
            start = str(start_body["startPageToken"])
            page_token: str | None = None
        else:
            if position.start is None:
                raise CursorReset("Drive listing cursor without a start page token")
            start, page_token, reset = position.start, position.token, reset or position.reset
        root_id = self._drive_root_id()
        while True:
            params = {
                "q": "trashed = false",
                "spaces": "drive",
                "pageSize": self._page_size,
                "fields": f"nextPageToken,files({FILE_FIELDS})",
            }
            if page_token:
                params["pageToken"] = page_token
            body = self._call("GET", self._url("/drive/v3/files"), params=params)
            items = tuple(self._item(entry, root_id) for entry in body.get("files") or ())
            page_token = body.get("nextPageToken")
            if page_token:
                cursor = Cursor(self.slug, "files", page_token, reset=reset, start=start)
            else:
                cursor = Cursor(self.slug, "changes", start)
            yield ChangePage(items, (), cursor.encode(), done=not page_token, reset=reset)
            if not page_token:
                return

    def _follow_changes(self, page_token: str) -> Iterator[ChangePage]:
        root_id = self._drive_root_id()
        while True:
            params = {
                "pageToken": page_token,
                "pageSize": self._page_size,
                "includeRemoved": "true",
                "spaces": "drive",
                "fields": CHANGE_FIELDS,
            }
            body = self._call("GET", self._url("/drive/v3/changes"), params=params)
            items: list[FileItem] = []
            deletions: list[str] = []
            for change in body.get("changes") or ():
                if change.get("changeType", "file") != "file":
                    continue  # shared-drive changes: we sync My Drive only
                entry = change.get("file")
                if change.get("removed") or not entry or entry.get("trashed"):
                    deletions.append(str(change["fileId"]))
                    self._folders.pop(str(change["fileId"]), None)
                else:
                    items.append(self._item(entry, root_id))
            next_token = body.get("nextPageToken")
            if next_token:
                cursor = Cursor(self.slug, "changes", next_token)
            elif body.get("newStartPageToken"):
                cursor = Cursor(self.slug, "changes", body["newStartPageToken"])
            else:
                raise ProviderError("Drive changes page without nextPageToken or newStartPageToken")
            yield ChangePage(tuple(items), tuple(deletions), cursor.encode(), done=not next_token)
            if not next_token:
                return
            page_token = next_token

    def _drive_root_id(self) -> str:
        # One call per client: top-level items name "My Drive" by its id in ``parents``.
        if self._root_id is None:
            body = self._call("GET", self._url("/drive/v3/files/root"), params={"fields": "id"})
            self._root_id = str(body["id"])
        return self._root_id

    def _item(self, entry: dict[str, Any], root_id: str) -> FileItem:
        file_id = str(entry["id"])
        name = str(entry.get("name") or "")
        parents = entry.get("parents") or []
        parent_id = str(parents[0]) if parents else None
        is_folder = entry.get("mimeType") == FOLDER_MIME
        if is_folder:
            self._folders[file_id] = (name, parent_id)
        return FileItem(
            provider_file_id=file_id,
            name=name,
            path=self._path(name, parent_id, root_id),
            parent_id=parent_id,
            is_folder=is_folder,
            mime_type=entry.get("mimeType"),
            size=as_int(entry.get("size")),
            modified_at=parse_timestamp(entry.get("modifiedTime")),
            content_hash=entry.get("md5Checksum"),
            web_url=entry.get("webViewLink"),
        )

    def _path(self, name: str, parent_id: str | None, root_id: str) -> str | None:
        parts = [name]
        current = parent_id
        for _ in range(MAX_DEPTH):
            if current == root_id:
                return "/" + "/".join(reversed(parts))
            folder = self._folders.get(current) if current is not None else None
            if folder is None:
                return None  # an ancestor we have not seen in this run, or a shared item
            parts.append(folder[0])
            current = folder[1]
        return None

    # -- errors -------------------------------------------------------------------------------

    def _error_message(self, response: requests.Response) -> tuple[str, str | None]:
        error = _error_body(response)
        if error is None:
            return super()._error_message(response)
        reasons = error.get("errors") or [{}]
        reason = reasons[0].get("reason") if isinstance(reasons[0], dict) else None
        return (str(error.get("message") or response.reason), reason)

    def _is_throttle(self, response: requests.Response, code: str | None) -> bool:
        return super()._is_throttle(response, code) or (
            response.status_code == 403 and code in RATE_LIMIT_REASONS
        )

    def _special_error(
        self, response: requests.Response, message: str, code: str | None
    ) -> ProviderError | None:
        # Drive answers a page token it no longer knows with 400 "Invalid Value" on pageToken.
        error = _error_body(response) if response.status_code in (400, 404, 410) else None
        details = (error or {}).get("errors") or []
        if any(isinstance(d, dict) and d.get("location") == "pageToken" for d in details):
            return CursorReset(message, status=response.status_code)
        return None


def _error_body(response: requests.Response) -> dict[str, Any] | None:
    """Google's ``{"error": {"code", "message", "errors": [{"reason", ...}]}}`` envelope."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None
