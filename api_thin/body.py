"""Reading a JSON request body into a pydantic model, with a problem for every way it can be wrong."""

import json
from typing import Any

from flask import request
from pydantic import BaseModel, ValidationError

from api_thin.problems import Problem, validation_problem

# Deeper than any body this API takes; bounds the work a hostile document can cause.
MAX_DEPTH = 16


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _check_tree(data: Any) -> None:
    """Depth within bounds and every string encodable as UTF-8 (a lone surrogate escape such as
    ``"\\ud800"`` decodes to a str that MongoDB's BSON encoder would refuse)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Problem(
                400, "JSON nested too deeply", slug="malformed-json", detail=f"at most {MAX_DEPTH} levels"
            )
        if isinstance(node, dict):
            for key, value in node.items():
                _check_text(key)
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
        elif isinstance(node, str):
            _check_text(node)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Problem(
            400, "Malformed JSON body", slug="malformed-json", detail="invalid Unicode escape"
        ) from None


def read_json(*, required: bool = True) -> Any:
    """The request body decoded: 415 if not JSON, 400 if missing or unreadable. None when an
    optional body is absent."""
    raw = request.get_data(cache=True)
    if not raw and not required:
        return None
    if request.mimetype != "application/json":
        raise Problem(415, "Unsupported media type", detail="Send the body as application/json.")
    if not raw:
        raise Problem(400, "Missing request body", slug="missing-body")
    try:
        # ValueError covers bad UTF-8, bad syntax, NaN/Infinity and integers over Python's digit limit.
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        raise Problem(400, "Malformed JSON body", slug="malformed-json", detail=str(error)[:200]) from None
    _check_tree(data)
    return data


def parse[M: BaseModel](model: type[M], *, required: bool = True) -> M:
    """The request body as ``model``: 415 if not JSON, 400 if unreadable, 422 if invalid.
    An optional body that is absent validates as ``{}``."""
    data = read_json(required=required)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise Problem(422, "The body must be a JSON object", slug="validation-error")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise validation_problem(error, data=data) from None
