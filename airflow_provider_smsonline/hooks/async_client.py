# The async client the triggerer uses: one httpx connection pool per event loop and endpoint,
# shared by every waiting trigger, with the sync hook's safety rules. Parsing is protocol.py's.
"""Async SMS.online client for triggers, on ``httpx.AsyncClient``.

Thousands of triggers may wait in one triggerer. Each :class:`AsyncSmsOnlineClient` borrows
the process's shared ``httpx.AsyncClient`` for its event loop and endpoint (at most
:data:`MAX_CONNECTIONS` connections, kept alive), so waiting costs one pool, not one per
trigger. The last client to close closes the pool.

Safety, as in :class:`~airflow_provider_smsonline.hooks.smsonline.SmsOnlineHook`: connect and
read timeouts, a streamed size cap (``max_response_bytes``), no redirect followed, and every
failure raised as a typed :class:`~airflow_provider_smsonline.exceptions.SmsOnlineError` whose
message never holds the key and which carries no httpx exception as its cause or context.
httpx's own request log line is stripped of the query string (where the key travels).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import quote, quote_plus, urlsplit

import httpx

from airflow_provider_smsonline import protocol
from airflow_provider_smsonline.hooks.smsonline import AnswerLimitExceeded, ClientConfig, redirect_problem

if TYPE_CHECKING:
    from airflow.sdk.definitions.connection import Connection

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Connections one shared pool opens at most (per event loop and endpoint). httpcore's pool spends
#: time per request on every connection it holds (more than linearly), so more costs CPU in a burst
#: of polls; 16 still serve 160 polls/s at 100 ms an answer (1,600 waits polling every 10 s).
MAX_CONNECTIONS = 16
#: Seconds an idle kept-alive connection stays open. Short (httpx's default): httpcore checks every
#: idle connection of the pool at each request and answer, so after a burst (a triggerer starting
#: 1,000 waits at once) the pool should shrink back to the connections steady polling keeps busy.
KEEPALIVE_EXPIRY = 5.0
#: Seconds a request may wait for a free connection of the pool.
POOL_TIMEOUT = 60.0


# ----------------------------------------------------------------------------- the shared pools


@dataclass
class _Pool:
    http: httpx.AsyncClient
    # Requests beyond the pool's connections wait here, not in httpcore's queue, whose
    # bookkeeping grows with the square of the waiters (1,000 triggers starting at once).
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONNECTIONS))
    users: int = 0


_PoolKey = tuple[str, bool, "str | None", "str | None"]

# Per event loop (dropped with the loop), per transport settings: the shared client. The key is
# not part of the map's key: it travels per request, so rentals of different accounts on the
# same endpoint share a pool too.
_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_PoolKey, _Pool]] = (
    weakref.WeakKeyDictionary()
)


def _pool_key(config: ClientConfig) -> _PoolKey:
    return (config.endpoint, config.verify_ssl, config.ca_bundle, config.proxy)


def _new_http_client(config: ClientConfig) -> httpx.AsyncClient:
    """A new pooled ``httpx.AsyncClient`` for ``config``'s endpoint (called once per pool)."""
    verify: ssl.SSLContext | bool = config.verify_ssl
    if config.verify_ssl and config.ca_bundle:
        verify = ssl.create_default_context(cafile=config.ca_bundle)
    try:
        return httpx.AsyncClient(
            verify=verify,
            proxy=config.proxy,
            follow_redirects=False,
            limits=httpx.Limits(
                max_connections=MAX_CONNECTIONS,
                max_keepalive_connections=MAX_CONNECTIONS,
                keepalive_expiry=KEEPALIVE_EXPIRY,
            ),
            headers={"User-Agent": "airflow-provider-smsonline"},
        )
    except ImportError:
        raise ValueError(
            "connection extra proxy is a socks5:// URL, which needs the socksio package "
            "(pip install 'httpx[socks]')"
        ) from None


class _DropQueryFromLog(logging.Filter):
    """httpx logs every request's full URL at INFO; the query string holds the API key."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                arg.copy_with(query=None) if isinstance(arg, httpx.URL) and arg.query else arg
                for arg in record.args
            )
        return True


def _quiet_httpx_urls() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _DropQueryFromLog) for f in logger.filters):
        logger.addFilter(_DropQueryFromLog())


# ----------------------------------------------------------------------------- connection lookup


@dataclass(frozen=True)
class _FetchedConnection:
    """The fields ClientConfig reads, with the extras already fetched without blocking the loop."""

    conn_id: str
    host: str | None
    port: int | None
    password: str | None
    extra_dejson: dict[str, Any]


async def _fetch_connection(conn_id: str) -> _FetchedConnection:
    """Look the connection up without blocking the event loop (nor deadlocking the triggerer)."""
    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

    try:
        from airflow.providers.common.compat.connection import get_async_connection
    except ImportError:  # pragma: no cover - common-compat older than get_async_connection
        conn: Connection = await SmsOnlineHook.aget_connection(conn_id)
    else:
        try:
            conn = await get_async_connection(conn_id, hook=SmsOnlineHook)
        except ImportError:  # Airflow 3.1 outside a supervised process (no SUPERVISOR_COMMS)
            conn = await asyncio.to_thread(SmsOnlineHook.get_connection, conn_id)
    try:
        from airflow.providers.common.compat.connection import get_async_extra_dejson
    except ImportError:  # common-compat before 1.21 (Airflow 3.1)
        if hasattr(conn, "aextra_dejson"):
            extras = await conn.aextra_dejson()
        else:
            extras = await asyncio.to_thread(lambda: conn.extra_dejson)
    else:
        extras = await get_async_extra_dejson(conn)
    return _FetchedConnection(
        conn_id=conn_id,
        host=conn.host,
        port=conn.port,
        password=conn.password,
        extra_dejson=dict(extras or {}),
    )


async def _register_secrets(config: ClientConfig) -> None:
    """Mask every form of the key in logs, with the async masker when there is one."""
    try:
        from airflow.sdk.log import amask_secret
    except ImportError:  # pragma: no cover - Airflow before amask_secret
        await asyncio.to_thread(config.register_secrets)
        return
    for form in config.secret_forms():
        await amask_secret(form)


def _without_secret(text: str, secret: str | None) -> str:
    if secret:
        for form in dict.fromkeys((secret, quote_plus(secret), quote(secret, safe=""))):
            text = text.replace(form, "***")
    return text


# ----------------------------------------------------------------------------- the client


class AsyncSmsOnlineClient:
    """SMS.online calls for coroutines, on the process's shared connection pool.

    One attempt per call: the caller decides about retrying (the trigger backs off). Use as an
    async context manager, or call :meth:`aclose` when done, so that the shared pool can close
    after its last user::

        async with await AsyncSmsOnlineClient.from_conn_id("smsonline_default") as client:
            messages = await client.get_rent_status(1049)

    :param config: the validated connection settings (see :meth:`ClientConfig.from_connection`).
    """

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: _Pool | None = None

    @classmethod
    async def from_conn_id(cls, conn_id: str) -> AsyncSmsOnlineClient:
        """A client on the Airflow connection ``conn_id``, looked up without blocking the loop.

        :param conn_id: the SMS.online connection's id.
        :raises AirflowNotFoundException: no such connection.
        :raises ValueError: the connection's fields are not valid (message names the field).
        """
        conn = await _fetch_connection(conn_id)
        try:
            config = ClientConfig.from_connection(cast("Connection", conn))
        except ValueError as error:
            problem = _without_secret(str(error), conn.password)
        else:
            await _register_secrets(config)
            if not config.verify_ssl:
                log.warning(
                    "TLS certificate verification is OFF for connection %r (extra verify_ssl=false): "
                    "the API key can be read by anyone between the triggerer and %s",
                    conn_id,
                    urlsplit(config.endpoint).hostname,
                )
            return cls(config)
        raise ValueError(problem)

    # ------------------------------------------------------------------ the shared pool

    def _acquire(self) -> _Pool:
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._loop is loop:
            return self._pool
        if self._pool is not None:
            raise RuntimeError("an AsyncSmsOnlineClient cannot move between event loops")
        pools = _POOLS.setdefault(loop, {})
        key = _pool_key(self.config)
        pool = pools.get(key)
        if pool is None:
            _quiet_httpx_urls()
            pool = pools[key] = _Pool(_new_http_client(self.config))
        pool.users += 1
        self._loop, self._pool = loop, pool
        return pool

    async def aclose(self) -> None:
        """Stop using the shared pool; the last user closes it. Safe to call twice."""
        pool, loop = self._pool, self._loop
        self._pool = self._loop = None
        if pool is None or loop is None:
            return
        pool.users -= 1
        if pool.users > 0:
            return
        pools = _POOLS.get(loop, {})
        key = _pool_key(self.config)
        if pools.get(key) is pool:
            del pools[key]
        await pool.http.aclose()

    async def __aenter__(self) -> AsyncSmsOnlineClient:
        self._acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ the wire

    async def _exchange(self, params: Mapping[str, str]) -> tuple[int, bytes]:
        """Send one request; return (status, body) or raise an error that never holds the key."""
        config = self.config
        pool = self._acquire()
        action = params.get("action", "?")
        timeout = httpx.Timeout(config.timeout, connect=config.connect_timeout, pool=POOL_TIMEOUT)
        status = 0
        sent = True
        problem = ""
        try:
            async with (
                pool.slots,
                pool.http.stream(
                    "GET",
                    config.endpoint,
                    params={**params, "api_key": config.api_key},
                    timeout=timeout,
                    follow_redirects=False,
                ) as response,
            ):
                status = response.status_code
                if response.is_redirect:
                    problem = redirect_problem(response.headers.get("Location", ""))
                else:
                    body = await _read_capped(response, config.max_response_bytes, config.timeout)
                    return status, body
        except AnswerLimitExceeded as exceeded:
            problem = str(exceeded)
            status = 0
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            sent = not _never_sent(exc)
            problem = _describe(exc, config)
            status = 0
        # Raised outside the except blocks: the error keeps no httpx exception as its cause or
        # context, whose request (and text, at times) holds the URL and so the key.
        raise config.failure(action, problem, status=status, sent=sent)

    async def _call(self, params: Mapping[str, str], parse: Callable[[int, bytes], T]) -> T:
        started = time.monotonic()
        status, body = await self._exchange(params)
        result = parse(status, body)
        log.debug("%s answered in %.3f s", params.get("action"), time.monotonic() - started)
        return result

    # ------------------------------------------------------------------ the API

    async def get_rent_status(self, rent_id: int, page: int = 0, size: int = 10) -> list[protocol.Sms]:
        """The SMS received on a rental, newest first (getRentStatus); none yet is ``[]``.

        :param rent_id: the rental's id.
        :param page: 0 for the newest SMS, 1 for the ``size`` before them, and so on.
        :param size: SMS per page, at least 1.
        :raises RentalExpiredError: the rental has ended (``RENT_DIE``, ``STATUS_FINISH`` …).
        :raises ServerError: the server or the network failed (retryable).
        """
        zone = self.config.server_timezone
        return await self._call(
            protocol.get_rent_status_params(rent_id, page, size),
            lambda status, body: protocol.parse_rent_status(status, body, zone),
        )

    async def get_balance(self) -> Decimal:
        """The account's balance (getBalance), e.g. ``Decimal('123.45')``; a cheap proof of the key."""
        return await self._call(protocol.get_balance_params(), protocol.parse_balance)


# ----------------------------------------------------------------------------- helpers


async def _read_capped(response: httpx.Response, limit: int, seconds: float) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise AnswerLimitExceeded.too_large(limit)
    deadline = time.monotonic() + seconds
    chunks = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise AnswerLimitExceeded.too_large(limit)
        if time.monotonic() > deadline:
            raise AnswerLimitExceeded.too_slow(seconds)
        chunks.append(chunk)
    return b"".join(chunks)


def _never_sent(exc: Exception) -> bool:
    """True when the request surely never reached the server (connect failure, bad URL)."""
    return isinstance(
        exc,
        (
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.PoolTimeout,
            httpx.ProxyError,
            httpx.UnsupportedProtocol,
            httpx.InvalidURL,
        ),
    )


def _os_reason(exc: BaseException) -> str:
    """The operating system's reason (``Connection refused`` …) from an exception's chain.

    Only ``strerror``/TLS reasons are read: they never hold the URL, unlike httpx's texts.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError) and current.reason:
            return f"TLS: {current.reason}"
        if isinstance(current, OSError) and current.strerror:
            return str(current.strerror)
        current = current.__cause__ or current.__context__
    return ""


def _describe(exc: Exception, config: ClientConfig) -> str:
    """A short description of an httpx failure without its URL."""
    for kind, text in (
        (httpx.ConnectTimeout, f"connecting took longer than {config.connect_timeout:g} s"),
        (httpx.ReadTimeout, f"no answer within {config.timeout:g} s"),
        (httpx.WriteTimeout, "sending the request timed out"),
        (httpx.PoolTimeout, f"no free connection in the pool within {POOL_TIMEOUT:g} s"),
        (httpx.ProxyError, "the proxy failed"),
        (httpx.UnsupportedProtocol, "the endpoint's scheme is not http or https"),
        (httpx.InvalidURL, "the endpoint is not a valid URL"),
        (httpx.ConnectError, "could not connect"),
        (httpx.RemoteProtocolError, "the server broke the connection or the HTTP protocol"),
        (httpx.DecodingError, "the answer could not be decoded"),
        (httpx.ReadError, "the connection broke while the answer arrived"),
        (httpx.WriteError, "the connection broke while the request was sent"),
    ):
        if isinstance(exc, kind):
            reason = _os_reason(exc)
            return f"{text} ({reason})" if reason else text
    return type(exc).__name__
