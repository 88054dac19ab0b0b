"""Reading query parameters into a pydantic model: each named once, unknown names rejected."""

from flask import request
from pydantic import BaseModel, ValidationError

from api_thin.problems import Problem


def parse_query[M: BaseModel](model: type[M]) -> M:
    """``request.args`` as ``model``: 400 for a repeated parameter, 422 naming each invalid one."""
    data: dict[str, str] = {}
    for name in request.args:
        values = request.args.getlist(name)
        if len(values) > 1:
            raise Problem(
                400,
                "Repeated query parameter",
                slug="repeated-parameter",
                errors=[{"parameter": name, "detail": "give this parameter once"}],
            )
        data[name] = values[0]
    try:
        return model.model_validate(data)
    except ValidationError as error:
        errors = [
            {"parameter": str(item["loc"][0]) if item["loc"] else "", "detail": item["msg"]}
            for item in error.errors(include_url=False, include_input=False)
        ]
        raise Problem(422, "Invalid query parameters", slug="validation-error", errors=errors) from None
