"""Fake Dropbox API v2 under ``/dropbox`` (apiBaseUrl ``{base}/dropbox``).

Only recursive listings of the root (``path: ""``) are served. Cursors are opaque base64 of
``{epoch, kind, seq, index, limit}``; one from an older epoch gets 409 ``reset``. A deleted or
moved item shows as a ``deleted`` entry for its old path (its subtree implied), as Dropbox does.
"""

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from ops.fake_providers.store import DROPBOX, Account, Change, FakeFile
from ops.fake_providers.web import Context, Reply, Route, json_reply, route, text_reply

DEFAULT_LIMIT = 2000  # Dropbox's own page size is "up to 2000"
_TAGS = {401: "invalid_access_token", 403: "no_permission", 409: "other"}


def api_error(
    status: int, message: str, *, reason: str | None = None, retry_after: str | None = None
) -> Reply:
    """Dropbox's error shapes: JSON ``error_summary``/``error`` for auth, 409 and 429; text otherwise."""
    headers = {"Retry-After": retry_after} if retry_after else None
    if status == 429:
        seconds = int(float(retry_after)) if retry_after and retry_after.replace(".", "", 1).isdigit() else 1
        body = {
            "error_summary": "too_many_requests/...",
            "error": {"reason": {".tag": "too_many_requests"}, "retry_after": seconds},
        }
        return json_reply(429, body, headers)
    if status in _TAGS or reason:
        tag = reason or _TAGS[status]
        return json_reply(status, {"error_summary": f"{tag}/...", "error": {".tag": tag}}, headers)
    return text_reply(status, f"Error in call to API function: {message}", headers)


def _time(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _encode_cursor(account: Account, kind: str, seq: int, index: int, limit: int) -> str:
    raw = json.dumps({"e": account.epoch, "k": kind, "s": seq, "i": index, "n": limit}, separators=(",", ":"))
    return "AAF" + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, Any] | None:
    if not cursor.startswith("AAF"):
        return None
    text = cursor[3:]
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        return None
    return data if isinstance(data, dict) and {"e", "k", "s", "i", "n"} <= data.keys() else None


def entry_json(account: Account, item: FakeFile) -> dict[str, Any]:
    """A ``FileMetadata`` or ``FolderMetadata``."""
    path = account.path_of(item)
    body: dict[str, Any] = {
        ".tag": "folder" if item.is_folder else "file",
        "name": item.name,
        "path_lower": path.lower(),
        "path_display": path,
        "id": item.id,
    }
    if not item.is_folder:
        body |= {
            "client_modified": _time(item.modified),
            "server_modified": _time(item.modified),
            "rev": f"{item.version:09x}{_short_hash(item.id)}",
            "size": item.size,
            "is_downloadable": True,
            "content_hash": hashlib.sha256(f"{item.id}:{item.version}".encode()).hexdigest(),
        }
    return body


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:6]


def _deleted_json(path: str) -> dict[str, Any]:
    return {
        ".tag": "deleted",
        "name": path.rsplit("/", 1)[-1],
        "path_lower": path.lower(),
        "path_display": path,
    }


def _change_json(account: Account, change: Change) -> dict[str, Any]:
    if change.gone_path is not None:
        return _deleted_json(change.gone_path)
    assert change.file is not None  # Account.changes only yields live items for Dropbox
    return entry_json(account, change.file)


def get_current_account(ctx: Context) -> Reply:
    """``POST /2/users/get_current_account`` (no arguments: empty body or ``null``)."""
    account = _account(ctx)
    if ctx.request.body.strip() not in (b"", b"null"):
        return text_reply(
            400, 'Error in call to API function "users/get_current_account": request body: expected null'
        )
    given, _, surname = account.display_name.partition(" ")
    return json_reply(
        200,
        {
            "account_id": f"dbid:{account.id}",
            "name": {
                "given_name": given,
                "surname": surname,
                "familiar_name": given,
                "display_name": account.display_name,
                "abbreviated_name": (given[:1] + surname[:1]).upper(),
            },
            "email": account.email,
            "email_verified": True,
            "disabled": False,
            "locale": "en",
            "country": "US",
            "account_type": {".tag": "basic"},
            "root_info": {".tag": "user", "root_namespace_id": account.id, "home_namespace_id": account.id},
        },
    )


def list_folder(ctx: Context) -> Reply:
    """``POST /2/files/list_folder``: the first page of a recursive listing of the root."""
    account = _account(ctx)
    try:
        args = ctx.request.json() or {}
    except ValueError:
        return text_reply(
            400, 'Error in call to API function "files/list_folder": could not decode input as JSON'
        )
    if args.get("path", None) != "":
        return text_reply(
            400, 'Error in call to API function "files/list_folder": the fake lists path "" only'
        )
    if not args.get("recursive"):
        return text_reply(
            400, 'Error in call to API function "files/list_folder": the fake lists recursively only'
        )
    limit = max(1, min(int(args.get("limit") or DEFAULT_LIMIT), DEFAULT_LIMIT, account.page_size))
    return _listing_page(account, seq=len(account.log), index=0, limit=limit)


def list_folder_continue(ctx: Context) -> Reply:
    """``POST /2/files/list_folder/continue``: more of a listing, or the changes since it."""
    account = _account(ctx)
    try:
        cursor = (ctx.request.json() or {}).get("cursor") or ""
    except (ValueError, AttributeError):
        cursor = ""
    state = _decode_cursor(cursor)
    if state is None:
        return text_reply(
            400, 'Error in call to API function "files/list_folder/continue": Invalid "cursor" parameter'
        )
    if state["e"] != account.epoch:
        return api_error(409, "cursor reset", reason="reset")
    limit = int(state["n"])
    if state["k"] == "l":
        return _listing_page(account, seq=int(state["s"]), index=int(state["i"]), limit=limit)
    changes, next_seq = account.changes(int(state["s"]), limit)
    return json_reply(
        200,
        {
            "entries": [_change_json(account, change) for change in changes],
            "cursor": _encode_cursor(account, "d", next_seq, 0, limit),
            "has_more": next_seq < len(account.log),
        },
    )


def _listing_page(account: Account, *, seq: int, index: int, limit: int) -> Reply:
    items, next_index = account.listing(index, limit)
    if next_index is None:
        # The listing is complete: from here the cursor follows the change log from its start.
        cursor = _encode_cursor(account, "d", seq, 0, limit)
    else:
        cursor = _encode_cursor(account, "l", seq, next_index, limit)
    return json_reply(
        200,
        {
            "entries": [entry_json(account, item) for item in items],
            "cursor": cursor,
            "has_more": next_index is not None,
        },
    )


def _account(ctx: Context) -> Account:
    assert ctx.account is not None  # the dispatcher authenticates api routes
    return ctx.account


ROUTES: list[Route] = [
    route(
        "POST",
        "/dropbox/2/users/get_current_account",
        "dropbox.account",
        get_current_account,
        "api",
        provider=DROPBOX,
    ),
    route(
        "POST", "/dropbox/2/files/list_folder", "dropbox.list_folder", list_folder, "api", provider=DROPBOX
    ),
    route(
        "POST",
        "/dropbox/2/files/list_folder/continue",
        "dropbox.list_folder_continue",
        list_folder_continue,
        "api",
        provider=DROPBOX,
    ),
]
