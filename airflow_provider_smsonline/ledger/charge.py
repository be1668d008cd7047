# Charging calls carry no idempotency key: this makes "at most one paid rental (or renewal) per task
# instance and run" hold across lost answers, task retries and killed workers. It does the I/O
# (getRentList, the store, waiting); what to do is decided in decide.py.
"""``charge_once``: a charging call made at most once per task instance and run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_smsonline.exceptions import OutcomeUnknownError, SmsOnlineError
from airflow_provider_smsonline.ledger.decide import (
    CLOCK_SKEW,
    Adopt,
    Ambiguous,
    NotYet,
    Pay,
    Reuse,
    Wait,
    decide,
)
from airflow_provider_smsonline.ledger.keys import account_id
from airflow_provider_smsonline.ledger.lease import Lease, charging_turn
from airflow_provider_smsonline.ledger.listing import (
    listed_now,
    listing_of,
    snapshot_for_renewal,
    snapshot_for_rent,
    with_digests,
)
from airflow_provider_smsonline.ledger.records import (
    Asked,
    Done,
    Listed,
    Pending,
    Record,
    Survey,
    asked_by,
    asked_of,
)
from airflow_provider_smsonline.ledger.store import ChargeLedger

if TYPE_CHECKING:
    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
    from airflow_provider_smsonline.protocol import Rental

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Seconds added to a call's connect and read timeouts for its window (server work, clock skew).
WINDOW_MARGIN = 2.0
#: How often reconciliation looks again while waiting for another task instance's call.
RIVAL_POLL_SECONDS = 0.1
#: Seconds from writing a pending record in a charging turn to its call, at most: the ticket's
#: settle time (ledger/lease.py) and its read-back.
SETTLED = 1.0
#: How often a retry reads its record again while an earlier try's call can still be answered.
WINDOW_POLL_SECONDS = 0.5


class ChargeAmbiguousError(SmsOnlineError):
    """Reconciliation cannot tell whether (or which) rental the lost call paid for.

    :ivar candidates: the rental ids concerned; each may be paid for and needs a decision.
    """

    def __init__(self, message: str, *, candidates: list[int]) -> None:
        super().__init__(message, code="ambiguous")
        self.candidates = candidates


class ChargeConflictError(SmsOnlineError):
    """This task instance already paid for something in this run, asked with other arguments.

    :ivar held: the id of what it paid for (a rental or an activation).
    """

    def __init__(self, message: str, *, held: int) -> None:
        super().__init__(message, code="conflict")
        self.held = held


def check_asked(
    ledger: ChargeLedger, earlier: Asked | None, asked: Asked | None, what: str, held: int
) -> None:
    """Refuse to serve ``held`` (a ``what``: rental, activation), paid for by an earlier try that
    asked for ``earlier``, to a try that asks for something else: on each argument ``earlier``
    names (a record of an older release names fewer; ``None``: it cannot tell, served).

    :raises ChargeConflictError: they differ; nothing is charged or released.
    """
    wants = dict(asked or ())
    if earlier is None or asked is None or all(wants.get(name) == value for name, value in earlier):
        return
    bought = f"{what} {held}"
    claim = ledger.store.get(ledger.key).get("claim")
    variables = (
        f"the Airflow Variables {ledger.key!r} and {claim!r}"
        if claim
        else f"the Airflow Variable {ledger.key!r}"
    )
    raise ChargeConflictError(
        f"this task instance already paid for {bought} in this run, asking for {_said(earlier)}; this "
        f"try asks for {_said(asked)} (its arguments changed, as a mapped task's list can after a "
        f"clear). Nothing is charged, and {bought} is neither released nor reused: keep or release it "
        f"in your SMS.online account, then run the DAG again, or delete {variables} to charge in this run",
        held=held,
    )


def _said(asked: Asked) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in asked)


def account_of(hook: SmsOnlineHook) -> str:
    """The account id of the hook's connection (see :func:`~.keys.account_id`)."""
    return account_id(hook.config.endpoint, hook.config.api_key)


def charge_once(
    ledger: ChargeLedger,
    hook: SmsOnlineHook,
    charge: Callable[[], Rental],
    *,
    rent_time: int | None,
    existing_id: int | None = None,
    asked: Mapping[str, Any] | None = None,
) -> tuple[Rental, bool]:
    """Make the charging call at most once for this task instance and run.

    :param charge: the call (getRentNumber, or continueRentNumber of ``existing_id``).
    :param rent_time: the hours asked for.
    :param existing_id: the rental being renewed; ``None`` for a new rental.
    :param asked: all the call asks for: an earlier try's rental is returned only for the same.
    :returns: the rental and whether this try's call charged (``False``: found again).
    :raises ChargeAmbiguousError: the outcome cannot be decided; never retry blindly.
    :raises ChargeConflictError: an earlier try of this run paid, asking for something else.
    :raises OutcomeUnknownError: the answer was lost and nothing was found yet (retryable:
        the next try looks again before it could charge).
    """
    account = account_of(hook)
    wants = asked_of(asked) if asked is not None else None
    record = ledger.read()
    if isinstance(record, Pending):
        record = _after_window(ledger, record)
    if record is not None:
        found = _reconcile(ledger, hook, account, record, lost_now=False)
        if found is not None:
            earlier = asked_by(record)
            if (
                earlier is not None
                and record.renewing is not None
                and existing_id == found.id != record.renewing
            ):
                # asked to renew the rental this renewal came back as (under a new id): the same ask
                earlier = asked_of({**dict(earlier), "rent_id": existing_id})
            check_asked(ledger, earlier, wants, "rental", found.id)
            return found, False
    ledger.prune_on_first_try(record)

    def prepare(known: str | None) -> Pending:
        """The pending record, written: the account's snapshot, read in the turn while its ticket
        settles (``known``: how the account's rentals were last read, as the lease says)."""
        started = _now()
        if existing_id is None:
            listing, snapshot = snapshot_for_rent(hook, started, known=known)
        else:
            listing, snapshot = snapshot_for_renewal(hook, existing_id)
        pending = Pending(
            started=started,
            until=_now() + timedelta(seconds=_window(hook) + WINDOW_MARGIN),  # the call follows the settle
            snapshot=snapshot,
            rent_time=rent_time,
            renewing=existing_id,
            intent=ledger.intent_key(account),
            asked=wants,
            listing=listing,
        )
        ledger.write(pending, announce=False)  # announced once the turn is sure
        return pending

    # The account's snapshot and the call, in this account's charging turn (ledger/lease.py).
    with charging_turn(ledger.store, account, ledger.key, hold=turn_seconds(hook), prepare=prepare) as turn:
        lease, pending = turn
        if lease is not None and existing_id is None:
            lease.listing = pending.listing  # for the next taker
        ledger.announce(pending)
        look = partial(_reconcile, ledger, hook, account, pending, lost_now=True)
        rental, recovered = call_in_turn(lease, ledger, charge, look, pending.until)
        if recovered:
            return rental, True
        # Noted first, and still in the turn: it keeps other task instances' reconciliation
        # off this rental, and a try killed before noting keeps the turn until its call's
        # window closes, so that no later call overlaps it.
        ledger.answered(pending, rental.id)
    claim = ledger.claim(account, rental.id) if rental.id != existing_id else None
    ledger.write(Done(rental=rental, renewing=existing_id, claim=claim, asked=wants))
    return rental, True


def call_in_turn(
    lease: Lease | None,
    ledger: ChargeLedger,
    call: Callable[[], T],
    reconcile: Callable[[], T | None],
    until: datetime,
) -> tuple[T, bool]:
    """:func:`call_or_reconcile` in a charging turn (``lease``; ``None`` when turns are off): a lost
    answer that nothing explains yet keeps the lease until the call's window has closed (the call
    may still be served till then); otherwise the turn ends when the caller's block does."""
    try:
        return call_or_reconcile(ledger, call, reconcile)
    except OutcomeUnknownError:
        if lease is not None:
            lease.keep(until + CLOCK_SKEW)  # ``until``: the pending record's, the call's window
        raise


def call_or_reconcile(
    ledger: ChargeLedger, call: Callable[[], T], reconcile: Callable[[], T | None]
) -> tuple[T, bool]:
    """Make a charging call whose pending record is written: what it bought (and ``False``), or,
    when its answer was lost, what ``reconcile`` found for it (and ``True``). A lost answer that
    nothing explains stays :class:`OutcomeUnknownError` (the record stays for the next try); an
    explicit refusal clears the record (nothing was charged)."""
    try:
        return call(), False
    except OutcomeUnknownError:
        # The answer is lost; the server may still have committed. Look once now.
        found = reconcile()
        if found is not None:
            return found, True
        raise
    except SmsOnlineError:
        ledger.write(None)  # the API refused explicitly: nothing was charged
        raise


def _now() -> datetime:
    return datetime.now(timezone.utc)


def turn_seconds(hook: SmsOnlineHook) -> float:
    """How long a charging turn's lease lasts: the snapshot's reads (each with its retries), the
    call's window and the clocks' skew; a holder that dies frees it after that."""
    return (hook.config.read_retries + 2) * _window(hook) + CLOCK_SKEW.total_seconds()


def _window(hook: SmsOnlineHook) -> float:
    """How long after a call it can still be served: its timeouts and a margin."""
    return hook.config.connect_timeout + hook.config.timeout + WINDOW_MARGIN


def _after_window(ledger: ChargeLedger, record: Pending) -> Record | None:
    """The record once the pending call's window has closed (and the clocks' skew passed).

    An earlier try of this task instance can still be alive (its worker was only thought lost):
    its call can then still be answered, and that try writes its result. Deciding before would
    take "nothing appeared yet" for "nothing was charged" and charge again.
    """
    while True:
        left = (record.until + CLOCK_SKEW - _now()).total_seconds()
        if left <= 0:
            return record
        log.info("An earlier try's call may still be answered; waiting %.1f s for its window to close.", left)
        time.sleep(min(left, WINDOW_POLL_SECONDS))
        fresh = ledger.read()
        if not isinstance(fresh, Pending) or fresh != record:
            return fresh


def _reconcile(
    ledger: ChargeLedger, hook: SmsOnlineHook, account: str, record: Record, *, lost_now: bool
) -> Rental | None:
    """Act on the record of an earlier try (or of this try's lost call): the rental found, or
    ``None`` when the call is to be made (again) or, after a lost answer, nothing showed yet."""
    listed: tuple[Listed, ...] | None
    row: Listed | None = None
    if isinstance(record, Pending) and not lost_now and record.intent and not ledger.store.get(record.intent):
        # The record is written while the try waits for its turn, its intent only once the turn
        # is sure, just before the call (and it goes only after the record is replaced): the
        # earlier try stopped before its call, and nothing was charged.
        log.info("The earlier try wrote its record but never made its call (no turn yet): charging now.")
        ledger.write(None)
        return None
    if isinstance(record, Pending):
        record = with_digests(record, hook)
        listed = listed_now(hook, record)
    else:
        row = listing_of(hook, record.rental.id)  # is it still active, and its number
        # a finished renewal is reused whatever the list says
        listed = None if record.renewing is not None else ((row,) if row is not None else ())
    wanted: set[int] = set()
    if isinstance(record, Pending) and listed is not None:
        before = {row.id for row in record.snapshot}
        wanted = {row.id for row in listed if row.id not in before}
    deadline = time.monotonic() + _window(hook)
    while True:
        survey = ledger.survey(account, wanted) if wanted else Survey()
        decision = decide(
            record, listed, survey, now=_now(), lost_now=lost_now, waited_out=time.monotonic() > deadline
        )
        if not isinstance(decision, Wait):
            break
        time.sleep(RIVAL_POLL_SECONDS)  # an answer on its way is noted within moments
    if isinstance(decision, Reuse):
        log.warning(
            "This task instance already paid for rental %s in an earlier try; reusing it.", decision.rental.id
        )
        if not decision.rental.number and row is not None:  # the record keeps no number
            return replace(decision.rental, number=row.number)
        return decision.rental
    if isinstance(decision, Pay):
        log.info("%s: charging now.", decision.reason.capitalize())
        ledger.write(None)
        return None
    if isinstance(decision, NotYet):
        assert isinstance(record, Pending)
        log.info("The answer was lost and %s; a retry looks again before it could charge.", decision.reason)
        ledger.write(replace(record, looked_at=_now()))
        return None
    assert isinstance(record, Pending)
    if isinstance(decision, Adopt):
        rental = decision.rental
        log.warning(
            "Recovered rental %s (%s) whose answer was lost (%s); nothing is charged again.",
            rental.id,
            rental.number,
            decision.reason,
        )
        ledger.answered(record, rental.id)
        claim = ledger.claim(account, rental.id) if decision.claim else None
        ledger.write(Done(rental=rental, renewing=record.renewing, claim=claim, asked=record.asked))
        return rental
    assert isinstance(decision, Ambiguous)
    raise _ambiguous(ledger, account, record, decision)


def _ambiguous(
    ledger: ChargeLedger, account: str, record: Pending, decision: Ambiguous
) -> ChargeAmbiguousError:
    """The error to raise; first the rentals it names are marked, and this try counts as looked."""
    now = _now()
    marks = ledger.name(account, decision.candidates, record.looked_at or record.started, now)
    ledger.write(replace(record, looked_at=now, named=tuple(sorted({*record.named, *marks}))))
    ids = list(decision.candidates)
    if record.renewing is not None:
        message = (
            f"an earlier continueRentNumber of rental {record.renewing} lost its answer "
            f"({record.started.isoformat()}) and {decision.reason}: it may have been renewed and "
            f"charged. Check rental(s) {ids} in your SMS.online account; to renew again, delete the "
            f"Airflow Variable {ledger.key!r} and clear the task"
        )
    else:
        message = (
            f"the answer to a rental request was lost and {decision.reason}; none is adopted and "
            f"no new rental is made. Keep or cancel rental(s) {ids} in your SMS.online account, "
            f"then delete the Airflow Variable {ledger.key!r} to rent again"
        )
    return ChargeAmbiguousError(message, candidates=ids)
