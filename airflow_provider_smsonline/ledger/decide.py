# What a charging task instance must do, decided from values alone: no Airflow, no HTTP, no clock
# but the one passed in. Only getRentList's documented fields (id, phone, hours) are read.
"""The charge ledger's decision: reuse, adopt, pay, wait, or fail as ambiguous."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from airflow_provider_smsonline.ledger.records import LIST, Done, Intent, Listed, Pending, Record, Survey
from airflow_provider_smsonline.protocol import Rental

#: Hours assumed for a rental whose period neither the list nor the call gives.
FALLBACK_HOURS = 4
#: How long after our call a rival's getRentHistory snapshot still covers every rental our call can
#: have made: half its window's reach before the call (ledger/listing.py ``HISTORY_MARGIN``, an hour).
HISTORY_REACH = timedelta(minutes=30)
#: How far two machines' clocks may differ: times another task instance wrote (on its own
#: clock) are widened by this before they are compared with ours. Keep clocks in sync (NTP).
CLOCK_SKEW = timedelta(seconds=5)


@dataclass(frozen=True)
class Reuse:
    """The rental was paid for by an earlier try: return it, charge nothing."""

    rental: Rental


@dataclass(frozen=True)
class Adopt:
    """The lost call's rental was found: record it as this task instance's, charge nothing.

    :ivar rental: the rental; its end date is the earliest the list allows (none is documented).
    :ivar claim: whether to claim it (not for a renewal that kept its id: the renter holds that).
    """

    rental: Rental
    claim: bool
    reason: str


@dataclass(frozen=True)
class _Verdict:
    """A decision that says only why (``reason``, shown in the task's log)."""

    reason: str


class Pay(_Verdict):
    """Nothing was charged (or what was is gone): clear the record and make the call."""


class NotYet(_Verdict):
    """The answer was just lost and nothing shows yet: keep the record, retry later (it looks again)."""


@dataclass(frozen=True)
class Wait:
    """Other task instances' calls are in flight and may yet claim what appeared: look again soon."""

    rivals: int


@dataclass(frozen=True)
class Ambiguous:
    """The documented fields cannot decide: fail without retry, naming ``candidates``."""

    candidates: tuple[int, ...]
    reason: str


Decision = Reuse | Adopt | Pay | NotYet | Wait | Ambiguous


def decide(
    record: Record | None,
    listed: Sequence[Listed] | None,
    survey: Survey | None = None,
    *,
    now: datetime,
    lost_now: bool = False,
    waited_out: bool = True,
) -> Decision:
    """What to do, given this task instance's record and getRentList now.

    :param record: the run's record (``None``: nothing was tried yet).
    :param listed: getRentList now; may be ``None`` for a finished renewal (not needed).
    :param survey: what other task instances on the account hold, named and have in flight.
    :param now: the current time (UTC).
    :param lost_now: the answer of this very try's call was lost a moment ago.
    :param waited_out: no more waiting for others' calls in flight (never :class:`Wait` then).
    """
    survey = survey or Survey()
    if record is None:
        return Pay("nothing was charged in this run yet")
    if isinstance(record, Done):
        if record.renewing is not None or any(row.id == record.rental.id for row in listed or ()):
            return Reuse(record.rental)
        return Pay(f"rental {record.rental.id} of an earlier try is no longer active")
    if record.renewing is not None:
        return _renewal(record, listed or (), survey, lost_now)
    return _new_rental(record, listed or (), survey, now, lost_now, waited_out)


def _nothing(lost_now: bool, reason: str) -> Pay | NotYet:
    return NotYet(reason) if lost_now else Pay(reason)


def _rental(row: Listed, record: Pending, hours: int | None) -> Rental:
    """A Rental for a row: it began after the record was written, so it ends no sooner than this."""
    period = hours or record.rent_time or FALLBACK_HOURS
    return Rental(id=row.id, number=row.number, end_date=record.started + timedelta(hours=period))


def _new_rental(
    record: Pending, listed: Sequence[Listed], survey: Survey, now: datetime, lost_now: bool, waited_out: bool
) -> Decision:
    before = {row.id for row in record.snapshot}
    new = [row for row in listed if row.id not in before]
    if record.rent_time is not None:
        new = [row for row in new if row.hours in (None, record.rent_time)]
    own = next((row for row in new if row.id == survey.own_answer), None)
    if own is not None:
        return Adopt(_rental(own, record, own.hours), True, "this try's own answer, noted before it ended")
    # When our call can have made a rental: from the call (or, once looked for, from the look)
    # until its window closes; a call being answered right now is open until now.
    ours_from = record.looked_at or record.started
    ours_to = now if lost_now else record.until
    # Once our call was looked for, only a late commit could still be ours, and any other
    # task instance's unresolved call since then explains a new rental better.
    rivals_to = now if record.looked_at else ours_to
    named_here = {
        rid: mark
        for rid, mark in survey.named.items()
        if _overlap(mark.appeared_after, mark.appeared_by, ours_from, ours_to, now)
    }
    held = set(survey.held) | (set(survey.named) - set(named_here))
    candidates = [row for row in new if row.id not in held]
    # A rental absent from the snapshot of a rival call made after our window closed appeared
    # after that: it is not ours, whoever's it is. (From a getRentHistory snapshot only when its
    # window reaches back before our call: a rental absent from it may have begun before it.)
    late = [
        rival.snapshot
        for rival in survey.rivals
        if rival.snapshot is not None
        and rival.started is not None
        and rival.started - CLOCK_SKEW > ours_to
        and (rival.listing == LIST or rival.started + CLOCK_SKEW < record.started + HISTORY_REACH)
    ]
    candidates = [row for row in candidates if all(row.id in snapshot for snapshot in late)]
    ids_now = {row.id for row in candidates}
    overlapping = [
        rival
        for rival in survey.rivals
        if rival.looked_at is None and _overlap(rival.started, rival.until, ours_from, rivals_to, now)
    ]
    if record.listing == LIST:
        overlapping = _not_used_up(overlapping, survey, listed, {row.id for row in new})
    # Who else can have made each candidate: overlapping calls whose snapshots do not hold it,
    # and (a rental another task instance named appeared while that one's call was unresolved)
    # its namer, a rival whose call overlapped ours though its intent now reads as looked.
    makers = {row.id: [rival for rival in overlapping if _could_make(rival, row)] for row in candidates}
    named_by = {rid: mark.owner for rid, mark in named_here.items() if rid in ids_now}
    overlapping = [rival for rival in overlapping if any(rival in who for who in makers.values())]
    namers = set(named_by.values())
    in_flight = [rival for rival in overlapping if (rival.until or now) + CLOCK_SKEW > now]
    if candidates and in_flight and not waited_out:
        return Wait(len(in_flight))
    if not candidates:
        return _nothing(lost_now, "no rental that can be this task's appeared since the snapshot")
    ids = tuple(sorted(ids_now))
    current = {row.id for row in listed}
    vanished = {row.phone for row in record.snapshot if row.id not in current and row.phone}
    renewed = sorted(row.id for row in candidates if row.phone in vanished)
    if renewed:
        return Ambiguous(
            ids,
            f"rental(s) {renewed} carry the number of a rental that left the list meanwhile: a renewal "
            "under a new id or a new rental, which the documented fields cannot tell apart",
        )
    if not overlapping and not namers:
        if len(candidates) == 1:
            return Adopt(_rental(candidates[0], record, candidates[0].hours), True, "the one new rental")
        return Ambiguous(
            ids, f"{len(ids)} rentals no other task instance holds appeared since: one may be this task's"
        )
    # A rental no unresolved call but ours can have made is ours; the others are left to theirs.
    only_ours = [row for row in candidates if not makers[row.id] and row.id not in named_by]
    if len(only_ours) == 1:
        row = only_ours[0]
        return Adopt(
            _rental(row, record, row.hours),
            True,
            "the one new rental no other unresolved call can have made (their snapshots hold it)",
        )
    others = len(overlapping) + len(namers)
    if record.looked_at is not None and len(candidates) <= others:
        return _nothing(
            lost_now,
            f"rental(s) {list(ids)} appeared after this task's call was looked for; left to the other "
            "task instance(s) whose calls were unresolved then",
        )
    return Ambiguous(
        ids,
        f"rental(s) {list(ids)} appeared, unclaimed, while {others} other task instance(s) "
        "on the same account had calls unresolved",
    )


def _renewal(record: Pending, listed: Sequence[Listed], survey: Survey, lost_now: bool) -> Decision:
    """A lost continueRentNumber: same id with ``hours`` grown by rent_time, or (as sms-activate
    documents) a new id with the same number while the old id leaves the list."""
    renewing = record.renewing
    assert renewing is not None
    rows = {row.id: row for row in listed}
    hours = record.rent_time or 0
    if survey.own_answer is not None and survey.own_answer in rows:
        own = rows[survey.own_answer]
        return Adopt(_rental(own, record, hours), own.id != renewing, "this try's own answer, noted")
    base = record.base
    if base is None:
        return Ambiguous((renewing,), "it was not in getRentList when the renewal began")
    before = {row.id for row in record.snapshot}
    same_number = sorted(
        row.id
        for row in listed
        if row.id not in before and row.phone == base.phone and row.id not in survey.held
    )
    now_row = rows.get(renewing)
    if now_row is not None:
        if same_number:
            return Ambiguous((renewing, *same_number), f"rental(s) {same_number} appeared with its number")
        if now_row.hours is None or base.hours is None:
            return Ambiguous((renewing,), "getRentList gives no hours for it, so the renewal cannot be seen")
        if now_row.hours == base.hours + hours:
            return Adopt(_rental(now_row, record, hours), False, f"its hours grew by {hours}")
        if now_row.hours == base.hours:
            return _nothing(lost_now, f"its hours are still {base.hours}: not renewed")
        return Ambiguous(
            (renewing,), f"its hours went from {base.hours} to {now_row.hours}, which is not +{hours}"
        )
    if len(same_number) == 1:
        new = rows[same_number[0]]
        return Adopt(_rental(new, record, hours), True, f"renewed under the new id {new.id}")
    if same_number:
        return Ambiguous((renewing, *same_number), f"several rentals appeared with its number: {same_number}")
    if lost_now:
        return NotYet("it left getRentList and no rental with its number appeared yet")
    return Ambiguous(
        (renewing,), "it left getRentList and no rental with its number appeared (ended, or renewed unseen)"
    )


def _overlap(
    start: datetime | None, end: datetime | None, ours_from: datetime, ours_to: datetime, now: datetime
) -> bool:
    """Whether ``[start, end]`` (missing ends: now) meets ``[ours_from, ours_to]``, the other's
    times widened by :data:`CLOCK_SKEW` (they were read on another machine's clock)."""
    return (start or now) - CLOCK_SKEW < ours_to and (end or now) + CLOCK_SKEW > ours_from


def _could_make(rival: Intent, row: Listed) -> bool:
    """Whether the rival's call can have made the rental of ``row``: not if its snapshot holds
    the rental (it existed before), nor if its hours differ from those the rival asked for."""
    if rival.snapshot is not None and row.id in rival.snapshot:
        return False
    return not (
        rival.renewing is None and rival.rent_time is not None and row.hours not in (None, rival.rent_time)
    )


def _not_used_up(
    rivals: Sequence[Intent], survey: Survey, listed: Sequence[Listed], ours: set[int]
) -> list[Intent]:
    """The rivals, less those that have a rental only they can have made: a call makes at most
    one rental, so such a rival made that one and none of ours. Only rentals ours cannot be
    (not new since our snapshot) and nobody claims count, and only rivals whose snapshots are
    known, on a store that lists its claims (:attr:`Survey.claimed`); only getRentList
    snapshots, which hold every rental active then (the caller skips this for its own
    getRentHistory snapshot)."""
    if survey.claimed is None:
        return list(rivals)
    others = [row for row in listed if row.id not in ours and row.id not in survey.claimed | survey.held]
    kept = []
    for rival in rivals:
        if rival.snapshot is None or rival.renewing is not None or rival.listing != LIST:
            kept.append(rival)
            continue
        forced = any(
            _could_make(rival, row)
            and all(
                other is rival
                or (other.snapshot is not None and other.listing == LIST and not _could_make(other, row))
                for other in survey.rivals
            )
            for row in others
        )
        if not forced:
            kept.append(rival)
    return kept
