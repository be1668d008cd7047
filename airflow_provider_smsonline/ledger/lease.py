# One unresolved charging call per account: when several calls on one account lose their answers
# together, getRentList cannot say which call made which rental, and a person has to sort them out.
# This lease takes that ambiguity away. Airflow Variables have no compare-and-set, so it is a timed
# mutual exclusion (Fischer's): wait until the lease is free, write a ticket, wait longer than a
# write can take, read it back. The ledger stays the guarantee against paying twice: two holders
# at once (a write slower than the settle time, a paused holder past its expiry) can only bring the
# ambiguity back, never a double charge.
"""The charging lease: at most one unresolved charging call per account, across workers.

A task instance takes the account's lease (``smsonline_lease__<account>``) just before it reads
the account's snapshot and makes its charging call, and gives it back as soon as the outcome is
known and noted: an answer, a refusal, or a reconciliation that adopted the rental. When the
answer is lost and nothing shows yet, the lease is kept until that call's window has closed (the
call can no longer be served), and released then by time; a holder that dies is released by
time the same way.

Taking it (:func:`take`): read the lease; while another holder's is unexpired, read it again
every :data:`POLL_SECONDS`; when it is free (absent, released or expired), write this try's
ticket, wait :data:`SETTLE_SECONDS`, and read it back: the ticket still there means the lease is
held (anyone who read it free before this write has written by then, and anyone reading after
sees it taken); another ticket means another writer won, and the wait goes on. The taker reads
the account's snapshot while it waits for the ticket to settle: a holder before it gave the lease
back only after its outcome was noted, so that snapshot already holds whatever it rented. The
ticket's expiry covers the snapshot and the call's window; a released lease keeps only how the
account's rentals were last read (getRentList, or getRentHistory where getRentList wants an id),
so that the next taker need not find out again.

Assumptions, and what happens when they fail:

* a Variable write lands within :data:`SETTLE_SECONDS` of the read that found the lease free
  (through Airflow's execution API, measured: 28 ms typically, 91 ms at most under load); a
  slower one can make two holders;
* clocks agree within the ledger's ``CLOCK_SKEW`` (expiries are compared with the reader's clock);
* a holder is not paused past its lease's expiry.

None of them is needed for "never pays twice": the charge ledger's records, intents and claims
decide as before, and a second holder is only a rival as without the lease.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from airflow_provider_smsonline.exceptions import SmsOnlineError

__all__ = [
    "DEFAULT_WAIT_SECONDS",
    "LEASE_PREFIX",
    "POLL_SECONDS",
    "SETTLE_SECONDS",
    "Lease",
    "LeaseTimeoutError",
    "charging_turn",
    "lease_key",
    "lease_settings",
    "take",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The start of every lease's Variable name; ``<account>`` follows.
LEASE_PREFIX = "smsonline_lease__"
#: Seconds between writing a ticket and reading it back: longer than a Variable write can take.
SETTLE_SECONDS = 0.25
#: Seconds between two reads of a lease another task instance holds.
POLL_SECONDS = 0.1
#: Seconds a task instance waits for the lease, by default, before failing (charging nothing).
DEFAULT_WAIT_SECONDS = 120.0
#: Seconds before its expiry a lease is read before it is given back (another try may hold it
#: after its expiry, whose ticket must not be overwritten).
RELEASE_MARGIN = 5.0
#: Seconds a lease lasts, by default (:func:`take`'s ``hold``).
TAKING_SECONDS = 60.0

# Indirections so tests can watch the waits.
_sleep = time.sleep
_monotonic = time.monotonic


class LeaseTimeoutError(SmsOnlineError):
    """The account's charging lease could not be taken in time; nothing was charged (retryable).

    :ivar holder: the task instance that held it last (its record's Variable), if known.
    """

    retryable = True

    def __init__(self, message: str, *, holder: str | None = None) -> None:
        super().__init__(message, code="lease_timeout")
        self.holder = holder


def lease_key(account: str) -> str:
    """The Variable holding the charging lease of ``account``."""
    return f"{LEASE_PREFIX}{account}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _until(value: dict[str, Any]) -> datetime | None:
    raw = value.get("until")
    try:
        return datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


def lease_settings(config: Any = None) -> tuple[bool, float]:
    """``[smsonline] charge_lease`` (default on) and ``charge_lease_wait`` (seconds, default
    :data:`DEFAULT_WAIT_SECONDS`) from Airflow's config.

    :raises ValueError: naming the option, for a value that is not a boolean or a positive number.
    """
    if config is None:
        from airflow_provider_smsonline._compat import conf as config  # read when a task charges

    raw = str(config.get("smsonline", "charge_lease", fallback="True")).strip().lower()
    if raw not in ("true", "false", "1", "0", "on", "off", "yes", "no"):
        raise ValueError(f"[smsonline] charge_lease must be True or False, got {raw!r}")
    wait_raw = config.get("smsonline", "charge_lease_wait", fallback=str(DEFAULT_WAIT_SECONDS))
    try:
        wait = float(wait_raw)
    except (TypeError, ValueError):
        wait = -1.0
    if not 0 < wait <= 24 * 3600:
        raise ValueError(
            f"[smsonline] charge_lease_wait must be a number of seconds from 0 to 86400, got {wait_raw!r}"
        )
    return raw in ("true", "1", "on", "yes"), wait


@dataclass
class Lease:
    """A charging lease this try holds (see the module's docstring).

    :ivar key: the lease's Variable.
    :ivar holder: whose it is (the holder's record Variable).
    :ivar ticket: this try's ticket (a holder's retry, or a try thought lost, has another).
    :ivar listing: how the account's rentals were last read, as the lease carried it (``None``:
        not known); set it to what this turn found, for the next taker.
    :ivar prepared: what the taker prepared while the ticket settled (see :func:`take`).
    """

    store: Any
    key: str
    holder: str
    ticket: str
    listing: str | None = None
    prepared: Any = None
    kept: bool = False
    released: bool = False
    #: When (``time.monotonic()``) this try's ticket expires.
    expires: float = float("inf")

    def _value(self, until: datetime) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "ticket": self.ticket,
            "until": until.isoformat(),
            "listing": self.listing,
        }

    def mine(self) -> bool:
        """Whether the lease still holds this try's ticket."""
        return self.store.get(self.key).get("ticket") == self.ticket

    def keep(self, until: datetime) -> None:
        """Leave the lease to expire by time, at ``until`` (the lost call's window and the clocks'
        skew): the call's answer was lost and nothing shows yet."""
        self.kept = True
        try:
            if self.mine():
                self.store.set(self.key, self._value(until))
        except Exception:  # it expires at the turn's end instead
            log.warning("Could not keep the charging lease %s until %s", self.key, until, exc_info=True)

    def release(self) -> None:
        """Give the lease back (once), unless another try holds it now or it is kept: what is left
        is only how the account's rentals were read."""
        if self.kept or self.released:
            return
        self.released = True
        try:
            # Well before its expiry no other try can hold it: no need to read it first.
            if _monotonic() < self.expires - RELEASE_MARGIN or self.mine():
                self.store.set(self.key, {"listing": self.listing} if self.listing else {})
        except Exception:  # it expires by time: never fail a task that has paid for giving it back
            log.warning(
                "Could not give back the charging lease %s; it expires by time", self.key, exc_info=True
            )


def take(
    store: Any,
    account: str,
    holder: str,
    *,
    wait: float = DEFAULT_WAIT_SECONDS,
    hold: float = TAKING_SECONDS,
    prepare: Callable[[str | None], Any] | None = None,
) -> Lease:
    """Take ``account``'s charging lease for ``holder`` (a record's Variable), waiting at most
    ``wait`` seconds while others hold it. It lasts ``hold`` seconds: long enough for the turn's
    snapshot and call, so that a holder that dies frees it after that.

    :param prepare: called with the account's last known listing while the ticket settles (again
        after a lost race); its result is the lease's :attr:`~Lease.prepared`.
    :raises LeaseTimeoutError: not taken in time; nothing was charged.
    """
    key = lease_key(account)
    lease = Lease(store=store, key=key, holder=holder, ticket=secrets.token_hex(8))
    deadline = _monotonic() + wait
    seen: str | None = None
    while True:
        current = store.get(key)
        until = _until(current)
        if isinstance(current.get("listing"), str):
            lease.listing = current["listing"]
        held = bool(current.get("ticket")) and until is not None and until > _now()
        if held and current.get("ticket") != lease.ticket:
            if current.get("holder") != seen:
                seen = current.get("holder")
                log.info("Waiting for the account's charging lease, held by %s until %s", seen, until)
        else:
            store.set(key, lease._value(_now() + timedelta(seconds=hold)))
            lease.expires = _monotonic() + hold
            settled = _monotonic() + SETTLE_SECONDS
            lease.prepared = prepare(lease.listing) if prepare is not None else None
            _sleep(max(0.0, settled - _monotonic()))
            if lease.mine():
                return lease
        if _monotonic() + POLL_SECONDS > deadline:
            raise LeaseTimeoutError(
                f"could not take the account's charging lease within {wait:g} s (held by "
                f"{store.get(key).get('holder') or 'another task instance'}); nothing was charged. "
                "Charging calls on one account take turns; raise [smsonline] charge_lease_wait, or "
                "set [smsonline] charge_lease = False to charge without turns",
                holder=seen,
            )
        _sleep(POLL_SECONDS)


@contextmanager
def charging_turn(
    store: Any, account: str, holder: str, *, hold: float, prepare: Callable[[str | None], T]
) -> Iterator[tuple[Lease | None, T]]:
    """The lease around one charging call, and what ``prepare`` (the account's snapshot, see
    :func:`take`) returned in it; the lease is ``None`` when ``[smsonline] charge_lease`` is off
    (``prepare`` is then called with ``None``). Given back when the block ends, unless
    :meth:`Lease.keep` was called.

    :param hold: seconds the lease lasts: the snapshot and the call's window (see :func:`take`).
    :raises LeaseTimeoutError: not taken within ``[smsonline] charge_lease_wait`` seconds.
    """
    enabled, wait = lease_settings()
    if not enabled:
        yield None, prepare(None)
        return
    lease = take(store, account, holder, wait=wait, hold=hold, prepare=prepare)
    try:
        yield lease, lease.prepared
    finally:
        lease.release()
