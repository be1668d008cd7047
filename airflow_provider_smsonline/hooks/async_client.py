# The async transport the triggerer uses: one aiohttp connection pool per event loop and
# endpoint, shared by every waiting trigger. It only moves bytes: what is sent, the caps and the
# wording of every failure are policy.py's, parsing is protocol.py's.
"""Async SMS.online client for triggers, on ``aiohttp``.

Thousands of triggers may wait in one triggerer. Each :class:`AsyncSmsOnlineClient` borrows
the process's shared ``aiohttp.ClientSession`` for its event loop and endpoint (at most
:data:`MAX_CONNECTIONS` connections, kept alive), so waiting costs one pool, not one per
trigger. The last client to close closes the pool. aiohttp was chosen by measurement: a poll
costs the triggerer about a fifth of the CPU of a bare httpx GET (``make bench``).

The rules are the sync hook's, from :mod:`airflow_provider_smsonline.policy`: a whole call ends
within the connection's ``timeout`` (connecting, headers and body alike), a size cap, no
redirect followed, the key removed from the answer before it is parsed, and every failure
raised as the same typed error with the same words, carrying no aiohttp exception as its cause
or context.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

import aiohttp

from airflow_provider_smsonline import metrics, policy, protocol
from airflow_provider_smsonline._compat import aget_connection
from airflow_provider_smsonline.exceptions import SmsOnlineError
from airflow_provider_smsonline.policy import AnswerTooLarge, BodyCap, ClientConfig, Failure, Request

if TYPE_CHECKING:
    from airflow.sdk.definitions.connection import Connection

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Connections one shared pool opens at most (per event loop and endpoint); more requests wait
#: for a free one (within their time budget).
MAX_CONNECTIONS = 16
#: Seconds an idle kept-alive connection stays open.
KEEPALIVE_EXPIRY = 5.0


# ----------------------------------------------------------------------------- the shared pools


@dataclass
class _Pool:
    http: aiohttp.ClientSession
    proxy: str | None
    users: int = 0


_PoolKey = tuple[str, bool, "str | None", "str | None"]

# Per event loop (dropped with the loop), per transport settings: the shared session. The key is
# not part of the map's key: it travels per request, so rentals of different accounts on the
# same endpoint share a pool too.
_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_PoolKey, _Pool]] = (
    weakref.WeakKeyDictionary()
)


def _pool_key(config: ClientConfig) -> _PoolKey:
    return (config.endpoint, config.verify_ssl, config.ca_file(), config.proxy)


def _new_http_client(config: ClientConfig) -> _Pool:
    """A new pooled session for ``config``'s endpoint, TLS and proxy (called once per pool)."""
    tls: ssl.SSLContext | bool = False
    ca_file = config.ca_file()
    if ca_file:
        tls = ssl.create_default_context(cafile=ca_file)
    limits: dict[str, Any] = {"limit": MAX_CONNECTIONS, "keepalive_timeout": KEEPALIVE_EXPIRY, "ssl": tls}
    http_proxy = config.effective_proxy()
    connector: aiohttp.BaseConnector
    if http_proxy and http_proxy.startswith("socks"):
        try:  # the optional socks extra
            from aiohttp_socks import ProxyConnector
        except ImportError:
            raise ValueError(
                "connection extra proxy is a socks5:// URL, which needs the aiohttp-socks package "
                "(pip install 'airflow-provider-smsonline[socks]')"
            ) from None
        connector = ProxyConnector.from_url(http_proxy.replace("socks5h://", "socks5://", 1), **limits)
        http_proxy = None
    else:
        connector = aiohttp.TCPConnector(**limits)
    policy.guard_http_loggers()
    session = aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": policy.USER_AGENT},
        cookie_jar=aiohttp.DummyCookieJar(),
        # The environment's proxy is read once above (ClientConfig.effective_proxy); aiohttp's
        # trust_env would re-read it and ~/.netrc in a thread on every request.
        trust_env=False,
    )
    return _Pool(session, http_proxy)


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
    fields = await aget_connection(conn_id)
    return _FetchedConnection(
        conn_id=conn_id,
        host=fields["host"],
        port=fields["port"],
        password=fields["password"],
        extra_dejson=fields["extras"],
    )


async def _register_secrets(config: ClientConfig) -> None:
    """Mask every form of the key in logs, with the async masker when there is one."""
    try:  # a name Airflow 3.2 added: looked up where it is used
        from airflow.sdk.log import amask_secret
    except ImportError:  # Airflow 3.1
        await _register_secrets_without_amask(config)
        return
    for form in config.secret_forms():
        await amask_secret(form)


async def _register_secrets_without_amask(config: ClientConfig) -> None:
    # Airflow 3.1's mask_secret tells the triggerer's supervisor through async_to_sync: from a
    # worker thread that runs on a new event loop and reads the runner's channel alongside the
    # runner ("Response read out of order"), which ends every trigger of the triggerer. In a
    # triggerer, mask in this process here and send the supervisor its copy on this loop.
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    channel: Any = getattr(runner, "SUPERVISOR_COMMS", None)
    if type(channel).__name__ != "TriggerCommsDecoder":
        await asyncio.to_thread(config.register_secrets)
        return
    # only on Airflow 3.1, in a triggerer
    from airflow.sdk.execution_time.comms import MaskSecret
    from airflow.sdk.log import mask_secret

    for form in config.secret_forms():
        mask_secret(form)  # on the loop's thread its own message to the supervisor is dropped
        await channel.asend(MaskSecret(value=form, name=None))


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
        self._timeout = aiohttp.ClientTimeout(total=config.timeout, sock_connect=config.connect_timeout)

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
            problem = policy.redact(str(error), conn.password)
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
            pool = pools[key] = _new_http_client(self.config)
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
        await pool.http.close()

    async def __aenter__(self) -> AsyncSmsOnlineClient:
        self._acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ the wire

    async def _exchange(self, request: Request) -> tuple[int, bytes]:
        """Send one request; return (status, body) or raise the policy's typed error."""
        config = self.config
        pool = self._acquire()
        kind: Failure
        reason = location = ""
        status = 0
        try:
            async with pool.http.get(
                request.url,
                params=request.query,
                allow_redirects=False,
                proxy=pool.proxy,
                timeout=self._timeout,
            ) as response:
                status = response.status
                location = response.headers.get("Location", "")
                if policy.is_redirect(status, location):
                    kind = Failure.REDIRECT
                else:
                    cap = BodyCap(config.max_response_bytes, response.headers.get("Content-Length"))
                    async for chunk in response.content.iter_any():
                        cap.add(chunk)
                    return status, cap.body()
        except AnswerTooLarge:
            kind = Failure.TOO_LARGE
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            kind = _classify(exc)
            reason = policy.os_reason(exc)
        # Raised outside the except blocks: the error keeps no aiohttp exception as its cause or
        # context, whose request info holds the URL and so the key.
        raise policy.failure(config, request.action, kind, status=status, reason=reason, location=location)

    async def _call(self, params: Mapping[str, str], parse: Callable[[int, bytes], T]) -> T:
        config = self.config
        request = policy.build_request(config, params)
        started = time.monotonic()
        try:
            status, body = await self._exchange(request)
            result = policy.conclude(status, body, config, parse)
        except SmsOnlineError as error:
            problem = policy.settle(config, request, error)
            metrics.api_call(request.action, time.monotonic() - started, problem)
        else:
            log.debug("%s answered in %.3f s", request.action, time.monotonic() - started)
            metrics.api_call(request.action, time.monotonic() - started)
            return result
        raise problem

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

    async def get_status(self, activation_id: int, *, v2: bool = False) -> protocol.ActivationStatus:
        """An activation's state (getStatus; getStatusV2 also gives the SMS text).

        :raises ActivationNotFoundError: ``NO_ACTIVATION``.
        :raises ServerError: the server or the network failed (retryable).
        """
        return await self._call(protocol.get_status_params(activation_id, v2=v2), protocol.parse_status)

    async def get_active_activations(self) -> list[protocol.ActiveActivation]:
        """Every active activation of the account with the codes received so far
        (getActiveActivations, one call whatever their number); none is ``[]``.

        :raises ServerError: the server or the network failed (retryable).
        """
        return await self._call(protocol.get_active_activations_params(), protocol.parse_active_activations)

    async def get_balance(self) -> Decimal:
        """The account's balance (getBalance), e.g. ``Decimal('123.45')``; a cheap proof of the key."""
        return await self._call(protocol.get_balance_params(), protocol.parse_balance)


# ----------------------------------------------------------------------------- helpers


def _classify(exc: BaseException) -> Failure:
    """The policy's name for an aiohttp failure."""
    if isinstance(exc, aiohttp.ServerTimeoutError) and "connect" in type(exc).__name__.lower():
        return Failure.CONNECT_TIMEOUT
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return Failure.DEADLINE
    for cls, kind in (
        (aiohttp.ClientConnectorCertificateError, Failure.TLS),
        (aiohttp.ClientSSLError, Failure.TLS),
        (aiohttp.ClientProxyConnectionError, Failure.PROXY),
        (aiohttp.ClientHttpProxyError, Failure.PROXY),
        (aiohttp.ClientConnectorError, Failure.CONNECT),
        (aiohttp.InvalidURL, Failure.BAD_URL),
        (aiohttp.ServerDisconnectedError, Failure.BROKEN),
        (aiohttp.ClientPayloadError, Failure.BROKEN),
        (aiohttp.ClientResponseError, Failure.PROTOCOL),
    ):
        if isinstance(exc, cls):
            if kind is Failure.BROKEN and _decoding_failed(exc):
                return Failure.DECODING
            return kind
    if type(exc).__module__.startswith("python_socks"):
        return Failure.PROXY
    if isinstance(exc, ValueError):  # a URL that yarl or the proxy setup refused
        return Failure.BAD_URL
    return Failure.BROKEN


def _decoding_failed(exc: BaseException) -> bool:
    return any(
        type(e).__name__ == "ContentEncodingError" or "zlib" in type(e).__module__
        for e in policy.exception_chain(exc)
    )
