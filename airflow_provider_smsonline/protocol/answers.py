# How every SMS.online answer is read, before any action's shape: the body decoded, an error code
# (plain text or JSON) turned into its typed error, the table of codes. No I/O.
"""Reading an SMS.online answer: the table of error codes and the body's two styles."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from airflow_provider_smsonline.dates import parse_datetime
from airflow_provider_smsonline.exceptions import (
    AccountError,
    ActivationNotFoundError,
    BannedError,
    CancelNotAllowedError,
    EarlyCancelDeniedError,
    InvalidRequestError,
    MaxHoursExceededError,
    NoNumbersError,
    PriceLimitError,
    RentalExpiredError,
    RentalNotFoundError,
    RentalStateError,
    ServerError,
    SmsOnlineError,
    UnknownCodeError,
)
from airflow_provider_smsonline.validation import MAX_RENTAL_ID, RENT_TIMES, as_int

# code -> (error class, what it means to a user)
ERROR_TABLE: Mapping[str, tuple[type[SmsOnlineError], str]] = MappingProxyType(
    {
        "BAD_KEY": (AccountError, "the API key was refused; check the connection's API key"),
        "ACCOUNT_INACTIVE": (AccountError, "the account is inactive"),
        "ACCOUNT_BLOCKED": (AccountError, "the account is blocked"),
        "CHANNELS_LIMIT": (AccountError, "the account is blocked (channel limit reached)"),
        "NO_BALANCE": (AccountError, "the balance is too low; top up the account"),
        "BANNED": (BannedError, "the account is banned"),
        "BAD_ACTION": (InvalidRequestError, "the action is not known to the server"),
        "BAD_SERVICE": (InvalidRequestError, "the service is not known"),
        "WRONG_SERVICE": (InvalidRequestError, "the service is not known"),
        "BAD_COUNTRY": (InvalidRequestError, "the country is not known"),
        "WRONG_COUNTRY": (InvalidRequestError, "the country is not known"),
        "WRONG_COUNTRY_ID": (InvalidRequestError, "the country is not known"),
        "BAD_OPERATOR": (InvalidRequestError, "the operator is not known"),
        "WRONG_OPERATOR": (InvalidRequestError, "the operator is not known"),
        "INVALID_TIME": (InvalidRequestError, f"the rent time must be one of {RENT_TIMES}"),
        "BAD_TIME": (InvalidRequestError, f"the rent time must be one of {RENT_TIMES}"),
        "INVALID_PHONE": (InvalidRequestError, "the phone number is not valid"),
        "INCORECT_STATUS": (InvalidRequestError, "the status is not valid"),
        "NO_NUMBERS": (NoNumbersError, "no numbers are available right now"),
        "NO_ID_RENT": (RentalNotFoundError, "no rental with this id"),
        "RENT_DIE": (RentalExpiredError, "the rental has expired"),
        "STATUS_FINISH": (RentalExpiredError, "the rental is finished"),
        "STATUS_CANCEL": (RentalExpiredError, "the rental is cancelled"),
        "STATUS_REVOKE": (RentalExpiredError, "the rental was revoked"),
        "ALREADY_FINISH": (RentalExpiredError, "the rental is already finished"),
        "ALREADY_CANCEL": (RentalExpiredError, "the rental is already cancelled"),
        "CANT_CANCEL": (CancelNotAllowedError, "the rental can no longer be cancelled"),
        "MAX_HOURS_EXCEED": (MaxHoursExceededError, "the renewal would pass the longest rental allowed"),
        "STATUS_WAIT_CODE": (RentalStateError, "no SMS has arrived yet"),
        "ERROR_SQL": (ServerError, "the server failed (SQL error)"),
        "SQL_ERROR": (ServerError, "the server failed (SQL error)"),
        "SERVER_ERROR": (ServerError, "the server failed"),
        # the activation family
        "NO_ACTIVATION": (ActivationNotFoundError, "no activation with this id"),
        "BAD_STATUS": (InvalidRequestError, "the activation status is not valid"),
        "EARLY_CANCEL_DENIED": (
            EarlyCancelDeniedError,
            "an activation cannot be cancelled in its first minutes",
        ),
        "WRONG_MAX_PRICE": (PriceLimitError, "the price is above the maxPrice sent; nothing was charged"),
        "WRONG_EXCEPTION_PHONE": (InvalidRequestError, "the excluded number prefixes are not valid"),
        "NO_BALANCE_FORWARD": (AccountError, "the balance is too low for call forwarding"),
    }
)

_CODE_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")

_LISTED = (
    "the service codes a country offers, with prices and stock: "
    "`python -m airflow_provider_smsonline rent-prices --country ID` (rentals; "
    "SmsOnlineHook.get_rent_prices) or `activation-prices --service CODE --country ID` (get_prices)"
)
_COUNTRIES = (
    "country ids are listed in SMS.online's API documentation (https://sms.online/help/api-docs); "
    "`python -m airflow_provider_smsonline rent-prices --country ID` shows what one offers"
)
_OPERATORS = "operator codes are listed in SMS.online's API documentation (https://sms.online/help/api-docs)"

# code -> (the request parameter the refusal is about, where its valid values come from)
REFUSED_PARAMETER: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "BAD_SERVICE": ("service", _LISTED),
        "WRONG_SERVICE": ("service", _LISTED),
        "BAD_COUNTRY": ("country", _COUNTRIES),
        "WRONG_COUNTRY": ("country", _COUNTRIES),
        "WRONG_COUNTRY_ID": ("country", _COUNTRIES),
        "BAD_OPERATOR": ("operator", _OPERATORS),
        "WRONG_OPERATOR": ("operator", _OPERATORS),
        "INVALID_TIME": ("rent_time", ""),
        "BAD_TIME": ("rent_time", ""),
        "NO_ID_RENT": ("id", ""),
        "NO_ACTIVATION": ("id", ""),
        "BAD_STATUS": ("status", ""),
        "INCORECT_STATUS": ("status", ""),
        "WRONG_MAX_PRICE": ("maxPrice", ""),
        "WRONG_EXCEPTION_PHONE": ("phoneException", ""),
    }
)
#: Characters of a sent value a refusal repeats.
SHOWN_VALUE_LENGTH = 100


def error_for_code(code: str, detail: str | None = None, http_status: int | None = None) -> SmsOnlineError:
    """The typed error for an API error code (``UnknownCodeError`` keeps an unknown code)."""
    name, _, argument = code.partition(":")
    name = name.strip().upper()
    if name == "BANNED":
        until: datetime | None
        try:
            until = parse_datetime(argument)
        except ValueError:
            until = None
        when = until.isoformat() if until else (argument.strip() or "an unknown time")
        return BannedError(f"the account is banned until {when}", banned_until=until, http_status=http_status)
    if name in ERROR_TABLE:
        cls, meaning = ERROR_TABLE[name]
        return cls(meaning if not detail else f"{meaning} ({detail})", code=name, http_status=http_status)
    shown = code.strip()[:100]
    return UnknownCodeError(
        f"the API answered with an unknown code {shown!r}", code=shown, http_status=http_status
    )


def naming_sent(error: SmsOnlineError, params: Mapping[str, str]) -> SmsOnlineError:
    """``error`` (a refusal of a request sent with ``params``) saying which value the request sent
    for the parameter its code is about, and where the valid values come from; returns it.

    ``BAD_SERVICE`` for ``service="telegram"`` reads ``the service is not known (sent
    service='telegram'); the service codes a country offers, …``. Other errors are left as they are.
    """
    about = REFUSED_PARAMETER.get(error.code)
    if about is None:
        return error
    name, where = about
    value = params.get(name)
    sent = f"sent no {name}" if value is None else f"sent {name}={value[:SHOWN_VALUE_LENGTH]!r}"
    error.message = f"{error.message} ({sent})" + (f"; {where}" if where else "")
    error.args = (error.message,)
    return error


def decode(body: bytes | str) -> str:
    """The body as text (undecodable bytes replaced)."""
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")
    return body


def bad_response(status: int, why: str) -> ServerError:
    """The error for an answer that is not the protocol (``why`` says what it was instead)."""
    return ServerError(
        f"the server's answer is not the SMS.online protocol: {why} (HTTP {status})",
        code="bad_response",
        http_status=status,
    )


def with_info(error: SmsOnlineError, info: object) -> SmsOnlineError:
    """Add what a JSON error's ``info`` says, where this provider knows its meaning."""
    if isinstance(error, MaxHoursExceededError) and isinstance(info, dict):
        try:
            limit = as_int(info.get("max"))
        except ValueError:
            return error
        error.max_hours = limit
        error.message = f"{error.message}: at most {limit} hours in all"
        error.args = (error.message,)
    return error


def read_body(status: int, body: bytes | str) -> Any:
    """Decode a body: a JSON success payload, a plain-text success string, or raise the error."""
    text = decode(body).strip().lstrip("\ufeff")
    if not text:
        raise bad_response(status, "empty body")
    if text[0] in "{[":
        try:
            payload = json.loads(text)
        except (ValueError, RecursionError):
            raise bad_response(status, "a body that is not valid JSON") from None
        if isinstance(payload, dict):
            state = payload.get("status")
            if state != "success":
                code = next(
                    (payload[k] for k in ("message", "msg", "error") if isinstance(payload.get(k), str)),
                    None,
                )
                if code is not None and code.strip():
                    raise with_info(error_for_code(code, http_status=status), payload.get("info"))
                if state is not None or status >= 400:
                    raise bad_response(status, "a JSON error without a code")
        if status >= 500:
            raise bad_response(status, "a server error status")
        return payload
    if text[0] == "<":
        raise bad_response(status, "an HTML page")
    head = text.split(":", 1)[0].strip()
    if _CODE_RE.match(head) and "\n" not in text:
        return text  # a plain-text code: success or error, the caller decides
    raise bad_response(status, "a body that is neither JSON nor a code")


def success_object(status: int, body: bytes | str) -> dict[str, Any]:
    """A JSON body with ``"status": "success"``, else the typed error it carries."""
    payload = read_body(status, body)
    if isinstance(payload, str):
        raise error_for_code(payload, http_status=status)
    if not isinstance(payload, dict) or payload.get("status") != "success":
        raise bad_response(status, "a JSON body without status 'success'")
    return payload


def amount(status: int, value: object, what: str = "an amount") -> Decimal:
    """``value`` as a finite ``Decimal``, else the server's answer is not the protocol."""
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite():
        raise bad_response(status, f"{what} that is not a number")
    return number


def checked_id(status: int, value: object, what: str = "rental") -> int:
    """An id sent by the server: an integer from 0 to ``MAX_RENTAL_ID`` (exact in JSON)."""
    article = "an" if what[0] in "aeiou" else "a"
    try:
        number = as_int(value)
    except ValueError:
        raise bad_response(status, f"an unreadable {what} id") from None
    if not 0 <= number <= MAX_RENTAL_ID:
        raise bad_response(status, f"{article} {what} id out of range ({str(number)[:30]})")
    return number
