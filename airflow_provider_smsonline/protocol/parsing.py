# An answer (HTTP status and body) in, a typed result or a typed error out; never anything else.
"""Parsers of the SMS.online answers and the table of its error codes."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone, tzinfo
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
from airflow_provider_smsonline.protocol.actions import RENT_STATUS_CANCEL, RENT_STATUS_FINISH
from airflow_provider_smsonline.protocol.results import Rental, RentListEntry, RentPrice, Sms, WebhookSms
from airflow_provider_smsonline.validation import RENT_TIMES, as_int

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


def _decode(body: bytes | str) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")
    return body


def _bad_response(status: int, why: str) -> ServerError:
    return ServerError(
        f"the server's answer is not the SMS.online protocol: {why} (HTTP {status})",
        code="bad_response",
        http_status=status,
    )


def _with_info(error: SmsOnlineError, info: object) -> SmsOnlineError:
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


def _read(status: int, body: bytes | str) -> Any:
    """Decode a body: a JSON success payload, a plain-text success string, or raise the error."""
    text = _decode(body).strip().lstrip("\ufeff")
    if not text:
        raise _bad_response(status, "empty body")
    if text[0] in "{[":
        try:
            payload = json.loads(text)
        except (ValueError, RecursionError):
            raise _bad_response(status, "a body that is not valid JSON") from None
        if isinstance(payload, dict):
            state = payload.get("status")
            if state != "success":
                code = next(
                    (payload[k] for k in ("message", "msg", "error") if isinstance(payload.get(k), str)),
                    None,
                )
                if code is not None and code.strip():
                    raise _with_info(error_for_code(code, http_status=status), payload.get("info"))
                if state is not None or status >= 400:
                    raise _bad_response(status, "a JSON error without a code")
        if status >= 500:
            raise _bad_response(status, "a server error status")
        return payload
    if text[0] == "<":
        raise _bad_response(status, "an HTML page")
    head = text.split(":", 1)[0].strip()
    if _CODE_RE.match(head) and "\n" not in text:
        return text  # a plain-text code: success or error, the caller decides
    raise _bad_response(status, "a body that is neither JSON nor a code")


def _plain_error(status: int, text: str) -> SmsOnlineError:
    return error_for_code(text, http_status=status)


def _success_object(status: int, body: bytes | str) -> dict[str, Any]:
    payload = _read(status, body)
    if isinstance(payload, str):
        raise _plain_error(status, payload)
    if not isinstance(payload, dict) or payload.get("status") != "success":
        raise _bad_response(status, "a JSON body without status 'success'")
    return payload


def _money(status: int, value: object) -> Decimal:
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite():
        raise _bad_response(status, "an amount that is not a number")
    return amount


def parse_balance(status: int, body: bytes | str) -> Decimal:
    """Parse getBalance: ``ACCESS_BALANCE:123.45`` → ``Decimal('123.45')``."""
    payload = _read(status, body)
    if isinstance(payload, str):
        code, _, amount = payload.partition(":")
        if code.strip() == "ACCESS_BALANCE":
            return _money(status, amount)
        raise _plain_error(status, payload)
    if isinstance(payload, dict) and payload.get("status") == "success" and "balance" in payload:
        return _money(status, payload["balance"])
    raise _bad_response(status, "no ACCESS_BALANCE in the answer")


def parse_rental(status: int, body: bytes | str, tz: tzinfo = timezone.utc) -> Rental:
    """Parse getRentNumber / continueRentNumber into a :class:`Rental`."""
    payload = _success_object(status, body)
    phone = payload.get("phone")
    if not isinstance(phone, dict):
        raise _bad_response(status, "no 'phone' object in the answer")
    try:
        rent_id = as_int(phone.get("id"))
        end_date = parse_datetime(phone.get("endDate"), tz)
    except ValueError as exc:
        raise _bad_response(status, f"an unreadable rental ({exc})") from None
    _check_rental_id(status, rent_id)
    number = phone.get("number")
    if isinstance(number, int) and not isinstance(number, bool):
        number = str(number)
    if not isinstance(number, str) or not number.strip():
        raise _bad_response(status, "a rental without a number")
    extra = {k: v for k, v in phone.items() if k not in ("id", "endDate", "number")}
    extra.update({k: v for k, v in payload.items() if k not in ("status", "phone")})
    return Rental(id=rent_id, number=number.strip(), end_date=end_date, extra=MappingProxyType(extra))


#: The largest rental id taken from a server: ids are not negative and fit a JSON number exactly.
MAX_RENTAL_ID = 2**53 - 1


def _check_rental_id(status: int, rent_id: int) -> None:
    if not 0 <= rent_id <= MAX_RENTAL_ID:
        raise _bad_response(status, f"a rental id out of range ({str(rent_id)[:30]})")


def rental_id_in(body: bytes | str) -> int | None:
    """The rental id in a getRentNumber answer that failed to parse whole, if one can be read."""
    try:
        payload = json.loads(_decode(body))
        rent_id = as_int(payload["phone"]["id"])
    except Exception:
        return None
    return rent_id if 0 <= rent_id <= MAX_RENTAL_ID else None


def _index_order(key: object) -> tuple[int, str]:
    # isdigit() admits "²" and int() refuses over 4300 digits: such keys sort last, by text.
    text = str(key)
    if text.isdecimal() and len(text) < 19:
        return (int(text), "")
    return (1 << 62, text)


def parse_rent_status(status: int, body: bytes | str, tz: tzinfo = timezone.utc) -> list[Sms]:
    """Parse getRentStatus into SMS, newest first as sent; "no SMS yet" is an empty list."""
    try:
        payload = _success_object(status, body)
    except RentalStateError as exc:
        if exc.code == "STATUS_WAIT_CODE":
            return []
        raise
    values = payload.get("values") or {}
    if isinstance(values, dict):
        items = [values[k] for k in sorted(values, key=_index_order)]
    elif isinstance(values, list):
        items = values
    else:
        raise _bad_response(status, "'values' is neither an object nor a list")
    messages = []
    for item in items:
        if not isinstance(item, dict):
            raise _bad_response(status, "an SMS that is not an object")
        try:
            date = parse_datetime(item.get("date"), tz)
        except ValueError:
            raise _bad_response(status, "an SMS with an unreadable date") from None
        messages.append(
            Sms(
                phone_from=str(item.get("phoneFrom") or ""),
                text=str(item.get("text") or ""),
                service=str(item.get("service") or ""),
                date=date,
            )
        )
    return messages


def parse_set_rent_status(status: int, body: bytes | str, wanted: int) -> None:
    """Parse setRentStatus; a repeat of the same request (ALREADY_FINISH/CANCEL) is success."""
    try:
        _success_object(status, body)
    except RentalExpiredError as exc:
        repeat = {RENT_STATUS_FINISH: "ALREADY_FINISH", RENT_STATUS_CANCEL: "ALREADY_CANCEL"}[wanted]
        if exc.code != repeat:
            raise


def parse_rent_list(status: int, body: bytes | str) -> list[RentListEntry]:
    """Parse getRentList; an empty list (or NO_NUMBERS) is ``[]``."""
    try:
        payload = _success_object(status, body)
    except NoNumbersError:
        return []
    values = payload.get("values") or []
    if isinstance(values, dict):
        values = list(values.values())
    if not isinstance(values, list):
        raise _bad_response(status, "'values' is not a list")
    entries = []
    for item in values:
        if not isinstance(item, dict):
            raise _bad_response(status, "a rental that is not an object")
        try:
            rent_id = as_int(item.get("id"))
            price = Decimal(str(item["price"])) if item.get("price") is not None else None
            hours = as_int(item["hours"]) if item.get("hours") is not None else None
        except (ValueError, InvalidOperation):
            raise _bad_response(status, "a rental with an unreadable id, price or hours") from None
        _check_rental_id(status, rent_id)
        extra = {k: v for k, v in item.items() if k not in ("id", "phone", "price", "hours")}
        entries.append(
            RentListEntry(
                id=rent_id,
                number=str(item.get("phone") or ""),
                price=price,
                hours=hours,
                extra=MappingProxyType(extra),
            )
        )
    return entries


def parse_price(status: int, body: bytes | str) -> Decimal:
    """Parse getContinueRentPrice: ``{"status":"success","price":"100"}`` → ``Decimal('100')``."""
    payload = _success_object(status, body)
    try:
        return Decimal(str(payload["price"]))
    except (KeyError, InvalidOperation):
        raise _bad_response(status, "no readable 'price' in the answer") from None


def parse_rent_prices(status: int, body: bytes | str) -> list[RentPrice]:
    """Parse getRentPrices into one :class:`RentPrice` per country and service."""
    payload = _success_object(status, body)
    values = payload.get("values")
    if not isinstance(values, dict):
        raise _bad_response(status, "'values' is not an object")
    prices = []
    try:
        for country, services in values.items():
            if not isinstance(services, dict):
                raise ValueError("services")
            for service, entry in services.items():
                if not isinstance(entry, dict):
                    raise ValueError("entry")
                prices.append(
                    RentPrice(
                        country=as_int(country),
                        service=str(service),
                        cost=Decimal(str(entry.get("cost"))),
                        count=as_int(entry.get("count", 0)),
                    )
                )
    except (ValueError, InvalidOperation):
        raise _bad_response(status, "an unreadable price list") from None
    return prices


def _webhook_payload(text: str) -> dict[str, Any]:
    """A webhook body as JSON, or form-encoded (``rentId=…&sms[text]=…`` or flat ``text=…``):
    SMS.online's page shows the fields but not the encoding."""
    if text.lstrip().startswith("{"):
        payload = json.loads(text)
        if not isinstance(payload, dict):
            raise TypeError("not an object")
        return payload
    from urllib.parse import parse_qsl

    fields = dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))
    sms = {key[4:-1]: value for key, value in fields.items() if key.startswith("sms[") and key.endswith("]")}
    if not sms:
        sms = {k: v for k, v in fields.items() if k in ("phoneFrom", "text", "service", "date")}
    return {"rentId": fields["rentId"], "sms": sms}


def parse_webhook(body: bytes | str, tz: tzinfo = timezone.utc) -> WebhookSms:
    """Parse a webhook post, JSON or form-encoded, ``phoneFrom`` a number or a string.

    Raises ``ValueError`` if it is not the documented shape.
    """
    try:
        payload = _webhook_payload(_decode(body))
        sms = payload["sms"]
        return WebhookSms(
            rent_id=as_int(payload["rentId"]),
            sms=Sms(
                phone_from=_phone(sms.get("phoneFrom")),
                text=str(sms.get("text") or ""),
                service=str(sms.get("service") or ""),
                date=parse_datetime(sms.get("date"), tz),
            ),
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ValueError(f"not an SMS.online webhook payload: {type(exc).__name__}") from None


def _phone(value: object) -> str:
    # The documented sample writes phoneFrom as a bare JSON number; a float would print "7.9e10".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value if value is not None else "").strip()
