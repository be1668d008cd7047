# The triggerer's side of push: one shared reader per event loop (the triggerer runs every trigger
# on one loop) reads the hint Variable every READ_INTERVAL seconds while some wait is watching,
# whatever the number of waits, and wakes the waits on the rentals (and the account readers of the
# activations) it names. The text is parsed in a thread, and only when it changed. A rental wait
# calls wait_for_news() where it used to sleep between polls: it returns early when its rental has
# news. Hints for rentals or activations no wait on this loop watches are ignored: a forged or
# unknown id costs no call at all. Hints for one subject never stack: one "episode" of looks (at
# once, then the re-checks) at a time, however many posts arrive.
"""Wake the waits on a rental or an activation when SMS.online's webhook says it has news.

::

    from airflow_provider_smsonline.webhook.news import wait_for_news

    while True:
        ...  # look at getRentStatus
        await wait_for_news(rent_id, poll_interval)  # the poll's sleep, cut short by a hint

Without a valid ``[smsonline] webhook_secret`` in the triggerer's config, :func:`wait_for_news`
only sleeps: the waits poll exactly as before.

The webhook can arrive before the API shows the SMS. So a hint starts an *episode*: the waits on
its subject are woken at once, and again :data:`RECHECKS` seconds later (1.5 s and 5 s) unless a
look found something new meanwhile (``found=True``). Hints for a subject whose episode is under
way join it (they add no look); when the episode ends (a look found something, or its last
re-check), a hint that joined it starts the next one, its first look being that end. Episodes do
not overlap: whatever the number of posts, a wait on a rental looks at most three times per
5 seconds because of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from airflow_provider_smsonline.triggers.records import VariableRecords
from airflow_provider_smsonline.webhook import configured_secret, secret_problem
from airflow_provider_smsonline.webhook.hints import (
    HINT_RING,
    HINTS_KEY,
    MAX_HINTS_BYTES,
    RENTAL,
    HintKey,
    decode_hints,
    read_hints,
)

__all__ = [
    "FIRST_READ_WINDOW",
    "OVERSIZED_PAUSE",
    "READ_INTERVAL",
    "RECHECKS",
    "HintListener",
    "HintReader",
    "configure",
    "reader",
    "wait_for_news",
]

#: Seconds between two reads of the hint Variable by one triggerer (2 reads a second).
READ_INTERVAL = 0.5
#: Seconds after a hint at which its subject's waits look again, unless a look found news.
RECHECKS = (1.5, 5.0)
#: On a reader's first read, hints at most this many seconds old still wake (the triggerer may
#: have started the wait just after the webhook).
FIRST_READ_WINDOW = 30.0
#: A wait's first call also returns at once when its rental had a hint this recently (the hint
#: may have come while the wait made its first look).
RECENT = 5.0
#: Seconds the reader waits before reading a hint Variable again that was over
#: :data:`~airflow_provider_smsonline.webhook.hints.MAX_HINTS_BYTES` (not written by this provider).
OVERSIZED_PAUSE = 30.0

#: Reads the hint Variable's text (``None``: no Variable).
Source = Callable[[], Awaitable["str | None"]]
Sleep = Callable[[float], Awaitable[Any]]

log = logging.getLogger(__name__)


async def _variable_source() -> str | None:
    # The triggerer's Variable access, shared with the watch records: on the trigger's own loop
    # through the supervisor in a triggerer, the Task SDK elsewhere. Only the text: it is parsed
    # off the loop, and only when it changed.
    return await VariableRecords().read_text(HINTS_KEY)


class HintListener(Protocol):
    """What a hint wakes besides the rental waits: an account's reader of active activations."""

    def hinted(self, key: HintKey) -> None:
        """``key`` has news (a hint, or one of its re-checks): look soon."""


class _Waiter:
    """What one wait (one asyncio task) on one rental has already been woken for."""

    __slots__ = ("echo", "real")

    def __init__(self, real: int, echo: int) -> None:
        self.real = real
        self.echo = echo


class HintReader:
    """The shared reader of one event loop, and the registry of what it wakes.

    :param source: reads the hint Variable's text (default: the Airflow Variable).
    :param interval: seconds between reads.
    """

    def __init__(self, source: Source = _variable_source, interval: float = READ_INTERVAL) -> None:
        self.source = source
        self.interval = interval
        #: reads of the hint source so far, texts parsed, hints that started an episode, hints
        #: for nothing watched, and hints that joined an episode under way
        self.reads = 0
        self.parsed = 0
        self.applied = 0
        self.ignored = 0
        self.absorbed = 0
        self._last_seq: int | None = None
        self._last_text: str | None = None
        self._real: dict[HintKey, int] = {}  # subject -> episodes started
        self._echo: dict[HintKey, int] = {}  # subject -> re-check wake-ups
        self._hint_at: dict[HintKey, float] = {}  # subject -> monotonic time of its last episode
        self._episode_end: dict[HintKey, float] = {}  # subject -> when its last re-check is due
        self._resolved: dict[HintKey, int] = {}  # subject -> the episode a look found news in
        self._joined: set[HintKey] = set()  # subjects with a hint that came during their episode
        self._events: dict[HintKey, asyncio.Event] = {}
        self._watchers: dict[HintKey, weakref.WeakSet[Any]] = {}
        self._listeners: dict[HintKey, weakref.WeakSet[Any]] = {}
        self._waiters: weakref.WeakKeyDictionary[Any, dict[int, _Waiter]] = weakref.WeakKeyDictionary()
        self._task: asyncio.Task[None] | None = None
        self._warned_at = 0.0

    # ------------------------------------------------------------------ the rental waits' side

    async def wait(self, rent_id: int, seconds: float, *, found: bool = False, sleep: Sleep) -> bool:
        """See :func:`wait_for_news`."""
        self._start()
        key = (RENTAL, rent_id)
        task = asyncio.current_task()
        mine = self._waiters.setdefault(task, {})
        waiter = mine.get(rent_id)
        if waiter is None:
            real = self._real.get(key, 0)
            recent = time.monotonic() - self._hint_at.get(key, float("-inf")) < RECENT
            seen = real - 1 if recent and real else real
            waiter = mine[rent_id] = _Waiter(seen, self._echo.get(key, 0))
            self._watchers.setdefault(key, weakref.WeakSet()).add(task)
        if found:
            self.resolve(key)
            waiter.echo = self._echo.get(key, 0)
        if self._news_for(key, waiter):
            return True
        sleeper = asyncio.ensure_future(sleep(seconds))
        try:
            while True:
                event = self._events.setdefault(key, asyncio.Event())
                waker = asyncio.ensure_future(event.wait())
                try:
                    await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waker.cancel()
                if self._news_for(key, waiter):
                    return True
                if sleeper.done():
                    sleeper.result()
                    return False
        finally:
            sleeper.cancel()

    def _news_for(self, key: HintKey, waiter: _Waiter) -> bool:
        real, echo = self._real.get(key, 0), self._echo.get(key, 0)
        if waiter.real < real or waiter.echo < echo:
            waiter.real, waiter.echo = real, echo
            return True
        return False

    # ------------------------------------------------------------------ listeners (activations)

    def listen(self, key: HintKey, listener: HintListener) -> None:
        """Call ``listener.hinted(key)`` on each hint and re-check for ``key`` while it listens
        (held weakly); starts the reader."""
        self._start()
        self._listeners.setdefault(key, weakref.WeakSet()).add(listener)

    def unlisten(self, key: HintKey, listener: HintListener) -> None:
        """Stop calling ``listener`` for ``key``."""
        listeners = self._listeners.get(key)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._listeners[key]

    def resolve(self, key: HintKey) -> None:
        """A look at ``key`` found something new: its episode ends (no more re-checks). A hint
        that came during it (another SMS, perhaps, while that look was made) starts the next
        episode now, and any later hint at once."""
        self._resolved[key] = self._real.get(key, 0)
        if key in self._joined:
            self._joined.discard(key)
            self._hint(key)

    @property
    def watched(self) -> set[HintKey]:
        """The subjects some live wait (or listener) on this loop is watching."""
        found = {key for key, tasks in self._watchers.items() if tasks}
        return found | {key for key, listeners in self._listeners.items() if listeners}

    def _is_watched(self, key: HintKey) -> bool:
        return bool(self._watchers.get(key)) or bool(self._listeners.get(key))

    # ------------------------------------------------------------------ the reader

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="smsonline-hint-reader")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self._watchers = {k: t for k, t in self._watchers.items() if t}
            if not self._watchers and not self._listeners:
                continue
            try:
                text = await self.source()
            except Exception as error:
                self._warn(f"could not read the webhook hints ({type(error).__name__}); the waits poll")
                continue
            self.reads += 1
            if text == self._last_text:  # nothing written since the last read: nothing to parse
                continue
            if text is not None and len(text) > MAX_HINTS_BYTES:
                self._warn(
                    f"the Variable {HINTS_KEY} holds {len(text):,} characters, over the "
                    f"{MAX_HINTS_BYTES:,} this provider writes; it is not read (delete it: the "
                    "api-server writes it anew); the waits poll"
                )
                await asyncio.sleep(OVERSIZED_PAUSE)
                continue
            self._last_text = text
            self.parsed += 1
            # Parsed in a thread: the trigger loop only moves the text.
            self.apply(await asyncio.to_thread(read_hints, text))

    def apply(self, document: Any, now: float | None = None) -> list[HintKey]:
        """Start an episode for the watched subjects of the hints not applied yet; those woken."""
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
        for key in dict.fromkeys(h.key for h in fresh):
            if not self._is_watched(key):
                self.ignored += 1
            elif self._hint(key):
                self.applied += 1
                woken.append(key)
            else:
                self.absorbed += 1
        return woken

    def _hint(self, key: HintKey, *, force: bool = False) -> bool:
        """Start an episode for ``key``; ``False`` (nothing woken) while one is under way: the
        hint joins it, and starts the next one when it ends (see :meth:`resolve`)."""
        now = time.monotonic()
        generation = self._real.get(key, 0)
        under_way = self._episode_end.get(key, float("-inf")) > now
        if not force and under_way and self._resolved.get(key, 0) < generation:
            self._joined.add(key)
            return False
        self._joined.discard(key)
        self._real[key] = generation = generation + 1
        self._hint_at[key] = now
        self._episode_end[key] = now + max(RECHECKS, default=0.0)
        self._wake(key)
        loop = asyncio.get_running_loop()
        for n, delay in enumerate(RECHECKS, start=1):
            loop.call_later(delay, self._recheck, key, generation, n == len(RECHECKS))
        return True

    def _recheck(self, key: HintKey, generation: int, last: bool) -> None:
        if self._resolved.get(key, 0) >= generation or not self._is_watched(key):
            return
        if last and key in self._joined:  # a hint came meanwhile: this look starts its episode
            self._hint(key, force=True)
            return
        self._echo[key] = self._echo.get(key, 0) + 1
        self._wake(key)

    def _wake(self, key: HintKey) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.set()
        for listener in list(self._listeners.get(key, ())):
            listener.hinted(key)

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
    """Turn push on or off in this process (``None``: on when ``[smsonline] webhook_secret`` is
    set and valid), choose where hints are read from (``None``: the Airflow Variable) and how
    often. Forgets existing readers."""
    global _enabled, _source, _interval
    _enabled, _source, _interval = enabled, source, interval
    _readers.clear()


def _push_enabled() -> bool:
    global _enabled
    if _enabled is None:
        secret = configured_secret()
        problem = None if secret is None else secret_problem(secret)
        if problem is not None:
            log.error("SMS.online webhook hints are not read, the secret is refused: %s", problem)
        _enabled = secret is not None and problem is None
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
