# The typed results the API's answers become: small frozen values, their fields documented here.
"""Results of the SMS.online rent family."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any


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
