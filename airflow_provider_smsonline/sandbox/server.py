# The sandbox's wire: a threaded HTTP/1.1 server that speaks handler_api.php (GET and POST), the
# JSON control API under /sandbox/, the injected faults in between, and the webhook posts.
"""The sandbox server and :class:`Sandbox`, its in-process handle.

Standard library only (``http.server``), so that it starts fast in any process::

    with Sandbox(port=0, api_key="sandbox") as sandbox:
        sandbox.url                              # http://127.0.0.1:PORT/stubs/handler_api.php
        sandbox.deliver_sms(rent_id, text="Your code 12345", phone_from="Telegram")
        sandbox.inject_fault(action="getRentNumber", mode="timeout_after_commit", count=1)
        sandbox.set_random_faults("getRentNumber", rate=0.3, seed=7)   # ~30% fail, any mode
        sandbox.state()                          # what GET /sandbox/state answers

The server never logs a query string (the API key travels in it) and logs nothing at all
unless ``verbose``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus

from airflow_provider_smsonline.protocol import CHARGING_ACTIONS, ENDPOINT_PATH, rental_id_in
from airflow_provider_smsonline.sandbox.state import (
    DEFAULT_CANCEL_WINDOW_SECONDS,
    JSON,
    PLAIN,
    Delivery,
    Fault,
    RandomFaults,
    SandboxError,
    SandboxState,
    catalogue,
)

#: Requests with a larger body are refused (413).
MAX_BODY_BYTES = 1024 * 1024
#: An idle keep-alive connection is closed after this many seconds.
IDLE_TIMEOUT_SECONDS = 300.0
#: How long a webhook post may take before it counts as failed.
DEFAULT_WEBHOOK_TIMEOUT_SECONDS = 2.0

_RENTAL_SMS = re.compile(r"^/sandbox/rentals/(\d{1,18})/sms$")
_QUERY = re.compile(r"\?\S*")
_HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_GARBAGE = b"\x00\x9f\xfe garbled \x01\x02 not a protocol answer \xff{{<<\n"


@dataclass(frozen=True)
class Answered:
    """An API answer the sandbox has just sent, as passed to a ``Sandbox(after_answer=...)`` hook.

    :ivar action: the request's ``action`` (as sent; ``""`` if none).
    :ivar client: the client's address and port: the TCP connection the answer went out on.
    :ivar status: the HTTP status of the answer.
    :ivar rental_id: for a charging action answered with a rental, its id; else ``None``.
    :ivar fault: the fault mode that shaped the answer (``http_500``, ``slow`` …), or ``None``.
    """

    action: str
    client: tuple[str, int]
    status: int
    rental_id: int | None
    fault: str | None


#: A hook called after each API answer is written to the socket.
AfterAnswer = Callable[[Answered], None]


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (an IP address or ``localhost``) names this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _is_loopback_client(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def deliver_sms(
    state: SandboxState,
    rent_id: object,
    text: object,
    phone_from: object = "SMSonline",
    service: object = None,
    webhook_timeout: float = DEFAULT_WEBHOOK_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """Deliver an SMS to a rental and post its webhook (in a background thread) if it has one.

    What ``POST /sandbox/rentals/<id>/sms`` does; raises :class:`SandboxError` on refusal.
    """
    delivery = state.deliver_sms(rent_id, text, phone_from, service)
    if delivery.webhook_url is not None:
        threading.Thread(
            target=_post_webhook,
            args=(state, delivery, webhook_timeout),
            name=f"smsonline-sandbox-webhook-{delivery.rental_id}",
            daemon=True,
        ).start()
    return {
        "rental_id": delivery.rental_id,
        "sms": {
            "phone_from": delivery.sms.phone_from,
            "text": delivery.sms.text,
            "service": delivery.sms.service,
            "date": delivery.sms.date.isoformat(),
        },
        "webhook": delivery.webhook_url is not None,
    }


def _post_webhook(state: SandboxState, delivery: Delivery, timeout: float) -> None:
    """Post once, never retried (as SMS.online does); the outcome is counted in the state."""
    import urllib.error
    import urllib.request

    assert delivery.webhook_url is not None and delivery.payload is not None
    request = urllib.request.Request(
        delivery.webhook_url,
        data=delivery.payload.encode("utf-8"),
        headers={"Content-Type": "application/json", "User-Agent": "SMSonlineSandbox"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read(65536)
            status = response.status
        ok, detail = 200 <= status < 300, f"HTTP {status}"
    except urllib.error.HTTPError as exc:
        ok, detail = False, f"HTTP {exc.code}"
    except Exception as exc:  # refused, timed out, bad URL: counted, never raised
        ok, detail = False, type(exc).__name__
    state.record_webhook(delivery, ok, detail)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        state: SandboxState,
        api_key: str,
        verbose: bool,
        webhook_timeout: float,
        after_answer: AfterAnswer | None = None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.state = state
        self.after_answer = after_answer
        self.verbose = verbose
        self.webhook_timeout = webhook_timeout
        self.secret_forms = tuple(
            sorted({api_key, quote_plus(api_key), quote(api_key, safe="")}, key=len, reverse=True)
        )
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN (a DNS lookup): not needed here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def drop_connections(self) -> None:
        """Shut every open connection (idle keep-alive ones included) so their threads end."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def redact(self, text: str) -> str:
        text = _QUERY.sub("?…", text)
        for form in self.secret_forms:
            text = text.replace(form, "***")
        return text

    def log(self, line: str) -> None:
        if self.verbose:
            sys.stderr.write(self.redact(line) + "\n")
            sys.stderr.flush()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback for every client that hangs up: quiet unless verbose.
        error = sys.exc_info()[1]
        self.log(f"connection from {client_address[0]} failed: {type(error).__name__}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SMSonlineSandbox"
    sys_version = ""
    timeout = IDLE_TIMEOUT_SECONDS
    disable_nagle_algorithm = True
    server: _Server

    # ------------------------------------------------------------------ plumbing

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.server.verbose:
            path = self.path.partition("?")[0]
            self.server.log(f"{self.client_address[0]} {self.command} {path} {code}")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            self.server.log(f"{self.client_address[0]} {format % args}")

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        # One write for head and body: no Nagle/delayed-ACK stall on keep-alive connections.
        phrase = self.responses.get(status, ("",))[0]
        head = (
            f"HTTP/1.1 {status} {phrase}\r\n"
            f"Server: {self.server_version}\r\n"
            f"Date: {self.date_time_string()}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
        )
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("latin-1") + b"\r\n" + body)
        self.log_request(status)

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), JSON)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send_json(411, {"error": "send a Content-Length; chunked bodies are not supported"})
            return None
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
            if length < 0:
                raise ValueError(raw)
        except ValueError:
            self.close_connection = True
            self._send_json(400, {"error": "Content-Length must be a non-negative integer"})
            return None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send_json(413, {"error": f"bodies are limited to {MAX_BODY_BYTES} bytes"})
            return None
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path, _, query = self.path.partition("?")
        try:
            if path == ENDPOINT_PATH:
                self._api(query, body)
            elif path == "/sandbox" or path.startswith("/sandbox/"):
                self._control(path.rstrip("/"), body)
            else:
                self._send_json(
                    404, {"error": f"no such path: the API is {ENDPOINT_PATH}, the control API /sandbox/"}
                )
        except OSError:
            self.close_connection = True  # the client went away
        except Exception as exc:  # a sandbox bug, never bad input: answer without a traceback
            self.server.log(f"internal error: {type(exc).__name__}")
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send(500, b"SERVER_ERROR", PLAIN)

    # ------------------------------------------------------------------ the API

    def _api(self, query: str, body: bytes) -> None:
        if self.command not in ("GET", "POST"):
            self._send_json(405, {"error": "the API takes GET or POST"})
            return
        params: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            params.setdefault(name, value)
        if self.command == "POST" and body:
            form: dict[str, str] = {}
            for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
                form.setdefault(name, value)
            params.update(form)
        state = self.server.state
        action = params.get("action", "")
        fault = state.admit(action, params.get("id"))
        if fault is not None and self._fail_before(fault):
            self._answered(action, self._fault_status(fault), None, fault)
            return
        reply = state.respond(params)
        if fault is not None and self._fail_after(fault):
            return
        self._send(reply.status, reply.body, reply.content_type)
        rental_id = rental_id_in(reply.body) if action in CHARGING_ACTIONS else None
        self._answered(action, reply.status, rental_id, fault)

    @staticmethod
    def _fault_status(fault: Fault) -> int:
        return {"http_500": 500, "html_502": 502}.get(fault.mode, 200)

    def _answered(self, action: str, status: int, rental_id: int | None, fault: Fault | None) -> None:
        """Tell the ``after_answer`` hook; its failures are logged, never sent to the client."""
        hook = self.server.after_answer
        if hook is None:
            return
        client = (str(self.client_address[0]), int(self.client_address[1]))
        try:
            hook(Answered(action, client, status, rental_id, fault.mode if fault else None))
        except Exception as exc:
            self.server.log(f"after_answer hook failed: {type(exc).__name__}")

    def _fail_before(self, fault: Fault) -> bool:
        """Apply the part of a fault that comes before the answer; True if nothing else is sent."""
        if fault.mode == "http_500":
            self._send(500, b"Internal Server Error", PLAIN)
        elif fault.mode == "html_502":
            self._send(502, _HTML_502, "text/html")
        elif fault.mode == "garbage":
            self._send(200, _GARBAGE, "text/html")
        else:
            if fault.mode == "slow":
                self.server.stopping.wait(fault.delay)
            return False
        return True

    def _fail_after(self, fault: Fault) -> bool:
        """Apply the part of a fault that comes after committing; True if the answer is withheld."""
        if fault.mode == "reset_after_commit":
            self.close_connection = True
            connection = self.connection
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # the socket's file must go too, or close() would not close it
            connection.close()  # with SO_LINGER 0: an RST, not a FIN
            return True
        if fault.mode == "timeout_after_commit":
            self.close_connection = True
            self.server.stopping.wait(fault.delay)
            return True
        return False

    # ------------------------------------------------------------------ control

    def _control(self, path: str, body: bytes) -> None:
        if not _is_loopback_client(self.client_address[0]):
            self._send_json(403, {"error": "the control API answers loopback clients only"})
            return
        state = self.server.state
        try:
            match = _RENTAL_SMS.match(path)
            if path == "/sandbox/state":
                self._expect("GET")
                self._send_json(200, state.snapshot())
            elif path == "/sandbox/catalogue":
                self._expect("GET")
                self._send_json(200, catalogue())
            elif match:
                self._expect("POST")
                data = _json_object(body)
                result = deliver_sms(
                    state,
                    int(match.group(1)),
                    data.get("text"),
                    data.get("phone_from", "SMSonline"),
                    data.get("service"),
                    webhook_timeout=self.server.webhook_timeout,
                )
                self._send_json(200, result)
            elif path == "/sandbox/faults":
                self._expect("GET", "POST", "DELETE")
                answer: dict[str, Any] = {}
                if self.command == "POST":
                    data = _json_object(body)
                    if data.get("mode") == "random":
                        plan = state.set_random_faults(
                            data.get("action"),
                            data.get("rate"),
                            data.get("modes"),
                            data.get("seed"),
                            data.get("delays"),
                        )
                        answer["random"] = plan.to_json()
                    else:
                        state.add_fault(
                            data.get("action"), data.get("mode"), data.get("count", 1), data.get("delay")
                        )
                elif self.command == "DELETE":
                    state.clear_faults()
                self._send_json(200, {"faults": state.faults(), **answer})
            elif path == "/sandbox/reset":
                self._expect("POST")
                data = _json_object(body)
                state.reset(balance=data.get("balance"), stock=data.get("stock"))
                self._send_json(200, state.snapshot())
            elif path == "/sandbox/clock":
                self._expect("GET", "POST")
                if self.command == "POST":
                    state.advance_clock(_json_object(body).get("advance_seconds", 0))
                self._send_json(200, state.clock())
            else:
                raise SandboxError(
                    "no such control path: /sandbox/state, /sandbox/catalogue, /sandbox/rentals/<id>/sms, "
                    "/sandbox/faults, /sandbox/reset, /sandbox/clock",
                    status=404,
                )
        except SandboxError as exc:
            self._send_json(exc.status, {"error": str(exc)})

    def _expect(self, *methods: str) -> None:
        if self.command not in methods:
            raise SandboxError(f"{self.command} is not allowed here; use {' or '.join(methods)}", status=405)


def _json_object(body: bytes) -> Mapping[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        raise SandboxError("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise SandboxError("the body must be a JSON object")
    return data


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
    :param after_answer: called with an :class:`Answered` after each API answer is written to the
        socket (in the server thread that sent it; keep it short). Not called when a fault
        withholds the answer (``reset_after_commit``, ``timeout_after_commit``).
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
    ) -> None:
        if not allow_remote and not is_loopback_host(host):
            raise ValueError(
                f"refusing to listen on {host!r}: not a loopback address (pass allow_remote=True)"
            )
        self.host = host
        self.port = port
        self.api_key = api_key
        self.verbose = verbose
        self.webhook_timeout = webhook_timeout
        self.after_answer = after_answer
        self.books = SandboxState(
            api_key=api_key,
            balance=balance,
            stock=stock,
            seed=seed,
            cancel_window_seconds=cancel_window_seconds,
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

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
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    def start(self) -> Sandbox:
        """Bind and serve in a daemon thread; returns ``self``. Raises ``OSError`` if the port is taken."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        server = _Server(
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
