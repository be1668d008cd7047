# getRentHistory and getHistory share their parameters and their shape: one window and one page
# cut for both. Plain data; the lock is the caller's (state.py).
"""The window and page of the sandbox's history actions (getRentHistory, getHistory)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

#: A history call looks back this far by default, and no further (the pages' 30 days).
HISTORY_WINDOW = timedelta(days=30)
#: Rows a page holds by default, and at most (the pages: 50 and 100).
DEFAULT_LIMIT, MAX_LIMIT = 50, 100


def _lenient(raw: str | None, default: int) -> int:
    # Leniently read, as the pages give no error for these: a bad value means its default.
    text = (raw or "").strip()
    return int(text) if text.isascii() and text.isdigit() else default


def history_page(
    rows: Iterable[tuple[datetime, dict[str, Any]]], params: Mapping[str, str], now: datetime
) -> list[dict[str, Any]]:
    """The page a history call answers: of ``rows`` (each with when it began), those that began
    from ``start`` to ``end`` (unix seconds, at most 30 days apart), newest first, ``limit``
    rows from ``offset``.

    The sandbox's clock can be moved forward (``POST /sandbox/clock``) to let time pass in a test;
    a client's clock has passed as much, so ``start`` and ``end`` are read on the moved clock.
    """
    shift = now - datetime.now(timezone.utc)
    end = _lenient(params.get("end"), int((now - shift).timestamp()))
    start = max(_lenient(params.get("start"), 0), end - int(HISTORY_WINDOW.total_seconds()))
    offset = _lenient(params.get("offset"), 0)
    limit = min(max(_lenient(params.get("limit"), DEFAULT_LIMIT), 1), MAX_LIMIT)
    # ``end`` covers its whole second: a row begun in it is in.
    chosen = sorted(
        ((began, row) for began, row in rows if start <= (began - shift).timestamp() < end + 1),
        key=lambda item: (item[0], item[1]["id"]),
        reverse=True,
    )
    return [row for _, row in chosen[offset : offset + limit]]
