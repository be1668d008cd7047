# The sandbox's state behind one lock: the catalogue and stock, the books, the faults and the
# control side (clock, counters, snapshot), each in its own module; this one ties them together.
# No sockets here (see wire.py).
"""The state of an SMS.online sandbox and the protocol's rules applied to it.

:class:`SandboxState` answers ``handler_api.php`` requests (:meth:`SandboxState.respond`) with the
validators and encoders the client uses (:mod:`airflow_provider_smsonline.protocol`), so both
sides apply the same rules. It also carries what the ``/sandbox/`` control API does: deliver an
SMS, queue faults (or a seeded random fault plan), move the clock, reset, and a JSON snapshot
of everything.

Stock: each service and country starts with ``stock`` numbers; a rental takes one and a cancel
(a refund) gives it back. Times are kept in UTC; answers write them without an offset, as the API
does, in the zone ``utc_offset`` names (UTC by default).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import airflow_provider_smsonline.sandbox.inputs as inputs
from airflow_provider_smsonline import protocol
from airflow_provider_smsonline.protocol import Sms
from airflow_provider_smsonline.sandbox.actions import JSON, PLAIN, Actions, Reply, lenient_int
from airflow_provider_smsonline.sandbox.books import FIRST_RENTAL_ID, Books
from airflow_provider_smsonline.sandbox.catalogue import (
    COUNTRIES,
    DEFAULT_RENT_TIME,
    HOURS_FACTOR,
    SERVICES,
    Country,
    Service,
    catalogue,
    price_of,
)
from airflow_provider_smsonline.sandbox.control import (
    WEBHOOK_LOG_SIZE,
    Activity,
    Clock,
    CodeDelivery,
    Delivery,
    snapshot,
)
from airflow_provider_smsonline.sandbox.faults import (
    DEFAULT_FAULT_DELAY,
    FAULT_MODES,
    Fault,
    Faults,
    RandomFaults,
    build_fault,
    build_random_plan,
)
from airflow_provider_smsonline.sandbox.inputs import DEFAULT_UTC_OFFSET, SandboxError
from airflow_provider_smsonline.sandbox.readings import Readings
from airflow_provider_smsonline.validation import validate_rent_id, validate_webhook_url

__all__ = [
    "COUNTRIES",
    "DEFAULT_CANCEL_WINDOW_SECONDS",
    "DEFAULT_FAULT_DELAY",
    "DEFAULT_RENT_TIME",
    "FAULT_MODES",
    "FIRST_RENTAL_ID",
    "HOURS_FACTOR",
    "JSON",
    "PLAIN",
    "SERVICES",
    "WEBHOOK_LOG_SIZE",
    "CodeDelivery",
    "Country",
    "Delivery",
    "Fault",
    "RandomFaults",
    "Reply",
    "SandboxError",
    "SandboxState",
    "Service",
    "catalogue",
    "price_of",
]

#: How long after renting a cancel (with refund) is still allowed, by default.
DEFAULT_CANCEL_WINDOW_SECONDS = 20 * 60


class SandboxState:
    """Everything a sandbox knows, behind one lock; safe to call from any thread.

    :param api_key: the only key the API accepts (anything else answers ``BAD_KEY``).
    :param balance: the account's starting balance.
    :param stock: how many numbers each service and country starts with.
    :param seed: seeds the phone numbers drawn (``None``: random).
    :param cancel_window_seconds: how long after renting a cancel is refunded (sandbox time).
    :param utc_offset: hours east of UTC of the zone every date in an answer is written in
        (UTC+3 by default: SMS.online names no zone).
    :param documented_only: answer only the fields SMS.online's pages document
        (:data:`.documented.DOCUMENTED`, the default); ``False`` adds :data:`.documented.RICH_EXTRAS`.
    :param readings: which reading of each self-contradicting page to play
        (:class:`~.readings.Readings`, or a dict of some of its switches); the default is the
        strictest documented reading of each.
    :raises ValueError: (a :class:`SandboxError`) naming the first bad argument.

    :ivar drop_webhooks: when true, no webhook is posted (each is counted as failed, ``dropped``),
        as when SMS.online's post is lost; the waits' poll must then find the SMS.
    """

    drop_webhooks: bool = False

    def __init__(
        self,
        api_key: str = "sandbox",
        balance: Decimal | int | str = Decimal("1000"),
        stock: int = 50,
        seed: int | None = None,
        cancel_window_seconds: float = DEFAULT_CANCEL_WINDOW_SECONDS,
        *,
        utc_offset: float = DEFAULT_UTC_OFFSET,
        documented_only: bool = True,
        readings: Readings | dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty string")
        self._initial_balance = inputs.money(balance, "balance")
        self._initial_stock = inputs.integer(stock, "stock", 0, inputs.MAX_STOCK)
        self._seed = inputs.seed(seed)
        window = inputs.seconds(
            cancel_window_seconds, "cancel_window_seconds", inputs.MAX_CLOCK_OFFSET_SECONDS
        )
        self.cancel_window = timedelta(seconds=window)
        self.utc_offset = inputs.utc_offset(utc_offset)
        self.documented_only = bool(documented_only)
        self.readings = Readings.of(readings)
        self._actions = Actions(
            api_key,
            cancel_window=self.cancel_window,
            utc_offset=self.utc_offset,
            documented_only=self.documented_only,
            readings=self.readings,
        )
        self._lock = threading.Lock()
        self._start_over(self._initial_balance, self._initial_stock)

    def _start_over(self, balance: Decimal, stock: int) -> None:
        self._books = Books(balance, stock, self._seed)
        self._faults = Faults()
        self._activity = Activity()
        self._clock = Clock()

    @property
    def actions(self) -> tuple[str, ...]:
        """The API actions the sandbox serves."""
        return self._actions.names

    # ------------------------------------------------------------------ clock

    def now(self) -> datetime:
        """Sandbox time: UTC now plus however far the clock was advanced."""
        return self._clock.now()

    def advance_clock(self, seconds: object) -> datetime:
        """Move sandbox time forward by ``seconds`` (expiry, the cancel window); returns the new now.

        Raises :class:`SandboxError` (nothing moved) unless ``seconds`` is a finite number from 0
        to what keeps the clock within :data:`~.inputs.MAX_CLOCK_OFFSET_SECONDS` of real time.
        """
        with self._lock:
            self._clock.advance(seconds)
            return self._clock.now()

    def clock(self) -> dict[str, Any]:
        """The clock as JSON-able data: ``now`` (ISO) and ``offset_seconds``."""
        with self._lock:
            return self._clock.to_json()

    # ------------------------------------------------------------------ the API

    def admit(self, action: str, rent_id: str | None = None) -> Fault | None:
        """Count one API request and return the fault it is to suffer, if one is pending."""
        with self._lock:
            name = action if action in self._actions.names else "other"
            self._activity.count_request(name)
            if action == protocol.GET_RENT_STATUS and rent_id is not None:
                rental = self._books.get(lenient_int(rent_id, -1))
                if rental is not None:
                    rental.polls += 1
            return self._faults.next(action, name)

    def respond(self, params: Mapping[str, str]) -> Reply:
        """Answer one ``handler_api.php`` request (its merged query and form fields)."""
        early = self._actions.screen(params)
        if early is not None:
            return early
        with self._lock:
            return self._actions.respond(self._books, params, self._clock.now())

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
            raise SandboxError(str(exc), field="rent_id") from None
        body = inputs.text(text, "text", inputs.MAX_SMS_TEXT, allow_empty=True)
        sender = inputs.text(phone_from, "phone_from", inputs.MAX_SMS_NAME)
        named = None if service is None else inputs.text(service, "service", inputs.MAX_SMS_NAME)
        with self._lock:
            rental = self._books.get(rental_id)
            if rental is None:
                raise SandboxError(f"no rental {rental_id}", status=404)
            now = self._clock.now()
            self._books.refresh(rental, now)
            if rental.status != "active":
                raise SandboxError(f"rental {rental_id} is {rental.status}: no SMS can arrive", status=409)
            sms = Sms(
                phone_from=sender, text=body, service=named or rental.service, date=now.replace(microsecond=0)
            )
            rental.sms.append(sms)
            payload = None
            if rental.url:
                payload = self._actions.webhook_payload(rental.id, sms)
                self._activity.webhook_due()
            return Delivery(rental_id=rental.id, sms=sms, webhook_url=rental.url, payload=payload)

    @property
    def activation_webhook(self) -> str | None:
        """The account's activation webhook URL (its profile setting: one URL for every
        activation), or ``None``: no activation webhook is posted."""
        return self._activation_webhook

    @activation_webhook.setter
    def activation_webhook(self, url: object) -> None:
        try:
            checked = validate_webhook_url(url)
        except ValueError as exc:
            message = str(exc).replace("webhook_url", "activation_webhook")
            raise SandboxError(message, field="activation_webhook") from None
        with self._lock:
            self._activation_webhook = checked

    def deliver_code(self, activation_id: object, code: object, text: object = None) -> dict[str, Any]:
        """Deliver a code (and its SMS text) to a waiting activation; returns the activation.
        Posts nothing (:meth:`code_delivery` says what to post).

        Raises :class:`SandboxError` (404 unknown activation, 409 not waiting, 400 bad field).
        """
        return self.code_delivery(activation_id, code, text, post=False)[0]

    def code_delivery(
        self, activation_id: object, code: object, text: object = None, *, post: bool = True
    ) -> tuple[dict[str, Any], CodeDelivery]:
        """Deliver a code as :meth:`deliver_code` does; with ``post``, the :class:`CodeDelivery`
        carries the activation webhook to post when the account has a URL."""
        # the activation family imports this module: a top-level import would be a cycle
        from airflow_provider_smsonline.sandbox.activations import activation_webhook, deliver_code

        with self._lock:
            now = self._clock.now()
            answer = deliver_code(self._books, activation_id, code, text, now)
            url = self._activation_webhook if post else None
            payload = None
            if url is not None:
                payload = activation_webhook(self._books, answer["id"], now, self._actions.zone)
                self._activity.webhook_due()
            return answer, CodeDelivery(answer["id"], url, payload)

    def record_webhook(self, delivery: Delivery | CodeDelivery, ok: bool, detail: str) -> None:
        """Count one finished webhook post (``ok``: the endpoint answered 2xx)."""
        with self._lock:
            self._activity.webhook_done(delivery, ok, detail, self._clock.now())

    def add_fault(self, action: object, mode: object, count: object = 1, delay: object = None) -> Fault:
        """Make the next ``count`` calls of ``action`` (``*``: any) fail in ``mode``."""
        fault, times = build_fault(action, mode, count, delay, self._actions.names)
        with self._lock:
            self._faults.queue(fault, times)
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
        plan = build_random_plan(action, rate, modes, seed, delays, self._actions.names)
        with self._lock:
            self._faults.set_plan(plan)
        return plan

    def clear_faults(self) -> None:
        """Drop every pending fault and the random fault plan (the counts of injected ones stay)."""
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        """Pending faults as JSON-able data, in the order they apply."""
        with self._lock:
            return self._faults.pending_json()

    def reset(self, balance: object = None, stock: object = None) -> None:
        """Forget everything (rentals, charges, counters, faults, clock); optionally a new balance/stock.

        Rental ids are not reused: the next rental's id is higher than any before.
        """
        new_balance = self._initial_balance if balance is None else inputs.money(balance, "balance")
        new_stock = (
            self._initial_stock if stock is None else inputs.integer(stock, "stock", 0, inputs.MAX_STOCK)
        )
        with self._lock:
            self._start_over(new_balance, new_stock)

    def snapshot(self) -> dict[str, Any]:
        """Everything, as the JSON-able dict ``GET /sandbox/state`` answers."""
        # the activation family imports this module: a top-level import would be a cycle
        from airflow_provider_smsonline.sandbox.activations import activations_json

        with self._lock:
            return snapshot(
                clock=self._clock,
                books=self._books,
                activity=self._activity,
                faults=self._faults,
                cancel_window=self.cancel_window,
                utc_offset=self.utc_offset,
                documented_only=self.documented_only,
            ) | {
                "activations": activations_json(self._books, self._clock.now()),
                "activation_webhook": self._activation_webhook,
                "readings": self.readings.to_json(),
            }
