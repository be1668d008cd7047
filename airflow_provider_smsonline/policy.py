# The request policy both transports obey, free of I/O: the sync hook (requests) and the async
# client (aiohttp) only move bytes; every rule about what is sent, how long and how much may come
# back, what a failure is called and where the key may never appear is written here once.
"""The request policy shared by :class:`~airflow_provider_smsonline.hooks.smsonline.SmsOnlineHook`
and :class:`~airflow_provider_smsonline.hooks.async_client.AsyncSmsOnlineClient`.

* :class:`ClientConfig`: a connection's settings, validated (each bad field named).
* :func:`build_request`: an action's parameters → the URL and query a transport sends.
* :class:`BodyCap`: the size cap on an answer; :attr:`ClientConfig.timeout` is the time budget
  of a whole call (connecting, sending, the status line, the headers and the body).
* :class:`Failure` and :func:`failure`: every transport failure as one typed error, one wording.
* :func:`conclude` and :func:`settle`: redact the body before it is parsed; settle the error
  of a charging call (anything but a refusal means the outcome is unknown).
* :func:`retry_delay`: which calls are re-sent, and when.
* :class:`KeyInUrlFilter`: keeps the key out of the HTTP libraries' debug lines.

The key is removed, in every form it can take (raw, form- and percent-encoded), from the body
before it is parsed, so nothing built from an answer (an error, a cut-off code, a log line) can
hold it or a part of it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timezone, tzinfo
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import SplitResult, quote, quote_plus, urlsplit, urlunsplit

from airflow_provider_smsonline.exceptions import (
    OutcomeUnknownError,
    ServerError,
    SmsOnlineError,
    TransportError,
    UnknownCodeError,
)

# Charging actions carry no idempotency key: never re-sent, and an unreadable answer to them
# means "the outcome is unknown".
from airflow_provider_smsonline.protocol.actions import CHARGING_ACTIONS, DEFAULT_ENDPOINT, ENDPOINT_PATH

if TYPE_CHECKING:
    from airflow.sdk.definitions.connection import Connection

T = TypeVar("T")

USER_AGENT = "airflow-provider-smsonline"

#: Defaults and bounds of the connection's extras.
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 3600.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
MAX_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DEFAULT_READ_RETRIES = 2
MAX_READ_RETRIES = 10
DEFAULT_RETRY_BACKOFF = 0.5
MAX_RETRY_BACKOFF = 60.0
#: The longest parameter value sent: servers refuse long URLs (HTTP 414) after the request left,
#: which on a charging call would read as "may have been charged".
MAX_PARAM_LENGTH = 1024


# ----------------------------------------------------------------------------- connection fields


def _extra(extras: Mapping[str, Any], name: str) -> Any:
    # Airflow 2 style forms prefixed extras with the connection type; accept both.
    if name in extras:
        return extras[name]
    return extras.get(f"extra__smsonline__{name}")


def _bool(name: str, value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"connection extra {name} must be true or false, got {value!r}")


def _number(
    name: str, value: Any, default: float, *, minimum: float, maximum: float, integer: bool = False
) -> Any:
    if value is None or value == "":
        return default
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(value) if integer else float(value)
        if integer and isinstance(value, float) and value != number:
            raise ValueError  # int(1.5) would quietly be 1
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or not math.isfinite(number) or not minimum <= number <= maximum:
        kind = "an integer" if integer else "a number"
        raise ValueError(
            f"connection extra {name} must be {kind} from {minimum:.15g} to {maximum:.15g}, "
            f"got {_short(value)}"
        )
    return number


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _without_userinfo(url: str) -> str:
    """A URL fit for an error message: a proxy's user and password are dropped."""
    scheme, _, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return _short(f"{scheme}://{rest}" if _ else url)


def connection_extras(conn: Connection) -> dict[str, Any]:
    """The connection's extras as a dict; ``ValueError`` when they are not a JSON object.

    Airflow's own ``extra_dejson`` turns extras that are not valid JSON into ``{}`` with a log
    line, which would silently put every setting back to its default.
    """
    raw = getattr(conn, "extra", None)
    if isinstance(raw, str) and raw.strip():
        try:
            extras = json.loads(raw)
        except ValueError:
            raise ValueError(
                f"connection {conn.conn_id!r} extra is not valid JSON: write a JSON object such as "
                '{"timeout": 20}'
            ) from None
    else:
        extras = getattr(conn, "extra_dejson", None) or {}
    if not isinstance(extras, dict):
        raise ValueError(
            f'connection {conn.conn_id!r} extra must be a JSON object such as {{"timeout": 20}}, '
            f"got a JSON {type(extras).__name__}"
        )
    return extras


def build_endpoint(host: str | None, port: int | None = None) -> str:
    """The handler_api.php URL from a connection's host and port.

    Empty host: the public endpoint. A bare host name gets ``https://`` and the
    ``/stubs/handler_api.php`` path; a full URL keeps its scheme and path. A port, when set,
    replaces the URL's port. Query strings and fragments are dropped.
    """
    host = (host or "").strip()
    if not host:
        host = DEFAULT_ENDPOINT
    if "://" not in host:
        host = "https://" + host
    parts: SplitResult | None
    try:
        parts = urlsplit(host)
        hostname = parts.hostname
        url_port = parts.port
    except ValueError:  # "http://[bad", a port that is not a number: urlsplit refuses them
        parts = hostname = url_port = None
    if parts is None or parts.scheme not in ("http", "https") or not hostname:
        raise ValueError(
            "connection host must be empty, a host name such as api.sms.online, or an "
            f"http(s) URL of handler_api.php, got {_short(host)}"
        )
    if port is not None and not (0 < int(port) < 65536):
        raise ValueError(f"connection port must be between 1 and 65535, got {port!r}")
    netloc_host = f"[{hostname}]" if ":" in hostname else hostname
    effective_port = port or url_port
    netloc = f"{netloc_host}:{effective_port}" if effective_port else netloc_host
    path = parts.path if parts.path not in ("", "/") else ENDPOINT_PATH
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def _proxy(value: Any) -> str | None:
    if value is None or value == "":
        return None
    url = str(value).strip()
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https", "socks5", "socks5h") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            "connection extra proxy must be an http://, https:// or socks5:// URL with a host, "
            f"got {_without_userinfo(url)}"
        )
    return url


def _ca_bundle(value: Any) -> str | None:
    if value is None or value == "":
        return None
    path = os.path.expanduser(str(value))
    if not os.path.isfile(path):
        raise ValueError(
            f"connection extra ca_bundle must be the path of a readable CA file, got {_short(value)}"
        )
    return path


def _zone(value: Any) -> tzinfo:
    if value in (None, "", "UTC", "utc"):
        return timezone.utc
    from zoneinfo import ZoneInfo

    try:
        return ZoneInfo(str(value))
    except Exception:
        raise ValueError(
            f"connection extra server_timezone must be an IANA time zone such as UTC or Europe/Moscow, "
            f"got {_short(value)}"
        ) from None


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs from an SMS.online connection, validated.

    Built by :meth:`from_connection`; the sync hook and the async client read it alike.

    :ivar endpoint: the handler_api.php URL.
    :ivar timeout: seconds a whole call may take, from connecting to the answer's last byte.
    :ivar connect_timeout: seconds connecting may take (at most ``timeout``).
    :ivar verify_ssl: verify the server's TLS certificate.
    :ivar ca_bundle: a CA file to verify it with, instead of the default store.
    :ivar proxy: an http(s):// or socks5:// proxy URL.
    :ivar max_response_bytes: larger answers are refused.
    :ivar read_retries: retries of calls that charge nothing (the sync hook's).
    """

    endpoint: str
    api_key: str
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    verify_ssl: bool = True
    ca_bundle: str | None = None
    proxy: str | None = None
    server_timezone: tzinfo = timezone.utc
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    read_retries: int = DEFAULT_READ_RETRIES
    retry_backoff: float = DEFAULT_RETRY_BACKOFF

    def __repr__(self) -> str:  # never print the key
        return f"ClientConfig(endpoint={self.endpoint!r}, api_key='***')"

    @classmethod
    def from_connection(cls, conn: Connection) -> ClientConfig:
        """Validate a connection: password is the API key, host/port the endpoint, extras the rest.

        :raises ValueError: naming the field and what is allowed; nothing has been sent.
        """
        api_key = (conn.password or "").strip()
        if not api_key:
            raise ValueError(
                f"connection {conn.conn_id!r} has no API key: put it in the connection's password "
                "(labelled 'API key' in the UI)"
            )
        extras = connection_extras(conn)
        timeout = _number(
            "timeout", _extra(extras, "timeout"), DEFAULT_TIMEOUT, minimum=0.1, maximum=MAX_TIMEOUT
        )
        verify_ssl = _bool("verify_ssl", _extra(extras, "verify_ssl"), True)
        ca_bundle = _ca_bundle(_extra(extras, "ca_bundle"))
        if ca_bundle and not verify_ssl:
            raise ValueError(
                "connection extras verify_ssl=false and ca_bundle contradict each other: remove "
                "ca_bundle to turn verification off, or verify_ssl to verify with the bundle"
            )
        return cls(
            endpoint=build_endpoint(conn.host, conn.port or None),
            api_key=api_key,
            timeout=timeout,
            connect_timeout=min(timeout, DEFAULT_CONNECT_TIMEOUT),
            verify_ssl=verify_ssl,
            ca_bundle=ca_bundle,
            proxy=_proxy(_extra(extras, "proxy")),
            server_timezone=_zone(_extra(extras, "server_timezone")),
            max_response_bytes=_number(
                "max_response_bytes",
                _extra(extras, "max_response_bytes"),
                DEFAULT_MAX_RESPONSE_BYTES,
                minimum=1024,
                maximum=MAX_MAX_RESPONSE_BYTES,
                integer=True,
            ),
            read_retries=_number(
                "read_retries",
                _extra(extras, "read_retries"),
                DEFAULT_READ_RETRIES,
                minimum=0,
                maximum=MAX_READ_RETRIES,
                integer=True,
            ),
            retry_backoff=_number(
                "retry_backoff",
                _extra(extras, "retry_backoff"),
                DEFAULT_RETRY_BACKOFF,
                minimum=0,
                maximum=MAX_RETRY_BACKOFF,
            ),
        )

    # ------------------------------------------------------------------ the key

    def secret_forms(self) -> tuple[str, ...]:
        """The key as it may appear anywhere: raw, form-encoded and percent-encoded."""
        return secret_forms(self.api_key)

    def redact(self, text: str) -> str:
        """``text`` with every form of the key replaced by ``***``."""
        return redact(text, self.api_key)

    def redact_body(self, body: bytes) -> bytes:
        """An answer's body with every form of the key replaced by ``***``, before anything reads it."""
        for form in self.secret_forms():
            encoded = form.encode("utf-8")
            if encoded in body:
                body = body.replace(encoded, b"***")
        return body

    def register_secrets(self) -> None:
        """Tell Airflow's log masker about every form of the key (it catches only the raw one)."""
        try:
            from airflow.sdk.log import mask_secret
        except ImportError:  # pragma: no cover - outside an Airflow runtime
            return
        for form in self.secret_forms():
            mask_secret(form)

    # ------------------------------------------------------------------ TLS

    def ca_file(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The CA file both transports verify with: ``ca_bundle``, else ``REQUESTS_CA_BUNDLE`` or
        ``CURL_CA_BUNDLE`` from the environment, else certifi's; ``None`` when verification is off."""
        if not self.verify_ssl:
            return None
        if self.ca_bundle:
            return self.ca_bundle
        env = os.environ if environ is None else environ
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            if env.get(name):
                return env[name]
        import certifi

        return str(certifi.where())


# ----------------------------------------------------------------------------- the key


def secret_forms(secret: str) -> tuple[str, ...]:
    """``secret`` as it may appear anywhere: raw, form-encoded and percent-encoded."""
    if not secret:
        return ()
    return tuple(dict.fromkeys((secret, quote_plus(secret), quote(secret, safe=""))))


def redact(text: str, secret: str | None) -> str:
    """``text`` with every form of ``secret`` replaced by ``***``."""
    for form in secret_forms(secret or ""):
        text = text.replace(form, "***")
    return text


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


def os_reason(exc: BaseException) -> str:
    """A fixed phrase for the operating-system cause in ``exc``'s chain, or ``""``.

    Only exception *types* are read, never their texts, which may hold the URL and so the key;
    both transports find the same phrase for the same cause.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        names = {cls.__name__ for cls in type(current).__mro__}
        for name, phrase in _REASONS:
            if name in names:
                return phrase
        for linked in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(linked, BaseException):
                pending.append(linked)
        pending.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
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
    """The error a caller sees: scrubbed, and after a charging call anything but a refusal by
    the API (an unknown code, a broken or unreadable answer, a failure after the request left)
    becomes :class:`OutcomeUnknownError`."""
    scrub(error, config)
    if not request.charging:
        return error
    if isinstance(error, TransportError) and error.code == "not_sent":
        return error
    if isinstance(error, UnknownCodeError) or (
        isinstance(error, ServerError) and error.code in ("transport", "bad_response")
    ):
        return OutcomeUnknownError(
            f"{request.action} may have succeeded and been charged: {error.message}. A rental may "
            "exist; check get_rent_list() before trying again",
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


# ----------------------------------------------------------------------------- logs

_KEY_IN_QUERY = re.compile(r"(api_key=)[^&\s\"'#]*")

#: The loggers of the HTTP libraries that write request lines (with the query) at DEBUG.
HTTP_LOGGERS = (
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.util.retry",
    "requests",
    "aiohttp.client",
    "aiohttp.internal",
    "httpx",
    "httpcore.http11",
    "httpcore.connection",
)


class KeyInUrlFilter(logging.Filter):
    """Rewrites a log record whose text holds ``api_key=…`` so that the value reads ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted is left to the handler
            return True
        if "api_key=" in message:
            record.msg = _KEY_IN_QUERY.sub(r"\1***", message)
            record.args = ()
        return True


def guard_http_loggers() -> None:
    """Put :class:`KeyInUrlFilter` on every logger of :data:`HTTP_LOGGERS` (once)."""
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, KeyInUrlFilter) for f in logger.filters):
            logger.addFilter(KeyInUrlFilter())
