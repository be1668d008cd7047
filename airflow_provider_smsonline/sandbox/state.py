# The sandbox's books and rules: catalogue, balance, rentals, SMS, charges, request counters,
# pending faults and a movable clock, all behind one lock. No sockets here (see server.py).
"""The state of an SMS.online sandbox and the protocol's rules applied to it.

:class:`SandboxState` answers ``handler_api.php`` requests (:meth:`SandboxState.respond`) with the
validators and encoders the client uses (:mod:`airflow_provider_smsonline.protocol`), so both
sides apply the same rules. It also carries what the ``/sandbox/`` control API does: deliver an
SMS, queue faults (or a seeded random fault plan), move the clock, reset, and a JSON snapshot
of everything.

Stock: each service and country starts with ``stock`` numbers; a rental takes one and a cancel
(a refund) gives it back. Times are UTC; answers write them without an offset, as the API does.
"""

from __future__ import annotations

import hmac
import math
import random
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from airflow_provider_smsonline import protocol
from airflow_provider_smsonline.protocol import RentListEntry, RentPrice, Sms
from airflow_provider_smsonline.validation import (
    as_int,
    validate_country,
    validate_operator,
    validate_rent_id,
    validate_rent_time,
    validate_service,
    validate_webhook_url,
)

PLAIN = "text/plain; charset=utf-8"
JSON = "application/json"

#: Rent time when getRentNumber names none, in hours.
DEFAULT_RENT_TIME = 4
#: How long after renting a cancel (with refund) is still allowed, by default.
DEFAULT_CANCEL_WINDOW_SECONDS = 20 * 60
#: Rentals' ids start here.
FIRST_RENTAL_ID = 1000
#: The ``webhooks.deliveries`` log keeps this many of the latest attempts.
WEBHOOK_LOG_SIZE = 1000

# Errors answered as JSON; every other code is answered as plain text (peers mix both styles).
_JSON_CODES = frozenset(
    {
        "NO_NUMBERS",
        "NO_ID_RENT",
        "STATUS_WAIT_CODE",
        "STATUS_FINISH",
        "STATUS_CANCEL",
        "CANT_CANCEL",
        "ALREADY_FINISH",
        "ALREADY_CANCEL",
        "RENT_DIE",
        "INCORECT_STATUS",
        "INVALID_TIME",
    }
)

# ----------------------------------------------------------------------------- catalogue


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

_CENT = Decimal("0.01")


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


# ----------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Reply:
    """An answer of the API endpoint: HTTP status, body and content type."""

    status: int
    body: bytes
    content_type: str


#: Fault modes ``POST /sandbox/faults`` accepts.
FAULT_MODES: tuple[str, ...] = (
    "http_500",
    "html_502",
    "garbage",
    "slow",
    "reset_after_commit",
    "timeout_after_commit",
)
#: The delay (seconds) of a fault when none is given.
DEFAULT_FAULT_DELAY: Mapping[str, float] = MappingProxyType({"slow": 5.0, "timeout_after_commit": 60.0})


@dataclass(frozen=True)
class Fault:
    """How one API call is to fail.

    :ivar action: the action it applies to (``*`` for any).
    :ivar mode: one of :data:`FAULT_MODES`.
    :ivar delay: seconds to wait (``slow``: before answering; ``timeout_after_commit``: before
        closing without an answer).
    """

    action: str
    mode: str
    delay: float


@dataclass(frozen=True)
class RandomFaults:
    """A seeded plan that makes a share of the calls of one action fail, in modes drawn at random.

    :ivar action: the action it applies to (``*`` for any).
    :ivar rate: the probability, from 0 to 1, that a call suffers a fault.
    :ivar modes: the modes drawn from, uniformly (a subset of :data:`FAULT_MODES`).
    :ivar delays: seconds per mode, for ``slow`` and ``timeout_after_commit``.
    :ivar seed: seeds the draws (``None``: random); the same seed and call order give the same faults.
    """

    action: str
    rate: float
    modes: tuple[str, ...]
    delays: Mapping[str, float]
    seed: int | None

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON-able data."""
        return {
            "action": self.action,
            "rate": self.rate,
            "modes": list(self.modes),
            "delays": dict(self.delays),
            "seed": self.seed,
        }


@dataclass(frozen=True)
class Delivery:
    """An SMS delivered to a rental, and the webhook post it calls for (if the rental has a URL).

    :ivar rental_id: the rental.
    :ivar sms: the SMS as stored.
    :ivar webhook_url: where to post ``payload``, or ``None``.
    :ivar payload: the webhook body (``protocol.encode_webhook``), or ``None``.
    """

    rental_id: int
    sms: Sms
    webhook_url: str | None
    payload: str | None


class SandboxError(ValueError):
    """A control request the sandbox refuses; :attr:`status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _Refused(Exception):
    """An API request the protocol refuses with ``code``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class _Charge:
    rental_id: int
    action: str
    amount: Decimal
    hours: int
    at: datetime
    refunded: bool = False


@dataclass
class _Rental:
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
    status: str = "active"  # active, finished, cancelled, expired
    ended: datetime | None = None
    sms: list[Sms] = field(default_factory=list)  # oldest first
    charges: list[_Charge] = field(default_factory=list)
    polls: int = 0


def _reply(status: int, text: str, content_type: str) -> Reply:
    return Reply(status, text.encode("utf-8"), content_type)


def _error(code: str) -> Reply:
    json_style = code in _JSON_CODES
    return _reply(200, protocol.encode_error(code, json_style=json_style), JSON if json_style else PLAIN)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _lenient_int(raw: str | None, default: int) -> int:
    try:
        return as_int(raw)
    except ValueError:
        return default


def _money(value: object, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise SandboxError(f"{name} must be a number such as 1000 or '12.50', got {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise SandboxError(f"{name} must be a number such as 1000 or '12.50', got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise SandboxError(f"{name} must be a non-negative number, got {value!r}")
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


def _count(value: object, name: str, minimum: int) -> int:
    try:
        number = as_int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise SandboxError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return number


def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SandboxError(f"{name} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except ValueError:
        raise SandboxError(f"{name} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise SandboxError(f"{name} must be a non-negative number of seconds, got {value!r}")
    return seconds


# ----------------------------------------------------------------------------- the state


class SandboxState:
    """Everything a sandbox knows, behind one lock; safe to call from any thread.

    :param api_key: the only key the API accepts (anything else answers ``BAD_KEY``).
    :param balance: the account's starting balance.
    :param stock: how many numbers each service and country starts with.
    :param seed: seeds the phone numbers drawn (``None``: random).
    :param cancel_window_seconds: how long after renting a cancel is refunded (sandbox time).
    """

    def __init__(
        self,
        api_key: str = "sandbox",
        balance: Decimal | int | str = Decimal("1000"),
        stock: int = 50,
        seed: int | None = None,
        cancel_window_seconds: float = DEFAULT_CANCEL_WINDOW_SECONDS,
    ) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty string")
        self._key = api_key.encode("utf-8")
        self._initial_balance = _money(balance, "balance")
        self._initial_stock = _count(stock, "stock", 0)
        self._seed = seed
        self.cancel_window = timedelta(seconds=_seconds(cancel_window_seconds, "cancel_window_seconds"))
        self._lock = threading.Lock()
        self._actions: Mapping[str, Callable[[Mapping[str, str], datetime], Reply]] = {
            protocol.GET_BALANCE: self._get_balance,
            protocol.GET_RENT_NUMBER: self._get_rent_number,
            protocol.GET_RENT_STATUS: self._get_rent_status,
            protocol.SET_RENT_STATUS: self._set_rent_status,
            protocol.GET_RENT_LIST: self._get_rent_list,
            protocol.CONTINUE_RENT_NUMBER: self._continue_rent_number,
            protocol.GET_CONTINUE_RENT_PRICE: self._get_continue_rent_price,
            protocol.GET_RENT_PRICES: self._get_rent_prices,
        }
        self._clear(self._initial_balance, self._initial_stock)

    def _clear(self, balance: Decimal, stock: int) -> None:
        self._balance = balance
        self._stock = {(c, s): stock for c in COUNTRIES for s in SERVICES}
        self._rentals: dict[int, _Rental] = {}
        self._numbers: set[str] = set()
        self._next_id = FIRST_RENTAL_ID
        self._charges: list[_Charge] = []
        self._requests: dict[str, int] = {}
        self._requests_total = 0
        self._webhooks = {"sent": 0, "failed": 0, "pending": 0}
        self._webhook_log: deque[dict[str, Any]] = deque(maxlen=WEBHOOK_LOG_SIZE)
        self._faults: list[list[Any]] = []  # [Fault, remaining]
        self._random_faults: RandomFaults | None = None
        self._fault_draws = random.Random()
        self._faults_injected: dict[str, dict[str, int]] = {}  # action -> mode -> count
        self._offset = timedelta()
        self._random = random.Random(self._seed)

    # ------------------------------------------------------------------ clock

    def now(self) -> datetime:
        """Sandbox time: UTC now plus however far the clock was advanced."""
        return datetime.now(timezone.utc) + self._offset

    def advance_clock(self, seconds: object) -> datetime:
        """Move sandbox time forward by ``seconds`` (expiry, the cancel window); returns the new now."""
        delta = timedelta(seconds=_seconds(seconds, "advance_seconds"))
        with self._lock:
            self._offset += delta
            return self.now()

    def clock(self) -> dict[str, Any]:
        """The clock as JSON-able data: ``now`` (ISO) and ``offset_seconds``."""
        return {"now": self.now().isoformat(), "offset_seconds": self._offset.total_seconds()}

    # ------------------------------------------------------------------ the API

    def admit(self, action: str, rent_id: str | None = None) -> Fault | None:
        """Count one API request and return the fault it is to suffer, if one is pending."""
        with self._lock:
            self._requests_total += 1
            name = action if action in self._actions else "other"
            self._requests[name] = self._requests.get(name, 0) + 1
            if action == protocol.GET_RENT_STATUS and rent_id is not None:
                rental = self._rentals.get(_lenient_int(rent_id, -1))
                if rental is not None:
                    rental.polls += 1
            for index, (fault, remaining) in enumerate(self._faults):
                if fault.action in (action, "*"):
                    if remaining <= 1:
                        del self._faults[index]
                    else:
                        self._faults[index][1] = remaining - 1
                    return self._count_fault(name, fault)
            plan = self._random_faults
            if plan is not None and plan.action in (action, "*") and self._fault_draws.random() < plan.rate:
                mode = self._fault_draws.choice(plan.modes)
                drawn = Fault(action=action, mode=mode, delay=plan.delays[mode])
                return self._count_fault(name, drawn)
            return None

    def _count_fault(self, action: str, fault: Fault) -> Fault:
        per_mode = self._faults_injected.setdefault(action, {})
        per_mode[fault.mode] = per_mode.get(fault.mode, 0) + 1
        return fault

    def respond(self, params: Mapping[str, str]) -> Reply:
        """Answer one ``handler_api.php`` request (its merged query and form fields)."""
        key = params.get("api_key")
        if key is None or not hmac.compare_digest(key.encode("utf-8", "replace"), self._key):
            return _error("BAD_KEY")
        handler = self._actions.get(params.get("action", ""))
        if handler is None:
            return _error("BAD_ACTION")
        with self._lock:
            try:
                return handler(params, self.now())
            except _Refused as refused:
                return _error(refused.code)

    # Each action runs under the lock with the request's time.

    def _get_balance(self, params: Mapping[str, str], now: datetime) -> Reply:
        return _reply(200, protocol.encode_balance(self._balance), PLAIN)

    def _get_rent_number(self, params: Mapping[str, str], now: datetime) -> Reply:
        service = self._service(params.get("service"))
        country = self._country(params.get("country"))
        operator = self._operator(country, params.get("operator"))
        hours = self._hours(params.get("rent_time"), optional=True) or DEFAULT_RENT_TIME
        try:
            url = validate_webhook_url(params.get("url"))
        except ValueError:
            raise _Refused("ERROR_SQL") from None  # the docs' "Error in query"
        if self._stock[(country.id, service.code)] <= 0:
            raise _Refused("NO_NUMBERS")
        price = price_of(service.code, country.id, hours)
        if self._balance < price:
            raise _Refused("NO_BALANCE")
        created = now.replace(microsecond=0)
        rental = _Rental(
            id=self._next_id,
            number=self._new_number(country),
            service=service.code,
            country=country.id,
            operator=operator,
            rent_time=hours,
            url=url,
            created=created,
            end_date=created + timedelta(hours=hours),
            hours=hours,
        )
        self._next_id += 1
        self._rentals[rental.id] = rental
        self._stock[(country.id, service.code)] -= 1
        self._charge(rental, protocol.GET_RENT_NUMBER, price, hours, now)
        body = protocol.encode_rental(
            rental.id, rental.number, rental.end_date, cost=protocol.format_amount(price)
        )
        return _reply(200, body, JSON)

    def _get_rent_status(self, params: Mapping[str, str], now: datetime) -> Reply:
        rental = self._rental(params.get("id"))
        self._refresh(rental, now)
        if rental.status != "active":
            raise _Refused(
                {"finished": "STATUS_FINISH", "cancelled": "STATUS_CANCEL"}.get(rental.status, "RENT_DIE")
            )
        if not rental.sms:
            raise _Refused("STATUS_WAIT_CODE")
        page = _lenient_int(params.get("page"), 0)
        size = min(max(_lenient_int(params.get("size"), 10), 1), 100)
        total = len(rental.sms)
        newest = total - page * size  # messages are stored oldest first
        chunk = rental.sms[max(newest - size, 0) : max(newest, 0)][::-1]
        return _reply(200, protocol.encode_rent_status(chunk, quantity=total), JSON)

    def _set_rent_status(self, params: Mapping[str, str], now: datetime) -> Reply:
        rental = self._rental(params.get("id"))
        try:
            wanted = as_int(params.get("status"))
        except ValueError:
            raise _Refused("INCORECT_STATUS") from None
        if wanted not in (protocol.RENT_STATUS_FINISH, protocol.RENT_STATUS_CANCEL):
            raise _Refused("INCORECT_STATUS")
        self._refresh(rental, now)
        if rental.status == "finished":
            raise _Refused("ALREADY_FINISH")
        if rental.status == "cancelled":
            raise _Refused("ALREADY_CANCEL")
        if wanted == protocol.RENT_STATUS_FINISH:
            if rental.status == "expired":
                raise _Refused("ALREADY_FINISH")  # ended on its own: finishing it changes nothing
            rental.status, rental.ended = "finished", now
        else:
            if rental.status == "expired" or now - rental.created > self.cancel_window:
                raise _Refused("CANT_CANCEL")
            for charge in rental.charges:
                if not charge.refunded:
                    charge.refunded = True
                    self._balance += charge.amount
            rental.status, rental.ended = "cancelled", now
            self._stock[(rental.country, rental.service)] += 1
        return _reply(200, protocol.encode_success(), JSON)

    def _get_rent_list(self, params: Mapping[str, str], now: datetime) -> Reply:
        entries = []
        for rental in self._rentals.values():
            self._refresh(rental, now)
            if rental.status == "active":
                entries.append(
                    RentListEntry(
                        id=rental.id,
                        number=rental.number,
                        price=self._paid(rental),
                        hours=rental.hours,
                        extra=MappingProxyType(
                            {
                                "endDate": protocol.format_datetime(rental.end_date),
                                "service": rental.service,
                                "country": str(rental.country),
                            }
                        ),
                    )
                )
        if not entries:
            raise _Refused("NO_NUMBERS")  # what peers answer for an empty list
        return _reply(200, protocol.encode_rent_list(entries), JSON)

    def _continue_rent_number(self, params: Mapping[str, str], now: datetime) -> Reply:
        rental, hours, price = self._continuation(params, now)
        if self._balance < price:
            raise _Refused("NO_BALANCE")
        rental.end_date += timedelta(hours=hours)
        rental.hours += hours
        self._charge(rental, protocol.CONTINUE_RENT_NUMBER, price, hours, now)
        body = protocol.encode_rental(
            rental.id, rental.number, rental.end_date, cost=protocol.format_amount(price)
        )
        return _reply(200, body, JSON)

    def _get_continue_rent_price(self, params: Mapping[str, str], now: datetime) -> Reply:
        _, _, price = self._continuation(params, now)
        return _reply(200, protocol.encode_price(price), JSON)

    def _get_rent_prices(self, params: Mapping[str, str], now: datetime) -> Reply:
        country = self._country(params.get("country"))
        hours = self._hours(params.get("rent_time"), optional=True) or DEFAULT_RENT_TIME
        prices = [
            RentPrice(country.id, code, price_of(code, country.id, hours), self._stock[(country.id, code)])
            for code in SERVICES
        ]
        return _reply(200, protocol.encode_rent_prices(prices), JSON)

    # ------------------------------------------------------------------ rules

    def _service(self, raw: str | None) -> Service:
        try:
            return SERVICES[validate_service(raw)]
        except (ValueError, KeyError):
            raise _Refused("BAD_SERVICE") from None

    def _country(self, raw: str | None) -> Country:
        try:
            return COUNTRIES[validate_country(raw)]
        except (ValueError, KeyError):
            raise _Refused("BAD_COUNTRY") from None

    def _operator(self, country: Country, raw: str | None) -> str | None:
        operator = validate_operator(raw)  # a string or None: never raises here
        if operator is None or operator == "any":
            return operator
        if operator.lower() not in country.operators:
            raise _Refused("BAD_OPERATOR")
        return operator.lower()

    def _hours(self, raw: str | None, *, optional: bool) -> int | None:
        try:
            return validate_rent_time(raw, optional=optional)
        except ValueError:
            raise _Refused("INVALID_TIME") from None

    def _rental(self, raw: str | None) -> _Rental:
        try:
            rental = self._rentals.get(validate_rent_id(raw))
        except ValueError:
            rental = None
        if rental is None:
            raise _Refused("NO_ID_RENT")
        return rental

    def _continuation(self, params: Mapping[str, str], now: datetime) -> tuple[_Rental, int, Decimal]:
        rental = self._rental(params.get("id"))
        hours = self._hours(params.get("rent_time"), optional=False)
        assert hours is not None  # required: validate_rent_time raised otherwise
        self._refresh(rental, now)
        if rental.status != "active":
            raise _Refused("RENT_DIE")
        return rental, hours, price_of(rental.service, rental.country, hours)

    def _refresh(self, rental: _Rental, now: datetime) -> None:
        if rental.status == "active" and now >= rental.end_date:
            rental.status, rental.ended = "expired", rental.end_date

    def _charge(self, rental: _Rental, action: str, amount: Decimal, hours: int, now: datetime) -> None:
        charge = _Charge(rental_id=rental.id, action=action, amount=amount, hours=hours, at=now)
        self._balance -= amount
        self._charges.append(charge)
        rental.charges.append(charge)

    def _paid(self, rental: _Rental) -> Decimal:
        return sum((c.amount for c in rental.charges if not c.refunded), Decimal("0.00"))

    def _new_number(self, country: Country) -> str:
        while True:
            tail = "".join(self._random.choices("0123456789", k=country.digits))
            number = f"{country.prefix}{country.lead}{tail}"
            if number not in self._numbers:
                self._numbers.add(number)
                return number

    # ------------------------------------------------------------------ control

    def deliver_sms(
        self, rent_id: object, text: object, phone_from: object = "SMSonline", service: object = None
    ) -> Delivery:
        """Store an SMS on an active rental; the :class:`Delivery` says whether to post a webhook.

        Raises :class:`SandboxError` (404 unknown rental, 409 rental no longer active, 400 bad field).
        """
        try:
            rental_id = validate_rent_id(rent_id)
        except ValueError as exc:
            raise SandboxError(str(exc)) from None
        if not isinstance(text, str):
            raise SandboxError(f"text must be a string, got {text!r}")
        if not isinstance(phone_from, str) or not phone_from.strip():
            raise SandboxError(f"phone_from must be a non-empty string, got {phone_from!r}")
        if service is not None and (not isinstance(service, str) or not service.strip()):
            raise SandboxError(f"service must be a non-empty string or omitted, got {service!r}")
        with self._lock:
            rental = self._rentals.get(rental_id)
            if rental is None:
                raise SandboxError(f"no rental {rental_id}", status=404)
            now = self.now()
            self._refresh(rental, now)
            if rental.status != "active":
                raise SandboxError(f"rental {rental_id} is {rental.status}: no SMS can arrive", status=409)
            sms = Sms(
                phone_from=phone_from.strip(),
                text=text,
                service=(service or rental.service).strip(),
                date=now.replace(microsecond=0),
            )
            rental.sms.append(sms)
            payload = None
            if rental.url:
                payload = protocol.encode_webhook(rental.id, sms)
                self._webhooks["pending"] += 1
            return Delivery(rental_id=rental.id, sms=sms, webhook_url=rental.url, payload=payload)

    def record_webhook(self, delivery: Delivery, ok: bool, detail: str) -> None:
        """Count one finished webhook post (``ok``: the endpoint answered 2xx)."""
        with self._lock:
            self._webhooks["pending"] = max(self._webhooks["pending"] - 1, 0)
            self._webhooks["sent" if ok else "failed"] += 1
            self._webhook_log.append(
                {
                    "rental_id": delivery.rental_id,
                    "url": delivery.webhook_url,
                    "ok": ok,
                    "detail": detail,
                    "at": self.now().isoformat(),
                }
            )

    def add_fault(self, action: object, mode: object, count: object = 1, delay: object = None) -> Fault:
        """Make the next ``count`` calls of ``action`` (``*``: any) fail in ``mode``."""
        if not isinstance(action, str) or (action != "*" and action not in self._actions):
            raise SandboxError(f"action must be one of {', '.join(self._actions)} or '*', got {action!r}")
        if mode not in FAULT_MODES:
            raise SandboxError(f"mode must be one of {', '.join(FAULT_MODES)}, got {mode!r}")
        times = _count(count, "count", 1)
        seconds = DEFAULT_FAULT_DELAY.get(mode, 0.0) if delay is None else _seconds(delay, "delay")
        fault = Fault(action=action, mode=mode, delay=seconds)
        with self._lock:
            self._faults.append([fault, times])
        return fault

    def set_random_faults(
        self,
        action: object,
        rate: object,
        modes: object = None,
        seed: object = None,
        delays: object = None,
    ) -> RandomFaults:
        """Make each call of ``action`` (``*``: any) fail with probability ``rate``, in a mode drawn
        from ``modes`` (default: all of :data:`FAULT_MODES`); replaces an earlier plan.

        Faults queued with :meth:`add_fault` apply first. ``delays`` maps a mode to its seconds
        (default :data:`DEFAULT_FAULT_DELAY`). What was injected is counted in the snapshot's
        ``faults_injected``; :meth:`clear_faults` ends the plan.
        """
        if not isinstance(action, str) or (action != "*" and action not in self._actions):
            raise SandboxError(f"action must be one of {', '.join(self._actions)} or '*', got {action!r}")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise SandboxError(f"rate must be a number from 0 to 1, got {rate!r}")
        chosen = FAULT_MODES if modes is None else modes
        if (
            not isinstance(chosen, (list, tuple))
            or not chosen
            or any(mode not in FAULT_MODES for mode in chosen)
        ):
            raise SandboxError(f"modes must be a non-empty list of {', '.join(FAULT_MODES)}, got {modes!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise SandboxError(f"seed must be an integer or null, got {seed!r}")
        if delays is None:
            delays = {}
        if not isinstance(delays, Mapping) or any(mode not in FAULT_MODES for mode in delays):
            raise SandboxError(f"delays must map fault modes to seconds, got {delays!r}")
        seconds = {
            mode: _seconds(delays[mode], f"delays[{mode}]")
            if mode in delays
            else DEFAULT_FAULT_DELAY.get(mode, 0.0)
            for mode in dict.fromkeys(chosen)
        }
        plan = RandomFaults(
            action=action,
            rate=float(rate),
            modes=tuple(dict.fromkeys(chosen)),
            delays=MappingProxyType(seconds),
            seed=seed,
        )
        with self._lock:
            self._random_faults = plan
            self._fault_draws = random.Random(seed)
        return plan

    def clear_faults(self) -> None:
        """Drop every pending fault and the random fault plan (the counts of injected ones stay)."""
        with self._lock:
            self._faults.clear()
            self._random_faults = None

    def faults(self) -> list[dict[str, Any]]:
        """Pending faults as JSON-able data, in the order they apply."""
        with self._lock:
            return self._faults_data()

    def _faults_data(self) -> list[dict[str, Any]]:
        return [
            {"action": f.action, "mode": f.mode, "count": remaining, "delay": f.delay}
            for f, remaining in self._faults
        ]

    def reset(self, balance: object = None, stock: object = None) -> None:
        """Forget everything (rentals, charges, counters, faults, clock); optionally a new balance/stock."""
        new_balance = self._initial_balance if balance is None else _money(balance, "balance")
        new_stock = self._initial_stock if stock is None else _count(stock, "stock", 0)
        with self._lock:
            self._clear(new_balance, new_stock)

    def snapshot(self) -> dict[str, Any]:
        """Everything, as the JSON-able dict ``GET /sandbox/state`` answers."""
        with self._lock:
            now = self.now()
            rentals = []
            for rental in self._rentals.values():
                self._refresh(rental, now)
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
                        "paid": protocol.format_amount(self._paid(rental)),
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
            return {
                "now": now.isoformat(),
                "clock_offset_seconds": self._offset.total_seconds(),
                "cancel_window_seconds": self.cancel_window.total_seconds(),
                "balance": protocol.format_amount(self._balance),
                "rentals": rentals,
                "charges": [
                    {
                        "rental_id": c.rental_id,
                        "action": c.action,
                        "amount": protocol.format_amount(c.amount),
                        "hours": c.hours,
                        "refunded": c.refunded,
                        "at": _iso(c.at),
                    }
                    for c in self._charges
                ],
                "requests": dict(self._requests),
                "requests_total": self._requests_total,
                "polls": {str(r.id): r.polls for r in self._rentals.values() if r.polls},
                "webhooks": {**self._webhooks, "deliveries": list(self._webhook_log)},
                "faults": self._faults_data(),
                "random_faults": self._random_faults.to_json() if self._random_faults else None,
                "faults_injected": {action: dict(modes) for action, modes in self._faults_injected.items()},
                "stock": {
                    str(c): {s: self._stock[(c, s)] for s in SERVICES if (c, s) in self._stock}
                    for c in COUNTRIES
                },
            }
