"""Document ids as MWAP's backend writes them: BSON ObjectIds, shown to clients as 24-hex strings.

Every ``_id`` of a seed collection and every reference to one (``tenantId``, ``projectId``,
``integrationId``, ``providerId``, ``projectTypeId``) is stored as an ObjectId. Task messages,
ledger subjects, API paths and JSON carry the hex form; ``oid`` turns it back at the boundary.
"""

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from bson import ObjectId
from pydantic import BeforeValidator, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

HEX_PATTERN = r"^[0-9a-fA-F]{24}$"
_HEX = re.compile(HEX_PATTERN)


class InvalidIdError(ValueError):
    """A value that is not an ObjectId nor its 24-hex form."""


def is_oid(value: object) -> bool:
    return isinstance(value, ObjectId) or (isinstance(value, str) and bool(_HEX.match(value)))


def oid(value: object) -> ObjectId:
    """``value`` as an ObjectId; raises InvalidIdError for anything else (never a lookup by a bad id)."""
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, str) and _HEX.match(value):
        return ObjectId(value)
    raise InvalidIdError(f"{str(value)[:40]!r} is not a 24-hex ObjectId")


def aware(moment: datetime) -> datetime:
    """A datetime read from MongoDB (naive, UTC unless the client is tz_aware) as an aware UTC one."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _to_oid(value: Any) -> ObjectId:
    try:
        return oid(value)
    except InvalidIdError as error:
        raise ValueError(str(error)) from None


class _ObjectIdAnnotation:
    """Pydantic schema of an ObjectId field: hex accepted, ObjectId in python mode, hex in JSON."""

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _to_oid,
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="json"),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, _schema: CoreSchema, _handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "pattern": HEX_PATTERN}


# A model field holding an ObjectId: accepts the hex form, stays an ObjectId in python mode
# (what pymongo writes), becomes the hex string in JSON mode.
ObjectIdField = Annotated[ObjectId, _ObjectIdAnnotation]

# An id shown to clients: the hex string, whether the document holds an ObjectId or a string.
IdStr = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, ObjectId) else v)]
