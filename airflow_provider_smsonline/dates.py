# The API's dates: read without trusting a zone it never names, written in its own forms. Light
# and free of other imports of this package, so that validation and protocol can both use it.
"""Dates as the SMS.online API writes them (no zone) and as this provider reads them (aware)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo

_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2})[:\-](\d{2})(?:[:\-](\d{2})(?:\.(\d{1,6})\d*)?)?)?"
    r"\s*(Z|[+\-]\d{2}:?\d{2})?$"
)


def parse_datetime(text: object, tz: tzinfo = timezone.utc) -> datetime:
    """Parse the API's date forms into an aware datetime.

    Accepts ``2025-05-10T12:34:56``, ``2025-05-10 12:34:56``, ``2025-05-10 12-34-56``, with or
    without quotes, fractions, ``Z`` or an offset. A date without an offset is read in ``tz``.
    Raises ``ValueError`` on anything else.
    """
    if not isinstance(text, str):
        raise ValueError(f"not a date: {text!r}")
    match = _DATETIME_RE.match(text.strip().strip("'\""))
    if not match:
        raise ValueError(f"not a date: {text!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    zone: tzinfo = tz
    if offset == "Z":
        zone = timezone.utc
    elif offset:
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        zone = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        int((fraction or "0").ljust(6, "0")),
        tzinfo=zone,
    )


def format_datetime(value: datetime) -> str:
    """The API's date form: ``2025-05-10T12:34:56`` (server time, no offset)."""
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def format_sms_date(value: datetime) -> str:
    """The API's SMS date form: ``2025-05-10 12:34:56``."""
    return value.strftime("%Y-%m-%d %H:%M:%S")
