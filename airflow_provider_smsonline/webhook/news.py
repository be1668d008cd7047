# The triggerer's side of push: one shared reader per event loop (the triggerer runs every trigger
# on one loop) reads the hint Variable every READ_INTERVAL seconds while some wait is watching,
# whatever the number of waits, and wakes the waits on the rentals it names. A wait calls
# wait_for_news() where it used to sleep between polls: it returns early when its rental has news.
# Hints for rentals no wait on this loop watches are ignored: a forged or unknown rent id costs no
# getRentStatus at all.
"""Wake the waits on a rental when SMS.online's webhook says it has news.

::

    from airflow_provider_smsonline.webhook.news import wait_for_news

    while True:
        ...  # look at getRentStatus
        await wait_for_news(rent_id, poll_interval)  # the poll's sleep, cut short by a hint

Without ``[smsonline] webhook_secret`` in the triggerer's config, :func:`wait_for_news` only
sleeps: the waits poll exactly as before.

The webhook can arrive before getRentStatus shows the SMS. So after a hint, the waits on the
rental are woken again :data:`RECHECKS` seconds later (1.5 s and 5 s), unless one of them said
its look found something new (``found=True``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from airflow_provider_smsonline.triggers.records import VariableRecords
from airflow_provider_smsonline.webhook import configured_secret
from airflow_provider_smsonline.webhook.hints import HINT_RING, HINTS_KEY, decode_hints

__all__ = [
    "FIRST_READ_WINDOW",
    "READ_INTERVAL",
    "RECHECKS",
    "HintReader",
    "configure",
    "reader",
    "wait_for_news",
]

#: Seconds between two reads of the hint Variable by one triggerer (2 reads a second).
READ_INTERVAL = 0.5
#: Seconds after a hint at which its rental's waits look again, unless a look found news.
RECHECKS = (1.5, 5.0)
#: On a reader's first read, hints at most this many seconds old still wake (the triggerer may
#: have started the wait just after the webhook).
FIRST_READ_WINDOW = 30.0
#: A wait's first call also returns at once when its rental had a hint this recently (the hint
#: may have come while the wait made its first look).
RECENT = 5.0

Source = Callable[[], Awaitable[Any]]
Sleep = Callable[[float], Awaitable[Any]]

log = logging.getLogger(__name__)


async def _variable_source() -> Any:
    # The triggerer's Variable access, shared with the watch records: on the trigger's own loop
    # through the supervisor in a triggerer, the Task SDK elsewhere.
    return await VariableRecords().load(HINTS_KEY)


class _Waiter:
    """What one wait (one asyncio task) on one rental has already been woken for."""

    __slots__ = ("echo", "real")

    def __init__(self, real: int, echo: int) -> None:
        self.real = real
        self.echo = echo


class HintReader:
    """The shared reader of one event loop, and the registry of the waits it wakes.

    :param source: reads the hint document (default: the Airflow Variable).
    :param interval: seconds between reads.
    """

    def __init__(self, source: Source = _variable_source, interval: float = READ_INTERVAL) -> None:
        self.source = source
        self.interval = interval
        #: reads of the hint source so far, and the hints that woke a wait
        self.reads = 0
        self.applied = 0
        self.ignored = 0
        self._last_seq: int | None = None
        self._real: dict[int, int] = {}  # rental -> hints applied
        self._echo: dict[int, int] = {}  # rental -> re-check wake-ups
        self._hint_at: dict[int, float] = {}  # rental -> monotonic time of its last hint
        self._resolved: dict[int, int] = {}  # rental -> the hint a look found news after
        self._events: dict[int, asyncio.Event] = {}
        self._watchers: dict[int, weakref.WeakSet[Any]] = {}
        self._waiters: weakref.WeakKeyDictionary[Any, dict[int, _Waiter]] = weakref.WeakKeyDictionary()
        self._task: asyncio.Task[None] | None = None
        self._warned_at = 0.0

    # ------------------------------------------------------------------ the waits' side

    async def wait(self, rent_id: int, seconds: float, *, found: bool = False, sleep: Sleep) -> bool:
        """See :func:`wait_for_news`."""
        self._start()
        task = asyncio.current_task()
        mine = self._waiters.setdefault(task, {})
        waiter = mine.get(rent_id)
        if waiter is None:
            real = self._real.get(rent_id, 0)
            recent = time.monotonic() - self._hint_at.get(rent_id, float("-inf")) < RECENT
            seen = real - 1 if recent and real else real
            waiter = mine[rent_id] = _Waiter(seen, self._echo.get(rent_id, 0))
            self._watchers.setdefault(rent_id, weakref.WeakSet()).add(task)
        if found:
            self._resolved[rent_id] = self._real.get(rent_id, 0)
            waiter.echo = self._echo.get(rent_id, 0)
        if self._news_for(rent_id, waiter):
            return True
        sleeper = asyncio.ensure_future(sleep(seconds))
        try:
            while True:
                event = self._events.setdefault(rent_id, asyncio.Event())
                waker = asyncio.ensure_future(event.wait())
                try:
                    await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waker.cancel()
                if self._news_for(rent_id, waiter):
                    return True
                if sleeper.done():
                    sleeper.result()
                    return False
        finally:
            sleeper.cancel()

    def _news_for(self, rent_id: int, waiter: _Waiter) -> bool:
        real, echo = self._real.get(rent_id, 0), self._echo.get(rent_id, 0)
        if waiter.real < real or waiter.echo < echo:
            waiter.real, waiter.echo = real, echo
            return True
        return False

    @property
    def watched(self) -> set[int]:
        """The rentals some live wait on this loop is watching."""
        return {rent_id for rent_id, tasks in self._watchers.items() if tasks}

    # ------------------------------------------------------------------ the reader

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="smsonline-hint-reader")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not self._watchers or not self.watched:
                self._watchers = {r: t for r, t in self._watchers.items() if t}
                continue
            try:
                document = await self.source()
            except Exception as error:
                self._warn(f"could not read the webhook hints ({type(error).__name__}); the waits poll")
                continue
            self.reads += 1
            self.apply(document)

    def apply(self, document: Any, now: float | None = None) -> list[int]:
        """Wake the waits on the rentals of the hints not applied yet; the rentals woken."""
        seq, hints = decode_hints(document, after=self._last_seq)
        wall = time.time() if now is None else now
        if self._last_seq is None or seq < self._last_seq:  # first read, or the Variable started over
            if self._last_seq is not None:
                seq, hints = decode_hints(document)
            fresh = [h for h in hints if h.at >= wall - FIRST_READ_WINDOW]
        else:
            fresh = hints
            if len(hints) >= HINT_RING and hints[0].seq > self._last_seq + 1:
                self._warn("more hints came between two reads than the Variable keeps; the waits poll")
        self._last_seq = seq
        woken = []
        for rent_id in dict.fromkeys(h.rent_id for h in fresh):
            if not self._watchers.get(rent_id):
                self.ignored += 1
                continue
            self.applied += 1
            woken.append(rent_id)
            self._hint(rent_id)
        return woken

    def _hint(self, rent_id: int) -> None:
        self._real[rent_id] = generation = self._real.get(rent_id, 0) + 1
        self._hint_at[rent_id] = time.monotonic()
        self._wake(rent_id)
        loop = asyncio.get_running_loop()
        for delay in RECHECKS:
            loop.call_later(delay, self._recheck, rent_id, generation)

    def _recheck(self, rent_id: int, generation: int) -> None:
        if self._resolved.get(rent_id, 0) >= generation or not self._watchers.get(rent_id):
            return
        self._echo[rent_id] = self._echo.get(rent_id, 0) + 1
        self._wake(rent_id)

    def _wake(self, rent_id: int) -> None:
        event = self._events.pop(rent_id, None)
        if event is not None:
            event.set()

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= 60:
            self._warned_at = now
            log.warning("SMS.online webhook: %s", message)


# ----------------------------------------------------------------------------- one per loop

_readers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HintReader] = weakref.WeakKeyDictionary()
_enabled: bool | None = None
_source: Source | None = None
_interval: float = READ_INTERVAL


def configure(
    enabled: bool | None = None, source: Source | None = None, interval: float = READ_INTERVAL
) -> None:
    """Turn push on or off in this process (``None``: from ``[smsonline] webhook_secret``),
    choose where hints are read from (``None``: the Airflow Variable) and how often. Forgets
    existing readers."""
    global _enabled, _source, _interval
    _enabled, _source, _interval = enabled, source, interval
    _readers.clear()


def _push_enabled() -> bool:
    global _enabled
    if _enabled is None:
        _enabled = configured_secret() is not None
    return _enabled


def reader() -> HintReader | None:
    """This loop's shared reader (created on first use), ``None`` when push is off."""
    if not _push_enabled():
        return None
    loop = asyncio.get_running_loop()
    shared = _readers.get(loop)
    if shared is None:
        shared = _readers[loop] = HintReader(_source or _variable_source, _interval)
    return shared


async def wait_for_news(
    rent_id: int, seconds: float, *, found: bool = False, sleep: Sleep = asyncio.sleep
) -> bool:
    """Sleep ``seconds``, or less: ``True`` as soon as a webhook hint for ``rent_id`` arrives.

    Also ``True`` at once when a hint came since this wait's last call (while it was looking),
    and :data:`RECHECKS` seconds after a hint (the SMS may not have been visible yet) unless a
    wait on the rental called with ``found=True`` since. ``False`` when ``seconds`` passed.

    :param rent_id: the rental the calling wait watches.
    :param seconds: the poll's delay.
    :param found: whether the look just before this call found something new (ends the re-checks).
    :param sleep: how to sleep (tests pass a fake clock's).
    """
    shared = reader()
    if shared is None:
        await sleep(seconds)
        return False
    return await shared.wait(rent_id, seconds, found=found, sleep=sleep)
