# The typed results the API's answers become: small frozen values, their fields documented here.
"""Results of the SMS.online actions: the rent family, then activations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
class HistoryEntry:
    """One row of getRentHistory (a rental) or getHistory (an activation).

    :ivar id: the rental's or activation's id.
    :ivar date: when it began, as the server wrote it (read in the connection's
        ``server_timezone``: the pages name no zone).
    :ivar number: the phone number.
    :ivar sms: the texts the page's ``sms`` field holds (a JSON list written as a string).
    :ivar cost: what it cost, when sent (an activation's is 0 while it is active).
    :ivar status: as sent; SMS.online's pages do not explain the values.
    :ivar extra: every other field, as sent.
    """

    id: int
    date: datetime | None
    number: str
    sms: tuple[str, ...] = ()
    cost: Decimal | None = None
    status: str = ""
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class WebhookSms:
    """What the rental webhook posts, once per SMS: the rental's id and the SMS. Unsigned: a hint only."""

    rent_id: int
    sms: Sms


@dataclass(frozen=True)
class WebhookCode:
    """What the activation webhook posts, once per code (one URL for the whole account, set in
    SMS.online's profile). Unsigned: a hint only; the code a wait returns is read from the API.

    :ivar activation_id: the activation's id.
    :ivar code: the code, as posted.
    :ivar text: the SMS text, as posted.
    :ivar service: the service code, as posted.
    :ivar country: the country id, when readable.
    :ivar received_at: when the SMS came, when readable (the page names no zone).
    """

    activation_id: int
    code: str
    text: str = ""
    service: str = ""
    country: int | None = None
    received_at: datetime | None = None


#: getStatus answers: waiting for an SMS, waiting for another after ``code``, a code, cancelled.
STATUS_WAIT_CODE = "STATUS_WAIT_CODE"
STATUS_WAIT_RETRY = "STATUS_WAIT_RETRY"
#: The same state as one public SMS.online client spells it; read as :data:`STATUS_WAIT_RETRY`.
STATUS_WAIT_RESEND = "STATUS_WAIT_RESEND"
STATUS_OK = "STATUS_OK"
STATUS_CANCEL = "STATUS_CANCEL"


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

    :ivar status: ``STATUS_WAIT_CODE``, ``STATUS_WAIT_RETRY`` (waiting for the SMS to be resent,
        also when the server spells it ``STATUS_WAIT_RESEND``), ``STATUS_OK``, ``STATUS_CANCEL``
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
    :ivar codes: the codes received so far (``smsCode``), oldest first as listed.
    """

    id: int
    number: str
    service: str
    country: int | None
    status: str
    cost: Decimal | None = None
    codes: tuple[str, ...] = ()


def price_of(prices: Iterable[ActivationPrice], service: str, country: int) -> ActivationPrice | None:
    """The price of ``service`` in ``country`` in a getPrices answer, if listed."""
    return next((p for p in prices if p.service == service and p.country == country), None)
