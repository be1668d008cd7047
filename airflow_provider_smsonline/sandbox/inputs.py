# Checks for what the control API, the in-process handle and the constructor take. Each refusal
# is a SandboxError that names the field and what is allowed; nothing is changed before all pass.
"""Validation of the sandbox's own inputs (not the SMS.online API's: see :mod:`.actions`).

Every limit here keeps the sandbox's arithmetic in range: a balance or a clock beyond them would
overflow ``Decimal`` or ``datetime`` later, in an API call, as a 500.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

#: The largest balance the sandbox keeps.
#: The zone the sandbox writes its dates in unless told otherwise: UTC+3, which SMS.online's peers
#: use and SMS.online never names, so that no wait or reconciliation passes by trusting it.
DEFAULT_UTC_OFFSET = 3.0
MAX_BALANCE = Decimal("1000000000000")
#: The most numbers a service and country can start with.
MAX_STOCK = 1_000_000_000
#: How far ahead of real time the sandbox clock may run, in seconds (3650 days).
MAX_CLOCK_OFFSET_SECONDS = 3650 * 24 * 3600
#: The longest delay a fault may hold a call, in seconds.
MAX_FAULT_DELAY_SECONDS = 3600.0
#: The most calls one queued fault may apply to.
MAX_FAULT_COUNT = 1_000_000
#: Seeds are integers of at most 63 bits (either sign).
MAX_SEED = 2**63 - 1
#: The longest SMS text the control API delivers, in characters.
MAX_SMS_TEXT = 10_000
#: The longest sender or service name the control API delivers, in characters.
MAX_SMS_NAME = 100
#: The UTC offsets (hours) the sandbox may write its dates in: those of real time zones.
UTC_OFFSET_RANGE = (-12.0, 14.0)

_CENT = Decimal("0.01")


class SandboxError(ValueError):
    """A control request the sandbox refuses.

    :ivar status: the HTTP status to answer (400 bad input, 404 unknown, 405 method, 409 conflict).
    :ivar field: the field at fault, when one is (``body`` for the request body as a whole).
    """

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field

    def to_json(self) -> dict[str, Any]:
        """The JSON error the control API answers: ``error`` and, when known, ``field``."""
        return {"error": str(self), **({"field": self.field} if self.field else {})}


def refuse(field: str, allowed: str, value: object) -> SandboxError:
    """The error for ``field``: ``<field> must be <allowed>, got <value>``."""
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return SandboxError(f"{field} must be {allowed}, got {shown}", field=field)


def check_fields(data: Mapping[str, Any], allowed: Collection[str], required: Collection[str] = ()) -> None:
    """Refuse a field not in ``allowed``, then a missing one of ``required`` (a typo is not ignored)."""
    for name in data:
        if name not in allowed:
            raise SandboxError(
                f"{name} is not a field of this request (allowed: {', '.join(allowed)})", field=str(name)
            )
    for name in required:
        if name not in data:
            raise SandboxError(f"{name} is required", field=name)


def money(value: object, field: str) -> Decimal:
    """``value`` (a number or a numeric string) as an amount in cents, from 0 to :data:`MAX_BALANCE`."""
    allowed = f"a number such as 1000 or '12.50', from 0 to {MAX_BALANCE}"
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise refuse(field, allowed, value)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise refuse(field, allowed, value) from None
    if not amount.is_finite():
        raise refuse(field, "a finite number " + allowed[allowed.index("from") :], value)
    if not 0 <= amount <= MAX_BALANCE:
        raise refuse(field, f"from 0 to at most {MAX_BALANCE}", value)
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


def integer(value: object, field: str, minimum: int, maximum: int) -> int:
    """``value`` (an int or a string of digits, not a bool) from ``minimum`` to ``maximum``."""
    allowed = f"an integer from {minimum} to {maximum}"
    if isinstance(value, bool):
        raise refuse(field, allowed, value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,30}\s*", value):
        value = int(value)
    if not isinstance(value, int):
        raise refuse(field, allowed, value)
    if not minimum <= value <= maximum:
        raise refuse(field, f"from {minimum} to at most {maximum}", value)
    return value


def seconds(value: object, field: str, maximum: float) -> float:
    """``value`` (a number or a numeric string) as finite seconds from 0 to ``maximum``."""
    allowed = f"a number of seconds from 0 to {_show(maximum)}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise refuse(field, allowed, value)
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise refuse(field, allowed, value) from None
    if not math.isfinite(number):
        raise refuse(field, f"a finite number of seconds from 0 to {_show(maximum)}", value)
    if not 0 <= number <= maximum:
        raise refuse(field, f"from 0 to at most {_show(maximum)} seconds", value)
    return number


def _show(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def rate(value: object, field: str = "rate") -> float:
    """``value`` as a probability: a finite number from 0 to 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise refuse(field, "a number from 0 to 1", value)
    return float(value)


def seed(value: object, field: str = "seed") -> int | None:
    """``value`` as a seed: ``None`` or an integer of at most 63 bits."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_SEED:
        raise refuse(field, f"an integer from {-MAX_SEED} to {MAX_SEED}, or null", value)
    return value


def text(value: object, field: str, maximum: int, *, allow_empty: bool = False) -> str:
    """``value`` as a string of at most ``maximum`` characters (stripped unless ``allow_empty``)."""
    kind = "a string" if allow_empty else "a non-empty string"
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise refuse(field, f"{kind} of at most {maximum} characters", value)
    if len(value) > maximum:
        raise refuse(field, f"{kind} of at most {maximum} characters", value)
    return value if allow_empty else value.strip()


def one_of(value: object, field: str, choices: Collection[str]) -> str:
    """``value`` if it is one of ``choices`` (strings)."""
    if not isinstance(value, str) or value not in choices:
        raise refuse(field, f"one of {', '.join(choices)}", value)
    return value


def utc_offset(value: object, field: str = "utc_offset") -> timedelta:
    """``value`` (hours east of UTC) as a real zone's offset: -12 to 14, in steps of 15 minutes."""
    low, high = UTC_OFFSET_RANGE
    allowed = f"a number of hours from {low:g} to {high:g} in steps of 0.25 (15 minutes)"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise refuse(field, allowed, value)
    if not low <= value <= high or value * 4 != int(value * 4):
        raise refuse(field, allowed, value)
    return timedelta(hours=value)
