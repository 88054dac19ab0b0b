"""Fake Google Drive v3 under ``/google`` (apiBaseUrl ``{base}/google``).

Page tokens: ``f{epoch}-{index}`` for ``files`` listings, ``c{epoch}-{seq}`` for ``changes``; one
from an older epoch is answered like Drive answers a token it no longer knows (400, ``Invalid
Value`` on ``pageToken``). ``q`` and ``fields`` are accepted and ignored: every field is returned
and trashed items are never listed.
"""

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from ops.fake_providers.store import GOOGLE, Account, FakeFile
from ops.fake_providers.web import Context, Reply, Route, json_reply, route

FOLDER_MIME = "application/vnd.google-apps.folder"
QUOTA_LIMIT = 15 * 1024**3
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
RATE_LIMIT_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded"})
_REASONS = {400: "badRequest", 401: "authError", 403: "forbidden", 404: "notFound", 429: "rateLimitExceeded"}
_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_TOKEN = re.compile(r"^([fc])(\d+)-(\d+)$")


def api_error(
    status: int,
    message: str,
    *,
    reason: str | None = None,
    retry_after: str | None = None,
    location: str | None = None,
) -> Reply:
    """Google's JSON error envelope."""
    reason = reason or _REASONS.get(status, "backendError")
    detail: dict[str, Any] = {
        "message": message,
        "domain": "usageLimits" if reason in RATE_LIMIT_REASONS else "global",
        "reason": reason,
    }
    if location:
        detail |= {"location": location, "locationType": "parameter"}
    body = {
        "error": {"code": status, "message": message, "errors": [detail], "status": _STATUSES.get(status)}
    }
    return json_reply(status, body, {"Retry-After": retry_after} if retry_after else None)


def _invalid_page_token() -> Reply:
    return api_error(400, "Invalid Value", reason="invalid", location="pageToken")


def _page_size(ctx: Context, account: Account) -> int:
    try:
        asked = int(ctx.request.query.get("pageSize") or DEFAULT_PAGE_SIZE)
    except ValueError:
        asked = DEFAULT_PAGE_SIZE
    return max(1, min(asked, MAX_PAGE_SIZE, account.page_size))


def _parse_token(token: str | None, kind: str, account: Account) -> int | None:
    match = _TOKEN.match(token or "")
    if match is None or match[1] != kind or int(match[2]) != account.epoch:
        return None
    return int(match[3])


def _time(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def file_json(item: FakeFile) -> dict[str, Any]:
    """A Drive ``File`` resource."""
    body: dict[str, Any] = {
        "kind": "drive#file",
        "id": item.id,
        "name": item.name,
        "mimeType": FOLDER_MIME if item.is_folder else item.mime_type or "application/octet-stream",
        "parents": [item.parent_id],
        "modifiedTime": _time(item.modified),
        "trashed": item.trashed,
        "webViewLink": f"https://drive.google.com/file/d/{item.id}/view",
    }
    if not item.is_folder:
        body["size"] = str(item.size)  # int64 fields are JSON strings in Google APIs
        body["md5Checksum"] = hashlib.md5(
            f"{item.id}:{item.version}".encode(), usedforsecurity=False
        ).hexdigest()
    return body


def about(ctx: Context) -> Reply:
    """``GET /drive/v3/about``."""
    account = _account(ctx)
    used = sum(item.size for item in account.files.values() if not item.trashed)
    return json_reply(
        200,
        {
            "kind": "drive#about",
            "user": {
                "kind": "drive#user",
                "displayName": account.display_name,
                "emailAddress": account.email,
                "permissionId": f"perm-{account.id}",
                "me": True,
            },
            "storageQuota": {
                "limit": str(QUOTA_LIMIT),
                "usage": str(used),
                "usageInDrive": str(used),
                "usageInDriveTrash": "0",
            },
        },
    )


def files_get(ctx: Context) -> Reply:
    """``GET /drive/v3/files/{fileId}`` (``root`` is an alias of My Drive)."""
    account = _account(ctx)
    file_id = ctx.params["file_id"]
    if file_id in ("root", account.root_id):
        return json_reply(
            200, {"kind": "drive#file", "id": account.root_id, "name": "My Drive", "mimeType": FOLDER_MIME}
        )
    item = account.files.get(file_id)
    if item is None:
        return api_error(404, f"File not found: {file_id}.", location="fileId")
    return json_reply(200, file_json(item))


def files_list(ctx: Context) -> Reply:
    """``GET /drive/v3/files``: every live item, in creation order."""
    account = _account(ctx)
    token = ctx.request.query.get("pageToken")
    start = 0
    if token:
        parsed = _parse_token(token, "f", account)
        if parsed is None:
            return _invalid_page_token()
        start = parsed
    items, next_index = account.listing(start, _page_size(ctx, account))
    body: dict[str, Any] = {
        "kind": "drive#fileList",
        "incompleteSearch": False,
        "files": [file_json(item) for item in items],
    }
    if next_index is not None:
        body["nextPageToken"] = f"f{account.epoch}-{next_index}"
    return json_reply(200, body)


def start_page_token(ctx: Context) -> Reply:
    """``GET /drive/v3/changes/startPageToken``."""
    account = _account(ctx)
    return json_reply(
        200, {"kind": "drive#startPageToken", "startPageToken": f"c{account.epoch}-{len(account.log)}"}
    )


def changes_list(ctx: Context) -> Reply:
    """``GET /drive/v3/changes``: the latest state of each file changed since ``pageToken``."""
    account = _account(ctx)
    seq = _parse_token(ctx.request.query.get("pageToken"), "c", account)
    if seq is None:
        return _invalid_page_token()
    include_removed = ctx.request.query.get("includeRemoved", "true") != "false"
    changes, next_seq = account.changes(seq, _page_size(ctx, account))
    now = _time(datetime.now(UTC).timestamp())
    out = []
    for change in changes:
        entry: dict[str, Any] = {
            "kind": "drive#change",
            "changeType": "file",
            "time": now,
            "fileId": change.file_id,
        }
        if change.file is None:
            if not include_removed:
                continue
            entry["removed"] = True
        else:
            entry |= {"removed": False, "file": file_json(change.file)}
        out.append(entry)
    token = f"c{account.epoch}-{next_seq}"
    body: dict[str, Any] = {"kind": "drive#changeList", "changes": out}
    body["newStartPageToken" if next_seq >= len(account.log) else "nextPageToken"] = token
    return json_reply(200, body)


def _account(ctx: Context) -> Account:
    assert ctx.account is not None  # the dispatcher authenticates api routes
    return ctx.account


ROUTES: list[Route] = [
    route("GET", "/google/drive/v3/about", "google.about", about, "api", provider=GOOGLE),
    route(
        "GET",
        "/google/drive/v3/changes/startPageToken",
        "google.changes.start",
        start_page_token,
        "api",
        provider=GOOGLE,
    ),
    route("GET", "/google/drive/v3/changes", "google.changes.list", changes_list, "api", provider=GOOGLE),
    route("GET", "/google/drive/v3/files", "google.files.list", files_list, "api", provider=GOOGLE),
    route("GET", "/google/drive/v3/files/{file_id}", "google.files.get", files_get, "api", provider=GOOGLE),
]
