# Charging calls carry no idempotency key: this module makes "at most one paid rental per task
# instance" hold across lost answers, task retries and killed workers.
"""The charge ledger: a durable marker per task instance around every charging call.

Before a charging call the operator writes a *pending* marker holding a snapshot of the
account's rental ids (getRentList); after the answer it writes *done* with the rental. A later
try of the same task instance reads the marker first:

* *done*: the rental was paid for already; it is returned again, nothing is charged.
* *pending*: the earlier try's outcome is unknown. The rentals that appeared since the
  snapshot are the candidates: none means nothing was rented (the call is made again), one is
  adopted, several fail the task without retry, naming them.

Markers are Airflow Variables named ``smsonline_charge__<dag_id>__<task_id>__<map_index>``, each
holding the last :data:`RUNS_KEPT` runs' records, so their number stays bounded.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_smsonline.exceptions import OutcomeUnknownError, SmsOnlineError
from airflow_provider_smsonline.protocol import Rental, RentListEntry, parse_datetime

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

log = logging.getLogger(__name__)

RUNS_KEPT = 20
PREFIX = "smsonline_charge__"
DESCRIPTION = "airflow-provider-smsonline charge ledger; safe to delete when no run of this task is active"


class ChargeAmbiguousError(SmsOnlineError):
    """Reconciliation found several rentals that the lost call may have made.

    :ivar candidates: their ids; each is paid for and needs a decision (keep or cancel).
    """

    def __init__(self, message: str, *, candidates: list[int]) -> None:
        super().__init__(message, code="ambiguous")
        self.candidates = candidates


class VariableStore:
    """Markers kept in Airflow Variables (the default)."""

    def get(self, key: str) -> dict[str, Any]:
        from airflow.sdk import Variable

        raw = Variable.get(key, default=None)
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            value = {}
        return value if isinstance(value, dict) else {}

    def set(self, key: str, value: dict[str, Any]) -> None:
        from airflow.sdk import Variable

        Variable.set(key, json.dumps(value, sort_keys=True), description=DESCRIPTION)


@dataclass
class ChargeLedger:
    """The marker of one task instance in one run, read and written through ``store``."""

    key: str
    run_id: str
    store: Any

    @classmethod
    def for_context(cls, context: Context, store: Any | None = None) -> ChargeLedger:
        """The ledger entry of the task instance running in ``context``."""
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        name = f"{ti.dag_id}__{ti.task_id}__{map_index}"
        if len(PREFIX) + len(name) > 200:  # Variable keys are capped at 250 characters
            name = f"{name[:150]}__{hashlib.sha256(name.encode()).hexdigest()[:16]}"
        return cls(key=PREFIX + name, run_id=str(ti.run_id), store=store or VariableStore())

    def read(self) -> dict[str, Any] | None:
        """This run's record, if any."""
        record = self.store.get(self.key).get(self.run_id)
        return record if isinstance(record, dict) else None

    def write(self, record: dict[str, Any] | None) -> None:
        """Replace this run's record (``None`` removes it), keeping the newest runs only."""
        runs = self.store.get(self.key)
        runs.pop(self.run_id, None)
        if record is not None:
            runs[self.run_id] = {**record, "at": datetime.now(timezone.utc).isoformat()}
        if len(runs) > RUNS_KEPT:
            for old in sorted(runs, key=lambda r: str(runs[r].get("at", "")))[: len(runs) - RUNS_KEPT]:
                del runs[old]
        self.store.set(self.key, runs)


def _rental_record(rental: Rental) -> dict[str, Any]:
    return {"state": "done", "rental": rental.to_xcom()}


def _rental_from_record(record: dict[str, Any]) -> Rental:
    data = record["rental"]
    return Rental(id=int(data["id"]), number=str(data["number"]), end_date=parse_datetime(data["end_date"]))


def _end_date(entry: RentListEntry, tz: Any) -> datetime | None:
    """The end date a getRentList entry shows, if the server sends one."""
    try:
        return parse_datetime(entry.extra.get("endDate"), tz)
    except ValueError:
        return None


def _adopt(entry: RentListEntry, started: datetime, hours: int | None, tz: Any) -> Rental:
    """A Rental for a list entry; without an end date in the list, the earliest possible one."""
    end = _end_date(entry, tz)
    if end is not None:
        return Rental(id=entry.id, number=entry.number, end_date=end)
    period = entry.hours or hours or 4
    return Rental(id=entry.id, number=entry.number, end_date=started + timedelta(hours=period))


def charge_once(
    ledger: ChargeLedger,
    hook: SmsOnlineHook,
    charge: Callable[[], Rental],
    *,
    rent_time: int | None,
    existing_id: int | None = None,
) -> tuple[Rental, bool]:
    """Make the charging call at most once for this task instance and run.

    ``existing_id`` is set for continueRentNumber: the rental keeps its id, so a lost answer is
    reconciled by whether its end date in getRentList moved; where the list shows no end
    date, the outcome cannot be decided and the task fails without retry.

    :returns: the rental and whether this call charged (``False`` when it was recovered).
    :raises ChargeAmbiguousError: the outcome cannot be decided; never retry blindly.
    :raises OutcomeUnknownError: the answer was lost and nothing was found yet (retryable:
        the next try reconciles again before charging).
    """
    record = ledger.read()
    if record and record.get("state") == "done":
        rental = _rental_from_record(record)
        log.warning("This task instance already paid for rental %s in an earlier try; reusing it.", rental.id)
        return rental, False
    if record and record.get("state") == "pending":
        recovered = _reconcile(ledger, hook, record, rent_time, existing_id)
        if recovered is not None:
            return recovered, False

    entries = hook.get_rent_list()
    pending: dict[str, Any] = {
        "state": "pending",
        "snapshot": sorted(entry.id for entry in entries),
        "started": datetime.now(timezone.utc).isoformat(),
    }
    if existing_id is not None:
        ends = [_end_date(e, hook.config.server_timezone) for e in entries if e.id == existing_id]
        pending["end"] = ends[0].isoformat() if ends and ends[0] else None
    ledger.write(pending)
    try:
        rental = charge()
    except OutcomeUnknownError:
        # The answer is lost; the server may still have committed. Look once now.
        recovered = _reconcile(ledger, hook, pending, rent_time, existing_id, lost_now=True)
        if recovered is not None:
            return recovered, True
        raise
    except SmsOnlineError:
        ledger.write(None)  # the API refused explicitly: nothing was charged
        raise
    ledger.write(_rental_record(rental))
    return rental, True


def _reconcile(
    ledger: ChargeLedger,
    hook: SmsOnlineHook,
    record: dict[str, Any],
    rent_time: int | None,
    existing_id: int | None,
    *,
    lost_now: bool = False,
) -> Rental | None:
    started = parse_datetime(record.get("started") or datetime.now(timezone.utc).isoformat())
    tz = hook.config.server_timezone
    if existing_id is not None:
        entry = next((e for e in hook.get_rent_list() if e.id == existing_id), None)
        after = _end_date(entry, tz) if entry else None
        if after is not None and record.get("end"):
            if after > parse_datetime(record["end"]):
                rental = Rental(id=existing_id, number=entry.number, end_date=after)  # type: ignore[union-attr]
                log.warning(
                    "Rental %s was extended by the try whose answer was lost; not extending again.",
                    existing_id,
                )
                ledger.write(_rental_record(rental))
                return rental
            if not lost_now:
                ledger.write(None)
            return None
        raise ChargeAmbiguousError(
            f"an earlier continueRentNumber of rental {existing_id} lost its answer "
            f"at {started.isoformat()}: "
            "it may have been extended and charged. Check its end date in your SMS.online account; "
            f"to extend again, delete the Airflow Variable {ledger.key!r} and clear the task",
            candidates=[existing_id],
        )
    before = {int(i) for i in record.get("snapshot", [])}
    entries = [e for e in hook.get_rent_list() if e.id not in before]
    if rent_time is not None:
        entries = [e for e in entries if e.hours in (None, rent_time)]
    if not entries:
        if not lost_now:
            log.info("No rental appeared since the earlier try's snapshot: renting now.")
            ledger.write(None)
        return None
    if len(entries) == 1:
        rental = _adopt(entries[0], started, rent_time, tz)
        log.warning(
            "Recovered rental %s (%s) whose answer was lost; no new rental is made.", rental.id, rental.number
        )
        ledger.write(_rental_record(rental))
        return rental
    ids = sorted(e.id for e in entries)
    raise ChargeAmbiguousError(
        f"the answer to a rental request was lost and {len(ids)} rentals appeared since: {ids}. "
        "One may belong to this task, others to concurrent tasks; none is adopted and no new "
        "rental is made. Keep or cancel them in your SMS.online account, then delete the Airflow "
        f"Variable {ledger.key!r} to rent again",
        candidates=ids,
    )
