"""Fake Microsoft Graph (OneDrive) under ``/graph`` (apiBaseUrl ``{base}/graph``).

``/v1.0/me/drive/root/delta``: without parameters it enumerates the drive (root item first);
``$skiptoken`` continues a page run (``@odata.nextLink``), ``token`` is a ``@odata.deltaLink``
(``token=latest`` answers no items and the current deltaLink, as Graph does). A link from an
older epoch gets 410 ``resyncRequired`` with ``Location`` set to a fresh enumeration. Items carry
``parentReference.path`` (real delta responses often omit it; the client then leaves path None).
"""

import hashlib
import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from ops.fake_providers.store import ONEDRIVE, Account, FakeFile
from ops.fake_providers.web import Context, Reply, Route, json_reply, route

QUOTA_TOTAL = 5 * 1024**3
MAX_TOP = 1000
_CODES = {
    400: "invalidRequest",
    401: "InvalidAuthenticationToken",
    403: "accessDenied",
    404: "itemNotFound",
    410: "resyncRequired",
    429: "activityLimitReached",
    500: "generalException",
    503: "serviceNotAvailable",
}
_SKIP = re.compile(r"^(\d+)\.([lc])\.(\d+)\.(\d+)\.(\d+)$")  # epoch.kind.seq.index.top
_DELTA = re.compile(r"^(\d+)\.(\d+)$")  # epoch.seq
LATEST = "latest"  # Graph's keyword for "just give me a deltaLink"


def api_error(
    status: int,
    message: str,
    *,
    reason: str | None = None,
    retry_after: str | None = None,
    location: str | None = None,
) -> Reply:
    """Graph's ``{"error": {"code", "message", "innerError"}}`` envelope."""
    body = {
        "error": {
            "code": reason or _CODES.get(status, "generalException"),
            "message": message,
            "innerError": {"date": _time(datetime.now(UTC).timestamp()), "request-id": str(uuid.uuid4())},
        }
    }
    headers = {}
    if retry_after:
        headers["Retry-After"] = retry_after
    if location:
        headers["Location"] = location
    return json_reply(status, body, headers)


def _time(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _delta_url(ctx: Context) -> str:
    return f"{ctx.request.base_url}/graph/v1.0/me/drive/root/delta"


def _parent_reference(account: Account, item: FakeFile) -> dict[str, Any]:
    parent = account.parent_path(item)
    return {
        "driveId": f"drive-{account.id}",
        "driveType": "personal",
        "id": item.parent_id,
        "path": "/drive/root:" + ("" if parent == "/" else quote(parent)),
    }


def item_json(account: Account, item: FakeFile) -> dict[str, Any]:
    """A ``driveItem``."""
    body: dict[str, Any] = {
        "id": item.id,
        "name": item.name,
        "eTag": f'"{{{item.id}}},{item.version}"',
        "cTag": f'"c:{{{item.id}}},{item.version}"',
        "createdDateTime": _time(item.modified),
        "lastModifiedDateTime": _time(item.modified),
        "size": item.size,
        "webUrl": f"https://onedrive.live.com/?id={quote(item.id)}",
        "parentReference": _parent_reference(account, item),
    }
    if item.is_folder:
        body["folder"] = {"childCount": len(account.children.get(item.id, ()))}
    else:
        sha1 = hashlib.sha1(f"{item.id}:{item.version}".encode(), usedforsecurity=False).hexdigest().upper()
        body["file"] = {
            "mimeType": item.mime_type or "application/octet-stream",
            "hashes": {"sha1Hash": sha1},
        }
    return body


def _root_json(account: Account) -> dict[str, Any]:
    return {
        "id": account.root_id,
        "name": "root",
        "root": {},
        "folder": {"childCount": len(account.children[account.root_id])},
        "parentReference": {"driveId": f"drive-{account.id}", "driveType": "personal"},
    }


def me_drive(ctx: Context) -> Reply:
    """``GET /v1.0/me/drive``."""
    account = _account(ctx)
    used = sum(item.size for item in account.files.values())
    return json_reply(
        200,
        {
            "id": f"drive-{account.id}",
            "driveType": "personal",
            "owner": {
                "user": {"id": account.id, "displayName": account.display_name, "email": account.email}
            },
            "quota": {
                "total": QUOTA_TOTAL,
                "used": used,
                "remaining": QUOTA_TOTAL - used,
                "deleted": 0,
                "state": "normal",
            },
        },
    )


def delta(ctx: Context) -> Reply:
    """``GET /v1.0/me/drive/root/delta``."""
    account = _account(ctx)
    query = ctx.request.query
    try:
        top = max(1, min(int(query.get("$top") or account.page_size), MAX_TOP, account.page_size))
    except ValueError:
        return api_error(400, "Invalid $top")
    if query.get("token") == LATEST:
        link = f"{_delta_url(ctx)}?token={account.epoch}.{len(account.log)}"
        return json_reply(200, {"value": [], "@odata.deltaLink": link})
    position = _position(query, account, top)
    if position is None:
        return _resync(ctx)
    kind, seq, index, top = position
    if kind == "l":
        return _listing_page(ctx, account, seq, index, top)
    return _changes_page(ctx, account, seq, top)


def _position(query: dict[str, str], account: Account, top: int) -> tuple[str, int, int, int] | None:
    """(kind, seq, index, top) a request continues from; None for a link of an older epoch."""
    if "$skiptoken" in query:
        match = _SKIP.match(query["$skiptoken"])
        if match is None or int(match[1]) != account.epoch:
            return None
        return match[2], int(match[3]), int(match[4]), int(match[5])
    if "token" in query:
        match = _DELTA.match(query["token"])
        if match is None or int(match[1]) != account.epoch:
            return None
        return "c", int(match[2]), 0, top
    return "l", len(account.log), 0, top


def _resync(ctx: Context) -> Reply:
    return api_error(
        410, "Resync required. Replace any local items with the server's version.", location=_delta_url(ctx)
    )


def _listing_page(ctx: Context, account: Account, seq: int, index: int, top: int) -> Reply:
    items, next_index = account.listing(index, top)
    value = [item_json(account, item) for item in items]
    if index == 0:
        value.insert(0, _root_json(account))
    body: dict[str, Any] = {"value": value}
    if next_index is None:
        body["@odata.deltaLink"] = f"{_delta_url(ctx)}?token={account.epoch}.{seq}"
    else:
        body["@odata.nextLink"] = f"{_delta_url(ctx)}?$skiptoken={account.epoch}.l.{seq}.{next_index}.{top}"
    return json_reply(200, body)


def _changes_page(ctx: Context, account: Account, seq: int, top: int) -> Reply:
    changes, next_seq = account.changes(seq, top)
    value = []
    for change in changes:
        if change.file is None or change.file.trashed:
            value.append(
                {
                    "id": change.file_id,
                    "deleted": {"state": "deleted"},
                    "parentReference": {"driveId": f"drive-{account.id}", "driveType": "personal"},
                }
            )
        else:
            value.append(item_json(account, change.file))
    body: dict[str, Any] = {"value": value}
    if next_seq >= len(account.log):
        body["@odata.deltaLink"] = f"{_delta_url(ctx)}?token={account.epoch}.{next_seq}"
    else:
        body["@odata.nextLink"] = f"{_delta_url(ctx)}?$skiptoken={account.epoch}.c.{next_seq}.0.{top}"
    return json_reply(200, body)


def _account(ctx: Context) -> Account:
    assert ctx.account is not None  # the dispatcher authenticates api routes
    return ctx.account


ROUTES: list[Route] = [
    route("GET", "/graph/v1.0/me/drive", "graph.drive", me_drive, "api", provider=ONEDRIVE),
    route("GET", "/graph/v1.0/me/drive/root/delta", "graph.delta", delta, "api", provider=ONEDRIVE),
]
