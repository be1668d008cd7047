# A connection's fields, validated once for both transports: each bad field is named before
# anything is sent, and the settings (timeouts, caps, TLS, proxy) are what both paths obey.
"""The validated settings of an SMS.online connection."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timezone, tzinfo
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from airflow_provider_smsonline.policy.secrets import redact, secret_forms
from airflow_provider_smsonline.protocol.actions import DEFAULT_ENDPOINT, ENDPOINT_PATH

if TYPE_CHECKING:
    from airflow.sdk.definitions.connection import Connection

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


# The numeric extras: name -> (default, minimum, maximum, whole numbers only).
_NUMBERS: dict[str, tuple[float, float, float, bool]] = {
    "timeout": (DEFAULT_TIMEOUT, 0.1, MAX_TIMEOUT, False),
    "max_response_bytes": (DEFAULT_MAX_RESPONSE_BYTES, 1024, MAX_MAX_RESPONSE_BYTES, True),
    "read_retries": (DEFAULT_READ_RETRIES, 0, MAX_READ_RETRIES, True),
    "retry_backoff": (DEFAULT_RETRY_BACKOFF, 0, MAX_RETRY_BACKOFF, False),
}


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
    # loaded when a connection is read, not at DAG parse (the hook module imports policy)
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
        numbers = {
            name: _number(name, _extra(extras, name), default, minimum=low, maximum=high, integer=integer)
            for name, (default, low, high, integer) in _NUMBERS.items()
        }
        timeout = numbers.pop("timeout")
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
            **numbers,
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
            # loaded when a connection is read, not at DAG parse (the hook module imports policy)
            from airflow.sdk.log import mask_secret
        except ImportError:  # pragma: no cover - outside an Airflow runtime
            return
        for form in self.secret_forms():
            mask_secret(form)

    def effective_proxy(self) -> str | None:
        """The proxy both transports use: the connection's ``proxy``, else the environment's
        ``HTTP(S)_PROXY`` for the endpoint unless ``NO_PROXY`` exempts it (as requests reads
        them), else none. Worked out once per pool, not per request."""
        if self.proxy:
            return self.proxy
        # loaded when a connection is read, not at DAG parse (the hook module imports policy)
        from urllib.request import getproxies_environment, proxy_bypass

        proxies = getproxies_environment()
        host = urlsplit(self.endpoint).hostname or ""
        if not proxies or proxy_bypass(host):
            return None
        return proxies.get(urlsplit(self.endpoint).scheme) or proxies.get("all")

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
        # loaded when a connection is read, not at DAG parse (the hook module imports policy)
        import certifi

        return str(certifi.where())
