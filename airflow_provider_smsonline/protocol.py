# The SMS.online handler_api.php protocol as data: parameters in, results or typed errors out.
# No I/O happens here: the sync hook, the async trigger and the sandbox server all share it.
"""The SMS.online ``handler_api.php`` protocol, free of I/O.

* ``validate_*`` (from :mod:`~airflow_provider_smsonline.validation`, re-exported) check
  arguments and raise ``ValueError`` naming the field and what is allowed.
* ``*_params`` build an action's query parameters (the API key is added by the caller).
* ``parse_*`` turn an HTTP status and body into a typed result or a typed
  :class:`~airflow_provider_smsonline.exceptions.SmsOnlineError`; they never raise anything else.
* ``encode_*`` write the answers a server sends (used by the sandbox).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from airflow_provider_smsonline.exceptions import (
    AccountError,
    BannedError,
    CancelNotAllowedError,
    InvalidRequestError,
    NoNumbersError,
    RentalExpiredError,
    RentalNotFoundError,
    RentalStateError,
    ServerError,
    SmsOnlineError,
    UnknownCodeError,
)
from airflow_provider_smsonline.validation import (
    RENT_TIMES,
    as_int,
    non_negative_int,
    validate_country,
    validate_operator,
    validate_rent_id,
    validate_rent_time,
    validate_service,
    validate_webhook_url,
)

DEFAULT_ENDPOINT = "https://api.sms.online/stubs/handler_api.php"
ENDPOINT_PATH = "/stubs/handler_api.php"


GET_BALANCE = "getBalance"
GET_RENT_NUMBER = "getRentNumber"
GET_RENT_STATUS = "getRentStatus"
SET_RENT_STATUS = "setRentStatus"
GET_RENT_LIST = "getRentList"
CONTINUE_RENT_NUMBER = "continueRentNumber"
GET_CONTINUE_RENT_PRICE = "getContinueRentPrice"
GET_RENT_PRICES = "getRentPrices"

#: Actions that charge money: never re-sent automatically.
CHARGING_ACTIONS = frozenset({GET_RENT_NUMBER, CONTINUE_RENT_NUMBER})

#: setRentStatus values.
RENT_STATUS_FINISH = 1
RENT_STATUS_CANCEL = 2

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
        "STATUS_WAIT_CODE": (RentalStateError, "no SMS has arrived yet"),
        "ERROR_SQL": (ServerError, "the server failed (SQL error)"),
        "SQL_ERROR": (ServerError, "the server failed (SQL error)"),
        "SERVER_ERROR": (ServerError, "the server failed"),
    }
)

_CODE_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2})[:\-](\d{2})(?:[:\-](\d{2})(?:\.(\d{1,6})\d*)?)?)?"
    r"\s*(Z|[+\-]\d{2}:?\d{2})?$"
)


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Rental:
    """A rented number, as getRentNumber and continueRentNumber return it.

    :ivar id: the rental's id, used by every later call on it.
    :ivar number: the phone number, digits only, country code first.
    :ivar end_date: when the rental ends (time-zone aware).
    :ivar extra: every other field the API sent (a cost, for instance), as sent.
    """

    id: int
    number: str
    end_date: datetime
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def to_xcom(self) -> dict[str, Any]:
        """The JSON-able dict operators push: ``id``, ``number``, ``end_date`` (ISO 8601)."""
        return {"id": self.id, "number": self.number, "end_date": self.end_date.isoformat()}


@dataclass(frozen=True)
class Sms:
    """An SMS received on a rental.

    :ivar phone_from: the sender as the API gives it (a number or a name).
    :ivar text: the message text.
    :ivar service: the service the API attributes it to (may be empty).
    :ivar date: when it was received (time-zone aware).
    """

    phone_from: str
    text: str
    service: str
    date: datetime

    def to_xcom(self) -> dict[str, Any]:
        """A JSON-able dict: ``phone_from``, ``text``, ``service``, ``date`` (ISO 8601)."""
        return {
            "phone_from": self.phone_from,
            "text": self.text,
            "service": self.service,
            "date": self.date.isoformat(),
        }


@dataclass(frozen=True)
class RentListEntry:
    """One active rental as getRentList lists it.

    :ivar id: the rental's id.
    :ivar number: the phone number.
    :ivar price: what it cost, when the API says.
    :ivar hours: the rental period in hours, when the API says.
    :ivar extra: every other field, as sent.
    """

    id: int
    number: str
    price: Decimal | None = None
    hours: int | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class RentPrice:
    """The price and stock of rentals for one country and service.

    :ivar country: the country id.
    :ivar service: the service code.
    :ivar cost: the price of one rental.
    :ivar count: how many numbers are available.
    """

    country: int
    service: str
    cost: Decimal
    count: int


@dataclass(frozen=True)
class WebhookSms:
    """What the webhook posts, once per SMS: the rental's id and the SMS. Unsigned: a hint only."""

    rent_id: int
    sms: Sms


# ----------------------------------------------------------------------------- parameters


def get_balance_params() -> dict[str, str]:
    """Parameters of getBalance."""
    return {"action": GET_BALANCE}


def get_rent_number_params(
    service: str,
    country: int,
    operator: str | None = None,
    rent_time: int | None = None,
    webhook_url: str | None = None,
) -> dict[str, str]:
    """Parameters of getRentNumber, validated; omitted optionals are left out."""
    params = {
        "action": GET_RENT_NUMBER,
        "service": validate_service(service),
        "country": str(validate_country(country)),
    }
    operator = validate_operator(operator)
    if operator is not None:
        params["operator"] = operator
    hours = validate_rent_time(rent_time)
    if hours is not None:
        params["rent_time"] = str(hours)
    url = validate_webhook_url(webhook_url)
    if url is not None:
        params["url"] = url
    return params


def get_rent_status_params(rent_id: int, page: int = 0, size: int = 10) -> dict[str, str]:
    """Parameters of getRentStatus (``page`` 0 is the newest)."""
    page = non_negative_int("page", page, "0 is the newest page")
    size = non_negative_int("size", size, "SMS per page, at least 1")
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size!r}")
    return {
        "action": GET_RENT_STATUS,
        "id": str(validate_rent_id(rent_id)),
        "page": str(page),
        "size": str(size),
    }


def set_rent_status_params(rent_id: int, status: int) -> dict[str, str]:
    """Parameters of setRentStatus (1 finish, 2 cancel)."""
    if status not in (RENT_STATUS_FINISH, RENT_STATUS_CANCEL):
        raise ValueError(f"status must be 1 (finish) or 2 (cancel), got {status!r}")
    return {"action": SET_RENT_STATUS, "id": str(validate_rent_id(rent_id)), "status": str(status)}


def get_rent_list_params() -> dict[str, str]:
    """Parameters of getRentList."""
    return {"action": GET_RENT_LIST}


def continue_rent_number_params(rent_id: int, rent_time: int) -> dict[str, str]:
    """Parameters of continueRentNumber (charges money)."""
    return {
        "action": CONTINUE_RENT_NUMBER,
        "id": str(validate_rent_id(rent_id)),
        "rent_time": str(validate_rent_time(rent_time, optional=False)),
    }


def get_continue_rent_price_params(rent_id: int, rent_time: int) -> dict[str, str]:
    """Parameters of getContinueRentPrice."""
    return {
        "action": GET_CONTINUE_RENT_PRICE,
        "id": str(validate_rent_id(rent_id)),
        "rent_time": str(validate_rent_time(rent_time, optional=False)),
    }


def get_rent_prices_params(country: int) -> dict[str, str]:
    """Parameters of getRentPrices."""
    return {"action": GET_RENT_PRICES, "country": str(validate_country(country))}


# ----------------------------------------------------------------------------- dates


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


# ----------------------------------------------------------------------------- parsing


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
                    raise error_for_code(code, http_status=status)
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


def parse_webhook(body: bytes | str, tz: tzinfo = timezone.utc) -> WebhookSms:
    """Parse a webhook post. Raises ``ValueError`` if it is not the documented shape."""
    try:
        payload = json.loads(_decode(body))
        sms = payload["sms"]
        return WebhookSms(
            rent_id=as_int(payload["rentId"]),
            sms=Sms(
                phone_from=str(sms.get("phoneFrom") or ""),
                text=str(sms.get("text") or ""),
                service=str(sms.get("service") or ""),
                date=parse_datetime(sms.get("date"), tz),
            ),
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ValueError(f"not an SMS.online webhook payload: {type(exc).__name__}") from None


# ----------------------------------------------------------------------------- waiting for an SMS

#: SMS asked for per getRentStatus page.
PAGE_SIZE = 20
#: Pages read per check at most, when every SMS of a page is newer than ``since``.
MAX_PAGES = 5


@dataclass(frozen=True)
class SmsMatch:
    """The SMS a wait was for, and the code read from it.

    :ivar sms: the matching SMS.
    :ivar code: the pattern's first group that matched, else its whole match; ``None`` when
        waiting without a pattern.
    """

    sms: Sms
    code: str | None

    def to_xcom(self) -> dict[str, Any]:
        """The JSON-able result: ``{"sms": Sms.to_xcom(), "code": str | None}``."""
        return {"sms": self.sms.to_xcom(), "code": self.code}


def _floor(since: datetime | None) -> datetime | None:
    # The API stamps SMS to the second: an SMS in the same second as ``since`` counts as newer.
    return since.replace(microsecond=0) if since is not None else None


def find_sms_match(
    messages: Sequence[Sms],
    since: datetime | None = None,
    pattern: re.Pattern[str] | str | None = None,
) -> SmsMatch | None:
    """The newest SMS received at or after ``since`` (to the second) whose text matches ``pattern``.

    :param messages: SMS of a rental, as getRentStatus lists them (any order).
    :param since: ignore SMS stamped before this second (aware); ``None`` for any age.
    :param pattern: a regular expression searched in the text; ``None`` for any SMS.
    :returns: the match with its code (see :class:`SmsMatch`), or ``None``.
    """
    regex = _compile(pattern) if not isinstance(pattern, re.Pattern) else pattern
    floor = _floor(since)
    for sms in sorted(messages, key=lambda m: m.date, reverse=True):
        if floor is not None and sms.date < floor:
            continue
        if regex is None:
            return SmsMatch(sms, None)
        found = regex.search(sms.text)
        if found:
            code = next((g for g in found.groups() if g is not None), found.group(0))
            return SmsMatch(sms, code)
    return None


def older_page_needed(messages: Sequence[Sms], since: datetime | None, size: int) -> bool:
    """Whether the page before this one may still hold SMS newer than ``since``.

    :param messages: one page of getRentStatus.
    :param since: as for :func:`find_sms_match`.
    :param size: the page size asked for (a shorter page is the last one).
    """
    if len(messages) < size:
        return False
    floor = _floor(since)
    return floor is None or min(m.date for m in messages) >= floor


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    from airflow_provider_smsonline.validation import validate_pattern

    return validate_pattern(pattern)


# ----------------------------------------------------------------------------- encoding


def format_datetime(value: datetime) -> str:
    """The API's date form: ``2025-05-10T12:34:56`` (server time, no offset)."""
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def format_sms_date(value: datetime) -> str:
    """The API's SMS date form: ``2025-05-10 12:34:56``."""
    return value.strftime("%Y-%m-%d %H:%M:%S")


def encode_error(code: str, *, json_style: bool = False) -> str:
    """An error body: plain text ``CODE`` or ``{"status": "error", "message": "CODE"}``."""
    if json_style:
        return json.dumps({"status": "error", "message": code})
    return code


def encode_success(**fields: Any) -> str:
    """A JSON success body: ``{"status": "success", **fields}``."""
    return json.dumps({"status": "success", **fields})


def encode_rental(rent_id: int, number: str, end_date: datetime, **extra: Any) -> str:
    """A getRentNumber / continueRentNumber success body."""
    return encode_success(
        phone={"id": rent_id, "endDate": format_datetime(end_date), "number": number, **extra}
    )


def encode_balance(balance: Decimal) -> str:
    """A getBalance success body: ``ACCESS_BALANCE:123.45``."""
    return f"ACCESS_BALANCE:{balance:.2f}"


def encode_webhook(rent_id: int, sms: Sms) -> str:
    """The webhook payload the server posts for one SMS."""
    return json.dumps(
        {
            "rentId": rent_id,
            "sms": {"phoneFrom": sms.phone_from, "text": sms.text, "date": format_sms_date(sms.date)},
        }
    )


def format_amount(amount: Decimal) -> str:
    """An amount of money as the API writes it in JSON: ``Decimal('1.5')`` → ``"1.50"``."""
    return f"{amount:.2f}"


def encode_rent_status(messages: Sequence[Sms], quantity: int | None = None) -> str:
    """A getRentStatus success body for one page of SMS, given newest first.

    ``values`` is an object keyed ``"0"``, ``"1"`` … in the order given; ``quantity`` is a string
    (the total number of SMS on the rental; ``len(messages)`` when omitted).
    """
    values = {
        str(index): {
            "phoneFrom": sms.phone_from,
            "text": sms.text,
            "service": sms.service,
            "date": format_sms_date(sms.date),
        }
        for index, sms in enumerate(messages)
    }
    return encode_success(quantity=str(len(messages) if quantity is None else quantity), values=values)


def encode_rent_list(entries: Iterable[RentListEntry]) -> str:
    """A getRentList success body: ``id``, ``phone``, ``price`` and ``hours`` as strings, then extras."""
    values = []
    for entry in entries:
        item: dict[str, Any] = {"id": str(entry.id), "phone": entry.number}
        if entry.price is not None:
            item["price"] = format_amount(entry.price)
        if entry.hours is not None:
            item["hours"] = str(entry.hours)
        item.update(entry.extra)
        values.append(item)
    return encode_success(values=values)


def encode_price(price: Decimal) -> str:
    """A getContinueRentPrice success body: ``{"status": "success", "price": "1.50"}``."""
    return encode_success(price=format_amount(price))


def encode_rent_prices(prices: Iterable[RentPrice]) -> str:
    """A getRentPrices success body: ``values`` → country id → service → ``cost`` and ``count``."""
    values: dict[str, dict[str, dict[str, Any]]] = {}
    for price in prices:
        values.setdefault(str(price.country), {})[price.service] = {
            "cost": float(price.cost),
            "count": price.count,
        }
    return encode_success(values=values)
