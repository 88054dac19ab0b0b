"""Opaque keyset cursors: base64url of a small JSON object naming the last item seen.

Keyset (not offset) pagination stays stable while documents are inserted: a page starts strictly
after the last item of the previous one in the sort order, whatever was added meanwhile.
"""

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from api_thin.problems import Problem


def encode(kind: str, **position: Any) -> str:
    payload = json.dumps({"k": kind, **position}, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()


def decode(cursor: str, kind: str, fields: dict[str, type]) -> dict[str, Any]:
    """The position in ``cursor``, checked to be a ``kind`` cursor with ``fields`` of those types."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (ValueError, binascii.Error, RecursionError):
        payload = None
    if (
        not isinstance(payload, dict)
        or payload.get("k") != kind
        or any(type(payload.get(name)) is not expected for name, expected in fields.items())
        or not all(_encodable(value) for value in payload.values())
    ):
        raise Problem(
            400,
            "Invalid cursor",
            slug="invalid-cursor",
            errors=[{"parameter": "cursor", "detail": "pass a nextCursor from a previous page, unchanged"}],
        )
    return payload


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _encodable(value: Any) -> bool:
    """False for strings holding lone surrogates, which MongoDB's encoder refuses."""
    if not isinstance(value, str):
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def to_millis(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(milliseconds=1)


def from_millis(millis: int) -> datetime:
    try:
        return datetime.fromtimestamp(millis / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise Problem(400, "Invalid cursor", slug="invalid-cursor") from None
