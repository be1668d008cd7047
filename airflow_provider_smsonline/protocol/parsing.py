# An answer (HTTP status and body) in, a typed result or a typed error out; never anything else.
"""Parsers of the SMS.online answers, one per action (rent family first, then activations)."""

from __future__ import annotations

import json
from datetime import timezone, tzinfo
from decimal import Decimal, InvalidOperation
from types import MappingProxyType

from airflow_provider_smsonline.dates import parse_datetime
from airflow_provider_smsonline.exceptions import (
    NoNumbersError,
    PriceLimitError,
    RentalExpiredError,
    RentalStateError,
    SmsOnlineError,
)
from airflow_provider_smsonline.protocol import results
from airflow_provider_smsonline.protocol.actions import (
    RENT_STATUS_CANCEL,
    RENT_STATUS_FINISH,
    SET_STATUS_ANSWERS,
)
from airflow_provider_smsonline.protocol.answers import (
    amount,
    bad_response,
    checked_id,
    decode,
    error_for_code,
    read_body,
    success_object,
)
from airflow_provider_smsonline.protocol.results import (
    STATUS_OK,
    STATUS_WAIT_CODE,
    STATUS_WAIT_RESEND,
    STATUS_WAIT_RETRY,
    HistoryEntry,
    Rental,
    RentListEntry,
    RentPrice,
    Sms,
)
from airflow_provider_smsonline.validation import MAX_RENTAL_ID, as_int

#: Other spellings of getStatus states, read as the one this provider names them by.
_STATUS_SPELLINGS = MappingProxyType({STATUS_WAIT_RESEND: STATUS_WAIT_RETRY})
#: Answers of getActiveActivations meaning "none" (its page names the case, not the code).
NO_ACTIVE_CODES = frozenset({"NO_ACTIVATIONS", "NO_ACTIVE_ACTIVATIONS", "NO_ACTIVATION"})

# ----------------------------------------------------------------------------- the rent family


def parse_balance(status: int, body: bytes | str) -> Decimal:
    """Parse getBalance: ``ACCESS_BALANCE:123.45`` → ``Decimal('123.45')``."""
    payload = read_body(status, body)
    if isinstance(payload, str):
        code, _, balance = payload.partition(":")
        if code.strip() == "ACCESS_BALANCE":
            return amount(status, balance)
        raise error_for_code(payload, http_status=status)
    if isinstance(payload, dict) and payload.get("status") == "success" and "balance" in payload:
        return amount(status, payload["balance"])
    raise bad_response(status, "no ACCESS_BALANCE in the answer")


def parse_rental(status: int, body: bytes | str, tz: tzinfo = timezone.utc) -> Rental:
    """Parse getRentNumber / continueRentNumber into a :class:`Rental`."""
    payload = success_object(status, body)
    phone = payload.get("phone")
    if not isinstance(phone, dict):
        raise bad_response(status, "no 'phone' object in the answer")
    try:
        rent_id = as_int(phone.get("id"))
        end_date = parse_datetime(phone.get("endDate"), tz)
    except ValueError as exc:
        raise bad_response(status, f"an unreadable rental ({exc})") from None
    checked_id(status, rent_id)
    number = phone.get("number")
    if isinstance(number, int) and not isinstance(number, bool):
        number = str(number)
    if not isinstance(number, str) or not number.strip():
        raise bad_response(status, "a rental without a number")
    extra = {k: v for k, v in phone.items() if k not in ("id", "endDate", "number")}
    extra.update({k: v for k, v in payload.items() if k not in ("status", "phone")})
    return Rental(id=rent_id, number=number.strip(), end_date=end_date, extra=MappingProxyType(extra))


def rental_id_in(body: bytes | str) -> int | None:
    """The rental id in a getRentNumber answer that failed to parse whole, if one can be read."""
    try:
        payload = json.loads(decode(body))
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
        payload = success_object(status, body)
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
        raise bad_response(status, "'values' is neither an object nor a list")
    messages = []
    for item in items:
        if not isinstance(item, dict):
            raise bad_response(status, "an SMS that is not an object")
        try:
            date = parse_datetime(item.get("date"), tz)
        except ValueError:
            raise bad_response(status, "an SMS with an unreadable date") from None
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
        success_object(status, body)
    except RentalExpiredError as exc:
        repeat = {RENT_STATUS_FINISH: "ALREADY_FINISH", RENT_STATUS_CANCEL: "ALREADY_CANCEL"}[wanted]
        if exc.code != repeat:
            raise


def parse_rent_list(status: int, body: bytes | str) -> list[RentListEntry]:
    """Parse getRentList; an empty list (or NO_NUMBERS) is ``[]``."""
    try:
        payload = success_object(status, body)
    except NoNumbersError:
        return []
    values = payload.get("values") or []
    if isinstance(values, dict):
        values = list(values.values())
    if not isinstance(values, list):
        raise bad_response(status, "'values' is not a list")
    entries = []
    for item in values:
        if not isinstance(item, dict):
            raise bad_response(status, "a rental that is not an object")
        try:
            rent_id = as_int(item.get("id"))
            price = Decimal(str(item["price"])) if item.get("price") is not None else None
            hours = as_int(item["hours"]) if item.get("hours") is not None else None
        except (ValueError, InvalidOperation):
            raise bad_response(status, "a rental with an unreadable id, price or hours") from None
        checked_id(status, rent_id)
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


def _history_texts(value: object) -> tuple[str, ...]:
    """The ``sms`` field of a history row: a JSON list written as a string (the page's sample),
    a list, or one text."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        text = value
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return (text,)
    if isinstance(value, list):
        return tuple(str(item) for item in value if item is not None)
    return (str(value),)


def parse_history(status: int, body: bytes | str, tz: tzinfo = timezone.utc) -> list[HistoryEntry]:
    """Parse getRentHistory or getHistory: a bare JSON list of rows (an empty list is ``[]``)."""
    payload = read_body(status, body)
    if isinstance(payload, str):
        raise error_for_code(payload, http_status=status)
    if isinstance(payload, dict) and payload.get("status") == "success":
        payload = payload.get("values", payload.get("history"))  # a peer's wrapper
    if not isinstance(payload, list):
        raise bad_response(status, "a history that is not a list")
    rows = []
    for item in payload:
        if not isinstance(item, dict):
            raise bad_response(status, "a history row that is not an object")
        row_id = checked_id(status, item.get("id"), "history row")
        try:
            date = parse_datetime(item["date"], tz) if item.get("date") else None
        except ValueError:
            date = None  # informational: nothing decides on a server's date
        cost = item.get("cost")
        number = item.get("phone")
        extra = {k: v for k, v in item.items() if k not in ("id", "date", "phone", "sms", "cost", "status")}
        rows.append(
            HistoryEntry(
                id=row_id,
                date=date,
                number=str(number) if isinstance(number, (str, int)) and not isinstance(number, bool) else "",
                sms=_history_texts(item.get("sms")),
                cost=None if cost in (None, "") else amount(status, cost, "a cost"),
                status="" if item.get("status") is None else str(item.get("status")),
                extra=MappingProxyType(extra),
            )
        )
    return rows


def parse_price(status: int, body: bytes | str) -> Decimal:
    """Parse getContinueRentPrice: ``{"status":"success","price":"100"}`` → ``Decimal('100')``."""
    payload = success_object(status, body)
    try:
        return Decimal(str(payload["price"]))
    except (KeyError, InvalidOperation):
        raise bad_response(status, "no readable 'price' in the answer") from None


def parse_rent_prices(status: int, body: bytes | str) -> list[RentPrice]:
    """Parse getRentPrices into one :class:`RentPrice` per country and service."""
    payload = success_object(status, body)
    values = payload.get("values")
    if not isinstance(values, dict):
        raise bad_response(status, "'values' is not an object")
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
        raise bad_response(status, "an unreadable price list") from None
    return prices


# ----------------------------------------------------------------------------- activations


def _activation_number(status: int, value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > 32:
        raise bad_response(status, "an activation without a number")
    return value.strip()


def _price_error(status: int, text: str, limit: object = None) -> SmsOnlineError:
    """``WRONG_MAX_PRICE:<min>``: the typed refusal keeping the server's minimum price."""
    _, _, argument = text.partition(":")
    try:
        price: Decimal | None = amount(status, argument, "a price")
    except SmsOnlineError:
        price = None
    shown = f" (the lowest price now is {price})" if price is not None else ""
    return PriceLimitError(
        f"the price is above the maxPrice sent; nothing was charged{shown}",
        code="WRONG_MAX_PRICE",
        price=price,
        limit=limit,
        http_status=status,
    )


def parse_number(status: int, body: bytes | str) -> results.Activation:
    """Parse getNumber (``ACCESS_NUMBER:<id>:<phone>``) or getNumberV2 (JSON) into an :class:`.Activation`."""
    payload = read_body(status, body)
    if isinstance(payload, str):
        head, _, rest = payload.partition(":")
        head = head.strip()
        if head == "ACCESS_NUMBER":
            raw_id, _, phone = rest.partition(":")
            return results.Activation(
                id=checked_id(status, raw_id, "activation"), number=_activation_number(status, phone)
            )
        if head == "WRONG_MAX_PRICE":
            raise _price_error(status, payload)
        raise error_for_code(payload, http_status=status)
    if isinstance(payload, dict) and "activationId" in payload:
        cost = payload.get("activationCost")
        extra = {
            k: v for k, v in payload.items() if k not in ("activationId", "phoneNumber", "activationCost")
        }
        return results.Activation(
            id=checked_id(status, payload["activationId"], "activation"),
            number=_activation_number(status, payload.get("phoneNumber")),
            cost=None if cost is None else amount(status, cost, "a cost"),
            extra=MappingProxyType(extra),
        )
    raise bad_response(status, "no ACCESS_NUMBER in the answer")


def parse_status(status: int, body: bytes | str) -> results.ActivationStatus:
    """Parse getStatus (plain text) or getStatusV2 (JSON) into an :class:`.ActivationStatus`."""
    payload = read_body(status, body)
    if isinstance(payload, str):
        head, sep, argument = payload.partition(":")
        head = head.strip()
        if head.startswith("STATUS_"):
            head = _STATUS_SPELLINGS.get(head, head)
            return results.ActivationStatus(status=head, code=argument.strip() or None if sep else None)
        raise error_for_code(payload, http_status=status)
    if isinstance(payload, dict):
        sms = payload.get("sms")
        if isinstance(sms, dict) and sms.get("code") not in (None, ""):
            text = sms.get("text")
            return results.ActivationStatus(STATUS_OK, str(sms["code"]), None if text is None else str(text))
        if "sms" in payload or "verificationType" in payload or "call" in payload:
            return results.ActivationStatus(STATUS_WAIT_CODE)
    raise bad_response(status, "no STATUS_* in the answer")


def parse_set_status(status: int, body: bytes | str, wanted: int) -> str:
    """Parse setStatus: the ``ACCESS_*`` answer, or the typed error."""
    payload = read_body(status, body)
    if isinstance(payload, str):
        head = payload.split(":", 1)[0].strip()
        if head.startswith("ACCESS_"):
            return head
        raise error_for_code(payload, http_status=status)
    raise bad_response(status, f"no {SET_STATUS_ANSWERS.get(wanted, 'ACCESS_*')} in the answer")


def parse_prices(status: int, body: bytes | str) -> list[results.ActivationPrice]:
    """Parse getPrices (``{"<country>": {"<service>": {"cost", "count"}}}``) into prices."""
    payload = read_body(status, body)
    if isinstance(payload, str):
        raise error_for_code(payload, http_status=status)
    if (
        isinstance(payload, dict)
        and payload.get("status") == "success"
        and isinstance(payload.get("values"), dict)
    ):
        payload = payload["values"]
    if not isinstance(payload, dict):
        raise bad_response(status, "a price list that is not an object")
    prices = []
    try:
        for country, services in payload.items():
            if not isinstance(services, dict):
                raise ValueError("services")
            for service, entry in services.items():
                if not isinstance(entry, dict):
                    raise ValueError("entry")
                cost = Decimal(str(entry.get("cost")))
                if not cost.is_finite():
                    raise ValueError("cost")
                prices.append(
                    results.ActivationPrice(
                        as_int(country), str(service), cost, as_int(entry.get("count", 0))
                    )
                )
    except (ValueError, InvalidOperation):
        raise bad_response(status, "an unreadable price list") from None
    return prices


def parse_active_activations(status: int, body: bytes | str) -> list[results.ActiveActivation]:
    """Parse getActiveActivations; none is ``[]``."""
    try:
        payload = read_body(status, body)
    except SmsOnlineError as error:
        if error.code in NO_ACTIVE_CODES:
            return []
        raise
    if isinstance(payload, str):
        if payload.split(":", 1)[0].strip() in NO_ACTIVE_CODES:
            return []
        raise error_for_code(payload, http_status=status)
    rows = payload.get("activeActivations") if isinstance(payload, dict) else None
    if not isinstance(rows, list):
        raise bad_response(status, "no 'activeActivations' list in the answer")
    result = []
    for row in rows:
        if not isinstance(row, dict):
            raise bad_response(status, "an activation that is not an object")
        country = row.get("countryCode")
        cost = row.get("activationCost")
        try:
            result.append(
                results.ActiveActivation(
                    id=checked_id(status, row.get("activationId"), "activation"),
                    number=str(row.get("phoneNumber") or ""),
                    service=str(row.get("serviceCode") or ""),
                    country=None if country in (None, "") else as_int(country),
                    status=str(row.get("activationStatus") or ""),
                    cost=None if cost is None else amount(status, cost, "a cost"),
                    codes=_listed_codes(row.get("smsCode")),
                )
            )
        except ValueError:
            raise bad_response(status, "an activation with an unreadable country") from None
    return result


def _listed_codes(value: object) -> tuple[str, ...]:
    # The page shows a list of codes; a lone code or nothing is read leniently.
    items = value if isinstance(value, list) else [value]
    return tuple(str(item) for item in items if item is not None and str(item).strip() != "")
