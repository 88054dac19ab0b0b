"""The OpenAPI 3.1 document, built from the route table and the pydantic models it names.

All models are rendered in one ``models_json_schema`` pass (request bodies and query parameters
in validation mode, answers in serialization mode) so shared definitions land once under
``components/schemas``. The document is built on first request, when every route (including
those other modules add, such as ``/metrics``) is registered, and kept for the app's life.
"""

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from flask import Flask, current_app
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from api_thin import idempotency
from api_thin.problems import CONTENT_TYPE as PROBLEM_TYPE
from api_thin.problems import TITLES
from api_thin.routing import Auth, Endpoint, is_served
from api_thin.schemas import ID_PATTERN, ProblemOut

REF = "#/components/schemas/{model}"
SECURITY_SCHEME = "bearerKey"
_EXTENSION = "mwap_openapi"

# Headers that problem answers of a status always carry.
_PROBLEM_HEADERS = {401: ("WWW-Authenticate",), 429: ("Retry-After",), 503: ("Retry-After",)}
_HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "Location": {"type": "string", "description": "The resource's URL path."},
    "Retry-After": {"type": "string", "pattern": "^[0-9]+$", "description": "Seconds to wait."},
    "WWW-Authenticate": {"type": "string"},
}


def install(app: Flask, endpoints: list[Endpoint]) -> None:
    app.extensions["mwap_endpoints"] = endpoints


def document() -> dict[str, Any]:
    """This app's OpenAPI document (built once)."""
    doc = current_app.extensions.get(_EXTENSION)
    if doc is None:
        doc = current_app.extensions[_EXTENSION] = build(
            current_app, current_app.extensions["mwap_endpoints"]
        )
    return doc


def _models(app: Flask, endpoints: list[Endpoint]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    settings = app.config["MWAP_SETTINGS"]
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(ProblemOut, "serialization"): None}
    for endpoint in endpoints:
        body = endpoint.body_model(settings)
        if body is not None:
            wanted[(body, "validation")] = None
        if endpoint.query is not None:
            wanted[(endpoint.query, "validation")] = None
        for out in endpoint.responses.values():
            if out.model is not None:
                wanted[(out.model, "serialization")] = None
    return list(wanted)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter's schema without its ``null`` branch: a query string has no null."""
    branches = schema.get("anyOf")
    if isinstance(branches, list) and {"type": "null"} in branches:
        rest = [branch for branch in branches if branch != {"type": "null"}]
        trimmed = {k: v for k, v in schema.items() if k not in {"anyOf", "default"}}
        if len(rest) == 1:
            return {**rest[0], **trimmed}
        return {**trimmed, "anyOf": rest}
    return schema


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", []))
    parameters = []
    for name, given in schema.get("properties", {}).items():
        prop = _without_null(dict(given))
        prop.pop("title", None)
        description = prop.pop("description", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _headers(names: tuple[str, ...]) -> dict[str, Any]:
    return {name: {"required": True, "schema": _HEADER_SCHEMAS[name]} for name in names}


def _operation(
    endpoint: Endpoint,
    settings: Any,
    refs: Mapping[tuple[Any, JsonSchemaMode], Any],  # (model or pydantic dataclass, mode) -> $ref
    defs: dict[str, Any],
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
    }
    if endpoint.description:
        operation["description"] = endpoint.description
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": ID_PATTERN}}
        for name in endpoint.path_params
    ]
    if endpoint.query is not None:
        query_ref = refs[(endpoint.query, "validation")]["$ref"].rsplit("/", 1)[-1]
        parameters += _query_parameters(defs[query_ref])
    if endpoint.idempotent_post:
        parameters.append(
            {
                "name": idempotency.HEADER,
                "in": "header",
                "required": False,
                "description": (
                    "Within 24 h, the same key and request get the first (2xx) answer again and nothing "
                    "is enqueued twice; the same key with another request is 409. Scoped per tenant."
                ),
                "schema": {"type": "string", "pattern": idempotency.PATTERN},
            }
        )
    if parameters:
        operation["parameters"] = parameters
    body = endpoint.body_model(settings)
    if body is not None:
        operation["requestBody"] = {
            "required": endpoint.body_required,
            "content": {"application/json": {"schema": refs[(body, "validation")]}},
        }
    responses: dict[str, Any] = {}
    for status, out in sorted(endpoint.responses.items()):
        answer: dict[str, Any] = {"description": out.description}
        if out.model is not None:
            answer["content"] = {out.media_type: {"schema": refs[(out.model, "serialization")]}}
        elif status != 204:
            answer["content"] = {out.media_type: {"schema": {"type": "string"}}}
        if out.headers:
            answer["headers"] = _headers(out.headers)
        responses[str(status)] = answer
    problem = refs[(ProblemOut, "serialization")]
    for status in endpoint.problem_statuses():
        answer = {
            "description": TITLES.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_TYPE: {"schema": problem}},
        }
        if status in _PROBLEM_HEADERS:
            answer["headers"] = _headers(_PROBLEM_HEADERS[status])
        responses[str(status)] = answer
    operation["responses"] = responses
    operation["security"] = [] if endpoint.auth is Auth.NONE else [{SECURITY_SCHEME: []}]
    return operation


def build(app: Flask, endpoints: list[Endpoint]) -> dict[str, Any]:
    settings = app.config["MWAP_SETTINGS"]
    refs, schemas = models_json_schema(_models(app, endpoints), ref_template=REF)
    defs: dict[str, Any] = dict(schemas.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        if not is_served(app, endpoint):
            continue
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(
            endpoint, settings, refs, defs
        )
    for endpoint in endpoints:  # query models live on as parameters, not as schemas
        if endpoint.query is not None:
            defs.pop(refs[(endpoint.query, "validation")]["$ref"].rsplit("/", 1)[-1], None)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mwap-tasks API",
            "version": "1",
            "description": (
                "Enqueue background jobs and read their results, files and usage. Errors are "
                "application/problem+json (RFC 9457). A tenant key sees only its tenant: any other id "
                "answers 404. Rate limits are per key (429 with Retry-After)."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A tenant API key or the admin key.",
                }
            },
        },
        "security": [{SECURITY_SCHEME: []}],
    }
