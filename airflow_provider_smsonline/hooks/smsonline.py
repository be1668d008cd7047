# The sync client: reads the Airflow connection once, keeps one requests.Session, and sends
# each action's parameters. Parsing is protocol.py's, every rule of a request is policy.py's, and
# sync_transport.py moves the bytes; this module is the Airflow face of them.
"""Hook for the SMS.online rent API."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from airflow.sdk import BaseHook

from airflow_provider_smsonline import metrics, policy, protocol, validation
from airflow_provider_smsonline.exceptions import (
    CancelNotAllowedError,
    EarlyCancelDeniedError,
    PriceLimitError,
    SmsOnlineError,
    TransportError,
)
from airflow_provider_smsonline.policy import (
    ClientConfig,
    build_endpoint,
)

if TYPE_CHECKING:
    import requests

__all__ = [
    "EARLY_CANCEL_RETRY",
    "EARLY_CANCEL_WAIT",
    "SmsOnlineHook",
    "build_endpoint",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds :meth:`SmsOnlineHook.end_activation` waits, at most, for the early-cancel window
#: (about 2 minutes) to pass.
EARLY_CANCEL_WAIT = 150.0
#: Seconds between cancel attempts while the early-cancel window is open.
EARLY_CANCEL_RETRY = 15.0

# Indirection so tests can watch the waits without waiting.
_sleep = time.sleep


class SmsOnlineHook(BaseHook):
    """Calls the SMS.online rent API with the key of an Airflow connection.

    The connection is read once and one HTTP session is kept per hook, so calls in a loop pay
    for the network alone. Charging calls (:meth:`get_rent_number`, :meth:`continue_rent`) are
    never re-sent; a failure after such a request left raises
    :class:`~airflow_provider_smsonline.exceptions.OutcomeUnknownError`. Reads and
    setRentStatus are retried on server and network failures (``read_retries`` extra).

    :param smsonline_conn_id: the Airflow connection holding the API key.
    """

    conn_name_attr = "smsonline_conn_id"
    default_conn_name = "smsonline_default"
    conn_type = "smsonline"
    hook_name = "SMS.online"

    def __init__(self, smsonline_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.smsonline_conn_id = smsonline_conn_id
        self._session: requests.Session | None = None
        self._send_settings: dict[str, Any] | None = None

    # ------------------------------------------------------------------ connection

    @cached_property
    def config(self) -> ClientConfig:
        """The validated connection settings (looked up once per hook)."""
        conn = self.get_connection(self.smsonline_conn_id)
        config = ClientConfig.from_connection(conn)
        config.register_secrets()
        if not config.verify_ssl:
            self.log.warning(
                "TLS certificate verification is OFF for connection %r (extra verify_ssl=false): "
                "the API key can be read by anyone between this worker and %s",
                self.smsonline_conn_id,
                urlsplit(config.endpoint).hostname,
            )
        return config

    def get_conn(self) -> requests.Session:
        """The hook's ``requests.Session`` (one per hook)."""
        if self._session is None:
            # requests loads on the first call, not at DAG parse (docs/benchmarks.rst: the parse row)
            from airflow_provider_smsonline.hooks import sync_transport

            self._session = sync_transport.new_session(self.config)
        return self._session

    def close(self) -> None:
        """Close the HTTP session (a new one opens on the next call)."""
        if self._session is not None:
            self._session.close()
            self._session = None
        self._send_settings = None

    def __enter__(self) -> SmsOnlineHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the wire

    def _call(self, params: Mapping[str, str], parse: Callable[[int, bytes], T]) -> T:
        # requests loads on the first call, not at DAG parse (docs/benchmarks.rst: the parse row)
        from airflow_provider_smsonline.hooks import sync_transport

        config = self.config
        request = policy.build_request(config, params)
        session = self.get_conn()
        if self._send_settings is None:
            self._send_settings = sync_transport.send_settings(session, config)
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                status, body = sync_transport.exchange(session, self._send_settings, config, request)
                result = policy.conclude(status, body, config, parse)
            except SmsOnlineError as error:
                problem = policy.settle(config, request, error)
                metrics.api_call(request.action, time.monotonic() - started, problem)
                delay = policy.retry_delay(config, request, problem, attempt)
                if delay is None:
                    raise problem from None
                self.log.warning(
                    "%s failed (%s); retry %d of %d in %.1f s",
                    request.action,
                    problem,
                    attempt,
                    config.read_retries,
                    delay,
                )
                time.sleep(delay)
                continue
            self.log.debug("%s answered in %.3f s", request.action, time.monotonic() - started)
            metrics.api_call(request.action, time.monotonic() - started)
            return result

    # ------------------------------------------------------------------ the API

    def get_balance(self) -> Decimal:
        """The account's balance (getBalance), e.g. ``Decimal('123.45')``."""
        balance = self._call(protocol.get_balance_params(), protocol.parse_balance)
        metrics.balance(self.smsonline_conn_id, balance)
        return balance

    def test_connection(self) -> tuple[bool, str]:
        """Prove the key with getBalance; the message is shown in the UI and never holds the key."""
        try:
            balance = self.get_balance()
        except TransportError as error:
            return False, f"Could not reach SMS.online: {error}"
        except SmsOnlineError as error:
            return False, f"SMS.online refused the test: {error}"
        except ValueError as error:  # connection fields
            return False, self.config.redact(str(error)) if "config" in self.__dict__ else str(error)
        return True, f"Connected to {urlsplit(self.config.endpoint).netloc}: balance {balance}"

    def get_rent_number(
        self,
        service: str,
        country: int,
        operator: str | None = None,
        rent_time: int | None = None,
        webhook_url: str | None = None,
    ) -> protocol.Rental:
        """Rent a number (getRentNumber). Charges money; never re-sent automatically.

        :param service: the service code, e.g. ``"tg"``.
        :param country: the country id, e.g. ``0``.
        :param operator: a mobile operator code; ``None`` for any.
        :param rent_time: hours, one of 4, 8, 12, 24, 72, 168, 360, 720, 2160; ``None`` for the
            server's default.
        :param webhook_url: an http(s) URL the server posts each SMS to.
        :raises OutcomeUnknownError: the request left but no usable answer came back.
        """
        params = protocol.get_rent_number_params(service, country, operator, rent_time, webhook_url)
        return self._call(params, self._parse_rental)

    def continue_rent(self, rent_id: int, rent_time: int) -> protocol.Rental:
        """Extend a rental (continueRentNumber) by ``rent_time`` hours. Charges money; never re-sent.

        :raises RentalExpiredError: ``RENT_DIE``, the rental already expired.
        :raises OutcomeUnknownError: the request left but no usable answer came back.
        """
        params = protocol.continue_rent_number_params(rent_id, rent_time)
        return self._call(params, self._parse_rental)

    def get_continue_rent_price(self, rent_id: int, rent_time: int) -> Decimal:
        """What extending the rental by ``rent_time`` hours would cost (getContinueRentPrice)."""
        return self._call(protocol.get_continue_rent_price_params(rent_id, rent_time), protocol.parse_price)

    def get_rent_status(self, rent_id: int, page: int = 0, size: int = 10) -> list[protocol.Sms]:
        """The SMS received on a rental, newest first (getRentStatus); none yet is ``[]``."""
        return self._call(
            protocol.get_rent_status_params(rent_id, page, size),
            lambda status, body: protocol.parse_rent_status(status, body, self.config.server_timezone),
        )

    def finish_rent(self, rent_id: int) -> None:
        """Finish a rental (setRentStatus 1). Finishing a finished rental is not an error."""
        self._call(
            protocol.set_rent_status_params(rent_id, protocol.RENT_STATUS_FINISH),
            lambda s, b: protocol.parse_set_rent_status(s, b, protocol.RENT_STATUS_FINISH),
        )

    def cancel_rent(self, rent_id: int) -> None:
        """Cancel a rental for a refund (setRentStatus 2), allowed in its first minutes only.

        Cancelling a cancelled rental is not an error.

        :raises CancelNotAllowedError: ``CANT_CANCEL``, the refund window has closed.
        """
        self._call(
            protocol.set_rent_status_params(rent_id, protocol.RENT_STATUS_CANCEL),
            lambda s, b: protocol.parse_set_rent_status(s, b, protocol.RENT_STATUS_CANCEL),
        )

    def release_rent(self, rent_id: int) -> str:
        """Give a rental back: cancel it for a refund while its refund window is open, else
        finish it (what a teardown of a rental that was not used does).

        :returns: ``"cancelled"`` or ``"finished"``.
        """
        try:
            self.cancel_rent(rent_id)
        except CancelNotAllowedError:
            self.finish_rent(rent_id)
            return "finished"
        return "cancelled"

    def get_rent_list(self, rent_id: int | None = None) -> list[protocol.RentListEntry]:
        """The account's active rentals (getRentList); none is ``[]``.

        SMS.online's page contradicts itself: its prose lists every active rental, its table marks
        a rental id as required. With ``rent_id`` the id is sent, and a server of either reading
        answers (the whole list, or that rental alone: look for the id in the result); without
        it, a server that requires an id refuses (``NO_ID_RENT`` or another code).
        :meth:`get_rent_history` lists rentals on every reading.
        """
        return self._call(protocol.get_rent_list_params(rent_id), protocol.parse_rent_list)

    def get_rent_history(self, start: datetime, end: datetime | None = None) -> list[protocol.HistoryEntry]:
        """The account's rentals that began from ``start`` to ``end`` (getRentHistory), each once,
        with their numbers, texts and costs.

        Every page is read (100 rows a call), and a window longer than the 30 days one call allows
        is split. The window is sent in unix seconds, which no time zone shifts.

        :param start: aware (naive means UTC).
        :param end: aware (naive means UTC); ``None``: now.
        """
        return list(self._history(protocol.GET_RENT_HISTORY, start, end))

    def get_activation_history(
        self, start: datetime, end: datetime | None = None
    ) -> list[protocol.HistoryEntry]:
        """The account's activations that began from ``start`` to ``end`` (getHistory), as
        :meth:`get_rent_history` reads rentals (an active activation's cost is 0)."""
        return list(self._history(protocol.GET_HISTORY, start, end))

    def _history(self, action: str, start: datetime, end: datetime | None) -> Iterator[protocol.HistoryEntry]:
        seen: set[int] = set()
        for window_start, window_end in history_windows(start, end):
            offset = 0
            while True:
                params = protocol.history_params(action, window_start, window_end, offset)
                page = self._call(
                    params,
                    lambda status, body: protocol.parse_history(status, body, self.config.server_timezone),
                )
                for row in page:
                    if row.id not in seen:  # a row that moved across a page or window boundary
                        seen.add(row.id)
                        yield row
                if len(page) < protocol.HISTORY_PAGE_LIMIT:
                    break
                offset += len(page)

    def get_rent_prices(self, country: int, rent_time: int | None = None) -> list[protocol.RentPrice]:
        """Rental prices and stock per service in a country (getRentPrices), for ``rent_time``
        hours when given (sent as peers do; SMS.online's page names ``country`` only)."""
        return self._call(protocol.get_rent_prices_params(country, rent_time), protocol.parse_rent_prices)

    # ------------------------------------------------------------------ activations

    def get_number(
        self,
        service: str,
        country: int,
        operator: str | None = None,
        max_price: Decimal | float | str | None = None,
        *,
        v2: bool = False,
        ref: str | None = None,
        activation_type: int | None = None,
    ) -> protocol.Activation:
        """Buy an activation: a number for one verification code (getNumber). Charges money;
        never re-sent automatically.

        :param service: the service code, e.g. ``"tg"``.
        :param country: the country id, e.g. ``0``.
        :param operator: a mobile operator code; ``None`` for any.
        :param max_price: sent as ``maxPrice``: above it the server refuses and charges nothing
            (:class:`~airflow_provider_smsonline.exceptions.PriceLimitError`, ``WRONG_MAX_PRICE``).
        :param v2: use getNumberV2, whose JSON answer carries the cost.
        :param ref: a partner id (``ref``), sent only when given.
        :param activation_type: 0 an SMS (the server's default), 1 by number, 2 a voice call
            (``activationType``), sent only when given.
        :raises OutcomeUnknownError: the request left but no usable answer came back.
        """
        params = protocol.get_number_params(
            service, country, operator, max_price, v2=v2, ref=ref, activation_type=activation_type
        )
        limit = validation.validate_max_price(max_price)

        def parse(status: int, body: bytes) -> protocol.Activation:
            try:
                return protocol.parse_number(status, body)
            except PriceLimitError as error:
                error.limit = limit
                if limit is not None:
                    error.message = f"{error.message}; the limit is {limit}"
                    error.args = (error.message,)
                raise

        return self._call(params, parse)

    def get_status(self, activation_id: int, *, v2: bool = False) -> protocol.ActivationStatus:
        """An activation's state (getStatus; getStatusV2 also gives the SMS text).

        :raises ActivationNotFoundError: ``NO_ACTIVATION``.
        """
        return self._call(protocol.get_status_params(activation_id, v2=v2), protocol.parse_status)

    def _set_status(self, activation_id: int, status: int) -> str:
        return self._call(
            protocol.set_status_params(activation_id, status),
            lambda s, b: protocol.parse_set_status(s, b, status),
        )

    def mark_ready(self, activation_id: int) -> str:
        """Tell the service the number was entered and an SMS is awaited (setStatus 1)."""
        return self._set_status(activation_id, protocol.ACTIVATION_READY)

    def request_another_code(self, activation_id: int) -> str:
        """Ask for another SMS on the same number (setStatus 3)."""
        return self._set_status(activation_id, protocol.ACTIVATION_RETRY)

    def complete_activation(self, activation_id: int) -> str:
        """Confirm the code and complete the activation (setStatus 6)."""
        return self._set_status(activation_id, protocol.ACTIVATION_COMPLETE)

    def cancel_activation(self, activation_id: int) -> str:
        """Cancel an activation for a refund (setStatus 8).

        :raises EarlyCancelDeniedError: ``EARLY_CANCEL_DENIED``, too soon after buying (about
            2 minutes).
        """
        return self._set_status(activation_id, protocol.ACTIVATION_CANCEL)

    def end_activation(self, activation_id: int) -> str:
        """End an activation the way its state asks: complete it when a code arrived, else cancel
        it for a refund, waiting out the early-cancel window (about 2 minutes; at most
        :data:`EARLY_CANCEL_WAIT` seconds, trying every :data:`EARLY_CANCEL_RETRY` seconds).

        :returns: ``"completed"``, ``"cancelled"``, ``"ended"`` (already over) or ``"refund_later"``
            (the window did not pass in time: the service refunds it after about 20 minutes).
        """
        state = self.get_status(activation_id)
        if state.status == protocol.STATUS_CANCEL:
            return "ended"
        if state.status in (protocol.STATUS_OK, protocol.STATUS_WAIT_RETRY):  # a code came: 6 is allowed
            self.complete_activation(activation_id)
            return "completed"
        deadline = time.monotonic() + EARLY_CANCEL_WAIT
        while True:
            try:
                self.cancel_activation(activation_id)
                return "cancelled"
            except EarlyCancelDeniedError:
                if time.monotonic() + EARLY_CANCEL_RETRY > deadline:
                    self.log.warning(
                        "Activation %s cannot be cancelled yet; without a code the service refunds it "
                        "after about 20 minutes.",
                        activation_id,
                    )
                    return "refund_later"
                _sleep(EARLY_CANCEL_RETRY)

    def get_prices(self, service: str, country: int) -> list[protocol.ActivationPrice]:
        """The price and stock of activations of ``service`` in ``country`` (getPrices; its page
        marks both required)."""
        return self._call(protocol.get_prices_params(service, country), protocol.parse_prices)

    def get_active_activations(self) -> list[protocol.ActiveActivation]:
        """The account's active activations (getActiveActivations); none is ``[]``."""
        return self._call(protocol.get_active_activations_params(), protocol.parse_active_activations)

    def _parse_rental(self, status: int, body: bytes) -> protocol.Rental:
        return protocol.parse_rental(status, body, self.config.server_timezone)


def history_windows(start: datetime, end: datetime | None = None) -> list[tuple[int, int]]:
    """``start`` to ``end`` (``None``: now) as unix-second windows of at most 30 days each, the
    longest one getRentHistory or getHistory call allows.

    :raises ValueError: ``end`` before ``start``.
    """
    first = _unix(start)
    last = _unix(end if end is not None else datetime.now(timezone.utc))
    if last < first:
        raise ValueError(f"end must not be before start, got start {start!r} and end {end!r}")
    windows = []
    while True:
        upto = min(last, first + protocol.HISTORY_WINDOW_SECONDS)
        windows.append((first, upto))
        if upto >= last:
            return windows
        first = upto + 1


def _unix(moment: datetime) -> int:
    if not isinstance(moment, datetime):
        raise ValueError(f"a history window's ends must be datetimes, got {moment!r}")
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
    return max(0, int(aware.timestamp()))
