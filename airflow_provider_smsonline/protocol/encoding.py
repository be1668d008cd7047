# The answers a server writes (the sandbox's): the parsers' mirror image, kept beside them so
# that both read and write one protocol.
"""Encoders of SMS.online answers, for servers such as the sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from airflow_provider_smsonline.dates import format_datetime, format_sms_date
from airflow_provider_smsonline.protocol.results import (
    STATUS_OK,
    ActivationPrice,
    ActivationStatus,
    RentListEntry,
    RentPrice,
    Sms,
)


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
    """The webhook payload the server posts for one SMS, exactly as SMS.online's page shows it:
    ``{"rentId": 123456, "sms": {"phoneFrom": 79999999999, "text": ..., "date": ...}}``, the
    sender a bare number when it is all digits, a string otherwise (a name such as ``Telegram``)."""
    sender: int | str = (
        int(sms.phone_from) if sms.phone_from.isascii() and sms.phone_from.isdigit() else sms.phone_from
    )
    return json.dumps(
        {
            "rentId": rent_id,
            "sms": {"phoneFrom": sender, "text": sms.text, "date": format_sms_date(sms.date)},
        }
    )


def encode_activation_webhook(
    activation_id: int, service: str, text: str, code: str, country: int, received_at: datetime
) -> str:
    """The activation webhook the server posts for one code, exactly as SMS.online's page shows it:
    ``{"activationId": 123456, "service": "go", "text": ..., "code": "12345", "country": 0,
    "receivedAt": "2025-01-01 12:00:00"}``."""
    return json.dumps(
        {
            "activationId": activation_id,
            "service": service,
            "text": text,
            "code": code,
            "country": country,
            "receivedAt": format_sms_date(received_at),
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
