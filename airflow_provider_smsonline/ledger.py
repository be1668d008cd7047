# Charging calls carry no idempotency key: this module makes "at most one paid rental per task
# instance" hold across lost answers, task retries and killed workers.
"""The charge ledger: a durable marker per task instance around every charging call.

Before a charging call the operator writes a *pending* marker holding a snapshot of the
account's rental ids (getRentList); after the answer it writes *done* with the rental. A later
try of the same task instance reads the marker first:

* *done*: the rental was paid for already; it is returned again, nothing is charged.
* *pending*: the earlier try's outcome is unknown. The rentals that appeared since the
  snapshot, less those another task instance holds (see *claims*), are the candidates: none
  means nothing was rented (the call is made again), one is adopted, several fail the task
  without retry, naming them.

Markers are Airflow Variables named ``smsonline_charge__<dag_id>__<task_id>__<map_index>``, each
holding the last :data:`RUNS_KEPT` runs' records, so their number stays bounded.

Claims: as soon as a task instance knows which rental is its own (the API's answer, or an
adoption), it records that in a Variable ``smsonline_rental__<conn_id>__<rental_id>`` naming
its marker and run; the claim goes when its run's record does. Reconciliation skips rentals
claimed by others, so a retry that comes after other task instances rented on the same account
neither adopts their rentals nor fails for them. What claims cannot tell apart: a rental whose
owner is still waiting for its answer, or was killed before recording it. Reconciliation is
exact when one charging call per account is in flight at a time (e.g. an Airflow pool of one
slot for the charging tasks); with more, a lost answer may end in ChargeAmbiguousError.
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
#: Claims: ``smsonline_rental__<conn_id>__<rental_id>`` → ``{"owner": marker key, "run_id": ...}``.
CLAIM_PREFIX = "smsonline_rental__"
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

    def delete(self, key: str) -> None:
        from airflow.sdk import Variable

        Variable.delete(key)

    def keys(self, prefix: str) -> list[str] | None:
        """The Variable keys starting with ``prefix``; ``None`` where Airflow cannot list them."""
        from airflow.sdk import Variable

        lister = getattr(Variable, "keys", None)  # Task SDK 1.2+ (Airflow 3.2)
        if lister is None:
            return None
        try:
            return list(lister(prefix=prefix))
        except Exception:  # only an optimisation: without it each rental is looked up
            log.debug("Listing Variables failed", exc_info=True)
            return None


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
        dropped = [runs.pop(self.run_id, None)]
        if record is not None:
            runs[self.run_id] = {**record, "at": datetime.now(timezone.utc).isoformat()}
        if len(runs) > RUNS_KEPT:
            for old in sorted(runs, key=lambda r: str(runs[r].get("at", "")))[: len(runs) - RUNS_KEPT]:
                dropped.append(runs.pop(old))
        self.store.set(self.key, runs)
        kept = {r.get("claim") for r in runs.values() if isinstance(r, dict)}
        for gone in dropped:
            claim = gone.get("claim") if isinstance(gone, dict) else None
            if claim and claim not in kept:
                self._unclaim(claim)

    def claim(self, account: str, rental_id: int) -> str:
        """Record that ``rental_id`` belongs to this task instance and run; returns the claim's key."""
        key = _claim_key(account, rental_id)
        self.store.set(key, {"owner": self.key, "run_id": self.run_id})
        return key

    def held_elsewhere(self, account: str, rental_ids: list[int]) -> set[int]:
        """Those of ``rental_ids`` that another task instance (or run) has claimed."""
        if not rental_ids:
            return set()
        lister = getattr(self.store, "keys", None)
        listed = lister(_claim_key(account, None)) if lister is not None else None
        claimed = set(rental_ids)
        if listed is not None:  # one listing instead of one lookup per rental
            claimed &= {rid for rid in rental_ids if _claim_key(account, rid) in set(listed)}
        others = set()
        for rental_id in claimed:
            owner = self.store.get(_claim_key(account, rental_id))
            if owner and (owner.get("owner"), owner.get("run_id")) != (self.key, self.run_id):
                others.add(rental_id)
        return others

    def _unclaim(self, claim: str) -> None:
        delete = getattr(self.store, "delete", None)
        if delete is None:
            return
        try:
            delete(claim)
        except Exception:  # a claim left behind only makes reconciliation skip that rental
            log.debug("Could not delete the claim %s", claim, exc_info=True)


def _claim_key(account: str, rental_id: int | None) -> str:
    """The claim Variable's key (``rental_id=None``: the prefix of the account's claims)."""
    if len(account) > 150:  # Variable keys are capped at 250 characters
        account = f"{account[:100]}__{hashlib.sha256(account.encode()).hexdigest()[:16]}"
    return f"{CLAIM_PREFIX}{account}__{'' if rental_id is None else rental_id}"


def _account(hook: SmsOnlineHook) -> str:
    """Where rental ids are unique: the connection (an account), as far as the ledger can tell."""
    return str(getattr(hook, "smsonline_conn_id", "") or "")


def _rental_record(rental: Rental, claim: str | None = None) -> dict[str, Any]:
    record = {"state": "done", "rental": rental.to_xcom()}
    return {**record, "claim": claim} if claim else record


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
        # A cleared task whose rental was finished or cancelled since gets a new one.
        if existing_id is not None or rental.id in {entry.id for entry in hook.get_rent_list()}:
            log.warning(
                "This task instance already paid for rental %s in an earlier try; reusing it.", rental.id
            )
            return rental, False
        log.info("Rental %s of an earlier try is no longer active; renting anew.", rental.id)
        ledger.write(None)
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
    # Claimed first: it is what keeps other task instances' reconciliation off this rental.
    claim = ledger.claim(_account(hook), rental.id) if existing_id is None else None
    ledger.write(_rental_record(rental, claim))
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
    held = ledger.held_elsewhere(_account(hook), [e.id for e in entries])
    if held:
        log.info(
            "%d rental(s) that appeared since belong to other task instances; not this one's.", len(held)
        )
        entries = [e for e in entries if e.id not in held]
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
        ledger.write(_rental_record(rental, ledger.claim(_account(hook), rental.id)))
        return rental
    ids = sorted(e.id for e in entries)
    raise ChargeAmbiguousError(
        f"the answer to a rental request was lost and {len(ids)} rentals no other task instance "
        f"holds appeared since: {ids}. "
        "One may belong to this task, others to concurrent tasks; none is adopted and no new "
        "rental is made. Keep or cancel them in your SMS.online account, then delete the Airflow "
        f"Variable {ledger.key!r} to rent again",
        candidates=ids,
    )
