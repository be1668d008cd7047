# The ledger compares the account's rentals before and after a charging call. SMS.online's
# getRentList page contradicts itself: its prose lists every active rental, its table requires a
# rental id (and may then list that rental alone). This module reads what the pages give on every
# reading: getRentList where it lists without an id; else getRentHistory (the account's rentals by
# date, in unix-second windows no time zone shifts) and getRentList with an id.
"""What the charge ledger reads of an account's rentals, on every reading of getRentList."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import TYPE_CHECKING

from airflow_provider_smsonline.exceptions import AccountError, SmsOnlineError
from airflow_provider_smsonline.ledger.keys import DIGEST_MARK, number_digest
from airflow_provider_smsonline.ledger.records import HISTORY, LIST, Listed, Pending

if TYPE_CHECKING:
    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

__all__ = [
    "HISTORY_MARGIN",
    "digest_of",
    "listed_now",
    "listing_of",
    "snapshot_for_renewal",
    "snapshot_for_rent",
    "with_digests",
]

log = logging.getLogger(__name__)

#: How far the getRentHistory window reaches before and after a call: the server dates a rental on
#: its own clock, which must be within half of this of ours (a rental outside the window is not
#: seen; decide.py's ``HISTORY_REACH`` is the other half).
HISTORY_MARGIN = timedelta(hours=1)


def digest_of(hook: SmsOnlineHook) -> Callable[[str], str]:
    """What the ledger keeps of a number read through ``hook``: :func:`~.keys.number_digest` with
    its connection's key."""
    return partial(number_digest, hook.config.api_key)


def with_digests(record: Pending, hook: SmsOnlineHook) -> Pending:
    """``record`` with every number of its snapshot as a digest (a record of a release before 0.2
    kept the numbers themselves)."""
    digest = digest_of(hook)
    rows = tuple(
        row if not row.phone or row.phone.startswith(DIGEST_MARK) else replace(row, phone=digest(row.phone))
        for row in record.snapshot
    )
    return record if rows == record.snapshot else replace(record, snapshot=rows)


def needs_id(error: SmsOnlineError) -> bool:
    """Whether getRentList's refusal (without an id) says this server wants one: any code the API
    answered (the page's "Rental ID not specified" shows none) but an account's (a bad key, a ban)."""
    answered = not error.code.islower()  # provider codes (transport, bad_response) are lower case
    return answered and not isinstance(error, AccountError)


def snapshot_for_rent(
    hook: SmsOnlineHook, started: datetime, *, known: str | None = None
) -> tuple[str, tuple[Listed, ...]]:
    """Before a getRentNumber: how the account's rentals were read (:data:`LIST` or
    :data:`HISTORY`), and what was there.

    :param known: :data:`HISTORY` when an earlier turn found that getRentList wants an id here
        (the lease carries it): getRentHistory is read at once.
    """
    if known == HISTORY:
        return HISTORY, _history(hook, started)
    try:
        return LIST, tuple(Listed.of(entry, digest_of(hook)) for entry in hook.get_rent_list())
    except SmsOnlineError as error:
        if not needs_id(error):
            raise
        log.info(
            "getRentList without a rental id is refused here (%s): the charge ledger reads getRentHistory",
            error.code,
        )
    return HISTORY, _history(hook, started)


def snapshot_for_renewal(hook: SmsOnlineHook, rent_id: int) -> tuple[str, tuple[Listed, ...]]:
    """Before a continueRentNumber of ``rent_id``: getRentList with its id, which every reading
    answers (with every active rental, or that one)."""
    return LIST, tuple(Listed.of(entry, digest_of(hook)) for entry in hook.get_rent_list(rent_id))


def listing_of(hook: SmsOnlineHook, rent_id: int) -> Listed | None:
    """``rent_id``'s row in getRentList (asked with its id), ``None`` when it is not active.

    :raises SmsOnlineError: a failure that does not say whether it is listed (retryable ones, a
        refused key, a code this provider does not know).
    """
    try:
        entries = hook.get_rent_list(rent_id)
    except SmsOnlineError as error:
        if error.retryable or isinstance(error, AccountError):
            raise
        return None  # refused for this id (NO_ID_RENT, ...): not an active rental
    return next((Listed.of(entry, digest_of(hook)) for entry in entries if entry.id == rent_id), None)


def listed_now(hook: SmsOnlineHook, record: Pending) -> tuple[Listed, ...]:
    """The account's rentals now, read as ``record``'s snapshot was, for comparing with it."""
    if record.renewing is not None:
        return _renewal_now(hook, record)
    if record.listing == LIST:
        return tuple(Listed.of(entry, digest_of(hook)) for entry in hook.get_rent_list())
    before = {row.id: row for row in record.snapshot}
    fresh = [row for row in _history(hook, record.started) if row.id not in before]
    # Only active rentals can be this call's (getRentList's reading): each new one is asked for.
    active = _active(hook, fresh)
    numbers = {row.phone for row in active}
    # An older rental with a new one's number is kept only while it is active: one that left
    # looks, as in getRentList, like a renewal under a new id.
    kept = [row for row in record.snapshot if row.phone not in numbers or listing_of(hook, row.id)]
    return (*kept, *active)


def _renewal_now(hook: SmsOnlineHook, record: Pending) -> tuple[Listed, ...]:
    renewing = record.renewing
    assert renewing is not None
    rows = tuple(Listed.of(entry, digest_of(hook)) for entry in hook.get_rent_list(renewing))
    base = record.base
    if base is None or rows:
        # Listed: its hours tell. Gone, with other rentals listed: this server lists them all, so
        # a new id with its number would be among them.
        return rows
    # Nothing listed: it ended, or was renewed under a new id with its number (sms-activate
    # documents that) and this server lists only the rental asked for: getRentHistory finds it.
    known = {row.id for row in rows} | {row.id for row in record.snapshot}
    same = [row for row in _history(hook, record.started) if row.phone == base.phone and row.id not in known]
    return (*rows, *_active(hook, same))


def _active(hook: SmsOnlineHook, rows: Iterable[Listed]) -> list[Listed]:
    found = []
    for row in rows:
        listed = listing_of(hook, row.id)
        if listed is not None:
            found.append(replace(listed, phone=listed.phone or row.phone, number=listed.number or row.number))
    return found


def _history(hook: SmsOnlineHook, started: datetime) -> tuple[Listed, ...]:
    """getRentHistory from :data:`HISTORY_MARGIN` before ``started`` to as long after now."""
    now = max(datetime.now(timezone.utc), started)
    rows = hook.get_rent_history(started - HISTORY_MARGIN, now + HISTORY_MARGIN)
    digest = digest_of(hook)
    return tuple(Listed(id=row.id, phone=digest(row.number), number=row.number) for row in rows)
