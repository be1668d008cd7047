# The webhook's token sits in its URL path, and the api-server logs request paths: uvicorn's access
# log (Airflow 3.1, stdlib logging) and Airflow's own access middleware (3.2+, structlog). This
# module keeps the token out of both: a stdlib logging filter, a structlog processor, and the
# receiver rewriting the request's path before any access log reads it.
"""Masking the webhook token in the api-server's logs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["MASK", "TokenMaskFilter", "install", "mask_text"]

#: What the token is replaced with.
MASK = "***"
#: The stdlib loggers that print request paths (or errors quoting them).
ACCESS_LOGGERS = ("uvicorn.access", "uvicorn.error", "gunicorn.access", "gunicorn.error", "http.access")


def mask_text(text: str, tokens: Iterable[str]) -> str:
    """``text`` with every token replaced by :data:`MASK`."""
    for token in tokens:
        if token and token in text:
            text = text.replace(token, MASK)
    return text


def _masked(value: Any, tokens: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return mask_text(value, tokens)
    if isinstance(value, bytes):
        return (
            mask_text(value.decode("utf-8", "replace"), tokens)
            if any(t.encode() in value for t in tokens)
            else value
        )
    if isinstance(value, tuple):
        return tuple(_masked(v, tokens) for v in value)
    if isinstance(value, list):
        return [_masked(v, tokens) for v in value]
    if isinstance(value, dict):
        return {k: _masked(v, tokens) for k, v in value.items()}
    return value


class TokenMaskFilter(logging.Filter):
    """A logging filter that replaces the tokens in a record's message and arguments.

    uvicorn's access log passes the path as an argument (``'%s - "%s %s HTTP/%s" %d'``); the
    filter masks arguments before formatting, so every handler and formatter sees the masked form.
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        super().__init__()
        self.tokens = tuple(t for t in tokens if t)

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask in place; never drops a record."""
        if isinstance(record.msg, str):
            record.msg = mask_text(record.msg, self.tokens)
        if record.args:
            record.args = _masked(record.args, self.tokens)
        return True

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> Any:
        """The same, as a structlog processor (Airflow 3.2+ logs access records through structlog)."""
        return _masked(event_dict, self.tokens) if isinstance(event_dict, dict) else event_dict


def install(tokens: Iterable[str]) -> TokenMaskFilter:
    """Mask ``tokens`` in the access and error loggers, stdlib and structlog, of this process.

    Idempotent: a second call replaces the first filter. Returns the filter.
    """
    mask = TokenMaskFilter(tokens)
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, TokenMaskFilter)]:
            logger.removeFilter(old)
        logger.addFilter(mask)
    _install_structlog(mask)
    return mask


def _install_structlog(mask: TokenMaskFilter) -> None:
    # Airflow's own structlog (not imported here: a process without it logs no access records).
    structlog = sys.modules.get("structlog")
    if structlog is None:
        return
    processors = structlog.get_config().get("processors")
    if not isinstance(processors, list):
        return
    # In place and first: loggers bound earlier share this very list.
    processors[:] = [p for p in processors if not isinstance(p, TokenMaskFilter)]
    processors.insert(0, mask)
