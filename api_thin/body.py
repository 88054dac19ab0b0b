"""Reading a JSON request body into a pydantic model, with a problem for every way it can be wrong."""

import json

from flask import request
from pydantic import BaseModel, ValidationError

from api_thin.problems import Problem, validation_problem


def parse[M: BaseModel](model: type[M]) -> M:
    """The request body as ``model``: 415 if not JSON, 400 if unreadable, 422 if invalid."""
    if request.mimetype != "application/json":
        raise Problem(415, "Unsupported media type", detail="Send the body as application/json.")
    raw = request.get_data(cache=True)
    if not raw:
        raise Problem(400, "Missing request body", slug="missing-body")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise Problem(400, "Malformed JSON body", slug="malformed-json", detail=str(error)[:200]) from None
    if not isinstance(data, dict):
        raise Problem(422, "The body must be a JSON object", slug="validation-error")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise validation_problem(error) from None
