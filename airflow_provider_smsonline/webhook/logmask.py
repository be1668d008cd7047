# The webhook's token sits in its URL path, and the api-server logs request paths: uvicorn's access
# log (Airflow 3.1, stdlib logging) and Airflow's own access middleware (3.2+, structlog), which
# also logs the X-Request-Id header as `request_id`. This module keeps the token out of every
# field of a log line: a stdlib logging filter (message, arguments, extras, traceback) on the
# access loggers and the root handlers, a structlog processor placed last before the renderer
# (after the request context is merged in), and the receiver rewriting the request's path before
# any access log reads it.
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


#: A LogRecord's own attributes: anything else on a record came as ``extra=``.
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class TokenMaskFilter(logging.Filter):
    """A logging filter that replaces the tokens in every field of a record: its message and
    arguments, the fields given as ``extra=``, its stack and its traceback.

    uvicorn's access log passes the path as an argument (``'%s - "%s %s HTTP/%s" %d'``); the
    filter masks arguments before formatting, so every handler and formatter sees the masked form.
    A traceback that shows a token is replaced by its masked text.
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
        for name, value in list(record.__dict__.items()):
            if name not in _RECORD_FIELDS:
                setattr(record, name, _masked(value, self.tokens))
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info, self.tokens)
        if record.exc_info and record.exc_info[0] is not None:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            if any(token in text for token in self.tokens):
                record.exc_text, record.exc_info = mask_text(text, self.tokens), None
        elif record.exc_text:
            record.exc_text = mask_text(record.exc_text, self.tokens)
        return True

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> Any:
        """The same, as a structlog processor (Airflow 3.2+ logs access records through structlog)."""
        return _masked(event_dict, self.tokens) if isinstance(event_dict, dict) else event_dict


def install(tokens: Iterable[str]) -> TokenMaskFilter:
    """Mask ``tokens`` in every field of this process's log lines: the access and error loggers
    and the root logger's handlers (stdlib), and structlog's processors.

    Idempotent: a second call replaces the first filter. Returns the filter.
    """
    mask = TokenMaskFilter(tokens)
    targets: list[logging.Filterer] = [logging.getLogger(name) for name in ACCESS_LOGGERS]
    targets += logging.getLogger().handlers
    for target in targets:
        for old in [f for f in target.filters if isinstance(f, TokenMaskFilter)]:
            target.removeFilter(old)
        target.addFilter(mask)
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
    # In place: loggers bound earlier share this very list. Last before the renderer (the last
    # processor turns the event into text): after the request's context (request_id) is merged.
    processors[:] = [p for p in processors if not isinstance(p, TokenMaskFilter)]
    processors.insert(max(len(processors) - 1, 0), mask)
