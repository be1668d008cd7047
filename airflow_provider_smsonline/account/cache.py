# The page's answers are kept per connection so that viewers cost SMS.online a bounded number of
# calls: one reading per part and time-to-live, shared by every request of this api-server worker.
# A request that finds a reading under way waits for it instead of starting its own (one lock per
# connection and part), and a failed reading is kept as long as a good one, so a broken account is
# not asked again on every page load either.
"""Per-connection cache of what the account page reads, with one reading in flight at a time."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Generic, TypeVar

__all__ = ["ENDED_KEPT", "Cached", "EndedRentals", "PartCache"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Rentals a connection remembers as ended; past it the memory starts again (each is then asked
#: about once more).
ENDED_KEPT = 20_000


@dataclass(frozen=True)
class Cached(Generic[T]):
    """One reading: its value, or why there is none (``error``, never holding the API key).

    :ivar read_at: when the reading ended (UTC).
    :ivar value: what was read; on a failed reading, the last good value (``None`` if none).
    :ivar error: why the last reading failed; ``None`` when it succeeded.
    """

    read_at: datetime
    value: T | None
    error: str | None = None


@dataclass
class _Slot(Generic[T]):
    lock: threading.Lock
    cached: Cached[T] | None = None
    expires: float = 0.0


class PartCache(Generic[T]):
    """Readings of one part of the page (the summary, or the rentals), per connection.

    :param read: reads the part for a connection; raises on failure.
    :param ttl: seconds a reading (good or failed) is served before the next one.
    :param describe: the text a failure shows (never the key).
    :param clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        read: Callable[[str], T],
        ttl: float,
        describe: Callable[[str, Exception], str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read = read
        self.ttl = ttl
        self.describe = describe
        self.clock = clock
        self.readings = 0
        self._slots: dict[str, _Slot[T]] = {}
        self._guard = threading.Lock()

    def get(self, conn_id: str) -> Cached[T]:
        """The connection's reading, read now if there is none younger than :attr:`ttl`.

        Concurrent callers for one connection share one reading: the first reads, the others
        wait for it and get its result.
        """
        with self._guard:
            slot = self._slots.setdefault(conn_id, _Slot(threading.Lock()))
        with slot.lock:
            if slot.cached is not None and self.clock() < slot.expires:
                return slot.cached
            self.readings += 1
            try:
                value = self.read(conn_id)
            except Exception as error:
                last = slot.cached.value if slot.cached is not None else None
                slot.cached = Cached(_now(), last, self.describe(conn_id, error))
            else:
                slot.cached = Cached(_now(), value)
            slot.expires = self.clock() + self.ttl
            return slot.cached


class EndedRentals:
    """Rentals found ended, per connection (a rental that left getRentList never comes back):
    each is asked about once, not on every reading."""

    def __init__(self, limit: int = ENDED_KEPT) -> None:
        self.limit = limit
        self._sets: dict[str, set[int]] = {}

    def of(self, conn_id: str) -> set[int]:
        """The connection's set (emptied once it holds more than ``limit``)."""
        ended = self._sets.setdefault(conn_id, set())
        if len(ended) > self.limit:
            ended.clear()
        return ended


def _now() -> datetime:
    return datetime.now(timezone.utc)
