# The HTTP libraries write each request line, query and key included, at DEBUG: this keeps the
# key out of those lines on both transports without touching what is sent.
"""A log filter that keeps the API key out of the HTTP libraries' debug lines."""

from __future__ import annotations

import logging
import re

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
