# Where "rental R (or activation A) has news" lives between the api-server that hears a webhook
# and the triggerers that wait on it: one Airflow Variable holding a short ring of hints, written
# by the api-server's ORM under a row lock (several api-server workers may write), read by one
# shared reader per triggerer. The api-server coalesces: whatever the webhook rate, each worker
# writes at most one transaction per FLUSH_INTERVAL. The document is bounded in bytes, whoever
# writes it: ids are at most 18 digits, the ring at most HINT_RING rows and MAX_HINTS_BYTES.
"""The hint document, and the api-server side that writes it.

The Variable :data:`HINTS_KEY` holds JSON::

    {"v": 1, "seq": 1234, "hints": [[1233, 1049, 1733140000.5], [1234, 700123, 1733140001.0, "a"]]}

``seq`` counts every hint ever written; each hint is ``[seq, id, unix time]`` for a rental (the
rental webhook) or ``[seq, id, unix time, "a"]`` for an activation (the activation webhook),
oldest first, the newest :data:`HINT_RING` kept, the whole at most :data:`MAX_HINTS_BYTES`. Only
ids travel: no SMS text, no code, no sender, no token. A reader remembers the last ``seq`` it
applied and applies those above it; a document over :data:`MAX_HINTS_BYTES` is not read at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "ACTIVATION",
    "FLUSH_INTERVAL",
    "HINTS_KEY",
    "HINT_RING",
    "MAX_HINTS_BYTES",
    "MAX_ID",
    "MAX_PENDING",
    "RENTAL",
    "Hint",
    "HintKey",
    "HintStore",
    "HintWriter",
    "VariableHintStore",
    "decode_hints",
    "encode_hints",
    "merge_hints",
    "read_hints",
]

#: The Airflow Variable holding the hints.
HINTS_KEY = "smsonline_webhook_hints"
#: How many of the newest hints the Variable keeps (25 to 60 bytes each).
HINT_RING = 2000
#: The largest hint document written or read, in bytes (2,000 hints of the longest ids fit).
MAX_HINTS_BYTES = 128 * 1024
#: The largest id a hint carries (18 digits, as the receiver accepts).
MAX_ID = 10**18 - 1
#: Seconds between two writes of one api-server worker (the write rate's bound).
FLUSH_INTERVAL = 0.5
#: Distinct rentals and activations one worker holds between two writes; beyond, a webhook for
#: another one is refused (429).
MAX_PENDING = 1000
#: Writes of one batch before its hints are given up (the waits' poll then finds the SMS).
WRITE_ATTEMPTS = 3
#: What a hint is about: a rental (the rental webhook's ``rentId``) or an activation (the
#: activation webhook's ``activationId``).
RENTAL = "r"
ACTIVATION = "a"
#: The Variable's description, for whoever lists Variables.
DESCRIPTION = (
    "airflow-provider-smsonline: rentals and activations SMS.online's webhooks said have news (ids "
    "only), read by the triggerers to wake the waits on them at once. Rewritten by the api-server; "
    "safe to delete."
)

#: A hint's subject: ``(RENTAL, rent_id)`` or ``(ACTIVATION, activation_id)``.
HintKey = tuple[str, int]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hint:
    """One hint: the ``seq`` it was written under, its subject, and when (unix seconds).

    :ivar kind: :data:`RENTAL` or :data:`ACTIVATION`.
    :ivar id: the rental's or the activation's id.
    """

    seq: int
    id: int
    at: float
    kind: str = RENTAL

    @property
    def key(self) -> HintKey:
        """``(kind, id)``."""
        return (self.kind, self.id)


def _row(row: object) -> Hint | None:
    if not isinstance(row, list) or len(row) not in (3, 4):
        return None
    kind = RENTAL
    if len(row) == 4:
        if row[3] != ACTIVATION:
            return None
        kind = ACTIVATION
    seq, hint_id, at = row[:3]
    if any(isinstance(v, bool) for v in (seq, hint_id, at)):
        return None
    if not (isinstance(seq, int) and isinstance(hint_id, int) and isinstance(at, (int, float))):
        return None
    if seq < 0 or not 0 <= hint_id <= MAX_ID or not math.isfinite(at):
        return None
    return Hint(seq, hint_id, float(at), kind)


def decode_hints(document: Any, after: int | None = None) -> tuple[int, list[Hint]]:
    """The ``seq`` and the hints of a hint document (anything unreadable: ``(0, [])``; an
    unreadable row is skipped).

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
        hint = _row(row)
        if hint is None:
            continue
        if after is not None and hint.seq <= after:
            break
        hints.append(hint)
    hints.reverse()
    return seq, hints


def read_hints(text: str | None) -> Any:
    """The hint document in ``text`` (the Variable's value); ``None`` when there is none, it is
    not JSON, or it is over :data:`MAX_HINTS_BYTES` (not parsed at all: whoever wrote it, it
    costs nothing to read)."""
    if not text or len(text) > MAX_HINTS_BYTES:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def encode_hints(document: Any) -> str:
    """The Variable's value for ``document`` (compact JSON)."""
    return json.dumps(document, separators=(",", ":"))


def merge_hints(document: Any, keys: Iterable[HintKey], at: float) -> dict[str, Any]:
    """``document`` with one new hint per subject in ``keys``, the oldest dropped past the ring
    and past :data:`MAX_HINTS_BYTES`. Ids outside 0 to :data:`MAX_ID` are left out."""
    seq, hints = decode_hints(document)
    rows: list[list[Any]] = [_encode_row(h) for h in hints]
    for kind, hint_id in sorted(set(keys)):
        if kind not in (RENTAL, ACTIVATION) or not 0 <= hint_id <= MAX_ID:
            continue
        seq += 1
        rows.append(_encode_row(Hint(seq, hint_id, round(at, 3), kind)))
    rows = rows[-HINT_RING:]
    merged = {"v": 1, "seq": seq, "hints": rows}
    excess = len(encode_hints(merged)) - MAX_HINTS_BYTES
    keep = 0
    while excess > 0 and keep < len(rows):  # the oldest go first; each row takes its comma
        excess -= len(encode_hints(rows[keep])) + 1
        keep += 1
    return {"v": 1, "seq": seq, "hints": rows[keep:]}


def _encode_row(hint: Hint) -> list[Any]:
    row: list[Any] = [hint.seq, hint.id, hint.at]
    if hint.kind == ACTIVATION:
        row.append(ACTIVATION)
    return row


class HintStore(Protocol):
    """Where the api-server records hints: one call per flush, several subjects at once."""

    def add(self, keys: Collection[HintKey], at: float) -> None:
        """Record a hint for each ``(kind, id)`` (one transaction); raise on failure."""


class VariableHintStore:
    """Hints in the Airflow Variable :data:`HINTS_KEY`, through the api-server's ORM session.

    Read-modify-write under a row lock (a no-op ``UPDATE`` of the row, then ``SELECT … FOR
    UPDATE``; on SQLite the UPDATE takes the database's write lock before the read), so that
    several api-server workers never lose each other's hints. The first write creates the
    Variable; two workers creating it at once: the loser's insert fails and it tries again,
    updating. A value that is not a hint document, or is over :data:`MAX_HINTS_BYTES`, is
    started over.
    """

    def add(self, keys: Collection[HintKey], at: float) -> None:
        """Merge the hints into the Variable, in one transaction (retried once after a lost race)."""
        try:
            self._add(keys, at)
        except Exception:
            self._add(keys, at)  # the row appeared meanwhile: now it is there to lock

    @staticmethod
    def _add(keys: Collection[HintKey], at: float) -> None:
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
                text = encode_hints(merge_hints(None, keys, at))
                session.add(Variable(key=HINTS_KEY, val=text, description=DESCRIPTION))
                return
            row.set_val(encode_hints(merge_hints(read_hints(row.val), keys, at)))


class HintWriter:
    """Coalesces hints in one api-server worker and writes them at most once per ``interval``.

    :meth:`record` is called on the receiver's event loop and returns at once; a background task
    on that loop writes the pending subjects (one :meth:`HintStore.add` in a thread), waits
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
        self._pending: set[HintKey] = set()
        self._task: asyncio.Task[None] | None = None

    def is_pending(self, key: HintKey) -> bool:
        """Whether a hint for ``key`` is noted and not written yet (another post for it adds nothing)."""
        return key in self._pending

    def record(self, key: HintKey) -> bool:
        """Note that ``key`` (``(kind, id)``) has news; ``False`` (nothing noted) when too many
        are pending."""
        if key not in self._pending:
            if len(self._pending) >= self.max_pending:
                return False
            self._pending.add(key)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())
        return True

    @property
    def pending(self) -> int:
        """Subjects noted and not yet written."""
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
                        "Could not record webhook hints for %d rental(s) or activation(s) (%s); their "
                        "waits find the SMS at their next poll",
                        len(batch),
                        type(error).__name__,
                    )
            await asyncio.sleep(self.interval)

    async def drain(self) -> None:
        """Wait until everything noted has been written (for tests and shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})
