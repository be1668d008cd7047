# One call as both transports see it: what is sent, how much may come back, what each failure
# is called, how an answer becomes a result or an error, and which calls are sent again.
"""Requests, answer caps, failures and retries, for both transports."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar
from urllib.parse import urlsplit

from airflow_provider_smsonline.exceptions import (
    OutcomeUnknownError,
    ServerError,
    SmsOnlineError,
    TransportError,
    UnknownCodeError,
)
from airflow_provider_smsonline.policy.config import MAX_PARAM_LENGTH, ClientConfig
from airflow_provider_smsonline.protocol.actions import CHARGING_ACTIONS
from airflow_provider_smsonline.protocol.answers import naming_sent

T = TypeVar("T")

# ----------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Request:
    """One call as a transport sends it: ``GET url?query``.

    :ivar action: the API action (for errors and logs).
    :ivar query: the query parameters, the key included: never log or show them.
    :ivar charging: the call charges money: never re-send it.
    """

    action: str
    url: str
    query: dict[str, str]
    charging: bool


def build_request(config: ClientConfig, params: Mapping[str, str]) -> Request:
    """The request for an action's parameters (``protocol.*_params``).

    :raises ValueError: a parameter is longer than :data:`MAX_PARAM_LENGTH`; nothing is sent.
    """
    for name, value in params.items():
        if len(value) > MAX_PARAM_LENGTH:
            raise ValueError(
                f"{name} is {len(value)} characters long; at most {MAX_PARAM_LENGTH} can be sent"
            )
    action = params.get("action", "?")
    return Request(
        action=action,
        url=config.endpoint,
        query={**params, "api_key": config.api_key},
        charging=action in CHARGING_ACTIONS,
    )


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def is_redirect(status: int, location: str | None) -> bool:
    """A redirect, which is refused: following it would send the key along."""
    return status in REDIRECT_STATUSES and bool(location)


class AnswerTooLarge(Exception):
    """An answer past ``max_response_bytes`` (raised by :class:`BodyCap`, turned into a failure)."""


class BodyCap:
    """Collects an answer's chunks, refusing it past ``limit`` bytes (decoded)."""

    __slots__ = ("_chunks", "_size", "limit")

    def __init__(self, limit: int, declared_length: str | None = None) -> None:
        self.limit = limit
        if declared_length and declared_length.strip().isdigit() and int(declared_length) > limit:
            raise AnswerTooLarge()
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, chunk: bytes) -> None:
        """Keep ``chunk``; :class:`AnswerTooLarge` once the answer passes the limit."""
        self._size += len(chunk)
        if self._size > self.limit:
            raise AnswerTooLarge()
        self._chunks.append(chunk)

    def body(self) -> bytes:
        """The answer so far."""
        return b"".join(self._chunks)


# ----------------------------------------------------------------------------- failures


class Failure(Enum):
    """What went wrong on the wire, as both transports classify it. ``sent`` is False when the
    request surely never reached the server (nothing can have been charged)."""

    CONNECT = ("could not connect", False)
    CONNECT_TIMEOUT = ("connecting took longer than {connect_timeout:g} s", False)
    TLS = ("TLS failed (certificate or handshake)", False)
    PROXY = ("the proxy failed", False)
    BAD_URL = ("the endpoint is not a valid http(s) URL", False)
    DEADLINE = ("no complete answer within {timeout:g} s", True)
    BROKEN = ("the connection broke before the whole answer arrived", True)
    PROTOCOL = ("the server broke the HTTP protocol", True)
    DECODING = ("the answer could not be decoded", True)
    TOO_LARGE = ("the answer exceeded {max_response_bytes} bytes", True)
    REDIRECT = ("the server redirected to {target}; redirects are not followed", True)
    POOL = ("no free connection in the pool within {pool_timeout:g} s", False)

    def __init__(self, wording: str, sent: bool) -> None:
        self.wording = wording
        self.sent = sent


#: Operating-system reasons named in a failure, by the exception found in its chain.
_REASONS: tuple[tuple[str, str], ...] = (
    ("ConnectionRefusedError", "connection refused"),
    ("ConnectionResetError", "connection reset"),
    ("gaierror", "host name not resolved"),
    ("SSLCertVerificationError", "certificate not trusted"),
)


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it carries: cause, context, ``reason`` and exception args
    (where requests, urllib3 and aiohttp keep the one underneath), each once."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for linked in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(linked, BaseException):
                pending.append(linked)
        pending.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))


def os_reason(exc: BaseException) -> str:
    """A fixed phrase for the operating-system cause in ``exc``'s chain, or ``""``.

    Only exception *types* are read, never their texts, which may hold the URL and so the key;
    both transports find the same phrase for the same cause.
    """
    for current in exception_chain(exc):
        names = {cls.__name__ for cls in type(current).__mro__}
        for name, phrase in _REASONS:
            if name in names:
                return phrase
    return ""


def failure(
    config: ClientConfig,
    action: str,
    kind: Failure,
    *,
    status: int = 0,
    reason: str = "",
    location: str = "",
    pool_timeout: float = 0.0,
) -> SmsOnlineError:
    """The typed error of a call that got no usable answer, in one wording; never holds the key.

    Build it outside an ``except`` block (or raise it ``from None``): the HTTP libraries'
    exceptions hold the URL, and with it the key, in their texts and attributes.
    """
    try:
        target = urlsplit(location).hostname or "elsewhere"
    except ValueError:
        target = "elsewhere"
    problem = kind.wording.format(
        timeout=config.timeout,
        connect_timeout=config.connect_timeout,
        max_response_bytes=config.max_response_bytes,
        target=target,
        pool_timeout=pool_timeout,
    )
    if reason and not kind.sent:
        # Only where the request never left: what a broken exchange looks like from the
        # operating system differs between the transports, and says nothing more.
        problem = f"{problem} ({reason})"
    message = config.redact(f"{action} to {urlsplit(config.endpoint).netloc} failed: {problem}")
    if kind is Failure.REDIRECT:
        return ServerError(message, code="redirect", http_status=status or None)
    return TransportError(message, code="transport" if kind.sent else "not_sent")


def scrub(error: SmsOnlineError, config: ClientConfig) -> SmsOnlineError:
    """Remove every form of the key from ``error`` (message, code, args); returns it."""
    error.message = config.redact(error.message)
    error.code = config.redact(error.code)
    error.args = tuple(config.redact(a) if isinstance(a, str) else a for a in error.args)
    return error


def settle(config: ClientConfig, request: Request, error: SmsOnlineError) -> SmsOnlineError:
    """The error a caller sees: a refusal says which value was sent (:func:`naming_sent`), every
    error is scrubbed, and after a charging call anything but a refusal by the API (an unknown
    code, a broken or unreadable answer, a failure after the request left) becomes
    :class:`OutcomeUnknownError`."""
    naming_sent(error, request.query)
    scrub(error, config)
    if not request.charging:
        return error
    if isinstance(error, TransportError) and error.code == "not_sent":
        return error
    if isinstance(error, UnknownCodeError) or (
        isinstance(error, ServerError) and error.code in ("transport", "bad_response")
    ):
        return OutcomeUnknownError(
            f"{request.action} may have succeeded and been charged: {error.message}. "
            + (
                "An activation may exist; check get_active_activations() before trying again"
                if request.action.startswith("getNumber")
                else "A rental may exist; check get_rent_list() before trying again"
            ),
            code=error.code,
            action=request.action,
            http_status=error.http_status,
        )
    return error


def conclude(status: int, body: bytes, config: ClientConfig, parse: Callable[[int, bytes], T]) -> T:
    """Parse an answer that arrived whole, with the key removed from the body first; the
    parser's typed error goes to the caller, which passes it through :func:`settle`."""
    return parse(status, config.redact_body(body))


def retry_delay(config: ClientConfig, request: Request, error: SmsOnlineError, attempt: int) -> float | None:
    """Seconds to wait before re-sending after ``error`` on try ``attempt`` (1-based), or ``None``.

    Only calls that charge nothing are re-sent, only on server and network trouble, never after a
    redirect (re-sending would only hand the key to the server again).
    """
    if request.charging or attempt > config.read_retries:
        return None
    if not isinstance(error, ServerError) or error.code == "redirect":
        return None
    return float(config.retry_backoff * 2 ** (attempt - 1))
