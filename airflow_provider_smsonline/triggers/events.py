# The trigger behind SMS-driven DAGs: an asset watcher that polls one rental from the triggerer for
# as long as the asset is watched and fires one event per SMS that reaches it, on the parts of the
# one polling loop (triggers/base.py). What a watch has accounted for lives in one Airflow Variable
# (triggers/records.py), so that a triggerer restart neither repeats nor drops an SMS. Deciding
# what is new never reads the server's dates (they carry no zone): the watch remembers which SMS
# were there (their fingerprints).
"""Start a DAG run for every SMS that reaches a rental (Airflow 3 assets).

::

    from airflow.sdk import DAG, Asset, AssetWatcher, task

    from airflow_provider_smsonline.triggers.events import SmsReceivedTrigger

    inbox = Asset(
        "smsonline_inbox",
        watchers=[AssetWatcher(name="rental_1049", trigger=SmsReceivedTrigger(rent_id=1049))],
    )

    with DAG(dag_id="sms_inbox", schedule=[inbox]):

        @task
        def handle(triggering_asset_events=None) -> None:
            for event in triggering_asset_events[inbox]:
                print(event.extra["payload"]["sms"]["text"])

        handle()

:class:`SmsReceivedTrigger` subclasses Airflow's ``BaseEventTrigger`` (``airflow.triggers.base``,
there from Airflow 3.0 on). Its module imports that class, the shared loop and this provider's
protocol only; the HTTP client, the Variable access and asgiref load in the triggerer, on the first
check.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_smsonline.exceptions import RentalExpiredError, SmsOnlineError
from airflow_provider_smsonline.protocol import MAX_PAGES, PAGE_SIZE, find_sms_match, fingerprint
from airflow_provider_smsonline.triggers.base import MAX_BACKOFF, Polling
from airflow_provider_smsonline.triggers.records import (
    VariableRecords,
    WatchRecordError,
    WatchRecords,
    record_key,
)
from airflow_provider_smsonline.validation import validate_pattern, validate_poll_interval, validate_rent_id

if TYPE_CHECKING:
    from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient
    from airflow_provider_smsonline.protocol import Sms

__all__ = ["ENDED_RECHECK", "KNOWN_LIMIT", "MIN_POLL_INTERVAL", "RECORD_DELAY", "SmsReceivedTrigger"]

#: Fingerprints a watch remembers, newest first: the most one check reads (5 pages of 20 SMS).
KNOWN_LIMIT = MAX_PAGES * PAGE_SIZE
#: Seconds between the checks of a rental that has ended (each one logs that it has ended).
ENDED_RECHECK = 3600.0
#: Seconds an event has to reach Airflow's database before the watch records its SMS as fired.
#: The triggerer hands events to its database about once a second; a watch recorded sooner could
#: lose an event when the triggerer stops in between (see :class:`SmsReceivedTrigger`).
RECORD_DELAY = 3.0
#: The shortest ``poll_interval`` a watch accepts, in seconds.
MIN_POLL_INTERVAL = 1.0

# The store every watch uses; tests put an in-memory one here.
_records: WatchRecords = VariableRecords()


@dataclass
class _Watch:
    """What one run of the trigger knows: the fingerprints accounted for (``None``: not loaded)."""

    known: list[str] | None = None
    unsaved: bool = False


class SmsReceivedTrigger(Polling, BaseEventTrigger):
    """Fire one event for every SMS that reaches a rental after the watch starts.

    For ``Asset(..., watchers=[AssetWatcher(name=..., trigger=SmsReceivedTrigger(...))])``: each
    event becomes an asset event, and DAGs scheduled on the asset run for it. The payload::

        {"rent_id": int, "sms_id": str, "sms": {"phone_from", "text", "service", "date"},
         "code": str | None}

    ``sms_id`` is the SMS's fingerprint (its date as written, sender and text): the same SMS
    always has the same one, so a handler can skip an SMS it has handled. ``code`` is
    ``pattern``'s first group that matched the text, else its whole match; ``None`` when the
    pattern does not match or there is none. Every SMS fires, matching or not.

    **What is new.** The first time a watch runs it notes which SMS the rental holds (their
    fingerprints, the newest 20) and fires nothing for them; every SMS that appears above them
    later fires once, oldest first, whatever dates and zone the server writes.

    **Restarts.** The fingerprints accounted for (the newest :data:`KNOWN_LIMIT`) are kept in
    the Airflow Variable named by :attr:`record_key`, read when the trigger starts. So after a
    triggerer restart, the trigger moving to another triggerer, or the DAG being paused and
    unpaused, SMS that arrived meanwhile fire and SMS that fired before do not. An event's SMS is
    recorded :data:`RECORD_DELAY` after the event, once Airflow has stored it: a triggerer that
    stops within those seconds fires that SMS again when it comes back (never zero times). The
    record belongs to the connection, the rental and the pattern (not ``poll_interval``, which
    can change without losing it): watch a rental with a given pattern from one place (watchers
    with the same arguments on several assets of one DAG file are one trigger to Airflow).

    **Never stops by itself** (a watcher that returned would be restarted at once by the
    triggerer): network and server errors back off exponentially up to
    :data:`MAX_BACKOFF` seconds; a refused key, an unknown rental or a broken connection are
    logged as errors and retried every :data:`MAX_BACKOFF` seconds with the connection read
    afresh; a rental that has ended is logged as a warning, its record deleted, and checked again
    every :data:`ENDED_RECHECK` seconds (one call an hour) until its watcher is removed.

    Runs on the triggerer's shared HTTP pool; events, logs and kwargs never hold the API key.

    :param rent_id: the rental to watch (an integer known when the DAG is parsed).
    :param smsonline_conn_id: the Airflow connection holding the API key.
    :param pattern: a regular expression searched in each SMS text to read its ``code``.
    :param poll_interval: seconds between checks, at least :data:`MIN_POLL_INTERVAL`.
    """

    def __init__(
        self,
        rent_id: int,
        smsonline_conn_id: str = "smsonline_default",
        pattern: str | None = None,
        poll_interval: float = 30.0,
    ) -> None:
        super().__init__()
        self.rent_id = validate_rent_id(rent_id)
        if not isinstance(smsonline_conn_id, str) or not smsonline_conn_id.strip():
            raise ValueError(
                f"smsonline_conn_id must be the id of an Airflow connection, got {smsonline_conn_id!r}"
            )
        self.smsonline_conn_id = smsonline_conn_id
        self._regex = validate_pattern(pattern)
        self.pattern = pattern or None
        self.poll_interval = validate_poll_interval(poll_interval)
        if self.poll_interval < MIN_POLL_INTERVAL:
            raise ValueError(
                f"poll_interval must be at least {MIN_POLL_INTERVAL:g} second for a watch that polls "
                f"for as long as the asset is watched, got {poll_interval!r}"
            )

    def _push_rental(self) -> int | None:
        return self.rent_id

    @property
    def record_key(self) -> str:
        """The Airflow Variable holding this watch's record (see :func:`record_key`)."""
        return record_key(self.smsonline_conn_id, self.rent_id, self.pattern)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The classpath and JSON-able kwargs that rebuild this trigger (no key: the conn id)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "rent_id": self.rent_id,
                "smsonline_conn_id": self.smsonline_conn_id,
                "pattern": self.pattern,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Yield one :class:`TriggerEvent` per new SMS, for as long as the triggerer runs it."""
        watch = _Watch()
        while True:
            client = await self._client_or_log()
            if client is None:
                await self._pause(self._jittered(MAX_BACKOFF))
                continue
            async with client, contextlib.aclosing(self._watch(client, watch)) as events:
                async for event in events:
                    yield event

    # ------------------------------------------------------------------ internals

    async def _client_or_log(self) -> AsyncSmsOnlineClient | None:
        client = await self._open_client()
        if not isinstance(client, str):
            return client
        self.log.error(
            "Watch of rental %s: %s; trying again in about %d s", self.rent_id, client, MAX_BACKOFF
        )
        return None

    async def _watch(self, client: AsyncSmsOnlineClient, watch: _Watch) -> AsyncGenerator[TriggerEvent, None]:
        """Check, fire, record, wait; return when the client must be rebuilt (a refused call)."""
        # the metrics module loads in the triggerer, not at DAG parse
        from airflow_provider_smsonline import metrics

        failures = 0
        while True:
            try:
                if watch.known is None:
                    watch.known, resumed = await self._start(client)
                    if not resumed:  # nothing can be new yet
                        await self._pause_for_news(self._jittered(self.poll_interval))
                        continue
                fresh, newest = await self._check(client, watch.known)
            except RentalExpiredError as error:
                await self._ended(error, watch)
                await self._pause(ENDED_RECHECK)
                continue
            except SmsOnlineError as error:
                if not error.retryable:
                    self.log.error(
                        "Watch of rental %s: %s; no SMS can fire until this is fixed (the connection "
                        "is read again in about %d s)",
                        self.rent_id,
                        error,
                        MAX_BACKOFF,
                    )
                    await self._pause(self._jittered(MAX_BACKOFF))
                    return
                failures += 1
                await self._back_off(str(error), failures)
                continue
            except WatchRecordError as error:
                failures += 1
                await self._back_off(str(error), failures)
                continue
            failures = 0
            for sms in reversed(fresh):  # oldest first, as they arrived
                sms_id = fingerprint(sms)
                self.log.info(
                    "Rental %s: SMS %s from %s fires an event", self.rent_id, sms_id, sms.phone_from
                )
                metrics.sms_event("watch", sms.date)
                yield TriggerEvent(self._payload(sms_id, sms))
            if newest != watch.known or watch.unsaved:
                if fresh:
                    await self._pause(RECORD_DELAY)
                watch.known = newest
                watch.unsaved = not await self._save(newest)
            await self._pause_for_news(self._jittered(self.poll_interval), found=bool(fresh))

    async def _start(self, client: AsyncSmsOnlineClient) -> tuple[list[str], bool]:
        """The fingerprints accounted for, and whether they come from the record (else they are
        the rental's SMS right now, just recorded: a new watch)."""
        record = await _records.load(self.record_key)
        known = record.get("known") if record is not None else None
        if isinstance(known, list) and all(isinstance(f, str) for f in known):
            self.log.info(
                "Watch of rental %s resumes from its record (%s): SMS that arrived since fire now",
                self.rent_id,
                self.record_key,
            )
            return known[:KNOWN_LIMIT], True
        messages = await client.get_rent_status(self.rent_id, page=0, size=PAGE_SIZE)
        baseline = list(dict.fromkeys(fingerprint(sms) for sms in messages))
        # Recorded before any event, or a restart would take a new baseline and miss SMS.
        await _records.save(self.record_key, self._record(baseline))
        self.log.info(
            "Watching rental %s (pattern %r) every %g s; the %d SMS already on it do not fire (record %s)",
            self.rent_id,
            self.pattern,
            self.poll_interval,
            len(baseline),
            self.record_key,
        )
        return baseline, False

    async def _check(self, client: AsyncSmsOnlineClient, known: Sequence[str]) -> tuple[list[Sms], list[str]]:
        """The SMS not accounted for (newest first) and the fingerprints to remember after them."""
        accounted = set(known)
        read: list[tuple[str, Sms]] = []
        for page in range(MAX_PAGES):
            messages = await client.get_rent_status(self.rent_id, page=page, size=PAGE_SIZE)
            prints = [(fingerprint(sms), sms) for sms in messages]
            read += prints
            # A page that reaches an SMS accounted for holds the oldest new one; a short page is the last.
            if len(messages) < PAGE_SIZE or any(f in accounted for f, _ in prints):
                break
        else:
            self.log.warning(
                "Rental %s: more than %d SMS arrived since the last check; the older ones do not fire",
                self.rent_id,
                len(read),
            )
        fresh = {f: sms for f, sms in read if f not in accounted}
        newest = list(dict.fromkeys([f for f, _ in read] + list(known)))[:KNOWN_LIMIT]
        return list(fresh.values()), newest

    async def _save(self, known: list[str]) -> bool:
        try:
            await _records.save(self.record_key, self._record(known))
        except WatchRecordError as error:
            self.log.warning(
                "Watch of rental %s: %s; writing it again after the next check", self.rent_id, error
            )
            return False
        return True

    async def _ended(self, error: Exception, watch: _Watch) -> None:
        self.log.warning(
            "Rental %s has ended (%s): this watch fires no more events. Remove its AssetWatcher, or "
            "point it at the rental that replaced it. Checking again in %d minutes.",
            self.rent_id,
            error,
            ENDED_RECHECK // 60,
        )
        watch.known = None  # should the rental answer again, the watch starts anew
        try:
            await _records.delete(self.record_key)
        except WatchRecordError as problem:
            self.log.warning(
                "Watch of rental %s: %s; deleting it again at the next check", self.rent_id, problem
            )

    async def _back_off(self, problem: str, failures: int) -> None:
        delay = self._backoff(failures)
        self.log.warning("Watch of rental %s: %s; checking again in %.1f s", self.rent_id, problem, delay)
        await self._pause(delay)

    def _payload(self, sms_id: str, sms: Sms) -> dict[str, Any]:
        match = find_sms_match([sms], None, self._regex)
        return {
            "rent_id": self.rent_id,
            "sms_id": sms_id,
            "sms": sms.to_xcom(),
            "code": match.code if match is not None else None,
        }

    def _record(self, known: list[str]) -> dict[str, Any]:
        return {
            "rent_id": self.rent_id,
            "smsonline_conn_id": self.smsonline_conn_id,
            "pattern": self.pattern,
            "known": known,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
