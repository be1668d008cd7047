# The sandbox's wire: a threaded HTTP/1.1 server that speaks handler_api.php (GET and POST), hands
# /sandbox/ requests to the control API, and applies injected faults to the API's answers.
"""The sandbox's HTTP server (standard library ``http.server`` only).

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
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus

import airflow_provider_smsonline.sandbox.control_api as control_api
from airflow_provider_smsonline.protocol import CHARGING_ACTIONS, ENDPOINT_PATH, rental_id_in
from airflow_provider_smsonline.sandbox.actions import JSON, PLAIN
from airflow_provider_smsonline.sandbox.faults import Fault
from airflow_provider_smsonline.sandbox.state import SandboxState

#: Requests with a larger body are refused (413 on the API, 400 on the control API).
MAX_BODY_BYTES = 1024 * 1024
#: An idle keep-alive connection is closed after this many seconds.
IDLE_TIMEOUT_SECONDS = 300.0

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


class Server(ThreadingHTTPServer):
    """The threaded HTTP server: a thread per connection, tracked so that stopping can end them."""

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
    server: Server

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

    def _read_body(self, control: bool) -> bytes | None:
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
            self.close_connection = True  # the body stays unread
            if control:
                self._send_json(400, control_api.body_too_large(length, MAX_BODY_BYTES).to_json())
            else:
                self._send_json(413, {"error": f"bodies are limited to {MAX_BODY_BYTES} bytes"})
            return None
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        path, _, query = self.path.partition("?")
        control = path == "/sandbox" or path.startswith("/sandbox/")
        body = self._read_body(control)
        if body is None:
            return
        try:
            if path == ENDPOINT_PATH:
                self._api(query, body)
            elif control:
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

    # ------------------------------------------------------------------ control

    def _control(self, path: str, body: bytes) -> None:
        if not _is_loopback_client(self.client_address[0]):
            self._send_json(403, {"error": "the control API answers loopback clients only"})
            return
        status, answer = control_api.handle(
            self.server.state, self.command, path, body, webhook_timeout=self.server.webhook_timeout
        )
        self._send_json(status, answer)
