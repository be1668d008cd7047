# Where "rental R has news" lives between the api-server that hears a webhook and the triggerers
# that wait on R: one Airflow Variable holding a short ring of hints, written by the api-server's
# ORM under a row lock (several api-server workers may write), read by one shared reader per
# triggerer. The api-server coalesces: whatever the webhook rate, each worker writes at most one
# transaction per FLUSH_INTERVAL.
"""The hint document, and the api-server side that writes it.

The Variable :data:`HINTS_KEY` holds JSON::

    {"v": 1, "seq": 1234, "hints": [[1233, 1049, 1733140000.5], [1234, 1050, 1733140001.0]]}

``seq`` counts every hint ever written; each hint is ``[seq, rent_id, unix time]``, oldest
first, the newest :data:`HINT_RING` kept. Only rental ids travel: no SMS text, no sender, no
token. A reader remembers the last ``seq`` it applied and applies those above it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "FLUSH_INTERVAL",
    "HINTS_KEY",
    "HINT_RING",
    "MAX_PENDING",
    "Hint",
    "HintStore",
    "HintWriter",
    "VariableHintStore",
    "decode_hints",
    "merge_hints",
]

#: The Airflow Variable holding the hints.
HINTS_KEY = "smsonline_webhook_hints"
#: How many of the newest hints the Variable keeps (about 25 bytes each).
HINT_RING = 2000
#: Seconds between two writes of one api-server worker (the write rate's bound).
FLUSH_INTERVAL = 0.5
#: Distinct rentals one worker holds between two writes; beyond, a webhook is refused (429).
MAX_PENDING = 1000
#: Writes of one batch before its hints are given up (the waits' poll then finds the SMS).
WRITE_ATTEMPTS = 3
#: The Variable's description, for whoever lists Variables.
DESCRIPTION = (
    "airflow-provider-smsonline: rentals SMS.online's webhook said have news (ids only), read by "
    "the triggerers to wake the waits on them at once. Rewritten by the api-server; safe to delete."
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hint:
    """One hint: the ``seq`` it was written under, the rental, and when (unix seconds)."""

    seq: int
    rent_id: int
    at: float


def decode_hints(document: Any, after: int | None = None) -> tuple[int, list[Hint]]:
    """The ``seq`` and the hints of a hint document (anything unreadable: ``(0, [])``).

    :param after: only the hints above this ``seq`` (read from the newest end: a reader that
        keeps up decodes a few rows, not the whole ring).
    """
    if not isinstance(document, dict):
        return 0, []
    seq = document.get("seq")
    rows = document.get("hints")
    if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(rows, list):
        return 0, []
    hints = []
    for row in reversed(rows):
        if (
            isinstance(row, list)
            and len(row) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)
        ):
            if after is not None and row[0] <= after:
                break
            hints.append(Hint(int(row[0]), int(row[1]), float(row[2])))
    hints.reverse()
    return seq, hints


def merge_hints(document: Any, rent_ids: Iterable[int], at: float) -> dict[str, Any]:
    """``document`` with one new hint per rental in ``rent_ids``, the oldest dropped past the ring."""
    seq, hints = decode_hints(document)
    rows = [[h.seq, h.rent_id, h.at] for h in hints]
    for rent_id in sorted(set(rent_ids)):
        seq += 1
        rows.append([seq, rent_id, round(at, 3)])
    return {"v": 1, "seq": seq, "hints": rows[-HINT_RING:]}


class HintStore(Protocol):
    """Where the api-server records hints: one call per flush, several rentals at once."""

    def add(self, rent_ids: Collection[int], at: float) -> None:
        """Record a hint for each rental (one transaction); raise on failure."""


class VariableHintStore:
    """Hints in the Airflow Variable :data:`HINTS_KEY`, through the api-server's ORM session.

    Read-modify-write under a row lock (a no-op ``UPDATE`` of the row, then ``SELECT … FOR
    UPDATE``; on SQLite the UPDATE takes the database's write lock before the read), so that
    several api-server workers never lose each other's hints. The first write creates the
    Variable; two workers creating it at once: the loser's insert fails and it tries again,
    updating.
    """

    def add(self, rent_ids: Collection[int], at: float) -> None:
        """Merge the hints into the Variable, in one transaction (retried once after a lost race)."""
        try:
            self._add(rent_ids, at)
        except Exception:
            self._add(rent_ids, at)  # the row appeared meanwhile: now it is there to lock

    @staticmethod
    def _add(rent_ids: Collection[int], at: float) -> None:
        # the metadata DB's ORM: only the api-server writes hints, and loads it here
        from airflow.models.variable import Variable
        from airflow.utils.session import create_session

        with create_session() as session:
            # A no-op UPDATE first: the write lock before the read. PostgreSQL and MySQL lock the row
            # (as FOR UPDATE does); SQLite, whose driver would run a bare SELECT outside any
            # transaction (two workers then lose each other's hints), takes its write lock.
            session.query(Variable).filter(Variable.key == HINTS_KEY).update(
                {Variable.key: Variable.key}, synchronize_session=False
            )
            row = session.query(Variable).filter(Variable.key == HINTS_KEY).with_for_update().one_or_none()
            if row is None:
                text = json.dumps(merge_hints(None, rent_ids, at), separators=(",", ":"))
                session.add(Variable(key=HINTS_KEY, val=text, description=DESCRIPTION))
                return
            try:
                document = json.loads(row.val) if row.val else None
            except ValueError:
                document = None
            row.set_val(json.dumps(merge_hints(document, rent_ids, at), separators=(",", ":")))


class HintWriter:
    """Coalesces hints in one api-server worker and writes them at most once per ``interval``.

    :meth:`record` is called on the receiver's event loop and returns at once; a background task
    on that loop writes the pending rentals (one :meth:`HintStore.add` in a thread), waits
    ``interval``, and writes again while more came in. A burst of 1,000 webhooks for 10
    rentals is one write of 10 hints.
    """

    def __init__(
        self, store: HintStore, interval: float = FLUSH_INTERVAL, max_pending: int = MAX_PENDING
    ) -> None:
        self.store = store
        self.interval = interval
        self.max_pending = max_pending
        self.writes = 0
        self.failures = 0
        self._pending: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def record(self, rent_id: int) -> bool:
        """Note that ``rent_id`` has news; ``False`` (nothing noted) when too many are pending."""
        if rent_id not in self._pending:
            if len(self._pending) >= self.max_pending:
                return False
            self._pending.add(rent_id)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())
        return True

    @property
    def pending(self) -> int:
        """Rentals noted and not yet written."""
        return len(self._pending)

    async def _flush(self) -> None:
        failed_in_a_row = 0
        while self._pending:
            batch, self._pending = self._pending, set()
            try:
                await asyncio.to_thread(self.store.add, batch, time.time())
                self.writes += 1
                failed_in_a_row = 0
            except Exception as error:  # never raise into the loop
                self.failures += 1
                failed_in_a_row += 1
                if failed_in_a_row < WRITE_ATTEMPTS:  # e.g. a locked database: try again
                    self._pending |= batch
                else:  # the poll still finds these SMS
                    log.warning(
                        "Could not record webhook hints for %d rental(s) (%s); their waits find the "
                        "SMS at their next poll",
                        len(batch),
                        type(error).__name__,
                    )
            await asyncio.sleep(self.interval)

    async def drain(self) -> None:
        """Wait until everything noted has been written (for tests and shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})
