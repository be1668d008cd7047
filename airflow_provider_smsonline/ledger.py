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

Claims and intents, for task instances renting on the same account at once. While its record
is *pending*, a task instance announces an *intent*, ``smsonline_rental__<conn_id>__pending__<digest>``:
the window in which its call can be served (from the call until the client's connect and read
timeouts and a margin have passed), marked *looked* once a look after a lost answer found
nothing, and *answered* with the rental id as soon as an answer arrives. Then it *claims* the
rental, ``smsonline_rental__<conn_id>__<rental_id>``, before its record says *done*; claims and
intents go with their run's record. Reconciliation skips rentals others claimed or were answered
with, so a retry that comes after other task instances rented neither adopts their rentals nor
fails for them, and a retry after a kill finds its own answered rental. A rental nobody claims
while another task instance's window that overlaps ours is unresolved (its answer on the way,
or killed before recording it) may be that one's: it is waited for, then left to it (when our
own call was already looked for) or reported as ambiguous, never adopted. A task instance that
ends in ChargeAmbiguousError marks the rentals it names (``...__named__<rental_id>``, with the
interval in which they appeared): later reconciliations skip them unless their own window
overlaps that interval. Where the Task SDK cannot list Variables (``Variable.keys`` is in
Airflow 3.3, not in 3.1), intents are not seen and only claims apply. Concurrent charging
calls on one account can end in ChargeAmbiguousError (safe: never a double, the rentals are
named); one charging task at a time per account (e.g. an Airflow pool of one slot) avoids that.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
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
#: Seconds added to a call's connect and read timeouts for its window (server work, clock skew).
WINDOW_MARGIN = 2.0
#: How often reconciliation looks again while waiting for another task instance's window.
RIVAL_POLL_SECONDS = 0.1
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

        lister = getattr(Variable, "keys", None)  # recent Task SDKs (Airflow 3.3 has it, 3.1 not)
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
        announced = record.get("intent") if record and record.get("state") == "pending" else None
        if announced and record is not None:
            self.store.set(announced, _intent_of(self, record))
        kept = {key for r in runs.values() if isinstance(r, dict) for key in _owned_keys(r)}
        for gone in dropped:
            for key in _owned_keys(gone) if isinstance(gone, dict) else ():
                if key != announced and key not in kept:
                    self._unclaim(key)

    def claim(self, account: str, rental_id: int) -> str:
        """Record that ``rental_id`` belongs to this task instance and run; returns the claim's key."""
        key = _claim_key(account, rental_id)
        self.store.set(key, {"owner": self.key, "run_id": self.run_id})
        return key

    def intent_key(self, account: str) -> str:
        """The key of this task instance and run's intent on ``account``."""
        digest = hashlib.sha256(f"{self.key}\n{self.run_id}".encode()).hexdigest()[:24]
        return f"{_claim_key(account, None)}pending__{digest}"

    def survey(
        self, account: str, rental_ids: list[int]
    ) -> tuple[set[int], dict[int, dict[str, Any]], list[dict[str, Any]], int | None]:
        """What is known of ``rental_ids``: those other task instances (or runs) hold, those they
        only named in an ambiguity (with the named claim, for its interval), their unresolved
        intents on ``account``, and the rental this task instance's own intent was answered with.

        With a store that lists keys, one listing shows every claim and intent: only intents and
        named claims are read. Claims are listed again after the intents are read: an owner
        records its claim before it withdraws its intent, so a rival found gone shows its claim.
        """
        wanted = set(rental_ids)
        mine = self.intent_key(account)
        own_intent = self.store.get(mine)
        own = own_intent.get("answered") if own_intent else None
        held: set[int] = set()
        named: dict[int, dict[str, Any]] = {}
        rivals: list[dict[str, Any]] = []
        lister = getattr(self.store, "keys", None)
        listed = lister(_claim_key(account, None)) if lister is not None else None
        if listed is None:  # one lookup per rental
            for rental_id in wanted:
                owner = self.store.get(_claim_key(account, rental_id))
                if owner and not self._owns(owner):
                    held.add(rental_id)
                elif not owner:
                    mark = self.store.get(_claim_key(account, rental_id, named=True))
                    if mark and not self._owns(mark):
                        named[rental_id] = mark
            return held, named, rivals, own
        pending_prefix = f"{_claim_key(account, None)}pending__"
        for key in sorted(listed):
            if key.startswith(pending_prefix) and key != mine:
                intent = self.store.get(key)
                if intent.get("answered") is not None:
                    held.add(int(intent["answered"]))  # its call was answered: that rental is its own
                elif intent:
                    rivals.append(intent)
        keys = set(lister(_claim_key(account, None)) or ()) if lister is not None else set()
        for rental_id in wanted:
            if _claim_key(account, rental_id) in keys and rental_id != own:
                held.add(rental_id)
            elif _claim_key(account, rental_id, named=True) in keys:
                mark = self.store.get(_claim_key(account, rental_id, named=True))
                if mark and not self._owns(mark):
                    named[rental_id] = mark
        return held & wanted, named, rivals, own

    def answered(self, record: dict[str, Any], rental_id: int) -> None:
        """Note in this run's intent (if any) which rental the call was answered with: the first
        thing recorded after an answer, so that a retry after a kill knows its own rental."""
        intent = record.get("intent")
        if intent:
            self.store.set(intent, {**_intent_of(self, record), "answered": rental_id})

    def _owns(self, claim: dict[str, Any]) -> bool:
        return (claim.get("owner"), claim.get("run_id")) == (self.key, self.run_id)

    def name(self, account: str, rental_ids: list[int], appeared_after: str, appeared_by: str) -> list[str]:
        """Mark rentals nobody claims as named by this task instance's ambiguity; returns their keys."""
        keys = []
        for rental_id in rental_ids:
            key = _claim_key(account, rental_id, named=True)
            if not self.store.get(key) and not self.store.get(_claim_key(account, rental_id)):
                self.store.set(
                    key,
                    {
                        "owner": self.key,
                        "run_id": self.run_id,
                        "named": True,
                        "appeared_after": appeared_after,
                        "appeared_by": appeared_by,
                    },
                )
                keys.append(key)
        return keys

    def _unclaim(self, claim: str) -> None:
        delete = getattr(self.store, "delete", None)
        if delete is None:
            return
        try:
            delete(claim)
        except Exception:  # a claim left behind only makes reconciliation skip that rental
            log.debug("Could not delete the claim %s", claim, exc_info=True)


def _intent_of(ledger: ChargeLedger, record: dict[str, Any]) -> dict[str, Any]:
    """What a pending record announces: whose call, and the window in which it can be served."""
    return {
        "owner": ledger.key,
        "run_id": ledger.run_id,
        "started": record.get("started"),
        "until": record.get("until"),
        "looked_at": record.get("looked_at"),
    }


def _owned_keys(record: dict[str, Any]) -> list[str]:
    """The claim, intent and named claims a record owns (they go when it goes)."""
    keys = [record.get("claim"), record.get("intent"), *(record.get("named") or [])]
    return [key for key in keys if isinstance(key, str) and key]


def _claim_key(account: str, rental_id: int | None, *, named: bool = False) -> str:
    """A claim's key (``named``: of a rental named in an ambiguity; ``rental_id=None``: the prefix
    of the account's claims, named claims and intents)."""
    if len(account) > 150:  # Variable keys are capped at 250 characters
        account = f"{account[:100]}__{hashlib.sha256(account.encode()).hexdigest()[:16]}"
    prefix = f"{CLAIM_PREFIX}{account}__"
    if rental_id is None:
        return prefix
    return f"{prefix}named__{rental_id}" if named else f"{prefix}{rental_id}"


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
    else:
        window = hook.config.connect_timeout + hook.config.timeout + WINDOW_MARGIN
        pending["intent"] = ledger.intent_key(_account(hook))
        pending["until"] = (parse_datetime(pending["started"]) + timedelta(seconds=window)).isoformat()
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
    # Recorded first: it is what keeps other task instances' reconciliation off this rental.
    ledger.answered(pending, rental.id)
    claim = ledger.claim(_account(hook), rental.id) if existing_id is None else None
    ledger.write(_rental_record(rental, claim))
    return rental, True


def _unclaimed_and_mine(
    ledger: ChargeLedger,
    hook: SmsOnlineHook,
    record: dict[str, Any],
    entries: list[RentListEntry],
    *,
    lost_now: bool,
) -> list[RentListEntry]:
    """The new rentals that can be this task instance's: not claimed by another task instance,
    and not explainable by another one's unresolved call (see the module's *claims and intents*).

    :raises ChargeAmbiguousError: another task instance's unresolved call may have made them.
    """
    if not entries:
        return entries
    account = _account(hook)
    now = datetime.now(timezone.utc)
    looked = _when(record.get("looked_at"))
    # When our call can have made a rental: from the call (or, once looked for, from the look)
    # until its window closes; a call being answered right now is open until now.
    ours_from = looked or _when(record.get("started")) or now
    ours_to = now if lost_now else (_when(record.get("until")) or now)
    # Once our call was looked for, only a late commit could still be ours, and any other
    # task instance's unresolved call since then explains a new rental better.
    rivals_to = now if looked else ours_to
    deadline = time.monotonic() + hook.config.connect_timeout + hook.config.timeout + WINDOW_MARGIN
    while True:
        held, named, rivals, own = ledger.survey(account, [e.id for e in entries])
        if own is not None and any(e.id == own for e in entries):
            log.info("Rental %s was this task's own answer before its earlier try ended.", own)
            return [e for e in entries if e.id == own]
        # A rental another task instance named appeared in its interval: ours only if ours overlaps.
        held |= {
            rid
            for rid, claim in named.items()
            if not _overlap(claim.get("appeared_after"), claim.get("appeared_by"), ours_from, ours_to, now)
        }
        if held:
            log.info(
                "%d rental(s) that appeared since belong to other task instances; not this one's.", len(held)
            )
            entries = [e for e in entries if e.id not in held]
        # Another call whose window overlaps ours, unresolved and not looked for: it may have made them.
        overlapping = [
            r
            for r in rivals
            if not r.get("looked_at")
            and _overlap(r.get("started"), r.get("until"), ours_from, rivals_to, now)
        ]
        in_flight = [r for r in overlapping if (_when(r.get("until")) or now) > datetime.now(timezone.utc)]
        if not entries or not overlapping or not in_flight or time.monotonic() > deadline:
            break
        time.sleep(RIVAL_POLL_SECONDS)  # an answer on its way is recorded within moments
    if not entries or not overlapping:
        return entries
    ids = sorted(e.id for e in entries)
    if looked is not None and len(entries) <= len(overlapping):
        log.info(
            "Rental(s) %s appeared after this task's own call was looked for; left to the other "
            "task instance(s) whose calls were unresolved then.",
            ids,
        )
        return []
    raise _ambiguous(
        ledger,
        hook,
        record,
        f"the answer to a rental request was lost and rental(s) {ids} appeared, unclaimed, while "
        f"{len(overlapping)} other task instance(s) on the same account had calls unresolved; "
        "none is adopted and no new rental is made. Keep or cancel them in your SMS.online "
        f"account, then delete the Airflow Variable {ledger.key!r} to rent again",
        ids,
    )


def _ambiguous(
    ledger: ChargeLedger, hook: SmsOnlineHook, record: dict[str, Any], message: str, ids: list[int]
) -> ChargeAmbiguousError:
    """The error to raise; first the rentals it names are marked, and this try counts as looked."""
    now = datetime.now(timezone.utc).isoformat()
    appeared_after = str(record.get("looked_at") or record.get("started") or now)
    named = ledger.name(_account(hook), ids, appeared_after, now)
    earlier = [key for key in record.get("named") or [] if isinstance(key, str)]
    ledger.write({**record, "looked_at": now, "named": sorted({*earlier, *named})})
    return ChargeAmbiguousError(message, candidates=ids)


def _overlap(start: Any, end: Any, ours_from: datetime, ours_to: datetime, now: datetime) -> bool:
    """Whether the interval ``[start, end]`` (ISO strings; missing: now) meets ``[ours_from, ours_to]``."""
    return (_when(start) or now) < ours_to and (_when(end) or now) > ours_from


def _when(value: Any) -> datetime | None:
    try:
        return parse_datetime(value) if value else None
    except ValueError:
        return None


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
    entries = _unclaimed_and_mine(ledger, hook, record, entries, lost_now=lost_now)
    if not entries:
        if not lost_now:
            log.info("No rental appeared since the earlier try's snapshot: renting now.")
            ledger.write(None)
        else:  # nothing yet: only a late commit could still make a rental of this call
            ledger.write({**record, "looked_at": datetime.now(timezone.utc).isoformat()})
        return None
    if len(entries) == 1:
        rental = _adopt(entries[0], started, rent_time, tz)
        log.warning(
            "Recovered rental %s (%s) whose answer was lost; no new rental is made.", rental.id, rental.number
        )
        ledger.answered(record, rental.id)
        ledger.write(_rental_record(rental, ledger.claim(_account(hook), rental.id)))
        return rental
    ids = sorted(e.id for e in entries)
    raise _ambiguous(
        ledger,
        hook,
        record,
        f"the answer to a rental request was lost and {len(ids)} rentals no other task instance "
        f"holds appeared since: {ids}. "
        "One may belong to this task, others to concurrent tasks; none is adopted and no new "
        "rental is made. Keep or cancel them in your SMS.online account, then delete the Airflow "
        f"Variable {ledger.key!r} to rent again",
        ids,
    )
