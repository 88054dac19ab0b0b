"""The console's sign-in: server-side sessions in Redis, a CSRF token per session, and who acts.

An operator signs in with a name (for the audit trail) and the admin API key, the credential the
people who run MWAP already hold; tenant keys are refused. The browser gets only a random session
id in an HttpOnly, SameSite=Strict cookie scoped to ``/console``; Redis keeps the session under
the id's SHA-256 with an idle expiry (``MWAP_CONSOLE_SESSION_IDLE_SECONDS``) and an absolute one
(``MWAP_CONSOLE_SESSION_MAX_SECONDS``), so signing out, or rotating the admin key, ends it at once.

Every state-changing request (POST) must carry the session's CSRF token in the form and, when the
browser sends one, an ``Origin`` equal to the console's own. Flask-WTF would bring WTForms for a
token compare that ``hmac.compare_digest`` does here in a few lines.
"""

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import g, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from api_thin import auth, context, ratelimit
from api_thin.problems import Problem

COOKIE = "mwap_console"
KEY_PREFIX = "mwap:console:session:"
OPERATOR_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@ -]{0,63}")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True, slots=True)
class Operator:
    """Who is signed in: the name given at sign-in, and the session's CSRF token."""

    name: str
    csrf: str
    session_key: str

    @property
    def actor(self) -> dict[str, str]:
        """Who the audit trail names for what this operator does in the console."""
        return {"type": "operator", "id": self.name, "via": "console"}


def _session_key(session_id: str) -> str:
    return KEY_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


def _admin_key_fingerprint() -> str:
    """Sessions are bound to the admin key they were opened with: rotating it ends them."""
    key = context.settings().admin_api_key.get_secret_value().encode()
    return hashlib.sha256(b"mwap-console\0" + key).hexdigest()[:32]


def valid_operator_name(name: str) -> bool:
    return OPERATOR_PATTERN.fullmatch(name) is not None


def _failure_budget() -> list[ratelimit.Budget]:
    per_minute = context.option("auth_failures_per_minute")
    if not per_minute:
        return []
    bucket = ratelimit.address_bucket(auth.client_address())
    return [ratelimit.Budget(bucket, per_minute, context.option("auth_failure_burst"))]


def throttled() -> int | None:
    """Seconds to wait when this address has failed to sign in (or authenticate) too often."""
    budget = _failure_budget()
    if not budget:
        return None
    verdict = ratelimit.peek(context.redis(), budget)
    return None if verdict.allowed else verdict.retry_after


def count_failure() -> None:
    budget = _failure_budget()
    if budget:
        ratelimit.check(context.redis(), budget)


def key_matches(key: str) -> bool:
    admin = context.settings().admin_api_key.get_secret_value().encode()
    return len(key) <= auth.MAX_KEY_CHARS and hmac.compare_digest(key.encode(), admin)


def open_session(name: str) -> str:
    """A new session for ``name``; returns the id the cookie carries."""
    settings = context.settings()
    session_id = secrets.token_urlsafe(32)
    key = _session_key(session_id)
    now = int(time.time())
    pipe = context.redis().pipeline()
    pipe.hset(
        key,
        mapping={
            "operator": name,
            "csrf": secrets.token_urlsafe(32),
            "created": now,
            "adminKey": _admin_key_fingerprint(),
        },
    )
    pipe.expire(key, settings.console_session_idle_seconds)
    pipe.execute()
    return session_id


def close_session() -> None:
    session_id = request.cookies.get(COOKIE)
    if session_id:
        context.redis().delete(_session_key(session_id))


def current_operator() -> Operator | None:
    """The signed-in operator of this request, renewing the session's idle expiry; None if none."""
    if "operator" in g:
        return g.operator
    session_id = request.cookies.get(COOKIE, "")
    operator = None
    if 16 <= len(session_id) <= 128:
        key = _session_key(session_id)
        settings = context.settings()
        redis = context.redis()
        fields = {_text(k): _text(v) for k, v in redis.hgetall(key).items()}
        fresh = (
            fields.get("created", "").isdigit()
            and int(time.time()) - int(fields["created"]) < settings.console_session_max_seconds
        )
        if fields and fresh and hmac.compare_digest(fields.get("adminKey", ""), _admin_key_fingerprint()):
            redis.expire(key, settings.console_session_idle_seconds)
            operator = Operator(fields["operator"], fields["csrf"], key)
        elif fields:
            redis.delete(key)
    g.operator = operator
    return operator


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def set_cookie(response: BaseResponse, session_id: str) -> None:
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=context.settings().console_session_max_seconds,
        path="/console",
        secure=cookie_secure(),
        httponly=True,
        samesite="Strict",
    )


def clear_cookie(response: BaseResponse) -> None:
    response.delete_cookie(COOKIE, path="/console", secure=cookie_secure(), httponly=True, samesite="Strict")


def cookie_secure() -> bool:
    """``Secure`` everywhere but a plain-http console on a loopback address (``ops/run``), where a
    browser would drop a Secure cookie sent over http."""
    return request.is_secure or urlsplit(request.host_url).hostname not in _LOOPBACK_HOSTS


def same_origin() -> bool:
    """False when the browser says the request comes from another origin (``Origin``, or else
    ``Referer``); a request naming neither is judged by its CSRF token alone."""
    claimed = request.headers.get("Origin") or request.headers.get("Referer")
    if not claimed or claimed == "null":
        return claimed is None
    parts = urlsplit(claimed)
    return f"{parts.scheme}://{parts.netloc}" == request.host_url.rstrip("/")


def check_csrf(operator: Operator) -> None:
    """A POST must carry this session's token, from this origin; else 403 and nothing changes."""
    token = request.form.get("csrf_token", "")
    if not same_origin() or not hmac.compare_digest(token.encode(), operator.csrf.encode()):
        raise Problem(403, "Cross-site request refused", detail="reload the page and try again")


def signed_in(view: Callable[..., Any]) -> Callable[..., Any]:
    """The view needs a signed-in operator (others are sent to sign in); POSTs need the CSRF token."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        operator = current_operator()
        if operator is None:
            target = request.full_path if request.method == "GET" else url_for("console.overview")
            return redirect(url_for("console.login", next=safe_next(target)))
        if request.method == "POST":
            check_csrf(operator)
        return view(*args, **kwargs)

    return wrapper


def safe_next(target: str | None) -> str:
    """A place inside the console to return to after sign-in; anything else goes to the overview."""
    if (
        target
        and len(target) <= 2048
        and target.startswith("/console")
        and not target.startswith("//")
        and "\\" not in target
    ):
        return target.rstrip("?")
    return "/console/"
