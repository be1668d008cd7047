# The sync client: reads the Airflow connection once, keeps one requests.Session, and sends
# each action's parameters. Parsing is protocol.py's; this module only does I/O safely.
"""Hook for the SMS.online rent API."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timezone, tzinfo
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import SplitResult, quote, quote_plus, urlsplit, urlunsplit

from airflow.sdk import BaseHook

from airflow_provider_smsonline import protocol
from airflow_provider_smsonline.exceptions import (
    OutcomeUnknownError,
    ServerError,
    SmsOnlineError,
    TransportError,
    UnknownCodeError,
)

if TYPE_CHECKING:
    import requests
    from airflow.sdk.definitions.connection import Connection

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Defaults of the connection's extras.
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
DEFAULT_READ_RETRIES = 2
DEFAULT_RETRY_BACKOFF = 0.5


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


def _number(name: str, value: Any, default: float, *, minimum: float, integer: bool = False) -> Any:
    if value is None or value == "":
        return default
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(value) if integer else float(value)
        if integer and isinstance(value, float) and value != number:
            raise ValueError  # int(1.5) would quietly be 1
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number) or number < minimum:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"connection extra {name} must be {kind} of at least {minimum:g}, got {value!r}")
    return number


def build_endpoint(host: str | None, port: int | None = None) -> str:
    """The handler_api.php URL from a connection's host and port.

    Empty host: the public endpoint. A bare host name gets ``https://`` and the
    ``/stubs/handler_api.php`` path; a full URL keeps its scheme and path. A port, when set,
    replaces the URL's port. Query strings and fragments are dropped.
    """
    host = (host or "").strip()
    if not host:
        host = protocol.DEFAULT_ENDPOINT
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
            f"http(s) URL of handler_api.php, got {host!r}"
        )
    if port is not None and not (0 < int(port) < 65536):
        raise ValueError(f"connection port must be between 1 and 65535, got {port!r}")
    netloc_host = f"[{hostname}]" if ":" in hostname else hostname
    effective_port = port or url_port
    netloc = f"{netloc_host}:{effective_port}" if effective_port else netloc_host
    path = parts.path if parts.path not in ("", "/") else protocol.ENDPOINT_PATH
    return urlunsplit((parts.scheme, netloc, path, "", ""))


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs from an SMS.online connection, validated.

    Built by :meth:`from_connection`; shared by the sync hook and the async trigger.
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
        """Validate a connection: password is the API key, host/port the endpoint, extras the rest."""
        api_key = (conn.password or "").strip()
        if not api_key:
            raise ValueError(
                f"connection {conn.conn_id!r} has no API key: put it in the connection's password "
                "(labelled 'API key' in the UI)"
            )
        extras = conn.extra_dejson or {}
        zone_name = _extra(extras, "server_timezone")
        zone: tzinfo = timezone.utc
        if zone_name not in (None, "", "UTC", "utc"):
            from zoneinfo import ZoneInfo

            try:
                zone = ZoneInfo(str(zone_name))
            except Exception:
                raise ValueError(
                    "connection extra server_timezone must be an IANA time zone such as UTC or "
                    f"Europe/Moscow, got {zone_name!r}"
                ) from None
        proxy = _extra(extras, "proxy") or None
        if proxy is not None and urlsplit(str(proxy)).scheme not in ("http", "https", "socks5", "socks5h"):
            raise ValueError(f"connection extra proxy must be an http(s):// or socks5:// URL, got {proxy!r}")
        timeout = _number("timeout", _extra(extras, "timeout"), DEFAULT_TIMEOUT, minimum=0.1)
        return cls(
            endpoint=build_endpoint(conn.host, conn.port or None),
            api_key=api_key,
            timeout=timeout,
            connect_timeout=min(timeout, DEFAULT_CONNECT_TIMEOUT),
            verify_ssl=_bool("verify_ssl", _extra(extras, "verify_ssl"), True),
            ca_bundle=_extra(extras, "ca_bundle") or None,
            proxy=proxy,
            server_timezone=zone,
            max_response_bytes=_number(
                "max_response_bytes",
                _extra(extras, "max_response_bytes"),
                DEFAULT_MAX_RESPONSE_BYTES,
                minimum=1024,
                integer=True,
            ),
            read_retries=_number(
                "read_retries", _extra(extras, "read_retries"), DEFAULT_READ_RETRIES, minimum=0, integer=True
            ),
            retry_backoff=_number(
                "retry_backoff", _extra(extras, "retry_backoff"), DEFAULT_RETRY_BACKOFF, minimum=0
            ),
        )

    def secret_forms(self) -> tuple[str, ...]:
        """The key as it may appear anywhere: raw, form-encoded and percent-encoded."""
        return tuple(dict.fromkeys((self.api_key, quote_plus(self.api_key), quote(self.api_key, safe=""))))

    def redact(self, text: str) -> str:
        """``text`` with every form of the key replaced by ``***``."""
        for form in self.secret_forms():
            text = text.replace(form, "***")
        return text

    def failure(self, action: str, problem: str, *, status: int = 0, sent: bool = True) -> SmsOnlineError:
        """The error of a call that got no usable answer (sync and async alike); no key in it."""
        message = self.redact(f"{action} to {urlsplit(self.endpoint).netloc} failed: {problem}")
        if status and 300 <= status < 400:
            return ServerError(message, code="redirect", http_status=status)
        return TransportError(message, code="transport" if sent else "not_sent")

    def register_secrets(self) -> None:
        """Tell Airflow's log masker about every form of the key."""
        try:
            from airflow.sdk.log import mask_secret
        except ImportError:  # pragma: no cover - outside an Airflow runtime
            return
        for form in self.secret_forms():
            mask_secret(form)


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
            import requests

            session = requests.Session()
            config = self.config
            session.verify = config.ca_bundle or config.verify_ssl
            if config.proxy:
                session.proxies = {"http": config.proxy, "https": config.proxy}
            session.headers["User-Agent"] = "airflow-provider-smsonline"
            self._session = session
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

    def _exchange(self, params: Mapping[str, str]) -> tuple[int, bytes]:
        """Send one request; return (status, body) or raise an error that never holds the key."""
        import requests

        config = self.config
        session = self.get_conn()
        query = {**params, "api_key": config.api_key}
        action = params.get("action", "?")
        sent = True
        problem = ""
        try:
            # Session.get, minus its per-call re-reading of the environment (see _settings).
            request = session.prepare_request(requests.Request("GET", config.endpoint, params=query))
            with session.send(
                request,
                timeout=(config.connect_timeout, config.timeout),
                allow_redirects=False,
                **self._settings(session),
            ) as response:
                if response.is_redirect:
                    problem = redirect_problem(response.headers.get("Location", ""))
                    status = response.status_code
                else:
                    status = response.status_code
                    body = _read_capped(response, config.max_response_bytes, config.timeout)
                    return status, body
        except AnswerLimitExceeded as exceeded:
            problem = str(exceeded)
            status = 0
        except requests.exceptions.RequestException as exc:
            sent = not _never_sent(exc)
            problem = _describe(exc)
            status = 0
        # Raised outside the except blocks: the error carries no cause or context from
        # requests, whose texts embed the URL and so the key.
        raise config.failure(action, problem, status=status, sent=sent)

    def _settings(self, session: requests.Session) -> dict[str, Any]:
        """``proxies``, ``verify``, ``cert`` and ``stream`` for each request, worked out once per session.

        As ``Session.get`` does, the environment's HTTP(S)_PROXY / NO_PROXY and REQUESTS_CA_BUNDLE /
        CURL_CA_BUNDLE fill in what the connection leaves unset, and the connection's own proxy and
        TLS settings win over them. ``Session.get`` re-reads the whole environment on every call
        (a quarter to a third of a loopback call's client time); here at the session's first call.
        """
        settings = self._send_settings
        if settings is None:
            merged = session.merge_environment_settings(
                self.config.endpoint, dict(session.proxies), True, session.verify, None
            )
            settings = self._send_settings = {**merged}
        return settings

    def _call(self, params: Mapping[str, str], parse: Callable[[int, bytes], T]) -> T:
        action = params["action"]
        charging = action in protocol.CHARGING_ACTIONS
        attempts = 1 if charging else 1 + self.config.read_retries
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            try:
                status, body = self._exchange(params)
                result = parse(status, body)
            except SmsOnlineError as error:
                _scrub(error, self.config)
                if charging:
                    _raise_if_outcome_unknown(error, action)
                # A redirect is the endpoint's configuration, not a passing failure: re-sending
                # it would only hand the key to the server again.
                if not isinstance(error, ServerError) or error.code == "redirect" or attempt == attempts:
                    raise
                delay = self.config.retry_backoff * 2 ** (attempt - 1)
                self.log.warning(
                    "%s failed (%s); retry %d of %d in %.1f s", action, error, attempt, attempts - 1, delay
                )
                time.sleep(delay)
                continue
            self.log.debug("%s answered in %.3f s", action, time.monotonic() - started)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ the API

    def get_balance(self) -> Decimal:
        """The account's balance (getBalance), e.g. ``Decimal('123.45')``."""
        return self._call(protocol.get_balance_params(), protocol.parse_balance)

    def test_connection(self) -> tuple[bool, str]:
        """Prove the key with getBalance; the message is shown in the UI and never holds the key."""
        try:
            balance = self.get_balance()
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

    def get_rent_list(self) -> list[protocol.RentListEntry]:
        """The account's active rentals (getRentList); none is ``[]``."""
        return self._call(protocol.get_rent_list_params(), protocol.parse_rent_list)

    def get_rent_prices(self, country: int) -> list[protocol.RentPrice]:
        """Rental prices and stock per service in a country (getRentPrices)."""
        return self._call(protocol.get_rent_prices_params(country), protocol.parse_rent_prices)

    def _parse_rental(self, status: int, body: bytes) -> protocol.Rental:
        return protocol.parse_rental(status, body, self.config.server_timezone)


def _scrub(error: SmsOnlineError, config: ClientConfig) -> None:
    """Remove every form of the key from ``error``: a server may echo it back in a code."""
    error.message = config.redact(error.message)
    error.code = config.redact(error.code)
    error.args = tuple(config.redact(a) if isinstance(a, str) else a for a in error.args)


def _raise_if_outcome_unknown(error: SmsOnlineError, action: str) -> None:
    """After a charging call, anything but an API error code leaves the outcome unknown."""
    if isinstance(error, TransportError) and error.code == "not_sent":
        return
    # An unknown code may be a success this provider cannot read: the outcome is unknown too.
    if isinstance(error, UnknownCodeError) or (
        isinstance(error, ServerError) and error.code in ("transport", "bad_response")
    ):
        raise OutcomeUnknownError(
            f"{action} may have succeeded and been charged: {error.message}. A rental may exist; "
            "check get_rent_list() before trying again",
            code=error.code,
            action=action,
            http_status=error.http_status,
        ) from None


class AnswerLimitExceeded(Exception):
    """An answer past ``max_response_bytes`` or ``timeout``; the text says which (no key in it)."""

    @classmethod
    def too_large(cls, limit: int) -> AnswerLimitExceeded:
        return cls(f"the answer exceeded {limit} bytes")

    @classmethod
    def too_slow(cls, seconds: float) -> AnswerLimitExceeded:
        return cls(f"the answer took longer than {seconds:g} s to arrive")


def redirect_problem(location: str) -> str:
    """What a refused redirect to ``location`` is called in an error (the target host only)."""
    target = urlsplit(location).hostname or "elsewhere"
    return f"the server redirected to {target}; redirects are not followed"


def _read_capped(response: requests.Response, limit: int, seconds: float) -> bytes:
    """The body, refused past ``limit`` bytes or ``seconds``: a huge or trickling answer can
    neither exhaust nor hang a worker. ``read1`` returns what has arrived, so the deadline is
    checked at every arrival, not only after each full block."""
    import requests
    import urllib3

    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise AnswerLimitExceeded.too_large(limit)
    deadline = time.monotonic() + seconds
    raw = response.raw
    chunks: list[bytes] = []
    size = 0
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
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise AnswerLimitExceeded.too_large(limit)
        if time.monotonic() > deadline:
            raise AnswerLimitExceeded.too_slow(seconds)
        chunks.append(chunk)


def _never_sent(exc: Exception) -> bool:
    """True when the request surely never reached the server (connect failure, TLS, bad URL)."""
    import requests

    if isinstance(
        exc,
        (
            requests.exceptions.ConnectTimeout,
            requests.exceptions.SSLError,
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
            requests.exceptions.ProxyError,
        ),
    ):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        from urllib3.exceptions import NewConnectionError

        return isinstance(reason, NewConnectionError)
    return False


def _describe(exc: Exception) -> str:
    """A short description of a requests failure without its URL."""
    import requests

    for kind, text in (
        (requests.exceptions.ConnectTimeout, "connecting timed out"),
        (requests.exceptions.ReadTimeout, "no answer within the timeout"),
        (requests.exceptions.SSLError, "TLS failed (certificate or handshake)"),
        (requests.exceptions.ProxyError, "the proxy failed"),
        (requests.exceptions.ChunkedEncodingError, "the connection broke while the answer arrived"),
        (requests.exceptions.ContentDecodingError, "the answer could not be decoded"),
    ):
        if isinstance(exc, kind):
            return text
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection refused" if _never_sent(exc) else "the connection was reset or closed"
    return type(exc).__name__
