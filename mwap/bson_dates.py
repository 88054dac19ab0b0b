"""Dates and datetimes a client may send, bounded to what MongoDB and Python both hold.

A BSON date is a signed 64-bit count of milliseconds, but pymongo encodes from and decodes into
Python datetimes, which stop at years 1 and 9999, and it converts an aware value to UTC first:
``9999-12-31T23:59:59-14:00`` is valid ISO 8601 whose UTC instant lies in year 10000, so
converting it raises OverflowError (a 500) where a 422 is due. The types here check the UTC
instant instead, within ``[MIN_INSTANT, MAX_INSTANT]``, and hand on the value as MongoDB will
keep it: UTC, truncated to milliseconds (the answer to a request then equals every later read).

The lower bound is the Unix epoch: no date of the platform precedes it, and it leaves centuries
of headroom for the date arithmetic views do on a client's value (a default window before a
``to`` date). The upper bound is the last millisecond Python can hold, so the common "never
expires" value ``9999-12-31T23:59:59Z`` stays valid: code must compare against such a value,
never add to it.
"""

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime
from pydantic_core import PydanticCustomError

MIN_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
MAX_INSTANT = datetime.max.replace(microsecond=999_000, tzinfo=UTC)
MIN_DATE = MIN_INSTANT.date()
MAX_DATE = MAX_INSTANT.date()

_RANGE = f"between {MIN_INSTANT.isoformat()} and {MAX_INSTANT.isoformat(timespec='milliseconds')}"


def _out_of_range() -> PydanticCustomError:
    return PydanticCustomError(
        "datetime_out_of_range", "Datetime must be {range} once in UTC", {"range": _RANGE}
    )


def bounded_instant(moment: datetime) -> datetime:
    """``moment`` (naive taken as UTC) in UTC to the millisecond, or a validation error when its
    UTC instant is outside ``[MIN_INSTANT, MAX_INSTANT]``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:  # the offset pushes the instant past year 1 or 9999
        raise _out_of_range() from None
    utc = utc.replace(microsecond=utc.microsecond // 1000 * 1000)
    if not MIN_INSTANT <= utc <= MAX_INSTANT:
        raise _out_of_range()
    return utc


def bounded_date(day: date) -> date:
    """``day``, or a validation error when it is outside ``[MIN_DATE, MAX_DATE]``."""
    if not MIN_DATE <= day <= MAX_DATE:
        raise PydanticCustomError(
            "date_out_of_range",
            "Date must be between {low} and {high}",
            {"low": MIN_DATE.isoformat(), "high": MAX_DATE.isoformat()},
        )
    return day


# A datetime in a request body: an explicit offset required, stored as UTC milliseconds.
BsonDatetime = Annotated[AwareDatetime, AfterValidator(bounded_instant)]
# A datetime in a query string: a value without an offset is taken as UTC.
BsonQueryDatetime = Annotated[datetime, AfterValidator(bounded_instant)]
# A calendar date (UTC) a view turns into a BSON datetime or does day arithmetic on.
BsonDate = Annotated[date, AfterValidator(bounded_date)]
