# The sync transport: moves one request's bytes over a requests.Session and nothing more. What is
# sent, the caps and every error's wording are policy.py's; this module only classifies what
# requests and urllib3 raise, and ends a call that outlives its time budget.
"""A requests-based transport for :class:`~airflow_provider_smsonline.hooks.smsonline.SmsOnlineHook`.

requests' timeouts bound each wait for a byte, not a call: a server that sends its status line
or its headers a byte a second (or ``100 Continue`` forever) would hold a worker for good. A
single watchdog thread per process shuts down the socket of any call that passes its deadline,
so every call ends within the connection's ``timeout``, whatever the server sends or withholds.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import socket
import threading
import time
from functools import cache
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from airflow_provider_smsonline import policy
from airflow_provider_smsonline.policy import AnswerTooLarge, BodyCap, ClientConfig, Failure, Request

#: How soon the watchdog looks again at a call whose socket was not yet open at its deadline.
_RECHECK_SECONDS = 0.2


class _Call:
    """One call in flight: its deadline and the connection it got from the pool."""

    __slots__ = ("conn", "deadline", "done", "expired", "sock")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.conn: Any = None
        self.sock: socket.socket | None = None
        self.done = False
        self.expired = False

    def expire(self) -> bool:
        """Cut the call off; False when its socket is not open yet (look again soon)."""
        self.expired = True
        sock = self.sock or getattr(self.conn, "sock", None)
        if sock is None:
            return False
        # socket.socket's own shutdown: an SSLSocket's would first drop its TLS object,
        # under the feet of the thread reading from it.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        return True


class _Watchdog:
    """One daemon thread for the process that cuts off calls past their deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Call]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, call: _Call) -> None:
        with self._cond:
            heapq.heappush(self._heap, (call.deadline, next(self._order), call))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="smsonline-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is call:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][2].done:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    delay = self._heap[0][0] - time.monotonic()
                    if delay <= 0:
                        call = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(delay)
            if not call.done and not call.expire():
                call.deadline = time.monotonic() + _RECHECK_SECONDS
                self.watch(call)


_WATCHDOG = _Watchdog()
_CURRENT = threading.local()


@cache
def _tracking(pool_class: type) -> type:
    """``pool_class`` that hands each connection it lends to the thread's current call."""

    class Tracking(pool_class):  # type: ignore[misc, valid-type]
        def _get_conn(self, timeout: float | None = None) -> Any:
            conn = super()._get_conn(timeout)
            call = getattr(_CURRENT, "call", None)
            if call is not None:
                call.conn = conn
            return conn

    Tracking.__name__ = Tracking.__qualname__ = f"Tracking{pool_class.__name__}"
    return Tracking


def _track(manager: Any) -> None:
    manager.pool_classes_by_scheme = {
        scheme: _tracking(cls) for scheme, cls in manager.pool_classes_by_scheme.items()
    }


def new_session(config: ClientConfig) -> requests.Session:
    """A ``requests.Session`` for ``config``: TLS and proxy as the policy says, no retries of its
    own, and connections the watchdog can cut off."""

    class _Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            _track(self.poolmanager)

        def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
            fresh = proxy not in self.proxy_manager
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
            if fresh:
                _track(manager)
            return manager

    session = requests.Session()
    adapter = _Adapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.verify = config.ca_file() or False
    if config.proxy:
        session.proxies = {"http": config.proxy, "https": config.proxy}
    session.headers["User-Agent"] = policy.USER_AGENT
    policy.guard_http_loggers()
    return session


def send_settings(session: requests.Session, config: ClientConfig) -> dict[str, Any]:
    """``proxies``, ``verify``, ``cert`` and ``stream`` for each request, as ``Session.get`` works
    them out (the environment's HTTP(S)_PROXY / NO_PROXY fill in what the connection leaves
    unset), once per session rather than on every call."""
    return dict(
        session.merge_environment_settings(config.endpoint, dict(session.proxies), True, session.verify, None)
    )


def exchange(
    session: requests.Session, settings: dict[str, Any], config: ClientConfig, request: Request
) -> tuple[int, bytes]:
    """Send ``request``; its (status, body), or raise the policy's typed error (never the key)."""
    call = _Call(time.monotonic() + config.timeout)
    _CURRENT.call = call
    _WATCHDOG.watch(call)
    kind: Failure | None = None
    reason = location = ""
    status = 0
    try:
        prepared = session.prepare_request(requests.Request("GET", request.url, params=request.query))
        with session.send(
            prepared, timeout=(config.connect_timeout, config.timeout), allow_redirects=False, **settings
        ) as response:
            status = response.status_code
            location = response.headers.get("Location", "")
            if policy.is_redirect(status, location):
                kind = Failure.REDIRECT
            else:
                return status, _read(response, config, call)
    except AnswerTooLarge:
        kind = Failure.TOO_LARGE
    except requests.exceptions.RequestException as exc:
        kind = Failure.DEADLINE if call.expired else _classify(exc)
        reason = "" if call.expired else policy.os_reason(exc)
    except OSError as exc:  # a socket cut off by the watchdog while a body was read
        kind = Failure.DEADLINE if call.expired else Failure.BROKEN
        reason = "" if call.expired else policy.os_reason(exc)
    finally:
        call.done = True
        _CURRENT.call = None
    # Raised outside the except blocks: the error carries no cause or context from requests,
    # whose texts embed the URL and so the key.
    raise policy.failure(config, request.action, kind, status=status, reason=reason, location=location)


def _read(response: requests.Response, config: ClientConfig, call: _Call) -> bytes:
    """The body (decoded), refused past ``max_response_bytes``; ``read1`` returns what has arrived,
    so a body cut off by the watchdog or past the deadline ends at once."""
    cap = BodyCap(config.max_response_bytes, response.headers.get("Content-Length"))
    raw = response.raw
    # An answer that closes its connection takes the socket from the connection object
    # (http.client hands it to the response): the watchdog needs it from there.
    call.sock = _response_socket(raw)
    while True:
        try:
            chunk = raw.read1(65536, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError:
            raise requests.exceptions.ReadTimeout() from None
        except urllib3.exceptions.DecodeError:
            raise requests.exceptions.ContentDecodingError() from None
        except (urllib3.exceptions.HTTPError, OSError):
            raise requests.exceptions.ChunkedEncodingError() from None
        if not chunk:
            if call.expired:  # the watchdog shut the socket: an end, but not the answer's
                raise requests.exceptions.ReadTimeout()
            return cap.body()
        cap.add(chunk)
        if time.monotonic() > call.deadline:
            call.expired = True
            raise requests.exceptions.ReadTimeout()


def _response_socket(raw: Any) -> socket.socket | None:
    """The socket an urllib3 response reads from, where it can be found."""
    fp = getattr(getattr(raw, "_fp", None), "fp", None)
    sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _classify(exc: Exception) -> Failure:
    """The policy's name for a requests failure."""
    errors = requests.exceptions
    for cls, kind in (
        (errors.ConnectTimeout, Failure.CONNECT_TIMEOUT),
        (errors.ReadTimeout, Failure.DEADLINE),
        (errors.SSLError, Failure.TLS),
        (errors.ProxyError, Failure.PROXY),
        (errors.InvalidURL, Failure.BAD_URL),
        (errors.MissingSchema, Failure.BAD_URL),
        (errors.InvalidSchema, Failure.BAD_URL),
        (errors.ContentDecodingError, Failure.DECODING),
        (errors.ChunkedEncodingError, Failure.BROKEN),
    ):
        if isinstance(exc, cls):
            return kind
    if isinstance(exc, errors.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(reason, NewConnectionError):
            return Failure.CONNECT
        if _protocol_violation(exc):
            return Failure.PROTOCOL
        return Failure.BROKEN
    return Failure.BROKEN


def _protocol_violation(exc: BaseException) -> bool:
    """True when http.client refused what the server sent (a bad status line, huge headers)."""
    return any(
        isinstance(e, http.client.HTTPException) and not isinstance(e, http.client.RemoteDisconnected)
        for e in policy.exception_chain(exc)
    )
