# One request policy, two transports: every answer a server can give (each code, an echoed key,
# HTML, garbage, a huge or trickling answer, a redirect, a broken connection) and every TLS/proxy
# setting goes through the sync hook (requests) and the async client (aiohttp) alike, and both
# must raise the same error class with the same code and message, and never the key.
from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_smsonline.exceptions import SmsOnlineError
from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient
from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.policy import ClientConfig
from tests.conftest import CANARY_KEY, assert_no_key

Behaviour = Callable[[socket.socket], None]


def reply(body: bytes | str, status: str = "200 OK", headers: str = "") -> Behaviour:
    data = body.encode() if isinstance(body, str) else body

    def send(conn: socket.socket) -> None:
        conn.sendall(
            f"HTTP/1.1 {status}\r\nContent-Length: {len(data)}\r\nConnection: close\r\n{headers}\r\n".encode()
            + data
        )

    return send


def trickle_headers(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    for _ in range(200):
        time.sleep(0.1)
        conn.sendall(b"a")


def endless_continue(conn: socket.socket) -> None:
    for _ in range(400):
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        time.sleep(0.05)


def trickle_body(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n")
    for _ in range(500):
        time.sleep(0.1)
        conn.sendall(b"A")


def silence(conn: socket.socket) -> None:
    time.sleep(20)


def cut_mid_body(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nSTATUS_")
    conn.shutdown(socket.SHUT_RDWR)


def close_at_once(conn: socket.socket) -> None:
    conn.shutdown(socket.SHUT_RDWR)


def bad_status_line(conn: socket.socket) -> None:
    conn.sendall(b"garbage garbage\r\n\r\n")


class HostileServer:
    """A loopback server whose next answers are set by each test."""

    def __init__(self) -> None:
        outer = self
        self.behaviour: Behaviour = reply("STATUS_WAIT_CODE")

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(30)
                try:
                    self.request.recv(65536)
                    outer.behaviour(self.request)
                except OSError:
                    pass

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/stubs/handler_api.php"


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    yield server
    server.server.shutdown()


def _config(endpoint: str, **overrides: Any) -> ClientConfig:
    settings: dict[str, Any] = {"timeout": 1.5, "connect_timeout": 1.5, "read_retries": 0, **overrides}
    return ClientConfig(endpoint=endpoint, api_key=CANARY_KEY, **settings)


def _sync_error(config: ClientConfig) -> tuple[SmsOnlineError, float]:
    hook = SmsOnlineHook()
    hook.__dict__["config"] = config
    started = time.monotonic()
    with pytest.raises(SmsOnlineError) as raised:
        hook.get_rent_status(7)
    return raised.value, time.monotonic() - started


def _async_error(config: ClientConfig) -> tuple[SmsOnlineError, float]:
    async def main() -> tuple[SmsOnlineError, float]:
        started = time.monotonic()
        async with AsyncSmsOnlineClient(config) as client:
            try:
                await client.get_rent_status(7)
            except SmsOnlineError as error:
                return error, time.monotonic() - started
        raise AssertionError("no error raised")

    return asyncio.run(main())


def _assert_same(config: ClientConfig) -> SmsOnlineError:
    sync_error, sync_seconds = _sync_error(config)
    async_error, async_seconds = _async_error(config)
    for error in (sync_error, async_error):
        text = f"{error} {error.args} {error.code} {error.__dict__}"
        assert_no_key(text)
        assert CANARY_KEY[:6] not in text  # not even the part a cut-off message would keep
        assert error.__cause__ is None
    assert (type(sync_error), sync_error.code, str(sync_error)) == (
        type(async_error),
        async_error.code,
        str(async_error),
    )
    budget = config.timeout + 1.0
    assert sync_seconds < budget and async_seconds < budget, (sync_seconds, async_seconds)
    return sync_error


ANSWERS: dict[str, tuple[Behaviour, str, str]] = {
    # name: (what the server does, the error class, a part of its message)
    "BAD_KEY": (reply("BAD_KEY"), "AccountError", "API key"),
    "NO_NUMBERS json": (reply('{"status": "error", "message": "NO_NUMBERS"}'), "NoNumbersError", ""),
    "BANNED with a date": (reply("BANNED:'2025-12-31 23:59:59'"), "BannedError", "2025-12-31"),
    "ERROR_SQL": (reply("ERROR_SQL"), "ServerError", ""),
    "RENT_DIE": (reply('{"status": "error", "message": "RENT_DIE"}'), "RentalExpiredError", ""),
    "NO_ID_RENT": (reply("NO_ID_RENT"), "RentalNotFoundError", "no rental with this id (sent id='7')"),
    "unknown code": (reply("SOMETHING_NEW"), "UnknownCodeError", "SOMETHING_NEW"),
    "echoed key, WRONG_KEY": (reply(f"WRONG_KEY:{CANARY_KEY}"), "UnknownCodeError", "***"),
    "echoed key, BANNED": (reply(f"BANNED:{CANARY_KEY}"), "BannedError", "***"),
    "echoed key past the cut": (reply("X" * 92 + ":" + CANARY_KEY), "UnknownCodeError", "XXXX"),
    "echoed key in JSON": (reply(f'{{"status": "error", "message": "BAD_KEY {CANARY_KEY}"}}'), "", ""),
    "HTML 502": (reply("<html>bad gateway</html>", "502 Bad Gateway"), "ServerError", "HTML"),
    "garbage": (reply("this is not the protocol\nat all"), "ServerError", "neither JSON"),
    "empty body": (reply(""), "ServerError", "empty body"),
    "JSON without a code": (reply('{"status": "error"}', "500 Internal Server Error"), "ServerError", ""),
    "oversized": (reply(b"x" * 5000), "TransportError", "exceeded 1024 bytes"),
    "oversized by declaration": (reply(b"x" * 2000), "TransportError", "exceeded 1024 bytes"),
    "broken gzip": (
        reply(b"this is not gzip", headers="Content-Encoding: gzip\r\n"),
        "TransportError",
        "could not be decoded",
    ),
    "gzip bomb": (
        reply(gzip.compress(b"x" * 200_000), headers="Content-Encoding: gzip\r\n"),
        "TransportError",
        "exceeded 1024 bytes",
    ),
    "redirect": (
        reply("", "302 Found", "Location: http://elsewhere.invalid/x\r\n"),
        "ServerError",
        "elsewhere",
    ),
    "trickling headers": (trickle_headers, "TransportError", "no complete answer within 1.5 s"),
    "endless 100 Continue": (endless_continue, "TransportError", "no complete answer within 1.5 s"),
    "trickling body": (trickle_body, "TransportError", "no complete answer within 1.5 s"),
    "silence": (silence, "TransportError", "no complete answer within 1.5 s"),
    "cut mid-body": (cut_mid_body, "TransportError", "the connection broke"),
    "closed at once": (close_at_once, "TransportError", "the connection broke"),
    "bad status line": (bad_status_line, "TransportError", ""),
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_both_transports_raise_the_same_error_without_the_key(hostile: HostileServer, name: str) -> None:
    behaviour, cls_name, fragment = ANSWERS[name]
    hostile.behaviour = behaviour
    error = _assert_same(_config(hostile.url(), max_response_bytes=1024))
    if cls_name:
        assert type(error).__name__ == cls_name, error
    assert fragment in str(error)


def test_a_refused_connection_is_not_sent_on_both(hostile: HostileServer) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    error = _assert_same(_config(f"http://127.0.0.1:{port}/stubs/handler_api.php"))
    assert error.code == "not_sent" and "connection refused" in str(error)


def test_tls_to_a_plain_http_server_fails_as_tls_on_both(hostile: HostileServer) -> None:
    hostile.behaviour = reply("STATUS_WAIT_CODE")
    error = _assert_same(_config(hostile.url("https")))
    assert "TLS failed" in str(error) and error.code == "not_sent"


def test_a_dead_http_proxy_fails_as_a_proxy_failure_on_both(hostile: HostileServer) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    error = _assert_same(_config(hostile.url(), proxy=f"http://127.0.0.1:{port}"))
    assert "proxy" in str(error) and error.code == "not_sent"


def test_a_working_http_proxy_is_used_by_both(hostile: HostileServer) -> None:
    # The hostile server answers every request, a proxy's included: a request that reaches it
    # through the proxy setting gets its answer, and one that bypassed it would fail to connect.
    hostile.behaviour = reply("BAD_KEY")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    error = _assert_same(
        _config(f"http://127.0.0.1:{port}/stubs/handler_api.php", proxy=f"http://127.0.0.1:{hostile.port}")
    )
    assert type(error).__name__ == "AccountError"


@pytest.mark.parametrize("exempt", [False, True])
def test_both_transports_take_the_proxy_from_the_environment_unless_no_proxy_exempts(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch, exempt: bool
) -> None:
    hostile.behaviour = reply("BAD_KEY")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{hostile.port}")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1" if exempt else "")
    error = _assert_same(_config(f"http://127.0.0.1:{port}/stubs/handler_api.php"))
    if exempt:  # straight to the endpoint, where nothing listens
        assert error.code == "not_sent" and "connection refused" in str(error)
    else:  # through the proxy, which answers
        assert type(error).__name__ == "AccountError"


def test_both_transports_keep_the_key_out_of_debug_logs(
    hostile: HostileServer, caplog: pytest.LogCaptureFixture
) -> None:
    hostile.behaviour = reply("STATUS_WAIT_CODE")
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "urllib3.connectionpool", "aiohttp", "aiohttp.client"):
        caplog.set_level(logging.DEBUG, logger=name)
    config = _config(hostile.url())
    hook = SmsOnlineHook()
    hook.__dict__["config"] = config
    assert hook.get_rent_status(7) == []

    async def main() -> None:
        async with AsyncSmsOnlineClient(config) as client:
            assert await client.get_rent_status(7) == []

    asyncio.run(main())
    lines = "\n".join(record.getMessage() for record in caplog.records)
    assert "handler_api.php" in lines  # urllib3 wrote its request line
    assert "api_key=***" in lines
    assert_no_key(lines)
