# Which SMS a wait is for, and its code: one rule and one page walk for the sensor, the trigger
# and anything later built on them. No I/O: the caller fetches the pages the walk asks for.
"""Matching the SMS of a rental against a wait."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_provider_smsonline.protocol.results import ActivationStatus, Sms
from airflow_provider_smsonline.validation import validate_pattern

#: SMS asked for per getRentStatus page.
PAGE_SIZE = 20
#: Pages read per check at most, when every SMS of a page is newer than ``since``.
MAX_PAGES = 5


@dataclass(frozen=True)
class SmsMatch:
    """The SMS a wait was for, and the code read from it.

    :ivar sms: the matching SMS.
    :ivar code: the pattern's first group that matched, else its whole match; ``None`` when
        waiting without a pattern.
    """

    sms: Sms
    code: str | None

    def to_xcom(self) -> dict[str, Any]:
        """The JSON-able result: ``{"sms": Sms.to_xcom(), "code": str | None}``."""
        return {"sms": self.sms.to_xcom(), "code": self.code}


def _floor(since: datetime | None) -> datetime | None:
    # The API stamps SMS to the second: an SMS in the same second as ``since`` counts as newer.
    return since.replace(microsecond=0) if since is not None else None


def find_sms_match(
    messages: Sequence[Sms],
    since: datetime | None = None,
    pattern: re.Pattern[str] | str | None = None,
) -> SmsMatch | None:
    """The newest SMS received at or after ``since`` (to the second) whose text matches ``pattern``.

    :param messages: SMS of a rental, as getRentStatus lists them (any order).
    :param since: ignore SMS stamped before this second (aware); ``None`` for any age.
    :param pattern: a regular expression searched in the text; ``None`` for any SMS.
    :returns: the match with its code (see :class:`SmsMatch`), or ``None``.
    """
    regex = validate_pattern(pattern) if not isinstance(pattern, re.Pattern) else pattern
    floor = _floor(since)
    for sms in sorted(messages, key=lambda m: m.date, reverse=True):
        if floor is not None and sms.date < floor:
            continue
        match = _match(sms, regex)
        if match is not None:
            return match
    return None


def older_page_needed(messages: Sequence[Sms], since: datetime | None, size: int) -> bool:
    """Whether the page before this one may still hold SMS newer than ``since``.

    :param messages: one page of getRentStatus.
    :param since: as for :func:`find_sms_match`.
    :param size: the page size asked for (a shorter page is the last one).
    """
    if len(messages) < size:
        return False
    floor = _floor(since)
    return floor is None or min(m.date for m in messages) >= floor


def older_than(messages: Sequence[Sms], moment: datetime) -> list[Sms]:
    """The SMS stamped before ``moment``'s second (the server's dates, as the hook read them in
    the connection's ``server_timezone``), in the order given."""
    floor = _floor(moment)
    assert floor is not None
    return [sms for sms in messages if sms.date < floor]


#: Dates a note about SMS passed over shows at most (the newest).
NOTE_DATES = 3


def passed_over_note(dates: Sequence[datetime], pattern: object = None) -> str:
    """What a wait that timed out says about SMS it passed over as older than its DAG run:
    how many, their server dates, and how to count them (``since``); ``""`` for none.

    :param dates: the passed-over SMS's dates, newest first.
    :param pattern: the wait's pattern (``None``: any SMS), for the wording only.
    """
    if not dates:
        return ""
    shown = ", ".join(date.isoformat() for date in dates[:NOTE_DATES]) + (
        ", …" if len(dates) > NOTE_DATES else ""
    )
    which = "SMS matching the pattern" if pattern else "SMS"
    were = "was" if len(dates) == 1 else "were"
    earliest = min(dates).astimezone(timezone.utc).replace(microsecond=0).isoformat()
    return (
        f"{len(dates)} {which} {were} passed over as older than this DAG run (server dates {shown}, "
        "read in the connection's server_timezone); to count SMS from before the run, pass since, "
        f'e.g. since="{earliest}" (if those dates look hours off, the connection\'s server_timezone '
        "is not the server's zone)"
    )


def fingerprint(sms: Sms) -> str:
    """A short, stable name for one SMS (its date as written, sender and text), to remember
    which SMS a rental already held without keeping their texts."""
    raw = f"{sms.date.replace(tzinfo=None).isoformat()}\x1f{sms.phone_from}\x1f{sms.text}"
    return hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()[:16]


class SmsWalk:
    """One check of a wait: feed it getRentStatus pages, newest first, until it is done.

    Which SMS count as new, by one of two rules:

    * ``seen`` (fingerprints, see :func:`fingerprint`, of SMS on the rental that do not count):
      every SMS listed before the first one seen is new, whatever dates the server writes and in
      whatever zone. The sensor's default: the SMS the rental held when the wait started that are
      older than the DAG run (none for a rental rented in the run).
    * ``since`` (an aware moment): SMS stamped at or after it, to the second (the server's
      dates read in the connection's ``server_timezone``).

    Of the new SMS, the newest whose text matches ``pattern`` wins; with ``since``, the walk also
    keeps the matching SMS it passed over as older (:attr:`passed_over`)::

        walk = SmsWalk(pattern, seen=seen)
        page = walk.first_page
        while page is not None:
            page = walk.feed(client.get_rent_status(rent_id, page=page, size=walk.page_size))
        walk.match  # SmsMatch or None

    :param pattern: a compiled regular expression, or ``None`` for any SMS.
    :param since: the moment rule; ignored when ``seen`` is given.
    :param seen: the fingerprint rule; an empty collection means every SMS is new.
    """

    first_page = 0
    page_size = PAGE_SIZE

    def __init__(
        self,
        pattern: re.Pattern[str] | None,
        *,
        since: datetime | None = None,
        seen: Collection[str] | None = None,
    ) -> None:
        self.pattern = pattern
        self.since = since
        self.seen = frozenset(seen) if seen is not None else None
        self.match: SmsMatch | None = None
        #: With ``since``: the SMS older than it whose text matches, newest first, as read.
        self.passed_over: list[Sms] = []
        self._page = 0

    def feed(self, messages: Sequence[Sms]) -> int | None:
        """Take one page; the next page to fetch, or ``None`` when the check is over."""
        if self.seen is None:
            self.match = find_sms_match(messages, self.since, self.pattern)
            more = older_page_needed(messages, self.since, self.page_size)
            if self.since is not None:
                older = older_than(messages, self.since)
                self.passed_over += [sms for sms in older if _match(sms, self.pattern) is not None]
        else:
            self.match, more = self._feed_seen(messages)
        self._page += 1
        if self.match is not None or not more or self._page >= MAX_PAGES:
            return None
        return self._page

    def _feed_seen(self, messages: Sequence[Sms]) -> tuple[SmsMatch | None, bool]:
        assert self.seen is not None
        for sms in messages:  # the server's order: newest first
            if fingerprint(sms) in self.seen:
                return None, False
            found = _match(sms, self.pattern)
            if found is not None:
                return found, False
        return None, len(messages) >= self.page_size


def _match(sms: Sms, regex: re.Pattern[str] | None) -> SmsMatch | None:
    if regex is None:
        return SmsMatch(sms, None)
    found = regex.search(sms.text)
    if not found:
        return None
    return SmsMatch(sms, next((g for g in found.groups() if g is not None), found.group(0)))


def code_of(state: ActivationStatus, regex: re.Pattern[str] | None) -> str | None:
    """The code a wait is for, from a ``STATUS_OK`` state: with ``regex``, its first group that
    matched (else the whole match) searched in the SMS text when the API gives it, else in the
    code; ``None`` when there is no code yet or the pattern does not match."""
    if not state.received:
        return None
    if regex is None:
        return state.code
    match = regex.search(state.text or "") or regex.search(state.code or "")
    if match is None:
        return None
    return next((group for group in match.groups() if group is not None), match.group(0))
