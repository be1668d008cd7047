# One getActiveActivations per round for every activation wait on one account in one event loop
# (the triggerer runs every trigger on one loop): SMS.online documents it as the way to watch many
# activations at once. The rounds come at the shortest poll_interval among the waits, sooner when
# a webhook hint names one of their activations or a wait joins (never two within MIN_GAP), and
# later while the server fails. Each wait reads its own row from the last round; what the list
# cannot say (an activation that left it; a code and "waiting for another" look alike) each wait
# asks getStatus itself (triggers/_activation.py). Loaded in the triggerer only.
"""The shared reader of one account's active activations (private; see
:class:`~airflow_provider_smsonline.triggers.activation.ActivationCodeTrigger`)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_smsonline.exceptions import ServerError, SmsOnlineError
from airflow_provider_smsonline.webhook import news
from airflow_provider_smsonline.webhook.hints import ACTIVATION, HintKey

if TYPE_CHECKING:
    from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient

__all__ = ["FALLBACK_AFTER", "MIN_GAP", "REFUSED_PAUSE", "ActiveList", "Round", "active_list"]

#: The shortest time between two getActiveActivations of one account from one triggerer: at most
#: two calls a second, whatever the number of waits and webhooks.
MIN_GAP = 0.5
#: Seconds before the list is asked again after an answer that is not a server or network failure
#: (a refusal, an error code this provider does not know, which may be the page's unnamed "no
#: active activations"): meanwhile each wait asks getStatus on its own, every poll_interval.
REFUSED_PAUSE = 60.0
#: The longest pause between two rounds while the server or the network fails.
MAX_BACKOFF = 300.0
#: Failed rounds in a row after which the waits stop waiting for the list and ask getStatus each
#: (an answer too large for the connection's ``max_response_bytes`` fails every round).
FALLBACK_AFTER = 3

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Round:
    """One getActiveActivations.

    :ivar number: 1 for the first round, then one more each time.
    :ivar started: when it was sent (the loop's clock).
    :ivar codes: each listed activation's codes (``()``: listed, no code yet); ``None`` when the
        call failed.
    :ivar error: why it failed.
    """

    number: int
    started: float
    codes: Mapping[int, tuple[str, ...]] | None
    error: SmsOnlineError | None = None


class ActiveList:
    """The rounds of one account's getActiveActivations, shared by the waits that :meth:`join`.

    :param client: a client on the account (the list closes it when the last wait leaves).
    """

    def __init__(self, client: AsyncSmsOnlineClient) -> None:
        self.client = client
        #: the last round, and the number of calls made
        self.latest: Round | None = None
        self.calls = 0
        self._waits: dict[Any, tuple[int, float]] = {}  # wait -> (activation id, poll interval)
        self._hurried = False
        self._failures = 0
        self._refused_at: float | None = None
        self._wake = asyncio.Event()
        self._published = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warned_at = float("-inf")

    # ------------------------------------------------------------------ the waits' side

    def join(self, wait: Any, activation_id: int, poll_interval: float) -> float:
        """Add ``wait`` (on ``activation_id``, wanting a look every ``poll_interval``); a round
        comes soon. Returns when it joined (the loop's clock): rounds sent before do not list its
        activation for sure."""
        self._waits[wait] = (activation_id, poll_interval)
        hints = news.reader()
        if hints is not None:
            hints.listen((ACTIVATION, activation_id), self)
        self.hurry()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="smsonline-active-list")
        return asyncio.get_running_loop().time()

    def leave(self, wait: Any) -> None:
        """Remove ``wait``; the last to leave ends the rounds and closes the client."""
        gone = self._waits.pop(wait, None)
        if gone is not None and not any(a == gone[0] for a, _ in self._waits.values()):
            hints = news.reader()
            if hints is not None:
                hints.unlisten((ACTIVATION, gone[0]), self)
        if not self._waits:
            _forget(self)
            if self._task is not None:
                self._task.cancel()
            asyncio.get_running_loop().create_task(self.client.aclose())

    def hinted(self, key: HintKey) -> None:
        """A webhook hint (or its re-check) names one of the waits' activations: a round soon."""
        self.hurry()

    def hurry(self) -> None:
        """Ask for a round as soon as :data:`MIN_GAP` allows (not while the server fails)."""
        self._hurried = True
        self._wake.set()

    @property
    def refused(self) -> bool:
        """Whether the list cannot say: an answer that is not a server failure, or
        :data:`FALLBACK_AFTER` failed rounds in a row. The waits then ask getStatus each."""
        return self._refused_at is not None or self._failures >= FALLBACK_AFTER

    def fresh(self, after: int, not_before: float) -> Round | None:
        """The last round if it is newer than round ``after`` and was sent at or after
        ``not_before``; else ``None``."""
        latest = self.latest
        if latest is None or latest.number <= after or latest.started < not_before:
            return None
        return latest

    async def next_round(self, after: int, not_before: float, timeout: float) -> Round | None:
        """Wait up to ``timeout`` seconds for a round :meth:`fresh` would return."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (found := self.fresh(after, not_before)) is None:
            left = deadline - loop.time()
            if left <= 0 or not await _set_within(self._published, left):
                return None
        return found

    # ------------------------------------------------------------------ the rounds

    def _due(self, now: float) -> float:
        latest = self.latest
        if latest is None:
            return now
        if self._refused_at is not None:
            return self._refused_at + REFUSED_PAUSE
        interval = min(interval for _, interval in self._waits.values())
        if self._failures:
            return latest.started + min(MAX_BACKOFF, interval * 2 ** min(self._failures, 16))
        if self._hurried:
            return latest.started + min(MIN_GAP, interval)
        return latest.started + interval

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waits:
            self._wake.clear()  # before the due time is read: a hurry from now on wakes the wait
            left = self._due(loop.time()) - loop.time()
            if left > 0:
                await _set_within(self._wake, left)
                continue  # a hurry or a new wait may have moved the next round
            self._hurried = False
            await self._round(loop.time())

    async def _round(self, started: float) -> None:
        number = (self.latest.number if self.latest else 0) + 1
        self.calls += 1
        try:
            rows = await self.client.get_active_activations()
        except SmsOnlineError as error:
            if isinstance(error, ServerError):  # the server or the network: getStatus would fail too
                self._failures += 1
            else:  # the list cannot say: each wait asks getStatus
                self._refused_at = started
            self._warn(error)
            self._publish(Round(number, started, None, error))
            return
        except Exception as error:  # never the client's (it raises SmsOnlineError): the waits ask getStatus
            self._refused_at = started
            log.warning(
                "getActiveActivations for %d activation wait(s) failed (%s); each wait asks getStatus "
                "on its own, and the list is asked again in %g s",
                len(self._waits),
                type(error).__name__,
                REFUSED_PAUSE,
            )
            self._publish(Round(number, started, None))
            return
        self._failures = 0
        self._refused_at = None
        self._publish(Round(number, started, {row.id: row.codes for row in rows}))

    def _publish(self, found: Round) -> None:
        self.latest = found
        published, self._published = self._published, asyncio.Event()
        published.set()

    def _warn(self, error: SmsOnlineError) -> None:
        now = time.monotonic()
        if now - self._warned_at < 60 and self._failures != FALLBACK_AFTER:
            return
        self._warned_at = now
        if isinstance(error, ServerError) and self._failures < FALLBACK_AFTER:
            then = "trying again with back-off; the waits keep waiting"
        elif isinstance(error, ServerError):
            then = "trying again with back-off; meanwhile each wait asks getStatus on its own"
        else:
            then = f"each wait asks getStatus on its own, and the list is asked again in {REFUSED_PAUSE:g} s"
        log.warning(
            "getActiveActivations for %d activation wait(s) failed: %s; %s", len(self._waits), error, then
        )


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """Whether ``event`` is set within ``seconds``. Not ``asyncio.wait_for``: on Python 3.10 and
    3.11 it can swallow the cancellation of the waiting task when the event is set at that very
    moment, and a trigger the triggerer cancels would then wait on."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()
    return event.is_set()


# ----------------------------------------------------------------------------- one per account


_LISTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, ActiveList]] = (
    weakref.WeakKeyDictionary()
)


def active_list(client: AsyncSmsOnlineClient) -> ActiveList:
    """The shared list of ``client``'s account (its endpoint and key) on this loop; created with
    a client of its own on the same settings and pool."""
    loop = asyncio.get_running_loop()
    lists = _LISTS.setdefault(loop, {})
    # A digest, not the key: nothing that may be printed holds it.
    account = hashlib.sha256(f"{client.config.endpoint}\n{client.config.api_key}".encode()).hexdigest()
    shared = lists.get(account)
    if shared is None:
        shared = lists[account] = ActiveList(type(client)(client.config))
    return shared


def _forget(shared: ActiveList) -> None:
    for lists in _LISTS.values():
        for account, found in list(lists.items()):
            if found is shared:
                del lists[account]
