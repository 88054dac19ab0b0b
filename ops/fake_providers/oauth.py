"""The fake OAuth endpoints: one token endpoint and one authorize endpoint per provider.

Token endpoint (RFC 6749 form POST; client credentials in the body or HTTP Basic):
``refresh_token`` grants issue a new access token; Graph also rotates the refresh token (the old
one then answers ``invalid_grant``), Google and Dropbox return none. ``authorization_code``
exchanges a code from the authorize endpoint, which redirects at once to ``redirect_uri`` with
a code for the account named by ``login_hint`` (an account id): there is no consent screen.
"""

import base64
import binascii
import secrets
from urllib.parse import urlencode

from ops.fake_providers.documents import CLIENT_CREDENTIALS, LAYOUT, SCOPES
from ops.fake_providers.store import GOOGLE, ONEDRIVE, Account, Store
from ops.fake_providers.web import Context, Handler, Reply, Request, Route, json_reply, route, text_reply


def error(status: int, code: str, description: str, *, retry_after: str | None = None) -> Reply:
    """An RFC 6749 §5.2 error."""
    headers = {"Retry-After": retry_after} if retry_after else None
    return json_reply(status, {"error": code, "error_description": description}, headers)


def grant_owner(store: Store, request: Request) -> Account | None:
    """The account a token request is about (also for retired refresh tokens), for stats and faults."""
    form = request.form()
    if form.get("grant_type") == "authorization_code":
        account_id = store.auth_codes.get(form.get("code", ""))
    else:
        token = form.get("refresh_token", "")
        account_id = store.refresh_tokens.get(token) or store.retired_refresh_tokens.get(token)
    return store.accounts.get(account_id) if account_id else None


def _client(request: Request) -> tuple[str, str]:
    form = request.form()
    header = request.headers.get("Authorization") or ""
    if header.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        return user, password
    return form.get("client_id", ""), form.get("client_secret", "")


def _token(provider: str) -> Handler:
    def handle(ctx: Context) -> Reply:
        store, form = ctx.store, ctx.request.form()
        if _client(ctx.request) != CLIENT_CREDENTIALS[provider]:
            return error(401, "invalid_client", "Unknown client or wrong client secret.")
        grant = form.get("grant_type")
        if grant == "refresh_token":
            account = store.by_refresh_token(form.get("refresh_token"))
            if account is None or account.provider != provider:
                return error(400, "invalid_grant", "The refresh token is invalid, expired or revoked.")
            response = store.issue(account)
            if provider == ONEDRIVE:
                response["refresh_token"] = store.rotate(account, form["refresh_token"])
                response["ext_expires_in"] = response["expires_in"]
        elif grant == "authorization_code":
            account_id = store.auth_codes.pop(form.get("code", ""), None)
            account = store.accounts.get(account_id) if account_id else None
            if account is None or account.provider != provider:
                return error(400, "invalid_grant", "The authorization code is invalid or was used.")
            response = store.issue(account, refresh_token="")
        else:
            return error(400, "unsupported_grant_type", f"grant_type {grant!r} is not supported.")
        if provider in (GOOGLE, ONEDRIVE):
            response["scope"] = " ".join(SCOPES[provider])
        return json_reply(200, response, {"Cache-Control": "no-store"})

    return handle


def _authorize(provider: str) -> Handler:
    def handle(ctx: Context) -> Reply:
        query = ctx.request.query
        if query.get("client_id") != CLIENT_CREDENTIALS[provider][0]:
            return text_reply(400, "unknown client_id")
        redirect_uri = query.get("redirect_uri")
        account = ctx.store.accounts.get(query.get("login_hint", ""))
        if not redirect_uri or account is None or account.provider != provider:
            return text_reply(400, "need redirect_uri and login_hint=<fake account id of this provider>")
        code = secrets.token_urlsafe(16)
        ctx.store.auth_codes[code] = account.id
        params = {"code": code} | ({"state": query["state"]} if "state" in query else {})
        separator = "&" if "?" in redirect_uri else "?"
        return Reply(302, b"", "text/plain", {"Location": f"{redirect_uri}{separator}{urlencode(params)}"})

    return handle


ROUTES: list[Route] = [
    route_
    for provider, (_name, prefix, authorize_path, token_path) in LAYOUT.items()
    for route_ in (
        route("POST", token_path, f"{prefix.strip('/')}.token", _token(provider), "token", provider=provider),
        route(
            "GET",
            authorize_path,
            f"{prefix.strip('/')}.authorize",
            _authorize(provider),
            "authorize",
            provider=provider,
        ),
    )
]
