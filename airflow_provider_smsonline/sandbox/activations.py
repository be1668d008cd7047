# The activation family in the sandbox: one-time numbers bought for one code, their states
# (waiting, code, retry, completed, cancelled, expired), prices, refunds and the early-cancel window.
# Plain data and handlers; the lock is the caller's (state.py), the routing is actions.py's.
"""The sandbox's activations (getNumber, getStatus, setStatus, getPrices, getActiveActivations).

An activation costs :func:`activation_price`; a cancel (setStatus 8) after
:data:`EARLY_CANCEL_SECONDS` and before a code refunds it, as does the end of its
:data:`ACTIVATION_WINDOW` without a code. ``POST /sandbox/activations/<id>/code`` delivers a code.
getNumberV2 and getStatusV2 (peers' JSON) are served only by the rich sandbox; getActiveActivations
masks the numbers as the page's sample does (``79********1``), except in the rich sandbox.
"""

from __future__ import annotations

import itertools
import json
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_smsonline import protocol, validation
from airflow_provider_smsonline.protocol import ActivationPrice, ActivationStatus
from airflow_provider_smsonline.sandbox.catalogue import DEFAULT_RENT_TIME, price_of
from airflow_provider_smsonline.sandbox.history import history_page
from airflow_provider_smsonline.sandbox.inputs import SandboxError

if TYPE_CHECKING:
    from airflow_provider_smsonline.sandbox.books import Books

#: No cancel in an activation's first two minutes (EARLY_CANCEL_DENIED).
EARLY_CANCEL_SECONDS = 120
#: An activation without a code ends, refunded, after this long.
ACTIVATION_WINDOW = timedelta(minutes=20)
#: The first activation id a process hands out (never reused, as rental ids).
FIRST_ACTIVATION_ID = 700_000
#: An activation costs this share of the default rental's price.
PRICE_SHARE = Decimal("0.25")
#: The largest code or SMS text the control API accepts.
MAX_CODE, MAX_TEXT = 64, 1000

_ids = itertools.count(FIRST_ACTIVATION_ID)
_ids_lock = threading.Lock()

#: getHistory's ``status`` per state (undocumented, as getRentHistory's; an assumption).
_HISTORY_STATUS = {
    "waiting": "1",
    "code": "4",
    "retry": "3",
    "completed": "6",
    "cancelled": "8",
    "expired": "8",
}
#: getActiveActivations' ``activationStatus`` per state (undocumented; an assumption).
_LISTED_STATUS = {"waiting": "1", "code": "4", "retry": "3"}


@dataclass
class ActivationRecord:
    """An activation as the sandbox holds it."""

    id: int
    number: str
    service: str
    country: int
    operator: str | None
    price: Decimal
    created: datetime
    status: str = "waiting"  # waiting, code, retry, completed, cancelled, expired
    codes: list[tuple[str, str]] = field(default_factory=list)
    refunded: bool = False
    polls: int = 0  # looks at it: getStatus, getStatusV2, and each getActiveActivations listing it
    ref: str | None = None
    activation_type: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The record for ``GET /sandbox/state``."""
        return {
            "id": self.id,
            "number": self.number,
            "service": self.service,
            "country": self.country,
            "price": protocol.format_amount(self.price),
            "created": self.created.isoformat(),
            "status": self.status,
            "codes": [code for code, _ in self.codes],
            "refunded": self.refunded,
            "polls": self.polls,
            "ref": self.ref,
            "activation_type": self.activation_type,
        }


_BOOKS: weakref.WeakKeyDictionary[Books, dict[int, ActivationRecord]] = weakref.WeakKeyDictionary()


def activations_of(books: Books) -> dict[int, ActivationRecord]:
    """The activations kept beside ``books`` (a reset's new books start with none)."""
    return _BOOKS.setdefault(books, {})


def activation_price(service: str, country: int) -> Decimal:
    """What one activation of ``service`` in ``country`` costs."""
    return (price_of(service, country, DEFAULT_RENT_TIME) * PRICE_SHARE).quantize(Decimal("0.01"))


def _refresh(books: Books, record: ActivationRecord, now: datetime) -> None:
    """An activation whose window ended: refunded without a code, completed with one."""
    if record.status in ("waiting", "code", "retry") and now - record.created > ACTIVATION_WINDOW:
        if record.codes:
            record.status = "completed"
        else:
            _refund(books, record, "expired")


def _refund(books: Books, record: ActivationRecord, status: str) -> None:
    record.status = status
    if not record.refunded:
        record.refunded = True
        books.balance += record.price
        books.stock.give_back(record.country, record.service)


def _status_of(record: ActivationRecord) -> ActivationStatus:
    last = record.codes[-1] if record.codes else None
    if record.status in ("code", "completed") and last is not None:
        return ActivationStatus(protocol.STATUS_OK, last[0], last[1])
    if record.status == "retry" and last is not None:
        return ActivationStatus(protocol.STATUS_WAIT_RETRY, last[0], None)
    if record.status in ("cancelled", "expired"):
        return ActivationStatus(protocol.STATUS_CANCEL)
    return ActivationStatus(protocol.STATUS_WAIT_CODE)


def _masked(number: str) -> str:
    return number[:2] + "*" * max(len(number) - 3, 0) + number[-1:]


Refuse = Callable[[str], Exception]
Handler = Callable[["Books", Mapping[str, str], datetime], tuple[str, bool]]


class ActivationActions:
    """The activation family's handlers; each returns ``(body, is_json)`` or raises ``refuse(code)``.

    :param actions: the rent family's :class:`~.actions.Actions` (its service and country rules).
    :param refuse: builds the exception that refuses a request with a code.
    :param documented_only: leave out the peers' getNumberV2 and getStatusV2.
    :param resend_status: how getStatus spells "waiting for SMS to be resent" (the readings).
    """

    def __init__(
        self,
        actions: Any,
        refuse: Refuse,
        *,
        documented_only: bool,
        resend_status: str = protocol.STATUS_WAIT_RESEND,
    ) -> None:
        self._actions = actions
        self._refuse = refuse
        self.documented_only = documented_only
        self.resend_status = resend_status
        self.handlers: dict[str, Handler] = {
            protocol.GET_NUMBER: self._get_number,
            protocol.GET_STATUS: self._get_status,
            protocol.SET_STATUS: self._set_status,
            protocol.GET_PRICES: self._get_prices,
            protocol.GET_ACTIVE_ACTIVATIONS: self._get_active,
            protocol.GET_HISTORY: self._get_history,
        }
        if not documented_only:
            self.handlers[protocol.GET_NUMBER_V2] = self._get_number_v2
            self.handlers[protocol.GET_STATUS_V2] = self._get_status_v2

    def _buy(self, books: Books, params: Mapping[str, str], now: datetime) -> ActivationRecord:
        service = self._actions._service(params.get("service"))
        country = self._actions._country(params.get("country"))
        operator = self._actions._operator(country, params.get("operator"))
        price = activation_price(service, country.id)
        try:
            limit = validation.validate_max_price(params.get("maxPrice"), "maxPrice")
            ref = validation.validate_ref(params.get("ref"))
            kind = validation.validate_activation_type(params.get("activationType") or None)
        except ValueError:
            raise self._refuse("ERROR_SQL") from None
        if limit is not None and price > limit:
            raise self._refuse(f"WRONG_MAX_PRICE:{protocol.format_amount(price)}")
        if books.stock.left(country.id, service) <= 0:
            raise self._refuse("NO_NUMBERS")
        if books.balance < price:
            raise self._refuse("NO_BALANCE")
        books.stock.take(country.id, service)
        books.balance -= price
        with _ids_lock:
            activation_id = next(_ids)
        record = ActivationRecord(
            activation_id,
            books._new_number(country),
            service,
            country.id,
            operator,
            price,
            now,
            ref=ref,
            activation_type=kind,
        )
        activations_of(books)[record.id] = record
        return record

    def _get_number(self, books: Books, params: Mapping[str, str], now: datetime) -> tuple[str, bool]:
        record = self._buy(books, params, now)
        return protocol.encode_number(record.id, record.number), False

    def _get_number_v2(self, books: Books, params: Mapping[str, str], now: datetime) -> tuple[str, bool]:
        record = self._buy(books, params, now)
        body = protocol.encode_number_v2(record.id, record.number, record.price, record.country)
        return body, True

    def _record(self, books: Books, params: Mapping[str, str], now: datetime) -> ActivationRecord:
        try:
            record = activations_of(books).get(validation.validate_activation_id(params.get("id")))
        except ValueError:
            record = None
        if record is None:
            raise self._refuse("NO_ACTIVATION")
        _refresh(books, record, now)
        return record

    def _get_status(self, books: Books, params: Mapping[str, str], now: datetime) -> tuple[str, bool]:
        record = self._record(books, params, now)
        record.polls += 1
        state = _status_of(record)
        if state.status == protocol.STATUS_WAIT_RETRY:
            state = replace(state, status=self.resend_status)
        return protocol.encode_status(state), False

    def _get_status_v2(self, books: Books, params: Mapping[str, str], now: datetime) -> tuple[str, bool]:
        record = self._record(books, params, now)
        record.polls += 1
        return protocol.encode_status_v2(_status_of(record)), True

    def _set_status(self, books: Books, params: Mapping[str, str], now: datetime) -> tuple[str, bool]:
        record = self._record(books, params, now)
        wanted = params.get("status", "").strip()
        if wanted == "8":
            if record.status == "cancelled":
                return "ACCESS_CANCEL", False  # a repeat changes nothing
            if record.status != "waiting" or record.codes:
                raise self._refuse("BAD_STATUS")
            if (now - record.created).total_seconds() < EARLY_CANCEL_SECONDS:
                raise self._refuse("EARLY_CANCEL_DENIED")
            _refund(books, record, "cancelled")
            return "ACCESS_CANCEL", False
        if wanted == "6":
            if record.status == "completed":
                return "ACCESS_ACTIVATION", False
            if record.status not in ("code", "retry") or not record.codes:
                raise self._refuse("BAD_STATUS")
            record.status = "completed"
            return "ACCESS_ACTIVATION", False
        if wanted == "3":
            if record.status not in ("code", "retry"):
                raise self._refuse("BAD_STATUS")
            record.status = "retry"
            return "ACCESS_RETRY_GET", False
        if wanted == "1" and record.status in ("waiting", "code", "retry"):
            return "ACCESS_READY", False
        raise self._refuse("BAD_STATUS")

    def _get_prices(self, books: Books, params: Mapping[str, str], now: datetime) -> tuple[str, bool]:
        # The page marks both required: without one, the same refusal as a wrong one.
        service = self._actions._service(params.get("service"))
        country = self._actions._country(params.get("country"))
        price = ActivationPrice(
            country.id, service, activation_price(service, country.id), books.stock.left(country.id, service)
        )
        return protocol.encode_prices([price]), True

    def _get_history(self, books: Books, params: Mapping[str, str], now: datetime) -> tuple[str, bool]:
        """getHistory: getRentHistory's parameters and shape; an active activation's cost is 0."""
        rows = []
        for record in activations_of(books).values():
            _refresh(books, record, now)
            active = record.status in _LISTED_STATUS
            rows.append(
                (
                    record.created,
                    {
                        "id": record.id,
                        "date": protocol.format_sms_date(record.created.astimezone(self._actions.zone)),
                        "phone": record.number,
                        "sms": json.dumps([text for _, text in record.codes], ensure_ascii=False),
                        "cost": 0.0 if active or record.refunded else float(record.price),
                        "status": _HISTORY_STATUS[record.status],
                    },
                )
            )
        return json.dumps(history_page(rows, params, now)), True

    def _get_active(self, books: Books, params: Mapping[str, str], now: datetime) -> tuple[str, bool]:
        # the catalogue imports this module's neighbours: loaded on use to keep the import graph acyclic
        from airflow_provider_smsonline.sandbox.catalogue import COUNTRIES

        rows = []
        for record in activations_of(books).values():
            _refresh(books, record, now)
            if record.status not in _LISTED_STATUS:
                continue
            record.polls += 1  # the client looked at it, as a getStatus would
            rows.append(
                {
                    "activationId": str(record.id),
                    "countryCode": str(record.country),
                    "countryName": COUNTRIES[record.country].name,
                    "serviceCode": record.service,
                    "phoneNumber": _masked(record.number) if self.documented_only else record.number,
                    "activationCost": float(record.price),
                    "activationStatus": _LISTED_STATUS[record.status],
                    "smsCode": [code for code, _ in record.codes],
                    "activationTime": protocol.format_sms_date(record.created.astimezone(self._actions.zone)),
                }
            )
        if not rows:
            raise self._refuse("NO_ACTIVATIONS")
        return protocol.encode_active_activations(rows), True


def deliver_code(
    books: Books, activation_id: object, code: object, text: object, now: datetime
) -> dict[str, Any]:
    """Store a code (and its SMS text) on a waiting activation; the control API's answer.

    Raises :class:`SandboxError` (400 bad field, 404 unknown activation, 409 not waiting).
    """
    try:
        wanted = validation.validate_activation_id(activation_id)
    except ValueError as exc:
        raise SandboxError(str(exc), field="activation_id") from None
    if not isinstance(code, str) or not code.strip() or len(code) > MAX_CODE or ":" in code or "\n" in code:
        raise SandboxError(
            f"code must be a non-empty string of at most {MAX_CODE} characters without ':' or a newline",
            field="code",
        )
    if text is not None and (not isinstance(text, str) or len(text) > MAX_TEXT):
        raise SandboxError(f"text must be a string of at most {MAX_TEXT} characters", field="text")
    record = activations_of(books).get(wanted)
    if record is None:
        raise SandboxError(f"no activation {wanted}", status=404)
    _refresh(books, record, now)
    if record.status not in ("waiting", "retry"):
        raise SandboxError(f"activation {wanted} is {record.status}: no code can arrive", status=409)
    record.codes.append((code.strip(), text if text is not None else f"Your code is {code.strip()}"))
    record.status = "code"
    return record.to_json()


def activation_webhook(books: Books, activation_id: int, now: datetime, zone: Any) -> str:
    """The activation webhook body for the code just delivered to ``activation_id``, exactly in
    the shape of SMS.online's page, ``receivedAt`` in the answers' zone."""
    record = activations_of(books)[activation_id]
    code, text = record.codes[-1]
    return protocol.encode_activation_webhook(
        record.id, record.service, text, code, record.country, now.astimezone(zone)
    )


def activations_json(books: Books, now: datetime) -> list[dict[str, Any]]:
    """Every activation, for ``GET /sandbox/state``."""
    records = list(activations_of(books).values())
    for record in records:
        _refresh(books, record, now)
    return [record.to_json() for record in records]
