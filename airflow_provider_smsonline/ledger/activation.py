# getNumber charges and carries no idempotency key: this makes "at most one activation per task
# instance and run" hold across lost answers, task retries and killed workers, with the same
# Variable as the rent family's record (one task instance runs one operator, so they never meet).
"""``buy_once``: getNumber made at most once per task instance and run.

Before getNumber the operator writes a *pending* record holding the ids getActiveActivations
lists (SMS.online documents that action: id, service code, country code, a phone number its
sample masks, status, cost, codes, time); after the answer, *done* with the activation and a
claim (``smsonline_activation__<account>__<id>``). A later try reads the record first:

* *done*: the activation is reused unless getStatus says it was cancelled (or is unknown):
  then a new one is bought.
* *pending*: a record whose intent was never written belongs to a try that stopped before its
  call (it waited for its turn): nothing was bought. Else, once the call's window (its timeouts
  and a margin) has passed, the activations listed now but not in the snapshot, for the same
  service and country, claimed by no other task instance and listed in the snapshot of every
  other unresolved call made after this one's window, are the candidates. None: nothing was
  bought, getNumber is sent again. One, with a readable number: adopted. One whose number is
  masked, or several: the task fails without retry, naming them. Where getActiveActivations
  could not be read before the call, nothing can decide: the task fails without retry and says
  what to check.

An activation that received no code is refunded when cancelled, or by the service when its
window (about 20 minutes) ends: a failure that names an activation costs nothing if it is left
alone and no code is used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

from airflow_provider_smsonline.exceptions import ActivationNotFoundError, ServerError, SmsOnlineError
from airflow_provider_smsonline.ledger.charge import (
    SETTLED,
    WINDOW_MARGIN,
    ChargeAmbiguousError,
    account_of,
    call_in_turn,
    check_asked,
    turn_seconds,
)
from airflow_provider_smsonline.ledger.decide import CLOCK_SKEW
from airflow_provider_smsonline.ledger.keys import digest_text
from airflow_provider_smsonline.ledger.lease import charging_turn
from airflow_provider_smsonline.ledger.records import (
    ActivationDone,
    ActivationPending,
    ActivationRecord,
    Asked,
    activation_from_json,
    activation_to_json,
    asked_by,
    asked_of,
)
from airflow_provider_smsonline.ledger.store import ChargeLedger
from airflow_provider_smsonline.protocol import STATUS_CANCEL, Activation, ActiveActivation

if TYPE_CHECKING:
    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

log = logging.getLogger(__name__)

#: Claims on activations, per account: ``smsonline_activation__<account>__<id>``.
ACTIVATION_CLAIM_PREFIX = "smsonline_activation__"
#: Minutes after which the service refunds an activation that received no code (peers' figure).
REFUND_MINUTES = 20


def intent_key(account: str, record_key: str) -> str:
    """The Variable announcing the getNumber of the record named ``record_key`` while its outcome
    is unknown, and noting the activation it was answered with."""
    return f"{ACTIVATION_CLAIM_PREFIX}{account}__pending__{digest_text(record_key, 24)}"


def claim_key(account: str, activation_id: int) -> str:
    """The Variable claiming ``activation_id`` on ``account`` for one task instance and run."""
    return f"{ACTIVATION_CLAIM_PREFIX}{account}__{activation_id}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _unresolved(ledger: ChargeLedger, why: str, ids: list[int]) -> ChargeAmbiguousError:
    which = f"activation(s) {ids}" if ids else "the account's active activations"
    return ChargeAmbiguousError(
        f"the answer to getNumber was lost and {why}; no activation is adopted and none is bought. "
        f"Check {which} in your SMS.online account: one without a code is refunded when cancelled, "
        f"or by the service after about {REFUND_MINUTES} minutes. Then delete the Airflow Variable "
        f"{ledger.key!r} to buy again",
        candidates=ids,
    )


def _read(ledger: ChargeLedger) -> ActivationRecord | None:
    """This run's activation record, if any.

    :raises ValueError: the Variable holds something else (naming it: delete it to go on).
    """
    try:
        return activation_from_json(ledger.store.get(ledger.key))
    except ValueError:
        raise ValueError(
            f"the charge ledger's Airflow Variable {ledger.key!r} is not an activation record; check "
            "the account, then delete the Variable to let the task buy again"
        ) from None


def _write(ledger: ChargeLedger, record: ActivationRecord, account: str | None = None) -> None:
    """Write the record (a pending one, given the ``account``, owns its intent's Variable)."""
    data = activation_to_json(record, task=ledger.task.to_json(), at=_now())
    if isinstance(record, ActivationPending) and account is not None:
        data["intent"] = intent_key(account, ledger.key)  # it goes when the record goes
    ledger.store.set(ledger.key, data)


def _announce(ledger: ChargeLedger, account: str, record: ActivationPending) -> None:
    """Announce the call to other task instances: just before it, once the turn is sure."""
    ledger.store.set(
        intent_key(account, ledger.key),
        {"owner": ledger.key, "started": record.started.isoformat(), "until": record.until.isoformat()},
    )


def buy_once(
    ledger: ChargeLedger,
    hook: SmsOnlineHook,
    buy: Callable[[], Activation],
    *,
    service: str,
    country: int,
    asked: Mapping[str, Any] | None = None,
) -> tuple[Activation, bool]:
    """Send getNumber at most once for this task instance and run.

    :param asked: all getNumber asks for: an earlier try's activation is returned only for the same.
    :returns: the activation and whether this try bought it (``False``: found again).
    :raises ChargeAmbiguousError: the outcome cannot be decided; never retry blindly.
    :raises ChargeConflictError: an earlier try of this run bought, asking for something else.
    :raises OutcomeUnknownError: the answer was lost and nothing showed yet (retryable: the next
        try looks again before it could buy).
    """
    account = account_of(hook)
    wants = asked_of(asked) if asked is not None else None
    record = _read(ledger)
    if record is not None:
        if isinstance(record, ActivationDone):
            found = _reuse(ledger, hook, record)
        else:  # what the earlier try asked for is what it may have bought
            found = _reconcile(ledger, hook, account, record, lost_now=False)
        if found is not None:
            check_asked(ledger, asked_by(record), wants, "activation", found.id)
            return found, False
    ledger.prune_on_first_try(record)

    # The snapshot and the call in the account's charging turn, as a rental's (ledger/lease.py).
    def prepare(known: str | None) -> ActivationPending:
        """The pending record, written, while the turn's ticket settles."""
        pending = _pending(hook, service, country, wants)
        _write(ledger, pending, account)
        return pending

    with charging_turn(ledger.store, account, ledger.key, hold=turn_seconds(hook), prepare=prepare) as turn:
        lease, pending = turn
        _announce(ledger, account, pending)
        look = partial(_reconcile, ledger, hook, account, pending, lost_now=True)
        activation, recovered = call_in_turn(lease, ledger, buy, look, pending.until)
        if not recovered:  # claimed in the turn, as a rental's answer is noted (ledger/charge.py)
            _done(ledger, account, activation, wants)
    return activation, True


def _window_of(hook: SmsOnlineHook) -> float:
    return hook.config.connect_timeout + hook.config.timeout + WINDOW_MARGIN


def _pending(hook: SmsOnlineHook, service: str, country: int, wants: Asked | None) -> ActivationPending:
    """The record written before getNumber: what getActiveActivations lists now."""
    try:
        snapshot: tuple[int, ...] | None = tuple(row.id for row in hook.get_active_activations())
    except SmsOnlineError as error:
        if error.retryable:
            raise
        log.warning("getActiveActivations is refused (%s): a lost answer could not be reconciled", error.code)
        snapshot = None
    started = _now()
    return ActivationPending(
        started=started,
        until=started + timedelta(seconds=_window_of(hook) + SETTLED),
        snapshot=snapshot,
        service=service,
        country=country,
        asked=wants,
    )


def _done(ledger: ChargeLedger, account: str, activation: Activation, asked: Asked | None) -> None:
    intent = intent_key(account, ledger.key)
    # Noted first: other task instances' reconciliation skips it, as a rental's answered intent.
    ledger.store.set(intent, {"owner": ledger.key, "answered": activation.id})
    claim = claim_key(account, activation.id)
    ledger.store.set(claim, {"owner": ledger.key})
    _write(ledger, ActivationDone(activation=activation, claim=claim, asked=asked))
    ledger._delete(intent)  # the call is resolved: its claim says whose the activation is


def forget(ledger: ChargeLedger) -> None:
    """Remove this run's record and its claim (the activation was cancelled)."""
    ledger.write(None)  # releases the claim the record owns


def _reuse(ledger: ChargeLedger, hook: SmsOnlineHook, record: ActivationDone) -> Activation | None:
    activation = record.activation
    try:
        state = hook.get_status(activation.id)
    except ActivationNotFoundError:
        state = None
    if state is None or state.status == STATUS_CANCEL:
        log.info("Activation %s of an earlier try has ended; buying a new one.", activation.id)
        forget(ledger)
        return None
    log.warning(
        "This task instance already bought activation %s in an earlier try; reusing it.", activation.id
    )
    if not activation.number:  # the record keeps no number: getHistory lists it
        bought_at = record.at or _now()
        activation = replace(activation, number=_number_in_history(hook, activation.id, bought_at) or "")
    return activation


def _number_in_history(hook: SmsOnlineHook, activation_id: int, started: datetime) -> str | None:
    """The number of ``activation_id`` as getHistory lists it (getActiveActivations' page masks
    numbers), looked for around ``started``; ``None`` when it is not there unmasked."""
    # the rent ledger's listing owns the history window: loaded on a lost answer only
    from airflow_provider_smsonline.ledger.listing import HISTORY_MARGIN

    now = max(_now(), started)
    try:
        rows = hook.get_activation_history(started - HISTORY_MARGIN, now + HISTORY_MARGIN)
    except SmsOnlineError as error:
        if not error.retryable:
            return None
        # Retryable: a later try looks again; this one's failure names what it found.
        raise ServerError(
            f"activation {activation_id} may be this task instance's, but its number could not be "
            f"read from getHistory ({error}); a retry looks again",
            code=error.code,
        ) from None
    number = next((row.number for row in rows if row.id == activation_id), "")
    return number if number.isdigit() else None


#: Every other buy may be a rival: where Variables cannot be listed, no intent can be seen.
ALL: list[ActivationPending | None] = [None]


def _survey(
    ledger: ChargeLedger, account: str, record: ActivationPending, lost_now: bool
) -> tuple[set[int], list[ActivationPending | None], list[tuple[int, ...]]]:
    """What other task instances announce: the activations their calls were answered with (held),
    their calls still unresolved whose windows met ours (rivals: each one's pending record, or
    ``None`` when it cannot be read; :data:`ALL` when Variables cannot be listed), and the
    snapshots of unresolved calls made after our window closed (late: an activation absent from
    one appeared after it was taken, so it is not ours)."""
    prefix = intent_key(account, "")[: -len(digest_text("", 24))]
    listed = ledger.store.keys(prefix)
    if listed is None:
        return set(), ALL, []
    mine = intent_key(account, ledger.key)
    ours_from, ours_to = record.started, (_now() if lost_now else record.until)
    held: set[int] = set()
    rivals: list[ActivationPending | None] = []
    late: list[tuple[int, ...]] = []
    for key in listed:
        if key == mine:
            continue
        intent = ledger.store.get(key)
        answered = intent.get("answered")
        if isinstance(answered, int) and not isinstance(answered, bool):
            held.add(answered)
            continue
        started, until = _when(intent.get("started")), _when(intent.get("until"))
        if started is None or until is None:
            continue
        overlaps = started - CLOCK_SKEW < ours_to and until + CLOCK_SKEW > ours_from
        if not overlaps and started - CLOCK_SKEW <= ours_to:
            continue  # over before ours began
        try:
            other = activation_from_json(ledger.store.get(str(intent.get("owner"))))
        except ValueError:
            other = None
        pending = other if isinstance(other, ActivationPending) else None
        if overlaps:
            rivals.append(pending)
        elif pending is not None and pending.snapshot is not None:
            late.append(pending.snapshot)
    return held, rivals, late


def _could_make(rival: ActivationPending | None, row: ActiveActivation) -> bool:
    """Whether a rival's getNumber can have bought ``row``: not if its snapshot holds it (it was
    there before), nor if it asked for another service or country."""
    if rival is None:
        return True
    if rival.snapshot is not None and row.id in rival.snapshot:
        return False
    return rival.service == row.service and row.country in (rival.country, None)


def _nothing(ledger: ChargeLedger, lost_now: bool) -> None:
    """Nothing new is this call's: a retry looks again (a lost answer), or the record goes."""
    if lost_now:
        log.info("getNumber's answer was lost and no new activation is listed yet; a retry looks again.")
        return
    log.info("No activation was bought by the earlier try: buying now.")
    ledger.write(None)


def _never_announced(ledger: ChargeLedger) -> bool:
    """Whether this run's pending record names its intent and that intent was never written.

    The record is written while the try waits for its charging turn; the intent only once the
    turn is sure, just before getNumber (and it goes only after the record is replaced). A record
    whose intent is absent belongs to a try that stopped before its call: nothing was bought.
    A record of an older release names no intent and proves nothing.
    """
    named = ledger.store.get(ledger.key).get("intent")
    return isinstance(named, str) and bool(named) and not ledger.store.get(named)


def _when(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _reconcile(
    ledger: ChargeLedger,
    hook: SmsOnlineHook,
    account: str,
    record: ActivationPending,
    *,
    lost_now: bool,
) -> Activation | None:
    """Decide on a pending record: the activation adopted (for the service and country the record
    asked for), or ``None`` to buy (again)."""
    service, country = record.service, record.country
    if not lost_now and _never_announced(ledger):
        log.info("The earlier try wrote its record but never made its call (it had no turn yet): buying now.")
        ledger.write(None)
        return None
    if record.snapshot is None:
        raise _unresolved(ledger, "getActiveActivations could not be read before the call", [])
    if not lost_now:
        # The call may still be served until its window closes: look after that.
        time.sleep(max(0.0, min((record.until - _now()).total_seconds(), 600.0)))
    before = set(record.snapshot)
    rows = [
        row
        for row in hook.get_active_activations()
        if row.id not in before
        and row.service == service
        and row.country in (country, None)
        and ledger.store.get(claim_key(account, row.id)).get("owner") in (None, ledger.key)
    ]
    held, rivals, late = _survey(ledger, account, record, lost_now)
    rows = [row for row in rows if row.id not in held and all(row.id in snapshot for snapshot in late)]
    if any(_could_make(rival, row) for rival in rivals for row in rows):
        # Another task instance's getNumber was unresolved while ours was: it may have made these.
        if lost_now:
            log.info("getNumber's answer was lost while others' were unresolved; a retry looks again.")
            return None
        why = (
            "other task instances' getNumber calls on the account cannot be seen (Airflow 3.1 and 3.2 "
            "cannot list Variables)"
            if rivals is ALL
            else f"{len(rivals)} other task instance(s) on the account had a getNumber unresolved then"
        )
        raise _unresolved(ledger, why, sorted(row.id for row in rows))
    if not rows:
        _nothing(ledger, lost_now)
        return None
    ids = sorted(row.id for row in rows)
    if len(rows) > 1:
        raise _unresolved(ledger, f"{len(rows)} new activations for {service!r} are listed", ids)
    (row,) = rows
    number = row.number if row.number.isdigit() else _number_in_history(hook, row.id, record.started)
    if number is None:
        raise _unresolved(ledger, "one new activation is listed, but its number is masked", ids)
    activation = Activation(id=row.id, number=number, cost=row.cost)
    log.warning("Recovered activation %s whose answer was lost; nothing is bought again.", row.id)
    _done(ledger, account, activation, record.asked)
    return activation
