# What the account page shows, read from SMS.online through the hook and from the charge ledger
# through owner_of. No web framework and no Airflow database here: the app (app.py) hands in a hook
# and a lookup of owners, the cache (cache.py) decides when to read. Active rentals are found on
# every reading of getRentList's self-contradicting page: getRentHistory over the longest rental
# period names the candidates, getRentList asked with each id says which are active (an answer
# holding other ids is the whole list, and ends the asking).
"""The SMS.online account as the page shows it: balance, rentals, activations, spend."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_smsonline.dates import format_sms_date
from airflow_provider_smsonline.exceptions import AccountError, RentalStateError, SmsOnlineError

if TYPE_CHECKING:
    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
    from airflow_provider_smsonline.ledger import TaskRun
    from airflow_provider_smsonline.protocol import HistoryEntry, RentListEntry

__all__ = [
    "LONGEST_RENTAL",
    "MAX_CHECKS",
    "SPEND_DAYS",
    "AccountSummary",
    "ActivationRow",
    "LastSms",
    "OwnerLookup",
    "RentalRow",
    "RentalsView",
    "SpendRow",
    "payer_json",
    "read_rentals",
    "read_summary",
]

log = logging.getLogger(__name__)

#: How far back getRentHistory is read for rentals that may still be active: the longest
#: rental period SMS.online sells (2160 hours).
LONGEST_RENTAL = timedelta(hours=2160)
#: Days of spend the page charts.
SPEND_DAYS = 30
#: Rentals asked about with getRentList (by id) in one reading at most, newest first; the rest
#: wait for the next reading. Only a server that answers one rental per id needs more than one.
MAX_CHECKS = 100

#: ``owner(item_id, activation)``: the task instance and run that paid, from the charge ledger.
OwnerLookup = Callable[[int, bool], "TaskRun | None"]


@dataclass(frozen=True)
class LastSms:
    """The newest SMS on a rental (getRentStatus). ``date`` as the server wrote it (no zone)."""

    sender: str
    text: str
    date: str

    def to_json(self) -> dict[str, Any]:
        """``{"sender", "text", "date"}``."""
        return {"sender": self.sender, "text": self.text, "date": self.date}


@dataclass(frozen=True)
class RentalRow:
    """One active rental.

    :ivar id: the rental's id.
    :ivar number: the phone number.
    :ivar hours: its period in hours (getRentList), when listed.
    :ivar price: its price (getRentList), when listed.
    :ivar started: when it began, as getRentHistory wrote it (server time, no zone); ``None``
        when the history does not hold it.
    :ivar ends: ``started`` plus ``hours``, in the same server time; ``None`` when either is unknown.
    :ivar last_sms: the newest SMS, ``None`` when none arrived.
    :ivar paid_by: who paid, ``None`` when no record of the charge ledger claims it.
    """

    id: int
    number: str
    hours: int | None
    price: Decimal | None
    started: str | None
    ends: str | None
    last_sms: LastSms | None
    paid_by: TaskRun | None

    def to_json(self) -> dict[str, Any]:
        """The JSON the page reads."""
        return {
            "id": self.id,
            "number": self.number,
            "hours": self.hours,
            "price": _text(self.price),
            "started": self.started,
            "ends": self.ends,
            "last_sms": self.last_sms.to_json() if self.last_sms else None,
            "paid_by": payer_json(self.paid_by),
        }


@dataclass(frozen=True)
class ActivationRow:
    """One active activation (getActiveActivations)."""

    id: int
    number: str
    service: str
    country: int | None
    status: str
    cost: Decimal | None
    paid_by: TaskRun | None

    def to_json(self) -> dict[str, Any]:
        """The JSON the page reads."""
        return {
            "id": self.id,
            "number": self.number,
            "service": self.service,
            "country": self.country,
            "status": self.status,
            "cost": _text(self.cost),
            "paid_by": payer_json(self.paid_by),
        }


@dataclass(frozen=True)
class SpendRow:
    """What one DAG spent on one day (rentals and activations that began that day, by the date
    the server wrote in its history). ``dag_id`` ``None``: no record of the charge ledger claims
    them (bought by hand, or their record pruned)."""

    day: str
    dag_id: str | None
    amount: Decimal

    def to_json(self) -> dict[str, Any]:
        """``{"day", "dag_id", "amount"}``."""
        return {"day": self.day, "dag_id": self.dag_id, "amount": _text(self.amount)}


@dataclass(frozen=True)
class AccountSummary:
    """The quick part: the balance and the active activations (two calls)."""

    balance: Decimal
    activations: tuple[ActivationRow, ...]


@dataclass(frozen=True)
class RentalsView:
    """The slow part: active rentals and the spend of the last :data:`SPEND_DAYS` days.

    :ivar days: every day the spend covers, oldest first (``YYYY-MM-DD``).
    :ivar unchecked: rentals of the history not asked about yet (beyond :data:`MAX_CHECKS`).
    """

    rentals: tuple[RentalRow, ...]
    spend: tuple[SpendRow, ...]
    days: tuple[str, ...]
    unchecked: int = 0


def read_summary(hook: SmsOnlineHook, owner: OwnerLookup) -> AccountSummary:
    """getBalance and getActiveActivations, with who paid for each activation."""
    balance = hook.get_balance()
    activations = tuple(
        ActivationRow(
            id=row.id,
            number=row.number,
            service=row.service,
            country=row.country,
            status=row.status,
            cost=row.cost,
            paid_by=owner(row.id, True),
        )
        for row in hook.get_active_activations()
    )
    return AccountSummary(balance=balance, activations=activations)


def read_rentals(
    hook: SmsOnlineHook,
    owner: OwnerLookup,
    ended: set[int],
    now: datetime | None = None,
) -> RentalsView:
    """The active rentals and the last :data:`SPEND_DAYS` days of spend.

    :param ended: rentals known to have ended (kept by the caller between readings; a rental
        that left getRentList never comes back): they are not asked about again, and those this
        reading finds ended are added.
    :param now: the end of the windows (default: now).
    :raises SmsOnlineError: a failure that leaves the reading incomplete.
    """
    now = now or datetime.now(timezone.utc)
    history = hook.get_rent_history(now - LONGEST_RENTAL, now)
    by_id = {row.id: row for row in history}
    candidates = sorted((row.id for row in history if row.id not in ended), reverse=True)
    listed = _active(hook, candidates[:MAX_CHECKS], ended)
    rentals = []
    for rent_id in sorted(listed, reverse=True):
        entry = listed[rent_id]
        try:
            messages = hook.get_rent_status(rent_id, page=0, size=1)
        except RentalStateError:  # it ended since getRentList answered
            ended.add(rent_id)
            continue
        row = by_id.get(rent_id)
        started = row.date if row is not None else None
        ends = started + timedelta(hours=entry.hours) if started and entry.hours else None
        newest = messages[0] if messages else None
        last = LastSms(newest.phone_from, newest.text, format_sms_date(newest.date)) if newest else None
        rentals.append(
            RentalRow(
                id=rent_id,
                number=entry.number or (row.number if row is not None else ""),
                hours=entry.hours,
                price=entry.price,
                started=format_sms_date(started) if started else None,
                ends=format_sms_date(ends) if ends else None,
                last_sms=last,
                paid_by=owner(rent_id, False),
            )
        )
    since = now - timedelta(days=SPEND_DAYS)
    activations = hook.get_activation_history(since, now)
    recent = [(row, False) for row in history if row.date is not None and row.date >= since]
    spend = _spend([*recent, *((row, True) for row in activations)], owner)
    days = _days(since, now, [row.day for row in spend])
    return RentalsView(
        rentals=tuple(rentals),
        spend=spend,
        days=days,
        unchecked=max(0, len(candidates) - MAX_CHECKS),
    )


def _active(hook: SmsOnlineHook, candidates: list[int], ended: set[int]) -> dict[int, RentListEntry]:
    """The active rentals among ``candidates`` (getRentList asked with each id). A server that
    answers an id with other rentals too lists them all: that one answer is the list, for the
    candidates and beyond."""
    active: dict[int, RentListEntry] = {}
    for rent_id in candidates:
        try:
            entries = hook.get_rent_list(rent_id)
        except SmsOnlineError as error:
            if error.retryable or isinstance(error, AccountError):
                raise
            ended.add(rent_id)  # refused for this id (NO_ID_RENT, ...): not an active rental
            continue
        if any(entry.id != rent_id for entry in entries):
            whole = {entry.id: entry for entry in entries}
            ended.update(c for c in candidates if c not in whole)
            return whole
        match = next((entry for entry in entries if entry.id == rent_id), None)
        if match is None:
            ended.add(rent_id)
        else:
            active[rent_id] = match
    return active


def _spend(rows: Iterable[tuple[HistoryEntry, bool]], owner: OwnerLookup) -> tuple[SpendRow, ...]:
    totals: dict[tuple[str, str | None], Decimal] = defaultdict(Decimal)
    for row, activation in rows:
        if row.cost is None or row.cost <= 0 or row.date is None:
            continue
        payer = owner(row.id, activation)
        totals[(row.date.strftime("%Y-%m-%d"), payer.dag_id if payer else None)] += row.cost
    return tuple(
        SpendRow(day, dag_id, amount)
        for (day, dag_id), amount in sorted(totals.items(), key=lambda item: (item[0][0], item[0][1] or ""))
    )


def _days(since: datetime, now: datetime, seen: Iterable[str]) -> tuple[str, ...]:
    """Every day from ``since`` to ``now`` (UTC), and any later one the server's dates name."""
    first, last = since.date(), max([now.date(), *(date.fromisoformat(day) for day in seen)])
    return tuple((first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1))


def payer_json(run: TaskRun | None) -> dict[str, Any] | None:
    """Who paid, as the page reads it: ``{"dag_id", "task_id", "map_index", "run_id"}``."""
    if run is None:
        return None
    return {"dag_id": run.dag_id, "task_id": run.task_id, "map_index": run.map_index, "run_id": run.run_id}


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
