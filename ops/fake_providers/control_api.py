"""The control API under ``/_control``: what tests, the demo and benchmarks use to steer the fake.

``POST /_control/accounts``                         create ``{provider, id?, email?, display_name?,
                                                    access_token?, refresh_token?, page_size?,
                                                    token_lifetime?, latency_ms?, files?: [path |
                                                    {path, folder?, size?, mime_type?}],
                                                    generate?: {files, folders?, size?}}``
``GET /_control/accounts[/{id}]``, ``PATCH|DELETE /_control/accounts/{id}``
``GET|POST /_control/accounts/{id}/files``          list (``offset``, ``limit``) / add ``{path}`` or
                                                    ``{name, parent_id?}`` (+ ``folder``, ``size``)
``GET|PATCH|PUT|DELETE .../files/{file_id}``        read / rename+move ``{name?, parent_id?}`` and
                                                    new content ``{size?, touch?}`` / delete (``?trash=1``)
``GET|POST|DELETE /_control/accounts/{id}/faults``  see ``Fault``; ``{"kind": "cursor_reset"}`` voids
                                                    every cursor at once; ``{"latency_ms": n}`` per account
``POST .../tokens/expire``, ``.../tokens/revoke``, ``GET .../tokens``
``GET|DELETE /_control/accounts/{id}/stats``        calls per endpoint and refresh grants / reset
``GET|PUT /_control/settings``                      ``{latency_ms, page_size, token_lifetime}`` (global)
"""

from typing import Any

from ops.fake_providers.store import Account, ControlError, file_specs
from ops.fake_providers.web import Context, Reply, Route, json_reply, route

MAX_FILES_PAGE = 10_000


def _body(ctx: Context) -> dict[str, Any]:
    try:
        body = ctx.request.json()
    except ValueError as exc:
        raise ControlError(400, f"body is not JSON: {exc}") from exc
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ControlError(400, "body must be a JSON object")
    return body


def _account(ctx: Context) -> Account:
    return ctx.store.get(ctx.params["account_id"])


def _apply_options(account: Account, body: dict[str, Any]) -> None:
    if body.get("page_size") is not None:
        account.page_size = max(1, int(body["page_size"]))
    if body.get("token_lifetime") is not None:
        account.token_lifetime = float(body["token_lifetime"])
    if body.get("latency_ms") is not None:
        account.latency = float(body["latency_ms"]) / 1000


def health(ctx: Context) -> Reply:
    """Liveness for whoever started us."""
    return json_reply(200, {"ok": True, "accounts": len(ctx.store.accounts)})


def get_settings(ctx: Context) -> Reply:
    """The global settings."""
    store = ctx.store
    return json_reply(
        200,
        {
            "latency_ms": round(store.latency * 1000),
            "page_size": store.default_page_size,
            "token_lifetime": store.default_token_lifetime,
        },
    )


def put_settings(ctx: Context) -> Reply:
    """Change the global latency (added to every provider call) and the defaults of new accounts."""
    body, store = _body(ctx), ctx.store
    if body.get("latency_ms") is not None:
        store.latency = float(body["latency_ms"]) / 1000
    if body.get("page_size") is not None:
        store.default_page_size = max(1, int(body["page_size"]))
    if body.get("token_lifetime") is not None:
        store.default_token_lifetime = float(body["token_lifetime"])
    return get_settings(ctx)


def create_account(ctx: Context) -> Reply:
    """A new account with tokens and initial files."""
    body = _body(ctx)
    account, tokens = ctx.store.create_account(
        str(body.get("provider")),
        account_id=body.get("id"),
        email=body.get("email"),
        display_name=body.get("display_name"),
        page_size=body.get("page_size"),
        token_lifetime=body.get("token_lifetime"),
        access_token=body.get("access_token"),
        refresh_token=body.get("refresh_token"),
    )
    try:
        _apply_options(account, {"latency_ms": body.get("latency_ms")})
        for spec in file_specs(body.get("files") or ()):
            account.create_path(
                str(spec["path"]),
                is_folder=bool(spec.get("folder")),
                size=int(spec.get("size", 0)),
                mime_type=spec.get("mime_type"),
                log=False,
            )
        generate = body.get("generate") or {}
        if generate:
            account.generate(
                int(generate.get("files", 0)),
                int(generate.get("folders", 0)),
                int(generate.get("size", 1024)),
            )
    except (ControlError, KeyError, TypeError, ValueError):
        ctx.store.delete_account(account.id)  # all or nothing: a half-made account confuses tests
        raise
    return json_reply(201, account.summary() | {"tokens": tokens})


def list_accounts(ctx: Context) -> Reply:
    """Every account."""
    return json_reply(200, {"accounts": [account.summary() for account in ctx.store.accounts.values()]})


def get_account(ctx: Context) -> Reply:
    """One account."""
    return json_reply(200, _account(ctx).summary())


def patch_account(ctx: Context) -> Reply:
    """Change an account's page size, token lifetime or latency."""
    account = _account(ctx)
    _apply_options(account, _body(ctx))
    return json_reply(200, account.summary())


def delete_account(ctx: Context) -> Reply:
    """Forget an account and its tokens."""
    ctx.store.delete_account(ctx.params["account_id"])
    return Reply(204)


def list_files(ctx: Context) -> Reply:
    """Live files in listing order, ``offset``/``limit`` paged."""
    account = _account(ctx)
    offset = int(ctx.request.query.get("offset", 0))
    limit = min(int(ctx.request.query.get("limit", 1000)), MAX_FILES_PAGE)
    live = (item for item in account.files.values() if not item.trashed)
    page = [account.file_json(item) for _, item in zip(range(offset + limit), live, strict=False)][offset:]
    return json_reply(200, {"files": page, "total": account.live_count()})


def add_file(ctx: Context) -> Reply:
    """Add a file or folder by ``path`` (parents created) or by ``name`` and ``parent_id``."""
    account, body = _account(ctx), _body(ctx)
    options = {
        "is_folder": bool(body.get("folder")),
        "size": int(body.get("size", 0)),
        "mime_type": body.get("mime_type"),
    }
    if body.get("path"):
        item = account.create_path(str(body["path"]), **options)
    elif body.get("name"):
        item = account.create(str(body["name"]), body.get("parent_id"), **options)
    else:
        raise ControlError(400, "give a path, or a name and an optional parent_id")
    return json_reply(201, account.file_json(item))


def get_file(ctx: Context) -> Reply:
    """One file, trashed or not."""
    account = _account(ctx)
    item = account.files.get(ctx.params["file_id"])
    if item is None:
        raise ControlError(404, "no such file")
    return json_reply(200, account.file_json(item))


def patch_file(ctx: Context) -> Reply:
    """Rename and/or move (``name``, ``parent_id``), and/or change content (``size``, ``touch``)."""
    account, body = _account(ctx), _body(ctx)
    file_id = ctx.params["file_id"]
    item = account.require(file_id)
    if body.get("name") or body.get("parent_id"):
        item = account.relocate(file_id, name=body.get("name"), parent_id=body.get("parent_id"))
    if body.get("touch") or body.get("size") is not None:
        size = body.get("size")
        item = account.touch(file_id, size=None if size is None else int(size))
    return json_reply(200, account.file_json(item))


def delete_file(ctx: Context) -> Reply:
    """Delete (or, for Drive with ``?trash=1``, trash) an item and its subtree."""
    trash = ctx.request.query.get("trash", "") in ("1", "true")
    _account(ctx).delete(ctx.params["file_id"], trash=trash)
    return Reply(204)


def get_faults(ctx: Context) -> Reply:
    """Queued faults."""
    return json_reply(200, {"faults": _account(ctx).fault_list()})


def add_faults(ctx: Context) -> Reply:
    """Queue faults: one spec, ``{"faults": [...]}``, ``{"latency_ms": n}`` or a cursor reset."""
    account, body = _account(ctx), _body(ctx)
    specs = body.get("faults") if "faults" in body else ([body] if body.get("kind") else [])
    for spec in specs:
        if spec.get("kind") == "cursor_reset":
            account.epoch += 1
        else:
            account.add_fault(spec)
    _apply_options(account, {"latency_ms": body.get("latency_ms")})
    return json_reply(201, {"faults": account.fault_list(), "epoch": account.epoch})


def clear_faults(ctx: Context) -> Reply:
    """Drop every queued fault and the account's latency."""
    account = _account(ctx)
    account.faults.clear()
    account.latency = 0.0
    return Reply(204)


def reset_cursors(ctx: Context) -> Reply:
    """Void every cursor and page token handed out so far."""
    account = _account(ctx)
    account.epoch += 1
    return json_reply(200, {"epoch": account.epoch})


def expire_tokens(ctx: Context) -> Reply:
    """Expire the account's access tokens now: the next API call gets a real 401."""
    ctx.store.expire_access_tokens(_account(ctx))
    return Reply(204)


def revoke_tokens(ctx: Context) -> Reply:
    """Revoke the account's refresh tokens: the next refresh gets ``invalid_grant``."""
    ctx.store.revoke_refresh_tokens(_account(ctx))
    return Reply(204)


def get_tokens(ctx: Context) -> Reply:
    """The account's currently valid tokens."""
    return json_reply(200, ctx.store.current_tokens(_account(ctx)))


def get_stats(ctx: Context) -> Reply:
    """Calls per endpoint and refresh grants received."""
    return json_reply(200, _account(ctx).stats())


def reset_stats(ctx: Context) -> Reply:
    """Forget the counts."""
    _account(ctx).reset_stats()
    return Reply(204)


_A = "/_control/accounts/{account_id}"
ROUTES: list[Route] = [
    route("GET", "/_control/health", "control.health", health, "control"),
    route("GET", "/_control/settings", "control.settings", get_settings, "control"),
    route("PUT", "/_control/settings", "control.settings", put_settings, "control"),
    route("PATCH", "/_control/settings", "control.settings", put_settings, "control"),
    route("GET", "/_control/accounts", "control.accounts", list_accounts, "control"),
    route("POST", "/_control/accounts", "control.accounts", create_account, "control"),
    route("GET", _A, "control.account", get_account, "control"),
    route("PATCH", _A, "control.account", patch_account, "control"),
    route("DELETE", _A, "control.account", delete_account, "control"),
    route("GET", f"{_A}/files", "control.files", list_files, "control"),
    route("POST", f"{_A}/files", "control.files", add_file, "control"),
    route("GET", f"{_A}/files/{{file_id}}", "control.file", get_file, "control"),
    route("PATCH", f"{_A}/files/{{file_id}}", "control.file", patch_file, "control"),
    route("PUT", f"{_A}/files/{{file_id}}", "control.file", patch_file, "control"),
    route("DELETE", f"{_A}/files/{{file_id}}", "control.file", delete_file, "control"),
    route("GET", f"{_A}/faults", "control.faults", get_faults, "control"),
    route("POST", f"{_A}/faults", "control.faults", add_faults, "control"),
    route("DELETE", f"{_A}/faults", "control.faults", clear_faults, "control"),
    route("POST", f"{_A}/cursor-reset", "control.cursor_reset", reset_cursors, "control"),
    route("GET", f"{_A}/tokens", "control.tokens", get_tokens, "control"),
    route("POST", f"{_A}/tokens/expire", "control.tokens", expire_tokens, "control"),
    route("POST", f"{_A}/tokens/revoke", "control.tokens", revoke_tokens, "control"),
    route("GET", f"{_A}/stats", "control.stats", get_stats, "control"),
    route("DELETE", f"{_A}/stats", "control.stats", reset_stats, "control"),
]
