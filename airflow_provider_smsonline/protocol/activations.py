# The activation family (one-time numbers: getNumber, getStatus, setStatus, getPrices,
# getActiveActivations) as data: parameters, typed results, parsers and the sandbox's encoders.
# No I/O. SMS.online documents the names; the plain-text shapes are the shared protocol's (peers).
"""Activations: a number bought for one service's verification code.

* ``*_params`` build an action's query parameters (validated; the policy adds the key).
* ``parse_*`` turn an HTTP status and body into a typed result or a typed
  :class:`~airflow_provider_smsonline.exceptions.SmsOnlineError`, and never raise anything else.
* ``encode_*`` write the answers a server sends (the sandbox's).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from airflow_provider_smsonline.exceptions import PriceLimitError, SmsOnlineError
from airflow_provider_smsonline.protocol.actions import (
    GET_ACTIVE_ACTIVATIONS,
    GET_NUMBER,
    GET_NUMBER_V2,
    GET_PRICES,
    GET_STATUS,
    GET_STATUS_V2,
    SET_STATUS,
)
from airflow_provider_smsonline.protocol.parsing import MAX_RENTAL_ID, _bad_response, _read, error_for_code
from airflow_provider_smsonline.validation import (
    as_int,
    non_negative_int,
    validate_country,
    validate_operator,
    validate_service,
)

#: setStatus values: the number is ready (1), ask for another SMS (3), complete (6), cancel (8).
ACTIVATION_READY = 1
ACTIVATION_RETRY = 3
ACTIVATION_COMPLETE = 6
ACTIVATION_CANCEL = 8
#: What setStatus answers for each status it accepts.
SET_STATUS_ANSWERS: Mapping[int, str] = MappingProxyType(
    {
        ACTIVATION_READY: "ACCESS_READY",
        ACTIVATION_RETRY: "ACCESS_RETRY_GET",
        ACTIVATION_COMPLETE: "ACCESS_ACTIVATION",
        ACTIVATION_CANCEL: "ACCESS_CANCEL",
    }
)

#: getStatus answers: waiting for an SMS, waiting for another after ``code``, a code, cancelled.
STATUS_WAIT_CODE = "STATUS_WAIT_CODE"
STATUS_WAIT_RETRY = "STATUS_WAIT_RETRY"
STATUS_OK = "STATUS_OK"
STATUS_CANCEL = "STATUS_CANCEL"
#: Answers of getActiveActivations meaning "none" (its page names the case, not the code).
NO_ACTIVE_CODES = frozenset({"NO_ACTIVATIONS", "NO_ACTIVE_ACTIVATIONS", "NO_ACTIVATION"})
#: The largest ``max_price`` accepted (a typo guard, in the account's currency).
MAX_PRICE_LIMIT = Decimal("100000")


# ----------------------------------------------------------------------------- validation


def validate_activation_id(activation_id: object) -> int:
    """Return ``activation_id`` as an int, or raise ``ValueError`` unless it is a non-negative integer."""
    value = non_negative_int("activation_id", activation_id, "the id an activation returned")
    if value > MAX_RENTAL_ID:
        raise ValueError(f"activation_id must be at most {MAX_RENTAL_ID}, got {value}")
    return value


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


# ----------------------------------------------------------------------------- parameters


def get_number_params(
    service: str,
    country: int,
    operator: str | None = None,
    max_price: object = None,
    *,
    v2: bool = False,
) -> dict[str, str]:
    """Parameters of getNumber (or getNumberV2); ``maxPrice`` is sent only with a limit."""
    params = {
        "action": GET_NUMBER_V2 if v2 else GET_NUMBER,
        "service": validate_service(service),
        "country": str(validate_country(country)),
    }
    operator = validate_operator(operator)
    if operator is not None:
        params["operator"] = operator
    limit = validate_max_price(max_price)
    if limit is not None:
        params["maxPrice"] = format(limit, "f")
    return params


def get_status_params(activation_id: int, *, v2: bool = False) -> dict[str, str]:
    """Parameters of getStatus (or getStatusV2)."""
    return {"action": GET_STATUS_V2 if v2 else GET_STATUS, "id": str(validate_activation_id(activation_id))}


def set_status_params(activation_id: int, status: int) -> dict[str, str]:
    """Parameters of setStatus: 1 ready, 3 another SMS, 6 complete, 8 cancel."""
    if isinstance(status, bool) or status not in SET_STATUS_ANSWERS:
        raise ValueError(
            f"status must be 1 (ready), 3 (another SMS), 6 (complete) or 8 (cancel), got {status!r}"
        )
    return {"action": SET_STATUS, "id": str(validate_activation_id(activation_id)), "status": str(status)}


def get_prices_params(service: str | None = None, country: int | None = None) -> dict[str, str]:
    """Parameters of getPrices (both filters optional)."""
    params = {"action": GET_PRICES}
    if service is not None:
        params["service"] = validate_service(service)
    if country is not None:
        params["country"] = str(validate_country(country))
    return params


def get_active_activations_params() -> dict[str, str]:
    """Parameters of getActiveActivations."""
    return {"action": GET_ACTIVE_ACTIVATIONS}


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Activation:
    """A number bought for one verification code (getNumber).

    :ivar id: the activation's id, used by every later call on it.
    :ivar number: the phone number, digits only, country code first.
    :ivar cost: what it cost, when the answer says (getNumberV2); else ``None``.
    :ivar extra: every other field the API sent, as sent.
    """

    id: int
    number: str
    cost: Decimal | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def to_xcom(self) -> dict[str, Any]:
        """The JSON-able dict operators push: ``id`` and ``number``."""
        return {"id": self.id, "number": self.number}


@dataclass(frozen=True)
class ActivationStatus:
    """An activation's state (getStatus).

    :ivar status: ``STATUS_WAIT_CODE``, ``STATUS_WAIT_RETRY``, ``STATUS_OK``, ``STATUS_CANCEL``
        (or another ``STATUS_*`` the server sent, kept as sent).
    :ivar code: the code for ``STATUS_OK`` (the previous one for ``STATUS_WAIT_RETRY``);
        ``None`` while waiting.
    :ivar text: the SMS text, when the answer gives it (getStatusV2).
    """

    status: str
    code: str | None = None
    text: str | None = None

    @property
    def received(self) -> bool:
        """Whether a code has arrived (``STATUS_OK``)."""
        return self.status == STATUS_OK and self.code is not None


@dataclass(frozen=True)
class ActivationPrice:
    """The price and stock of activations for one country and service (getPrices)."""

    country: int
    service: str
    cost: Decimal
    count: int


@dataclass(frozen=True)
class ActiveActivation:
    """One row of getActiveActivations (the fields SMS.online's page shows).

    :ivar number: as listed; the page's sample masks digits (``79********1``).
    """

    id: int
    number: str
    service: str
    country: int | None
    status: str
    cost: Decimal | None = None


# ----------------------------------------------------------------------------- parsers


def _plain(status: int, body: bytes | str) -> str | Any:
    return _read(status, body)


def _decimal(status: int, value: object, what: str) -> Decimal:
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite():
        raise _bad_response(status, f"{what} that is not a number")
    return amount


def _id(status: int, value: object) -> int:
    try:
        number = as_int(value)
    except ValueError:
        raise _bad_response(status, "an unreadable activation id") from None
    if not 0 <= number <= MAX_RENTAL_ID:
        raise _bad_response(status, f"an activation id out of range ({str(number)[:30]})")
    return number


def _phone(status: int, value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > 32:
        raise _bad_response(status, "an activation without a number")
    return value.strip()


def _price_error(status: int, text: str, limit: object = None) -> SmsOnlineError:
    """``WRONG_MAX_PRICE:<min>``: the typed refusal keeping the server's minimum price."""
    _, _, argument = text.partition(":")
    try:
        price: Decimal | None = _decimal(status, argument, "a price")
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


def parse_number(status: int, body: bytes | str) -> Activation:
    """Parse getNumber (``ACCESS_NUMBER:<id>:<phone>``) or getNumberV2 (JSON) into an :class:`Activation`."""
    payload = _plain(status, body)
    if isinstance(payload, str):
        head, _, rest = payload.partition(":")
        head = head.strip()
        if head == "ACCESS_NUMBER":
            raw_id, _, phone = rest.partition(":")
            return Activation(id=_id(status, raw_id), number=_phone(status, phone))
        if head == "WRONG_MAX_PRICE":
            raise _price_error(status, payload)
        raise error_for_code(payload, http_status=status)
    if isinstance(payload, dict) and "activationId" in payload:
        cost = payload.get("activationCost")
        extra = {
            k: v for k, v in payload.items() if k not in ("activationId", "phoneNumber", "activationCost")
        }
        return Activation(
            id=_id(status, payload["activationId"]),
            number=_phone(status, payload.get("phoneNumber")),
            cost=None if cost is None else _decimal(status, cost, "a cost"),
            extra=MappingProxyType(extra),
        )
    raise _bad_response(status, "no ACCESS_NUMBER in the answer")


def parse_status(status: int, body: bytes | str) -> ActivationStatus:
    """Parse getStatus (plain text) or getStatusV2 (JSON) into an :class:`ActivationStatus`."""
    payload = _plain(status, body)
    if isinstance(payload, str):
        head, sep, argument = payload.partition(":")
        head = head.strip()
        if head.startswith("STATUS_"):
            return ActivationStatus(status=head, code=argument.strip() or None if sep else None)
        raise error_for_code(payload, http_status=status)
    if isinstance(payload, dict):
        sms = payload.get("sms")
        if isinstance(sms, dict) and sms.get("code") not in (None, ""):
            text = sms.get("text")
            return ActivationStatus(STATUS_OK, str(sms["code"]), None if text is None else str(text))
        if "sms" in payload or "verificationType" in payload or "call" in payload:
            return ActivationStatus(STATUS_WAIT_CODE)
    raise _bad_response(status, "no STATUS_* in the answer")


def parse_set_status(status: int, body: bytes | str, wanted: int) -> str:
    """Parse setStatus: the ``ACCESS_*`` answer, or the typed error."""
    payload = _plain(status, body)
    if isinstance(payload, str):
        head = payload.split(":", 1)[0].strip()
        if head.startswith("ACCESS_"):
            return head
        raise error_for_code(payload, http_status=status)
    raise _bad_response(status, f"no {SET_STATUS_ANSWERS.get(wanted, 'ACCESS_*')} in the answer")


def parse_prices(status: int, body: bytes | str) -> list[ActivationPrice]:
    """Parse getPrices (``{"<country>": {"<service>": {"cost", "count"}}}``) into prices."""
    payload = _plain(status, body)
    if isinstance(payload, str):
        raise error_for_code(payload, http_status=status)
    if (
        isinstance(payload, dict)
        and payload.get("status") == "success"
        and isinstance(payload.get("values"), dict)
    ):
        payload = payload["values"]
    if not isinstance(payload, dict):
        raise _bad_response(status, "a price list that is not an object")
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
                    ActivationPrice(as_int(country), str(service), cost, as_int(entry.get("count", 0)))
                )
    except (ValueError, InvalidOperation):
        raise _bad_response(status, "an unreadable price list") from None
    return prices


def parse_active_activations(status: int, body: bytes | str) -> list[ActiveActivation]:
    """Parse getActiveActivations; none is ``[]``."""
    try:
        payload = _plain(status, body)
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
        raise _bad_response(status, "no 'activeActivations' list in the answer")
    result = []
    for row in rows:
        if not isinstance(row, dict):
            raise _bad_response(status, "an activation that is not an object")
        country = row.get("countryCode")
        cost = row.get("activationCost")
        try:
            result.append(
                ActiveActivation(
                    id=_id(status, row.get("activationId")),
                    number=str(row.get("phoneNumber") or ""),
                    service=str(row.get("serviceCode") or ""),
                    country=None if country in (None, "") else as_int(country),
                    status=str(row.get("activationStatus") or ""),
                    cost=None if cost is None else _decimal(status, cost, "a cost"),
                )
            )
        except ValueError:
            raise _bad_response(status, "an activation with an unreadable country") from None
    return result


def price_of(prices: Iterable[ActivationPrice], service: str, country: int) -> ActivationPrice | None:
    """The price of ``service`` in ``country`` in a getPrices answer, if listed."""
    return next((p for p in prices if p.service == service and p.country == country), None)


def code_of(state: ActivationStatus, regex: re.Pattern[str] | None) -> str | None:
    """The code a wait is for, from a ``STATUS_OK`` state: with ``regex``, its first group that
    matched (else the whole match) searched in the SMS text when the API gives it, else in the
    code; ``None`` when there is no code yet or the pattern does not match."""
    if not state.received:
        return None
    if regex is None:
        return state.code
    match = regex.search(state.text or "") or regex.search(state.code or "")
    if match is None:
        return None
    return next((group for group in match.groups() if group is not None), match.group(0))


# ----------------------------------------------------------------------------- encoders


def encode_number(activation_id: int, number: str) -> str:
    """A getNumber success body."""
    return f"ACCESS_NUMBER:{activation_id}:{number}"


def encode_number_v2(activation_id: int, number: str, cost: Decimal, country: int, **extra: Any) -> str:
    """A getNumberV2 success body (peers' JSON)."""
    return json.dumps(
        {
            "activationId": activation_id,
            "phoneNumber": number,
            "activationCost": float(cost),
            "countryCode": str(country),
            **extra,
        }
    )


def encode_status(state: ActivationStatus) -> str:
    """A getStatus body: ``STATUS_WAIT_CODE``, ``STATUS_OK:<code>`` …"""
    return state.status if state.code is None else f"{state.status}:{state.code}"


def encode_status_v2(state: ActivationStatus) -> str:
    """A getStatusV2 body (peers' JSON): the SMS once a code has arrived, else ``null``."""
    sms = {"code": state.code, "text": state.text or ""} if state.status == STATUS_OK else None
    return json.dumps({"verificationType": 0, "sms": sms, "call": None})


def encode_prices(prices: Iterable[ActivationPrice]) -> str:
    """A getPrices body: ``{"<country>": {"<service>": {"cost": float, "count": int}}}``."""
    table: dict[str, dict[str, Any]] = {}
    for price in prices:
        table.setdefault(str(price.country), {})[price.service] = {
            "cost": float(price.cost),
            "count": price.count,
        }
    return json.dumps(table)


def encode_active_activations(rows: Iterable[Mapping[str, Any]]) -> str:
    """A getActiveActivations body (the fields of SMS.online's page)."""
    return json.dumps({"status": "success", "activeActivations": list(rows)})
