# The sandbox's in-process handle: starts the server (wire.py) in a background thread of this
# process and exposes the control API as methods.
"""The sandbox server and :class:`Sandbox`, its in-process handle.

Standard library only (``http.server``), so that it starts fast in any process::

    with Sandbox(port=0, api_key="sandbox") as sandbox:
        sandbox.url                              # http://127.0.0.1:PORT/stubs/handler_api.php
        sandbox.connection()                     # the connection reading it right (AIRFLOW_CONN_* JSON)
        sandbox.deliver_sms(rent_id, text="Your code 12345", phone_from="Telegram")
        sandbox.inject_fault(action="getRentNumber", mode="timeout_after_commit", count=1)
        sandbox.set_random_faults("getRentNumber", rate=0.3, seed=7)   # ~30% fail, any mode
        sandbox.state()                          # what GET /sandbox/state answers

The server never logs a query string (the API key travels in it) and logs nothing at all
unless ``verbose``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import airflow_provider_smsonline.sandbox.inputs as inputs
from airflow_provider_smsonline.protocol import ENDPOINT_PATH
from airflow_provider_smsonline.sandbox.faults import RandomFaults
from airflow_provider_smsonline.sandbox.inputs import DEFAULT_UTC_OFFSET
from airflow_provider_smsonline.sandbox.readings import Readings
from airflow_provider_smsonline.sandbox.state import DEFAULT_CANCEL_WINDOW_SECONDS, SandboxState
from airflow_provider_smsonline.sandbox.webhooks import (
    DEFAULT_WEBHOOK_TIMEOUT_SECONDS,
    deliver_code,
    deliver_sms,
)
from airflow_provider_smsonline.sandbox.wire import (
    IDLE_TIMEOUT_SECONDS,
    MAX_BODY_BYTES,
    AfterAnswer,
    Answered,
    Server,
    is_loopback_host,
)

__all__ = [
    "DEFAULT_WEBHOOK_TIMEOUT_SECONDS",
    "IDLE_TIMEOUT_SECONDS",
    "MAX_BODY_BYTES",
    "AfterAnswer",
    "Answered",
    "Sandbox",
    "deliver_sms",
    "is_loopback_host",
    "zone_of_offset",
]

#: The longest a webhook post may be given, in seconds.
MAX_WEBHOOK_TIMEOUT_SECONDS = 600.0


def zone_of_offset(hours: float) -> str | None:
    """The fixed IANA zone of ``hours`` east of UTC (``3`` → ``"Etc/GMT-3"``, ``0`` → ``"UTC"``);
    ``None`` unless whole hours from -12 to 14, the only fixed offsets IANA names."""
    if hours != int(hours) or not -12 <= hours <= 14:
        return None
    return "UTC" if hours == 0 else f"Etc/GMT{-int(hours):+d}"


class Sandbox:
    """A local SMS.online look-alike, served in a background thread of this process.

    :param host: the address to listen on; loopback only unless ``allow_remote``.
    :param port: the port (0 picks a free one; read it back from :attr:`port` after start).
    :param api_key: the only API key accepted.
    :param balance: the account's starting balance.
    :param stock: how many numbers each service and country starts with.
    :param seed: seeds the phone numbers drawn (``None``: random).
    :param cancel_window_seconds: how long after renting a cancel is refunded (sandbox time).
    :param allow_remote: allow a non-loopback ``host`` (the control API stays loopback-only).
    :param verbose: log each request (path and status, never the query) to stderr.
    :param webhook_timeout: seconds a webhook post may take.
    :param utc_offset: hours east of UTC of the zone the API writes every date in (``endDate``,
        SMS dates), without an offset as SMS.online does; UTC+3 by default, a zone SMS.online
        never names, so that nothing passes by trusting the server's clock.
    :param documented_only: answer only what SMS.online's pages document
        (:data:`~.documented.DOCUMENTED`, the default); ``False`` adds the sandbox's extra
        fields (:data:`~.documented.RICH_EXTRAS`), which the real service does not send.
    :param after_answer: called with an :class:`Answered` after each API answer is written to the
        socket (in the server thread that sent it; keep it short). Not called when a fault
        withholds the answer (``reset_after_commit``, ``timeout_after_commit``).
    :param drop_webhooks: post no webhook (each counts as failed, ``dropped``), as when SMS.online's
        post is lost: the waits' poll must find the SMS. Settable later (``sandbox.drop_webhooks``).
    :param readings: where SMS.online's pages contradict themselves, which reading to play
        (:class:`~.readings.Readings` or a dict of its switches: ``webhook_param``, ``rent_list``,
        ``resend_status``); by default the strictest documented one of each.
    :param activation_webhook: the account's activation webhook URL, as set in SMS.online's
        profile (one URL for every activation): each code delivered is posted to it once, in the
        documented shape. Settable later (``sandbox.activation_webhook``, or
        ``POST /sandbox/profile``). ``None``: no activation webhook.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = "sandbox",
        balance: Decimal | int | str = Decimal("1000"),
        stock: int = 50,
        seed: int | None = None,
        *,
        cancel_window_seconds: float = DEFAULT_CANCEL_WINDOW_SECONDS,
        allow_remote: bool = False,
        verbose: bool = False,
        webhook_timeout: float = DEFAULT_WEBHOOK_TIMEOUT_SECONDS,
        after_answer: AfterAnswer | None = None,
        utc_offset: float = DEFAULT_UTC_OFFSET,
        documented_only: bool = True,
        drop_webhooks: bool = False,
        readings: Readings | dict[str, Any] | None = None,
        activation_webhook: str | None = None,
    ) -> None:
        if not allow_remote and not is_loopback_host(host):
            raise ValueError(
                f"refusing to listen on {host!r}: not a loopback address (pass allow_remote=True)"
            )
        self.host = host
        self.port = port
        self.api_key = api_key
        self.verbose = verbose
        self.webhook_timeout = inputs.seconds(webhook_timeout, "webhook_timeout", MAX_WEBHOOK_TIMEOUT_SECONDS)
        self.after_answer = after_answer
        self.books = SandboxState(
            api_key=api_key,
            balance=balance,
            stock=stock,
            seed=seed,
            cancel_window_seconds=cancel_window_seconds,
            utc_offset=utc_offset,
            documented_only=documented_only,
            readings=readings,
        )
        self.books.drop_webhooks = bool(drop_webhooks)
        self.books.activation_webhook = activation_webhook
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def readings(self) -> Readings:
        """The readings this sandbox plays."""
        return self.books.readings

    @property
    def drop_webhooks(self) -> bool:
        """Whether webhooks are dropped (see the constructor)."""
        return self.books.drop_webhooks

    @drop_webhooks.setter
    def drop_webhooks(self, value: bool) -> None:
        self.books.drop_webhooks = bool(value)

    @property
    def activation_webhook(self) -> str | None:
        """The account's activation webhook URL (see the constructor)."""
        return self.books.activation_webhook

    @activation_webhook.setter
    def activation_webhook(self, url: str | None) -> None:
        self.books.activation_webhook = url

    def __repr__(self) -> str:  # never shows the key
        return f"Sandbox(url={self.url!r}, running={self.running})"

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The API endpoint: ``http://HOST:PORT/stubs/handler_api.php``."""
        return self.base_url + ENDPOINT_PATH

    @property
    def server_timezone(self) -> str | None:
        """The IANA zone the sandbox writes its dates in, for the connection's ``server_timezone``
        extra: ``"Etc/GMT-3"`` for UTC+3 (the default; IANA's ``Etc`` names invert the sign),
        ``"UTC"`` for 0; ``None`` for an offset of minutes, which no fixed IANA zone names."""
        return zone_of_offset(self.books.utc_offset.total_seconds() / 3600)

    def connection(self) -> dict[str, Any]:
        """The Airflow connection that reads this sandbox right, as ``AIRFLOW_CONN_*`` JSON takes
        it: its endpoint, its key, and ``server_timezone`` set to the zone its dates are written in
        (without it a 4-hour rental's ``end_date`` would read 7 hours out at UTC+3)."""
        conn: dict[str, Any] = {"conn_type": "smsonline", "host": self.url, "password": self.api_key}
        if self.server_timezone is not None:
            conn["extra"] = {"server_timezone": self.server_timezone}
        return conn

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    def start(self) -> Sandbox:
        """Bind and serve in a daemon thread; returns ``self``. Raises ``OSError`` if the port is taken."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        server = Server(
            (self.host.strip("[]"), self.port),
            state=self.books,
            api_key=self.api_key,
            verbose=self.verbose,
            webhook_timeout=self.webhook_timeout,
            after_answer=self.after_answer,
        )
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="smsonline-sandbox", daemon=True
        )
        self._server = server
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end held and idle connections, and close the port. Safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.stopping.set()
        server.shutdown()
        server.server_close()
        server.drop_connections()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ control, in process

    def state(self) -> dict[str, Any]:
        """Everything the sandbox knows: the dict ``GET /sandbox/state`` answers."""
        return self.books.snapshot()

    def deliver_sms(
        self,
        rent_id: int,
        text: str = "Your code 12345",
        phone_from: str = "SMSonline",
        service: str | None = None,
    ) -> dict[str, Any]:
        """Deliver an SMS to an active rental (and post its webhook), as the control endpoint does.

        Raises :class:`SandboxError` (``.status`` 404: unknown rental; 409: no longer active).
        """
        return deliver_sms(
            self.books, rent_id, text, phone_from, service, webhook_timeout=self.webhook_timeout
        )

    def deliver_code(self, activation_id: int, code: str, text: str | None = None) -> dict[str, Any]:
        """Deliver a code to a waiting activation (and post the account's activation webhook, if
        set), as ``POST /sandbox/activations/<id>/code`` does.

        Raises :class:`SandboxError` (``.status`` 404: unknown activation; 409: not waiting).
        """
        return deliver_code(self.books, activation_id, code, text, webhook_timeout=self.webhook_timeout)

    def inject_fault(
        self, action: str, mode: str, count: int = 1, delay: float | None = None
    ) -> dict[str, Any]:
        """Make the next ``count`` calls of ``action`` (``*``: any) fail in ``mode``; see FAULT_MODES."""
        fault = self.books.add_fault(action, mode, count, delay)
        return {"action": fault.action, "mode": fault.mode, "count": count, "delay": fault.delay}

    def set_random_faults(
        self,
        action: str,
        rate: float,
        modes: tuple[str, ...] | list[str] | None = None,
        seed: int | None = None,
        delays: Mapping[str, float] | None = None,
    ) -> RandomFaults:
        """Make each call of ``action`` (``*``: any) fail with probability ``rate`` in a mode drawn,
        seeded, from ``modes`` (default: every mode); ``delays`` gives seconds per mode.

        What ``POST /sandbox/faults`` with ``{"mode": "random", ...}`` does. Queued faults apply
        first; :meth:`clear_faults` ends the plan; ``state()["faults_injected"]`` counts what was
        injected per action and mode.
        """
        return self.books.set_random_faults(action, rate, modes, seed, delays)

    def clear_faults(self) -> None:
        """Drop every pending fault and the random plan (``DELETE /sandbox/faults``)."""
        self.books.clear_faults()

    def reset(self, balance: Decimal | int | str | None = None, stock: int | None = None) -> None:
        """Forget everything (``POST /sandbox/reset``), optionally with a new balance or stock."""
        self.books.reset(balance=balance, stock=stock)

    def advance_clock(self, seconds: float) -> datetime:
        """Move sandbox time forward (``POST /sandbox/clock``); returns the new sandbox time."""
        return self.books.advance_clock(seconds)
