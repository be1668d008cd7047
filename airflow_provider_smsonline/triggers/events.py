# The trigger behind SMS-driven DAGs: an asset watcher that polls one rental from the triggerer for
# as long as the asset is watched and fires one event per SMS that reaches it. What a watch has
# accounted for lives in one Airflow Variable, so that a triggerer restart neither repeats nor
# drops an SMS. Deciding what is new never reads the server's dates (they carry no zone): the
# watch remembers which SMS were there (their fingerprints).
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
there from Airflow 3.0 on). Its module imports that class and this provider's protocol only; the
HTTP client, the Variable access and asgiref load in the triggerer, on the first check.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import re
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol, cast

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_smsonline.protocol import MAX_PAGES, PAGE_SIZE, find_sms_match, fingerprint
from airflow_provider_smsonline.triggers._rent import MAX_BACKOFF
from airflow_provider_smsonline.validation import validate_pattern, validate_poll_interval, validate_rent_id
from airflow_provider_smsonline.webhook.news import wait_for_news

if TYPE_CHECKING:
    from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient
    from airflow_provider_smsonline.protocol import Sms

__all__ = [
    "ENDED_RECHECK",
    "KNOWN_LIMIT",
    "MAX_BACKOFF",
    "MIN_POLL_INTERVAL",
    "RECORD_PREFIX",
    "SETTLE_SECONDS",
    "SmsReceivedTrigger",
    "VariableRecords",
    "WatchRecordError",
    "WatchRecords",
    "record_key",
]

#: Fingerprints a watch remembers, newest first: the most one check reads (5 pages of 20 SMS).
KNOWN_LIMIT = MAX_PAGES * PAGE_SIZE
#: Seconds between the checks of a rental that has ended (each one logs that it has ended).
ENDED_RECHECK = 3600.0
#: Seconds an event has to reach Airflow's database before the watch records its SMS as fired.
#: The triggerer hands events to its database about once a second; a watch recorded sooner could
#: lose an event when the triggerer stops in between (see :class:`SmsReceivedTrigger`).
SETTLE_SECONDS = 3.0
#: The shortest ``poll_interval`` a watch accepts, in seconds.
MIN_POLL_INTERVAL = 1.0
#: The start of every watch record's Variable name.
RECORD_PREFIX = "smsonline_watch__"
#: The fraction by which each wait varies at random (0.1: ±10 %), so that watches spread out.
JITTER = 0.1

# Indirection so tests can watch the waits without waiting.
_sleep = asyncio.sleep

_NOT_READABLE = re.compile(r"[^A-Za-z0-9._-]+")
# Airflow's Variable key column holds 250 characters; the readable part is for people only.
_READABLE_CONN_ID = 60


def record_key(smsonline_conn_id: str, rent_id: int, pattern: str | None) -> str:
    """The Airflow Variable in which the watch of ``rent_id`` with ``pattern`` keeps its record.

    ``smsonline_watch__<rent_id>__<connection id>__<digest>``: the digest (of the connection id,
    the rental id and the pattern) tells apart watches whose readable parts look alike.
    ``poll_interval`` is not part of it, so that changing the interval keeps the record.
    """
    digest = hashlib.sha256(
        json.dumps([smsonline_conn_id, rent_id, pattern or None], separators=(",", ":")).encode()
    ).hexdigest()[:16]
    readable = _NOT_READABLE.sub("-", smsonline_conn_id)[:_READABLE_CONN_ID]
    return f"{RECORD_PREFIX}{rent_id}__{readable}__{digest}"


# ----------------------------------------------------------------------------- where a watch remembers


class WatchRecordError(Exception):
    """The watch record could not be read or written (the message names the Variable)."""


class WatchRecords(Protocol):
    """Where watches keep their records: one JSON object per key (Airflow Variables by default)."""

    async def load(self, key: str) -> dict[str, Any] | None:
        """The record at ``key``, ``None`` when there is none; :class:`WatchRecordError` on failure."""

    async def save(self, key: str, record: dict[str, Any]) -> None:
        """Write ``record`` at ``key`` and make sure it is there; :class:`WatchRecordError` if not."""

    async def delete(self, key: str) -> None:
        """Remove ``key`` (no record: no error); :class:`WatchRecordError` on failure."""


class VariableRecords:
    """Watch records in Airflow Variables (JSON), in the metadata database.

    In the triggerer each read and write is one message to the triggerer's supervisor, sent on
    the trigger's own event loop, as Airflow's triggerer sends its own. The Task SDK's
    ``Variable`` is not used there: on Airflow 3.1, called from a trigger (even in a worker
    thread) it answers on another event loop, which breaks the runner's channel and ends every
    trigger of the triggerer. Elsewhere (no triggerer) the Task SDK's ``Variable`` is used, in a
    thread. In the triggerer the record is read from the database only, never from a secrets
    backend.
    """

    #: The description every record's Variable carries, for whoever lists Variables.
    DESCRIPTION = (
        "airflow-provider-smsonline: which SMS an SmsReceivedTrigger watch has accounted for. "
        "Removed when the rental ends; safe to delete when no asset watches this rental any more."
    )

    async def load(self, key: str) -> dict[str, Any] | None:
        """The record, ``None`` when the Variable is missing (or is not a watch record)."""
        raw = await self._read(key)
        try:
            record = json.loads(raw) if raw else None
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    async def save(self, key: str, record: dict[str, Any]) -> None:
        """Write the Variable, then read it back (a failed write may only have been logged)."""
        text = json.dumps(record, separators=(",", ":"), sort_keys=True)
        channel = _triggerer_channel()
        if channel is None:
            await _in_thread("write", key, _variable_set, key, text, self.DESCRIPTION)
        else:
            from airflow.sdk.execution_time.comms import PutVariable

            await _ask(channel, "write", key, PutVariable(key=key, value=text, description=self.DESCRIPTION))
        if await self._read(key) != text:
            raise WatchRecordError(f"Variable {key!r} did not keep what was written")

    async def delete(self, key: str) -> None:
        """Delete the Variable."""
        channel = _triggerer_channel()
        if channel is None:
            await _in_thread("delete", key, _variable_delete, key)
        else:
            from airflow.sdk.execution_time.comms import DeleteVariable

            await _ask(channel, "delete", key, DeleteVariable(key=key))

    @staticmethod
    async def _read(key: str) -> str | None:
        channel = _triggerer_channel()
        if channel is None:
            return cast("str | None", await _in_thread("read", key, _variable_get, key))
        from airflow.sdk.execution_time.comms import GetVariable

        answer = await _ask(channel, "read", key, GetVariable(key=key))
        value = getattr(answer, "value", None)
        return value if isinstance(value, str) else None


def _triggerer_channel() -> Any:
    """The trigger runner's channel to its supervisor when this runs in a triggerer, else ``None``."""
    # Not imported here: a process that has not loaded it is no triggerer.
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    channel = getattr(runner, "SUPERVISOR_COMMS", None)
    return channel if type(channel).__name__ == "TriggerCommsDecoder" else None


async def _ask(channel: Any, what: str, key: str, message: Any) -> Any:
    """Send ``message`` on this loop; the answer, ``None`` for a Variable that does not exist."""
    from airflow.sdk.execution_time.comms import ErrorResponse

    try:
        answer = await channel.asend(message)
    except Exception as error:
        problem = f"could not {what} Variable {key!r} ({type(error).__name__}: {str(error)[:200]})"
    else:
        if not isinstance(answer, ErrorResponse):
            return answer
        error_type = str(getattr(answer.error, "value", answer.error))
        if error_type.endswith("NOT_FOUND"):
            return None
        problem = f"could not {what} Variable {key!r} ({error_type}: {str(answer.detail)[:200]})"
    raise WatchRecordError(problem)


async def _in_thread(what: str, key: str, function: Any, *args: Any) -> Any:
    from asgiref.sync import sync_to_async

    try:
        return await sync_to_async(function)(*args)
    except Exception as error:
        problem = f"could not {what} Variable {key!r} ({type(error).__name__}: {str(error)[:200]})"
    raise WatchRecordError(problem)


def _variable_get(key: str) -> str | None:
    from airflow.sdk import Variable

    value = Variable.get(key, default=None)
    return value if isinstance(value, str) or value is None else json.dumps(value)


def _variable_set(key: str, text: str, description: str) -> None:
    from airflow.sdk import Variable

    Variable.set(key, text, description=description)


def _variable_delete(key: str) -> None:
    from airflow.sdk import Variable

    Variable.delete(key)


# The store every watch uses; tests put an in-memory one here.
_records: WatchRecords = VariableRecords()


# ----------------------------------------------------------------------------- the trigger


@dataclass
class _Watch:
    """What one run of the trigger knows: the fingerprints accounted for (``None``: not loaded)."""

    known: list[str] | None = None
    unsaved: bool = False


class SmsReceivedTrigger(BaseEventTrigger):
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
    recorded :data:`SETTLE_SECONDS` after the event, once Airflow has stored it: a triggerer that
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
            client = await self._open_client()
            if client is None:
                await _sleep(self._jittered(MAX_BACKOFF))
                continue
            async with client, contextlib.aclosing(self._watch(client, watch)) as events:
                async for event in events:
                    yield event

    # ------------------------------------------------------------------ internals

    async def _open_client(self) -> AsyncSmsOnlineClient | None:
        from airflow_provider_smsonline._compat import AirflowNotFoundException
        from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient

        try:
            return await AsyncSmsOnlineClient.from_conn_id(self.smsonline_conn_id)
        except AirflowNotFoundException:
            problem = f"there is no connection {self.smsonline_conn_id!r}"
        except ValueError as error:
            problem = str(error)
        self.log.error(
            "Watch of rental %s: %s; trying again in about %d s", self.rent_id, problem, MAX_BACKOFF
        )
        return None

    async def _watch(self, client: AsyncSmsOnlineClient, watch: _Watch) -> AsyncGenerator[TriggerEvent, None]:
        """Check, fire, record, wait; return when the client must be rebuilt (a refused call)."""
        from airflow_provider_smsonline.exceptions import RentalExpiredError, SmsOnlineError

        failures = 0
        while True:
            try:
                if watch.known is None:
                    watch.known, resumed = await self._start(client)
                    if not resumed:  # nothing can be new yet
                        await wait_for_news(self.rent_id, self._jittered(self.poll_interval), sleep=_sleep)
                        continue
                fresh, newest = await self._check(client, watch.known)
            except RentalExpiredError as error:
                await self._ended(error, watch)
                await _sleep(ENDED_RECHECK)
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
                    await _sleep(self._jittered(MAX_BACKOFF))
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
                yield TriggerEvent(self._payload(sms_id, sms))
            if newest != watch.known or watch.unsaved:
                if fresh:
                    await _sleep(SETTLE_SECONDS)
                watch.known = newest
                watch.unsaved = not await self._save(newest)
            await wait_for_news(
                self.rent_id, self._jittered(self.poll_interval), found=bool(fresh), sleep=_sleep
            )

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
        delay = min(MAX_BACKOFF, self._jittered(self.poll_interval * 2**failures))
        self.log.warning("Watch of rental %s: %s; checking again in %.1f s", self.rent_id, problem, delay)
        await _sleep(delay)

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

    @staticmethod
    def _jittered(seconds: float) -> float:
        return seconds * random.uniform(1 - JITTER, 1 + JITTER)
