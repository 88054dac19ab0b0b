"""The small request/reply vocabulary the fake's endpoint modules are written in."""

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from ops.fake_providers.store import Account, Store


@dataclass(slots=True)
class Request:
    """A parsed HTTP request; ``base_url`` is how the client reached us (for links we hand out)."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    base_url: str

    def json(self) -> Any:
        """The body as JSON; an empty body reads as None."""
        return json.loads(self.body) if self.body.strip() else None

    def form(self) -> dict[str, str]:
        """The body as ``application/x-www-form-urlencoded``."""
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def bearer(self) -> str | None:
        """The bearer token of the Authorization header, if any."""
        value = self.headers.get("Authorization") or ""
        scheme, _, token = value.partition(" ")
        return (token.strip() or None) if scheme.lower() == "bearer" else None


@dataclass(slots=True)
class Reply:
    """An HTTP response to send."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
    """A JSON reply."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Reply(status, body, "application/json", dict(headers or {}))


def text_reply(status: int, text: str, headers: Mapping[str, str] | None = None) -> Reply:
    """A plain-text reply (Dropbox answers malformed calls this way)."""
    return Reply(status, text.encode(), "text/plain; charset=utf-8", dict(headers or {}))


@dataclass(slots=True)
class Context:
    """What an endpoint handler gets: the store, the request, the path match and the caller."""

    store: "Store"
    request: Request
    params: dict[str, str]
    account: "Account | None" = None


type Handler = Callable[[Context], Reply]
type RouteKind = Literal["api", "token", "authorize", "control"]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint; ``name`` keys its stats and fault matching (e.g. ``google.files.list``)."""

    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler
    kind: RouteKind
    provider: str | None = None


def route(
    method: str, path: str, name: str, handler: Handler, kind: RouteKind, *, provider: str | None = None
) -> Route:
    """A route whose ``{param}`` path segments match one segment each."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", re.escape(path).replace(r"\{", "{").replace(r"\}", "}"))
    return Route(method, re.compile(f"^{regex}$"), name, handler, kind, provider)
