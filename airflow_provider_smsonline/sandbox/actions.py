# The handler_api.php actions: the protocol's rules applied to the books, answered with the same
# validators and encoders the client uses. Which fields an answer carries, and in which zone its
# dates are written, is decided here (documented_only, utc_offset).
"""The sandbox's answers to ``handler_api.php`` requests (see :data:`.documented.DOCUMENTED`)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from airflow_provider_smsonline import protocol
from airflow_provider_smsonline.protocol import RentListEntry, RentPrice, Sms
from airflow_provider_smsonline.sandbox.books import Books, RentalRecord
from airflow_provider_smsonline.sandbox.catalogue import (
    COUNTRIES,
    DEFAULT_RENT_TIME,
    SERVICES,
    Country,
    price_of,
)
from airflow_provider_smsonline.sandbox.documented import GET_RENT_HISTORY
from airflow_provider_smsonline.sandbox.history import history_page
from airflow_provider_smsonline.sandbox.readings import Readings
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

# getRentHistory's "status" per rental status: undocumented, an assumption (see documented.py).
_HISTORY_STATUS = {"active": "0", "finished": "1", "cancelled": "2", "expired": "3"}

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


@dataclass(frozen=True)
class Reply:
    """An answer of the API endpoint: HTTP status, body and content type."""

    status: int
    body: bytes
    content_type: str


class _Refused(Exception):
    """An API request the protocol refuses with ``code``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _reply(status: int, text: str, content_type: str) -> Reply:
    return Reply(status, text.encode("utf-8"), content_type)


def refusal(code: str) -> Reply:
    """The answer that refuses a request with ``code`` (JSON or plain text, as peers do)."""
    json_style = code in _JSON_CODES
    return _reply(200, protocol.encode_error(code, json_style=json_style), JSON if json_style else PLAIN)


def lenient_int(raw: str | None, default: int) -> int:
    """``raw`` as an int, or ``default`` if it is not one (paging fields are read leniently)."""
    try:
        return as_int(raw)
    except ValueError:
        return default


Handler = Callable[[Books, Mapping[str, str], datetime], Reply]


def _as_reply(handler: Callable[[Books, Mapping[str, str], datetime], tuple[str, bool]]) -> Handler:
    """An activation handler's ``(body, is_json)`` as a :class:`Reply`."""

    def answer(books: Books, params: Mapping[str, str], now: datetime) -> Reply:
        body, is_json = handler(books, params, now)
        return _reply(200, body, JSON if is_json else PLAIN)

    return answer


class Actions:
    """The API's actions, answered from a :class:`~.books.Books` (the caller holds its lock).

    :param api_key: the only key accepted.
    :param cancel_window: how long after renting a cancel is refunded.
    :param utc_offset: the zone every date in an answer is written in (without an offset).
    :param documented_only: answer only the fields SMS.online documents.
    :param readings: which reading of each self-contradicting page to play.
    """

    def __init__(
        self,
        api_key: str,
        *,
        cancel_window: timedelta,
        utc_offset: timedelta,
        documented_only: bool,
        readings: Readings | None = None,
    ) -> None:
        self._key = api_key.encode("utf-8")
        self.cancel_window = cancel_window
        self.zone = timezone(utc_offset)
        self.documented_only = documented_only
        self.readings = readings or Readings()
        self._handlers: Mapping[str, Handler] = {
            protocol.GET_BALANCE: self._get_balance,
            protocol.GET_RENT_NUMBER: self._get_rent_number,
            protocol.GET_RENT_STATUS: self._get_rent_status,
            protocol.SET_RENT_STATUS: self._set_rent_status,
            protocol.GET_RENT_LIST: self._get_rent_list,
            protocol.CONTINUE_RENT_NUMBER: self._continue_rent_number,
            protocol.GET_CONTINUE_RENT_PRICE: self._get_continue_rent_price,
            protocol.GET_RENT_PRICES: self._get_rent_prices,
            GET_RENT_HISTORY: self._get_rent_history,
        }
        # the activation family imports this module: a top-level import would be a cycle
        from airflow_provider_smsonline.sandbox.activations import ActivationActions

        self.activations = ActivationActions(
            self, _Refused, documented_only=documented_only, resend_status=self.readings.resend_status
        )
        self._handlers = {**self._handlers, **{n: _as_reply(h) for n, h in self.activations.handlers.items()}}

    @property
    def names(self) -> tuple[str, ...]:
        """The actions served."""
        return tuple(self._handlers)

    def screen(self, params: Mapping[str, str]) -> Reply | None:
        """The refusal a request gets before the books are read (BAD_KEY, BAD_ACTION), or ``None``."""
        key = params.get("api_key")
        if key is None or not hmac.compare_digest(key.encode("utf-8", "replace"), self._key):
            return refusal("BAD_KEY")
        if params.get("action", "") not in self._handlers:
            return refusal("BAD_ACTION")
        return None

    def respond(self, books: Books, params: Mapping[str, str], now: datetime) -> Reply:
        """Answer a request that passed :meth:`screen`, at sandbox time ``now``."""
        try:
            return self._handlers[params["action"]](books, params, now)
        except _Refused as refused:
            return refusal(refused.code)

    def on_the_wire(self, sms: Sms) -> Sms:
        """``sms`` with its date in the answers' zone (for getRentStatus and the webhook)."""
        return replace(sms, date=sms.date.astimezone(self.zone))

    def webhook_payload(self, rental_id: int, sms: Sms) -> str:
        """The webhook body for ``sms``, dated in the answers' zone."""
        return protocol.encode_webhook(rental_id, self.on_the_wire(sms))

    # ------------------------------------------------------------------ the actions

    def _get_balance(self, books: Books, params: Mapping[str, str], now: datetime) -> Reply:
        return _reply(200, protocol.encode_balance(books.balance), PLAIN)

    def _rental_body(self, rental: RentalRecord, price: Decimal) -> str:
        cost = {} if self.documented_only else {"cost": protocol.format_amount(price)}
        return protocol.encode_rental(rental.id, rental.number, rental.end_date.astimezone(self.zone), **cost)

    def _get_rent_number(self, books: Books, params: Mapping[str, str], now: datetime) -> Reply:
        service = self._service(params.get("service"))
        country = self._country(params.get("country"))
        operator = self._operator(country, params.get("operator"))
        hours = self._hours(params.get("rent_time"), optional=True) or DEFAULT_RENT_TIME
        try:
            # Only the name this reading knows: a URL under the other name is ignored, as a server does.
            url = validate_webhook_url(params.get(self.readings.webhook_param))
        except ValueError:
            raise _Refused("ERROR_SQL") from None  # the docs' "Error in query"
        if books.stock.left(country.id, service) <= 0:
            raise _Refused("NO_NUMBERS")
        price = price_of(service, country.id, hours)
        if books.balance < price:
            raise _Refused("NO_BALANCE")
        rental = books.rent(
            service=service, country=country, operator=operator, hours=hours, url=url, price=price, now=now
        )
        return _reply(200, self._rental_body(rental, price), JSON)

    def _get_rent_status(self, books: Books, params: Mapping[str, str], now: datetime) -> Reply:
        rental = self._rental(books, params.get("id"))
        books.refresh(rental, now)
        if rental.status != "active":
            raise _Refused(
                {"finished": "STATUS_FINISH", "cancelled": "STATUS_CANCEL"}.get(rental.status, "RENT_DIE")
            )
        if not rental.sms:
            raise _Refused("STATUS_WAIT_CODE")
        page = lenient_int(params.get("page"), 0)
        size = min(max(lenient_int(params.get("size"), 10), 1), 100)
        total = len(rental.sms)
        newest = total - page * size  # messages are stored oldest first
        chunk = [self.on_the_wire(s) for s in rental.sms[max(newest - size, 0) : max(newest, 0)][::-1]]
        return _reply(200, protocol.encode_rent_status(chunk, quantity=total), JSON)

    def _set_rent_status(self, books: Books, params: Mapping[str, str], now: datetime) -> Reply:
        rental = self._rental(books, params.get("id"))
        try:
            wanted = as_int(params.get("status"))
        except ValueError:
            raise _Refused("INCORECT_STATUS") from None
        if wanted not in (protocol.RENT_STATUS_FINISH, protocol.RENT_STATUS_CANCEL):
            raise _Refused("INCORECT_STATUS")
        books.refresh(rental, now)
        if rental.status == "finished":
            raise _Refused("ALREADY_FINISH")
        if rental.status == "cancelled":
            raise _Refused("ALREADY_CANCEL")
        if wanted == protocol.RENT_STATUS_FINISH:
            if rental.status == "expired":
                raise _Refused("ALREADY_FINISH")  # ended on its own: finishing it changes nothing
            books.finish(rental, now)
        else:
            if rental.status == "expired" or now - rental.created > self.cancel_window:
                raise _Refused("CANT_CANCEL")
            books.cancel(rental, now)
        return _reply(200, protocol.encode_success(), JSON)

    def _get_rent_list(self, books: Books, params: Mapping[str, str], now: datetime) -> Reply:
        rentals = books.active(now)
        if self.readings.rent_list_needs_id:
            raw = params.get("id")
            if raw is None or not raw.strip():
                raise _Refused("NO_ID_RENT")  # the page's "Rental ID not specified"
            if self.readings.rent_list == "id-one":
                wanted = lenient_int(raw, -1)
                rentals = [rental for rental in rentals if rental.id == wanted]
        entries = [
            RentListEntry(
                id=rental.id,
                number=rental.number,
                price=books.paid(rental),
                hours=rental.hours,
                extra={}
                if self.documented_only
                else {
                    "endDate": protocol.format_datetime(rental.end_date.astimezone(self.zone)),
                    "service": rental.service,
                    "country": str(rental.country),
                },
            )
            for rental in rentals
        ]
        if not entries:
            raise _Refused("NO_NUMBERS")  # what peers answer for an empty list
        return _reply(200, protocol.encode_rent_list(entries), JSON)

    def _continue_rent_number(self, books: Books, params: Mapping[str, str], now: datetime) -> Reply:
        rental, hours, price = self._continuation(books, params, now)
        if books.balance < price:
            raise _Refused("NO_BALANCE")
        books.renew(rental, hours, price, now)
        return _reply(200, self._rental_body(rental, price), JSON)

    def _get_continue_rent_price(self, books: Books, params: Mapping[str, str], now: datetime) -> Reply:
        _, _, price = self._continuation(books, params, now)
        return _reply(200, protocol.encode_price(price), JSON)

    def _get_rent_prices(self, books: Books, params: Mapping[str, str], now: datetime) -> Reply:
        country = self._country(params.get("country"))
        hours = self._hours(params.get("rent_time"), optional=True) or DEFAULT_RENT_TIME
        prices = [
            RentPrice(country.id, code, price_of(code, country.id, hours), books.stock.left(country.id, code))
            for code in SERVICES
        ]
        return _reply(200, protocol.encode_rent_prices(prices), JSON)

    def _get_rent_history(self, books: Books, params: Mapping[str, str], now: datetime) -> Reply:
        rows = []
        for rental in books.rentals.values():
            books.refresh(rental, now)
            rows.append(
                (
                    rental.created,
                    {
                        "id": rental.id,
                        "date": protocol.format_sms_date(rental.created.astimezone(self.zone)),
                        "phone": rental.number,
                        "sms": json.dumps([s.text for s in rental.sms], ensure_ascii=False),
                        "cost": float(books.paid(rental)),
                        "status": _HISTORY_STATUS[rental.status],
                    },
                )
            )
        return _reply(200, json.dumps(history_page(rows, params, now)), JSON)

    # ------------------------------------------------------------------ rules

    def _service(self, raw: str | None) -> str:
        try:
            return SERVICES[validate_service(raw)].code
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

    def _rental(self, books: Books, raw: str | None) -> RentalRecord:
        try:
            rental = books.get(validate_rent_id(raw))
        except ValueError:
            rental = None
        if rental is None:
            raise _Refused("NO_ID_RENT")
        return rental

    def _continuation(
        self, books: Books, params: Mapping[str, str], now: datetime
    ) -> tuple[RentalRecord, int, Decimal]:
        rental = self._rental(books, params.get("id"))
        hours = self._hours(params.get("rent_time"), optional=False)
        assert hours is not None  # required: validate_rent_time raised otherwise
        books.refresh(rental, now)
        if rental.status != "active":
            raise _Refused("RENT_DIE")
        return rental, hours, price_of(rental.service, rental.country, hours)
