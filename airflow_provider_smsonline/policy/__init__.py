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

Its parts: :mod:`.config` (connection fields), :mod:`.secrets` (the key's forms),
:mod:`.exchange` (requests, caps, failures, retries) and :mod:`.logs`.

The key is removed, in every form it can take (raw, form- and percent-encoded), from the body
before it is parsed, so nothing built from an answer (an error, a cut-off code, a log line) can
hold it or a part of it.
"""

from __future__ import annotations

from airflow_provider_smsonline.policy.config import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_READ_RETRIES,
    DEFAULT_RETRY_BACKOFF,
    DEFAULT_TIMEOUT,
    MAX_MAX_RESPONSE_BYTES,
    MAX_PARAM_LENGTH,
    MAX_READ_RETRIES,
    MAX_RETRY_BACKOFF,
    MAX_TIMEOUT,
    USER_AGENT,
    ClientConfig,
    build_endpoint,
    connection_extras,
)
from airflow_provider_smsonline.policy.exchange import (
    REDIRECT_STATUSES,
    AnswerTooLarge,
    BodyCap,
    Failure,
    Request,
    build_request,
    conclude,
    exception_chain,
    failure,
    is_redirect,
    os_reason,
    retry_delay,
    scrub,
    settle,
)
from airflow_provider_smsonline.policy.logs import HTTP_LOGGERS, KeyInUrlFilter, guard_http_loggers
from airflow_provider_smsonline.policy.secrets import redact, secret_forms

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_READ_RETRIES",
    "DEFAULT_RETRY_BACKOFF",
    "DEFAULT_TIMEOUT",
    "HTTP_LOGGERS",
    "MAX_MAX_RESPONSE_BYTES",
    "MAX_PARAM_LENGTH",
    "MAX_READ_RETRIES",
    "MAX_RETRY_BACKOFF",
    "MAX_TIMEOUT",
    "REDIRECT_STATUSES",
    "USER_AGENT",
    "AnswerTooLarge",
    "BodyCap",
    "ClientConfig",
    "Failure",
    "KeyInUrlFilter",
    "Request",
    "build_endpoint",
    "build_request",
    "conclude",
    "connection_extras",
    "exception_chain",
    "failure",
    "guard_http_loggers",
    "is_redirect",
    "os_reason",
    "redact",
    "retry_delay",
    "scrub",
    "secret_forms",
    "settle",
]
