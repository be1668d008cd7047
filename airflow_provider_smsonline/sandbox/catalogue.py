# What the sandbox sells: services, countries (with their operators and number formats), prices
# per rent time, and the stock of numbers left per country and service.
"""The sandbox's catalogue and stock. Plain data; the lock is the caller's (:mod:`.state`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Any

#: Rent time when getRentNumber names none, in hours.
DEFAULT_RENT_TIME = 4

_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Service:
    """A service numbers are rented for.

    :ivar code: the API's service code (``tg``).
    :ivar name: its name.
    :ivar base_price: the price of 4 hours in a country of price factor 1.
    """

    code: str
    name: str
    base_price: Decimal


@dataclass(frozen=True)
class Country:
    """A country the sandbox rents numbers in.

    :ivar id: the API's country id.
    :ivar name: its name.
    :ivar prefix: the international dialling code its numbers start with.
    :ivar lead: the first digit of the national part of its numbers.
    :ivar digits: how many random digits follow ``lead``.
    :ivar factor: the price multiplier against a service's base price.
    :ivar operators: operator codes getRentNumber accepts, besides ``any``.
    """

    id: int
    name: str
    prefix: str
    lead: str
    digits: int
    factor: Decimal
    operators: tuple[str, ...]


SERVICES: Mapping[str, Service] = MappingProxyType(
    {
        s.code: s
        for s in (
            Service("tg", "Telegram", Decimal("0.50")),
            Service("wa", "WhatsApp", Decimal("0.80")),
            Service("go", "Google", Decimal("0.40")),
            Service("ot", "Any other", Decimal("0.30")),
            Service("vk", "VKontakte", Decimal("0.35")),
            Service("fb", "Facebook", Decimal("0.45")),
            Service("ig", "Instagram", Decimal("0.45")),
            Service("ds", "Discord", Decimal("0.25")),
        )
    }
)

COUNTRIES: Mapping[int, Country] = MappingProxyType(
    {
        c.id: c
        for c in (
            Country(0, "Russia", "7", "9", 9, Decimal("1.0"), ("mts", "beeline", "megafon", "tele2", "yota")),
            Country(1, "Ukraine", "380", "6", 8, Decimal("0.9"), ("kyivstar", "vodafone", "lifecell")),
            Country(2, "Kazakhstan", "7", "7", 9, Decimal("0.8"), ("activ", "altel", "beeline", "kcell")),
            Country(3, "China", "86", "1", 10, Decimal("1.5"), ("chinamobile", "unicom", "telecom")),
            Country(4, "Philippines", "63", "9", 9, Decimal("0.7"), ("globe", "smart", "tm")),
            Country(6, "Indonesia", "62", "8", 10, Decimal("0.6"), ("telkomsel", "indosat", "xl")),
            Country(12, "USA", "1", "2", 9, Decimal("2.0"), ("att", "tmobile", "verizon")),
            Country(16, "United Kingdom", "44", "7", 9, Decimal("1.8"), ("ee", "o2", "three", "vodafone")),
            Country(22, "India", "91", "9", 9, Decimal("0.5"), ("airtel", "jio", "vi")),
        )
    }
)

#: Price multiplier per rent time (hours): longer rentals cost more, less per hour.
HOURS_FACTOR: Mapping[int, Decimal] = MappingProxyType(
    {
        4: Decimal("1"),
        8: Decimal("1.5"),
        12: Decimal("2"),
        24: Decimal("3"),
        72: Decimal("6"),
        168: Decimal("10"),
        360: Decimal("18"),
        720: Decimal("30"),
        2160: Decimal("70"),
    }
)


def price_of(service: str, country: int, hours: int) -> Decimal:
    """The sandbox's price of renting a ``service`` number in ``country`` for ``hours``."""
    raw = SERVICES[service].base_price * COUNTRIES[country].factor * HOURS_FACTOR[hours]
    return raw.quantize(_CENT, rounding=ROUND_HALF_UP)


def catalogue() -> dict[str, Any]:
    """The catalogue as JSON-able data: services, countries (with operators) and prices."""
    return {
        "services": {s.code: {"name": s.name, "base_price": str(s.base_price)} for s in SERVICES.values()},
        "countries": {
            str(c.id): {"name": c.name, "prefix": c.prefix, "operators": ["any", *c.operators]}
            for c in COUNTRIES.values()
        },
        "rent_times": list(HOURS_FACTOR),
        "prices": {
            str(c): {s: {str(h): str(price_of(s, c, h)) for h in HOURS_FACTOR} for s in SERVICES}
            for c in COUNTRIES
        },
    }


class Stock:
    """How many numbers are left per country and service; a rental takes one, a refund gives it back.

    :param per_pair: how many each country and service starts with.
    """

    def __init__(self, per_pair: int) -> None:
        self._left = {(c, s): per_pair for c in COUNTRIES for s in SERVICES}

    def left(self, country: int, service: str) -> int:
        """Numbers left for ``service`` in ``country``."""
        return self._left[(country, service)]

    def take(self, country: int, service: str) -> None:
        """One number is rented."""
        self._left[(country, service)] -= 1

    def give_back(self, country: int, service: str) -> None:
        """One number comes back (a refunded cancel)."""
        self._left[(country, service)] += 1

    def to_json(self) -> dict[str, dict[str, int]]:
        """Country id (as a string) → service → numbers left."""
        return {str(c): {s: self._left[(c, s)] for s in SERVICES} for c in COUNTRIES}
