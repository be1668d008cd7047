# The account's books: balance, rentals, the charges and refunds on them, and the SMS they
# received. It records; the protocol's rules (what is refused, and with which code) are in actions.py.
"""The sandbox's books. Plain data; the lock is the caller's (:mod:`.state`)."""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from airflow_provider_smsonline import protocol
from airflow_provider_smsonline.protocol import Sms
from airflow_provider_smsonline.sandbox.catalogue import Country, Stock

#: The first rental id a process hands out.
FIRST_RENTAL_ID = 1000

# One counter for the whole process, never reset: claims on rental ids outlive a sandbox reset
# (and a sandbox), so an id handed out twice would be taken for another task's rental.
_rental_ids = itertools.count(FIRST_RENTAL_ID)
_rental_ids_lock = threading.Lock()


def next_rental_id() -> int:
    """A rental id no sandbox of this process has handed out before."""
    with _rental_ids_lock:
        return next(_rental_ids)


@dataclass
class ChargeRecord:
    """Money taken for a rental (getRentNumber or continueRentNumber), refunded on a cancel."""

    rental_id: int
    action: str
    amount: Decimal
    hours: int
    at: datetime
    refunded: bool = False


@dataclass
class RentalRecord:
    """A rental as the books hold it; ``status`` is active, finished, cancelled or expired."""

    id: int
    number: str
    service: str
    country: int
    operator: str | None
    rent_time: int
    url: str | None
    created: datetime
    end_date: datetime
    hours: int
    status: str = "active"
    ended: datetime | None = None
    sms: list[Sms] = field(default_factory=list)  # oldest first
    charges: list[ChargeRecord] = field(default_factory=list)
    polls: int = 0


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class Books:
    """Balance, stock, rentals and charges of one sandbox account.

    :param balance: the starting balance.
    :param stock: numbers each country and service starts with.
    :param seed: seeds the phone numbers drawn (``None``: random).
    """

    def __init__(self, balance: Decimal, stock: int, seed: int | None) -> None:
        self.balance = balance
        self.stock = Stock(stock)
        self.rentals: dict[int, RentalRecord] = {}
        self.charges: list[ChargeRecord] = []
        self._numbers: set[str] = set()
        self._random = random.Random(seed)

    def get(self, rent_id: int) -> RentalRecord | None:
        """The rental ``rent_id``, or ``None``."""
        return self.rentals.get(rent_id)

    def rent(
        self,
        *,
        service: str,
        country: Country,
        operator: str | None,
        hours: int,
        url: str | None,
        price: Decimal,
        now: datetime,
    ) -> RentalRecord:
        """Open a rental: a fresh id and number, one number out of stock, ``price`` charged."""
        created = now.replace(microsecond=0)
        rental = RentalRecord(
            id=next_rental_id(),
            number=self._new_number(country),
            service=service,
            country=country.id,
            operator=operator,
            rent_time=hours,
            url=url,
            created=created,
            end_date=created + timedelta(hours=hours),
            hours=hours,
        )
        self.rentals[rental.id] = rental
        self.stock.take(country.id, service)
        self._charge(rental, protocol.GET_RENT_NUMBER, price, hours, now)
        return rental

    def renew(self, rental: RentalRecord, hours: int, price: Decimal, now: datetime) -> None:
        """Extend an active rental by ``hours`` and charge ``price``."""
        rental.end_date += timedelta(hours=hours)
        rental.hours += hours
        self._charge(rental, protocol.CONTINUE_RENT_NUMBER, price, hours, now)

    def finish(self, rental: RentalRecord, now: datetime) -> None:
        """End a rental early; nothing is refunded."""
        rental.status, rental.ended = "finished", now

    def cancel(self, rental: RentalRecord, now: datetime) -> None:
        """End a rental with a refund of every charge on it; its number goes back to stock."""
        for charge in rental.charges:
            if not charge.refunded:
                charge.refunded = True
                self.balance += charge.amount
        rental.status, rental.ended = "cancelled", now
        self.stock.give_back(rental.country, rental.service)

    def refresh(self, rental: RentalRecord, now: datetime) -> None:
        """Mark an active rental whose end date has passed as expired."""
        if rental.status == "active" and now >= rental.end_date:
            rental.status, rental.ended = "expired", rental.end_date

    def active(self, now: datetime) -> list[RentalRecord]:
        """Rentals still active at ``now``, oldest first."""
        for rental in self.rentals.values():
            self.refresh(rental, now)
        return [r for r in self.rentals.values() if r.status == "active"]

    def paid(self, rental: RentalRecord) -> Decimal:
        """What a rental cost, refunds deducted."""
        return sum((c.amount for c in rental.charges if not c.refunded), Decimal("0.00"))

    def _charge(self, rental: RentalRecord, action: str, amount: Decimal, hours: int, now: datetime) -> None:
        charge = ChargeRecord(rental_id=rental.id, action=action, amount=amount, hours=hours, at=now)
        self.balance -= amount
        self.charges.append(charge)
        rental.charges.append(charge)

    def _new_number(self, country: Country) -> str:
        while True:
            tail = "".join(self._random.choices("0123456789", k=country.digits))
            number = f"{country.prefix}{country.lead}{tail}"
            if number not in self._numbers:
                self._numbers.add(number)
                return number

    # ------------------------------------------------------------------ as JSON

    def rentals_json(self, now: datetime) -> list[dict[str, Any]]:
        """Every rental with its SMS, dates in ISO 8601 (UTC)."""
        rentals = []
        for rental in self.rentals.values():
            self.refresh(rental, now)
            rentals.append(
                {
                    "id": rental.id,
                    "number": rental.number,
                    "service": rental.service,
                    "country": rental.country,
                    "operator": rental.operator,
                    "rent_time": rental.rent_time,
                    "hours": rental.hours,
                    "url": rental.url,
                    "created": _iso(rental.created),
                    "end_date": _iso(rental.end_date),
                    "ended": _iso(rental.ended),
                    "status": rental.status,
                    "paid": protocol.format_amount(self.paid(rental)),
                    "polls": rental.polls,
                    "sms": [
                        {
                            "phone_from": s.phone_from,
                            "text": s.text,
                            "service": s.service,
                            "date": _iso(s.date),
                        }
                        for s in rental.sms
                    ],
                }
            )
        return rentals

    def charges_json(self) -> list[dict[str, Any]]:
        """Every charge, oldest first."""
        return [
            {
                "rental_id": c.rental_id,
                "action": c.action,
                "amount": protocol.format_amount(c.amount),
                "hours": c.hours,
                "refunded": c.refunded,
                "at": _iso(c.at),
            }
            for c in self.charges
        ]

    def polls_json(self) -> dict[str, int]:
        """Rental id (as a string) → getRentStatus calls on it, for rentals polled at least once."""
        return {str(r.id): r.polls for r in self.rentals.values() if r.polls}
