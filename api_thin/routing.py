"""The declarative endpoint table's machinery: one ``Endpoint`` both registers a Flask route and
describes the operation in the OpenAPI document, so the two cannot drift.

A view takes a ``Call`` (principal, path ids, parsed query and body) and returns a ``Reply`` whose
status must be one the endpoint declares, with a body of the declared model. Everything around it
(authentication and rate limit, id checks, query and body parsing, Idempotency-Key) is done here,
the same way for every endpoint.
"""

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

from flask import Flask, Response, current_app
from pydantic import BaseModel
from redis.exceptions import RedisError

from api_thin import context, idempotency
from api_thin.auth import Principal, authenticate
from api_thin.body import parse
from api_thin.problems import Problem, problem_response
from api_thin.query import parse_query
from api_thin.schemas import ID_PATTERN
from mwap.settings import Settings

_PATH_PARAM = re.compile(r"{(\w+)}")
_ID = re.compile(ID_PATTERN)
# The answer for an id that cannot exist is the answer for one that does not.
NOT_FOUND_TITLES = {
    "jobId": "No such job",
    "integrationId": "No such integration",
    "tenantId": "No such tenant",
    "projectId": "No such project",
    "webhookId": "No such webhook endpoint",
    "deliveryId": "No such delivery",
}


class Auth(StrEnum):
    NONE = "none"  # probes and the API description
    ANY = "any"  # a tenant key or the admin key
    ADMIN = "admin"  # the admin key only; a tenant key gets 403


@dataclass(frozen=True, slots=True)
class Out:
    """One success response: its body model (None: no body), description and headers it always has."""

    model: type[BaseModel] | None
    description: str
    headers: tuple[str, ...] = ()
    media_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class Call:
    principal: Principal | None
    path: dict[str, str]
    query: Any = None
    body: Any = None

    @property
    def caller(self) -> Principal:
        """The authenticated principal: every endpoint but the unauthenticated ones has one."""
        if self.principal is None:
            raise RuntimeError("an endpoint without authentication has no caller")
        return self.principal


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: BaseModel | None = None
    headers: dict[str, str] = field(default_factory=dict)


BodyModel = type[BaseModel] | Callable[[Settings], type[BaseModel]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str  # OpenAPI template: /v1/jobs/{jobId}
    view: Callable[[Call], Reply] | None  # None: the route is added elsewhere; documented when present
    summary: str
    tag: str
    responses: dict[int, Out]
    auth: Auth = Auth.ANY
    query: type[BaseModel] | None = None
    body: BodyModel | None = None  # a model, or a function of the settings giving one
    body_required: bool = True
    errors: tuple[int, ...] = ()  # problem statuses beyond those implied by auth, ids, query and body
    description: str = ""
    name: str = ""  # operationId and Flask endpoint name; defaults to the view's name

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)

    @property
    def rule(self) -> str:
        return _PATH_PARAM.sub(r"<\1>", self.path)

    @property
    def operation_id(self) -> str:
        if self.name:
            return self.name
        if self.view is None:
            raise ValueError(f"{self.method} {self.path} needs a name")
        return self.view.__name__

    def body_model(self, settings: Settings) -> type[BaseModel] | None:
        if self.body is None or isinstance(self.body, type):
            return self.body
        return self.body(settings)

    @property
    def idempotent_post(self) -> bool:
        return self.method == "POST" and self.auth is not Auth.NONE

    def problem_statuses(self) -> list[int]:
        """Every problem status this operation can answer with (405 aside: not per operation)."""
        statuses = set(self.errors)
        if self.auth is not Auth.NONE:
            statuses |= {401, 429, 503}
        if self.auth is Auth.ADMIN:
            statuses.add(403)
        if self.path_params:
            statuses.add(404)
        if self.query is not None:
            statuses |= {400, 422}
        if self.body is not None:
            statuses |= {400, 413, 415, 422}
        if self.idempotent_post:
            statuses |= {400, 409}
        return sorted(statuses)


def _render(endpoint: Endpoint, reply: Reply) -> Response:
    out = endpoint.responses.get(reply.status)
    if out is None:
        raise RuntimeError(f"{endpoint.operation_id} answered {reply.status}, which it does not declare")
    if out.model is None:
        response = Response(status=reply.status)
    else:
        if not isinstance(reply.body, out.model):
            raise TypeError(f"{endpoint.operation_id} {reply.status}: expected {out.model.__name__}")
        # Flask's provider builds app.response_class; its annotation names werkzeug's base class.
        response = cast(
            Response, current_app.json.response(reply.body.model_dump(mode="json", by_alias=True))
        )
        response.status_code = reply.status
    response.headers.update(reply.headers)
    return response


def _handler(endpoint: Endpoint) -> Callable[..., Response]:
    def handle(**path: str) -> Response:
        principal = None
        if endpoint.auth is not Auth.NONE:
            principal = authenticate()
            if endpoint.auth is Auth.ADMIN and not principal.is_admin:
                raise Problem(403, "This operation needs the admin key")
        for name, value in path.items():
            if not _ID.fullmatch(value):
                raise Problem(404, NOT_FOUND_TITLES.get(name, "Not found"))
        query = parse_query(endpoint.query) if endpoint.query is not None else None
        claim = idempotency.begin(principal) if endpoint.idempotent_post and principal else None
        if isinstance(claim, Response):
            return claim  # a replay
        try:
            body_model = endpoint.body_model(context.settings())
            body = parse(body_model, required=endpoint.body_required) if body_model is not None else None
            response = _render(endpoint, endpoint.view(Call(principal, path, query, body)))  # type: ignore[misc]
        except Problem as problem:
            response = problem_response(problem)
        except BaseException:
            if claim is not None:
                with contextlib.suppress(RedisError):  # Redis being down may be why we are here
                    claim.abandon()
            raise
        if claim is not None:
            claim.complete(response)
        return response

    handle.__name__ = endpoint.operation_id
    handle.__doc__ = endpoint.summary
    return handle


def register(app: Flask, endpoints: list[Endpoint]) -> None:
    """Add a Flask route for every endpoint that has a view here."""
    for endpoint in endpoints:
        if endpoint.view is not None:
            app.add_url_rule(
                endpoint.rule, endpoint.operation_id, _handler(endpoint), methods=[endpoint.method]
            )


def is_served(app: Flask, endpoint: Endpoint) -> bool:
    """Whether the app has a route for ``endpoint`` (those added elsewhere may be absent)."""
    return any(
        rule.rule == endpoint.rule and endpoint.method in (rule.methods or ())
        for rule in app.url_map.iter_rules()
    )
