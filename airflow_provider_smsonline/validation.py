# Argument checks shared by the operators (at DAG parse), the protocol builders and the sandbox.
# Kept apart from protocol.py and light to import: DAG files pay for every import.
"""Validation of SMS.online arguments: each check returns the clean value or raises a
``ValueError`` that names the field and what is allowed."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

#: Rental periods in hours that getRentNumber and continueRentNumber accept.
RENT_TIMES: tuple[int, ...] = (4, 8, 12, 24, 72, 168, 360, 720, 2160)


#: The largest id taken from a server or a user: ids are not negative and fit a JSON number exactly.
MAX_RENTAL_ID = 2**53 - 1
#: The largest ``max_price`` accepted (a typo guard, in the account's currency).
MAX_PRICE_LIMIT = Decimal("100000")

#: The longest service or operator code accepted (codes are a few letters; a long value would
#: only make the server refuse the URL after the request left).
MAX_CODE_LENGTH = 64


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(str(value))} characters)"


def validate_service(service: object) -> str:
    """Return ``service`` stripped, or raise ``ValueError`` unless it is a service code."""
    if not isinstance(service, str) or not service.strip() or len(service.strip()) > MAX_CODE_LENGTH:
        raise ValueError(
            f"service must be a non-empty string of at most {MAX_CODE_LENGTH} characters (a service "
            f"code such as 'tg'), got {_shown(service)}"
        )
    return service.strip()


def validate_country(country: object) -> int:
    """Return ``country`` as an int, or raise ``ValueError`` unless it is a non-negative integer."""
    return non_negative_int("country", country, "a country id such as 0")


def validate_rent_id(rent_id: object) -> int:
    """Return ``rent_id`` as an int, or raise ``ValueError`` unless it is a non-negative integer."""
    return non_negative_int("rent_id", rent_id, "the id a rental returned")


def validate_operator(operator: object) -> str | None:
    """Return ``operator`` stripped (``None`` or empty means any), or raise ``ValueError``."""
    if operator is None:
        return None
    if not isinstance(operator, str) or len(operator.strip()) > MAX_CODE_LENGTH:
        raise ValueError(
            f"operator must be a string of at most {MAX_CODE_LENGTH} characters (an operator code) "
            f"or None, got {_shown(operator)}"
        )
    return operator.strip() or None


def validate_rent_time(rent_time: object, *, optional: bool = True) -> int | None:
    """Return ``rent_time`` as an int of :data:`RENT_TIMES`, or raise ``ValueError``."""
    if rent_time is None or (isinstance(rent_time, str) and not rent_time.strip()):
        if optional:
            return None
        raise ValueError(f"rent_time is required: one of {', '.join(map(str, RENT_TIMES))} (hours)")
    try:
        value = as_int(rent_time)
    except ValueError:
        value = None
    if value not in RENT_TIMES:
        raise ValueError(
            f"rent_time must be one of {', '.join(map(str, RENT_TIMES))} (hours), got {rent_time!r}"
        )
    return value


def validate_webhook_url(url: object) -> str | None:
    """Return ``url`` (``None`` or empty means no webhook), or raise ``ValueError`` unless http(s)."""
    if url is None or (isinstance(url, str) and not url.strip()):
        return None
    if not isinstance(url, str):
        raise ValueError(f"webhook_url must be an http:// or https:// URL, got {url!r}")
    url = url.strip()
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid or any(c.isspace() for c in url):
        raise ValueError(f"webhook_url must be an http:// or https:// URL with a host, got {url!r}")
    return url


def as_int(value: object) -> int:
    """``value`` as an int if it is an int or a string of digits (not a bool); else ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError("bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    raise ValueError("not an integer")


def non_negative_int(name: str, value: object, example: str) -> int:
    """``value`` as a non-negative int, or a ``ValueError`` naming ``name`` with an ``example``."""
    try:
        number = as_int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise ValueError(f"{name} must be a non-negative integer ({example}), got {value!r}")
    return number


def validate_pattern(pattern: object) -> re.Pattern[str] | None:
    """Compile ``pattern`` (``None`` or empty: any SMS), or raise ``ValueError`` naming the field.

    :param pattern: a Python regular expression searched in each SMS text.
    """
    if pattern is None or pattern == "":
        return None
    if not isinstance(pattern, str):
        raise ValueError(f"pattern must be a regular expression string or None, got {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"pattern is not a valid regular expression ({error}), got {pattern!r}") from None


def validate_moment(name: str, value: object) -> datetime | None:
    """``value`` as an aware datetime (ISO 8601 text or datetime; naive means UTC), or ``None``.

    :param name: the field's name, for the error message.
    :param value: ``None``, ``""``, a ``datetime`` or an ISO 8601 string.
    :raises ValueError: naming ``name``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    try:
        # dates compiles its pattern on import: loaded on use, not at DAG parse (docs/benchmarks.rst)
        from airflow_provider_smsonline.dates import parse_datetime

        return parse_datetime(value, timezone.utc)
    except ValueError:
        raise ValueError(
            f"{name} must be an ISO 8601 date and time such as 2025-05-10T12:34:56+00:00, got {value!r}"
        ) from None


def validate_poll_interval(value: object) -> float:
    """``value`` as a float of seconds, or ``ValueError`` unless it is a positive number.

    :param value: seconds between two checks.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"poll_interval must be a positive number of seconds, got {value!r}")
    return float(value)


def validate_activation_id(activation_id: object) -> int:
    """Return ``activation_id`` as an int, or raise ``ValueError`` unless it is a non-negative integer."""
    value = non_negative_int("activation_id", activation_id, "the id an activation returned")
    if value > MAX_RENTAL_ID:
        raise ValueError(f"activation_id must be at most {MAX_RENTAL_ID}, got {value}")
    return value


#: getNumber's activation types: 0 an SMS (the server's default), 1 by number, 2 a voice call.
ACTIVATION_TYPES: tuple[int, ...] = (0, 1, 2)


def validate_activation_type(activation_type: object) -> int | None:
    """Return ``activation_type`` as one of :data:`ACTIVATION_TYPES` (``None``: the server's
    default, an SMS), or raise ``ValueError``."""
    if activation_type is None:
        return None
    try:
        value = as_int(activation_type)
    except ValueError:
        value = None
    if value not in ACTIVATION_TYPES:
        raise ValueError(
            f"activation_type must be 0 (SMS), 1 (by number), 2 (voice) or None, got {activation_type!r}"
        )
    return value


def validate_ref(ref: object) -> str | None:
    """Return ``ref`` (a partner id; ``None`` or empty: none) stripped, or raise ``ValueError``."""
    if ref is None or (isinstance(ref, str) and not ref.strip()):
        return None
    if (
        not isinstance(ref, str)
        or len(ref.strip()) > MAX_CODE_LENGTH
        or any(c.isspace() for c in ref.strip())
    ):
        raise ValueError(
            f"ref must be a partner id of at most {MAX_CODE_LENGTH} characters without spaces, or None, "
            f"got {_shown(ref)}"
        )
    return ref.strip()


def validate_max_price(max_price: object, name: str = "max_price") -> Decimal | None:
    """Return ``max_price`` as a ``Decimal`` (``None``: no limit), or raise ``ValueError`` naming it.

    Accepted: a positive finite number up to :data:`MAX_PRICE_LIMIT`, or its text (``"10.5"``).
    """
    if max_price is None or (isinstance(max_price, str) and not max_price.strip()):
        return None
    problem = f"{name} must be a positive number of at most {MAX_PRICE_LIMIT} (e.g. 10.5) or None"
    if isinstance(max_price, bool) or not isinstance(max_price, (int, float, str, Decimal)):
        raise ValueError(f"{problem}, got a {type(max_price).__name__}")
    if isinstance(max_price, float) and not math.isfinite(max_price):
        raise ValueError(f"{problem}, got {max_price!r}")
    try:
        value = Decimal(str(max_price).strip())
    except InvalidOperation:
        raise ValueError(f"{problem}, got {str(max_price)[:40]!r}") from None
    if not value.is_finite() or value <= 0 or value > MAX_PRICE_LIMIT:
        raise ValueError(f"{problem}, got {str(max_price)[:40]!r}")
    return value
