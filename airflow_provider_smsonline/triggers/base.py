# The one waiting loop of every trigger this provider runs in the triggerer: the client, the
# deadline, the pause between checks (jittered, capped at the deadline), the backoff while the
# server or the network fails, and the events. A trigger says only what it asks and what counts
# as done. Loaded by the triggerer only (it imports airflow.triggers.base, pydantic models).
"""The polling loop the provider's triggers share.

:class:`Polling` holds what every wait does between two checks; :class:`PollingTrigger` is the
one-event trigger built on it (:class:`~airflow_provider_smsonline.triggers.rent.RentSmsTrigger`,
:class:`~airflow_provider_smsonline.triggers.activation.ActivationCodeTrigger`), and
:class:`~airflow_provider_smsonline.triggers.events.SmsReceivedTrigger`, the asset watch that fires
an event per SMS, runs its own loop from the same parts.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_smsonline._compat import AirflowNotFoundException
from airflow_provider_smsonline.exceptions import SmsOnlineError
from airflow_provider_smsonline.validation import validate_moment, validate_pattern, validate_poll_interval
from airflow_provider_smsonline.webhook.news import wait_for_news

if TYPE_CHECKING:
    from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient

__all__ = ["JITTER", "MAX_BACKOFF", "Polling", "PollingTrigger", "now"]

#: The longest wait, in seconds, between attempts while the server or the network fails.
MAX_BACKOFF = 300.0
#: The default fraction by which each wait varies at random (0.1: ±10 %), so that waits spread out.
JITTER = 0.1

# Indirection so tests can watch the waits without waiting: every pause of every trigger.
_sleep = asyncio.sleep


def now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(timezone.utc)


def validate_jitter(jitter: object) -> float:
    """``jitter`` as a float, or ``ValueError`` unless it is a fraction from 0 up to 1."""
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter < 1:
        raise ValueError(f"jitter must be a fraction from 0 up to (not including) 1, got {jitter!r}")
    return float(jitter)


class Polling:
    """What a wait does between two checks. Mixed into a ``BaseTrigger`` (for ``self.log``).

    :ivar poll_interval: seconds between checks.
    :ivar jitter: the fraction by which each pause varies at random.
    """

    poll_interval: float
    jitter: float = JITTER
    smsonline_conn_id: str
    log: Any

    def _jittered(self, seconds: float) -> float:
        return seconds * random.uniform(1 - self.jitter, 1 + self.jitter)

    def _backoff(self, failures: int) -> float:
        """The pause after ``failures`` failed checks in a row: doubling, jittered, at most
        :data:`MAX_BACKOFF` seconds."""
        # The exponent is capped: a watch that fails for days would overflow a float.
        return min(MAX_BACKOFF, self._jittered(min(MAX_BACKOFF, self.poll_interval * 2 ** min(failures, 32))))

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` before the next check."""
        await _sleep(seconds)

    def _push_rental(self) -> int | None:
        """The rental whose webhook hints cut the wait between two polls short (``None``: none)."""
        return None

    async def _pause_for_news(self, seconds: float, *, found: bool = False) -> None:
        """The pause between two polls: ``seconds``, or less when SMS.online's webhook says the
        rental has news (see :mod:`airflow_provider_smsonline.webhook.news`; without
        ``[smsonline] webhook_secret`` it is :meth:`_pause`). ``found``: the last look found
        something new."""
        rent_id = self._push_rental()
        if rent_id is None:
            await _sleep(seconds)
        else:
            await wait_for_news(rent_id, seconds, found=found, sleep=_sleep)

    async def _open_client(self) -> AsyncSmsOnlineClient | str:
        """A client on the connection, or why there is none (a missing or invalid connection)."""
        # aiohttp loads in the triggerer on the first check, not at DAG parse (events.py imports this)
        from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient

        try:
            return await AsyncSmsOnlineClient.from_conn_id(self.smsonline_conn_id)
        except AirflowNotFoundException:
            return f"no connection {self.smsonline_conn_id!r}"
        except ValueError as error:
            return str(error)


class PollingTrigger(Polling, BaseTrigger):
    """Check every ``poll_interval`` seconds until the wait is done, then fire one event.

    A subclass says what it waits on (:attr:`subject`, :attr:`id_field` and the id), what one
    check asks (:meth:`check`, returning the success payload when done) and, optionally, which
    errors end the wait otherwise (:meth:`final_event`). The loop here gives every payload the
    id and a ``status``; it ends with:

    * the payload :meth:`check` returned (``"status": "success"`` or a subclass's own);
    * ``{"status": "error", "message", "code"}``: a failure no wait can fix (bad key, unknown id,
      refused request, missing or invalid connection);
    * ``{"status": "timeout", "message", "code": "timeout"}``: ``timeout_at`` passed first.

    Retryable failures back off exponentially up to :data:`MAX_BACKOFF` seconds, never past
    ``timeout_at``. Messages never contain the API key; kwargs hold the connection id only.
    """

    #: What the wait is on, as a message says it ("rental", "activation").
    subject: str = ""
    #: The payload's (and the kwargs') name of the id.
    id_field: str = ""
    #: What the wait is for, as a message says it ("matching SMS", "code").
    awaited: str = ""

    def __init__(
        self,
        smsonline_conn_id: str,
        pattern: str | None,
        poll_interval: float,
        jitter: float,
        timeout_at: str | datetime | None,
    ) -> None:
        super().__init__()
        self.smsonline_conn_id = smsonline_conn_id
        self._regex = validate_pattern(pattern)
        self.pattern = pattern or None
        self.poll_interval = validate_poll_interval(poll_interval)
        self.jitter = validate_jitter(jitter)
        self._timeout_at = validate_moment("timeout_at", timeout_at)
        self.timeout_at = self._timeout_at.isoformat() if self._timeout_at else None

    @property
    def subject_id(self) -> int:
        """The id of what the wait is on."""
        return int(getattr(self, self.id_field))

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The classpath and JSON-able kwargs that rebuild this trigger (no key: the conn id)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                self.id_field: self.subject_id,
                "smsonline_conn_id": self.smsonline_conn_id,
                "pattern": self.pattern,
                **self._kwargs(),
                "poll_interval": self.poll_interval,
                "jitter": self.jitter,
                "timeout_at": self.timeout_at,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait, then yield exactly one :class:`TriggerEvent` (see the class for its payload)."""
        yield TriggerEvent(await self._wait())

    # ------------------------------------------------------------------ what a subclass fills in

    def _kwargs(self) -> dict[str, Any]:
        """The subclass's own serialized kwargs."""
        return {}

    async def check(self, client: AsyncSmsOnlineClient) -> dict[str, Any] | None:
        """One check: the payload to fire when the wait is done, else ``None``."""
        raise NotImplementedError

    def final_event(self, error: SmsOnlineError) -> dict[str, Any] | None:
        """The payload a retryable ``error`` ends the wait with, if it does (default: none);
        non-retryable errors end it with ``status: error`` unless this says otherwise."""
        return None if error.retryable else self.event("error", str(error), error.code)

    def _timeout_note(self) -> str:
        """What the ``"timeout"`` event's message adds after saying nothing arrived (default: nothing)."""
        return ""

    def _describe(self) -> str:
        """What the wait is, for the log line that starts it."""
        return f"Waiting for the {self.awaited} of {self.subject} {self.subject_id}"

    def _next_delay(self) -> float:
        """The pause before the next check after one that found nothing."""
        return self._jittered(self.poll_interval)

    # ------------------------------------------------------------------ the loop

    def event(self, status: str, message: str, code: str) -> dict[str, Any]:
        """A payload that ends the wait without success."""
        return {"status": status, self.id_field: self.subject_id, "message": message, "code": code}

    def _capped(self, delay: float) -> float:
        """``delay``, but no later than ``timeout_at``."""
        if self._timeout_at is None:
            return delay
        return min(delay, max(0.0, (self._timeout_at - now()).total_seconds()))

    async def _wait(self) -> dict[str, Any]:
        client = await self._open_client()
        if isinstance(client, str):
            code = "no_connection" if client.startswith("no connection ") else "bad_connection"
            return self.event("error", client, code)
        self.log.info("%s, checking every %g s", self._describe(), self.poll_interval)
        async with client:
            failures = 0
            while True:
                if self._timeout_at is not None and now() >= self._timeout_at:
                    message = (
                        f"no {self.awaited} arrived on {self.subject} {self.subject_id} by {self.timeout_at}"
                    )
                    note = self._timeout_note()
                    return self.event("timeout", f"{message}; {note}" if note else message, "timeout")
                try:
                    done = await self.check(client)
                except SmsOnlineError as error:
                    final = self.final_event(error)
                    if final is not None:
                        return final
                    failures += 1
                    delay = self._capped(self._backoff(failures))
                    self.log.warning(
                        "%s %s: %s; checking again in %.1f s",
                        self.subject.capitalize(),
                        self.subject_id,
                        error,
                        delay,
                    )
                    await self._pause(delay)
                    continue
                if done is not None:
                    return {self.id_field: self.subject_id, **done}
                failures = 0
                await self._pause_for_news(self._capped(self._next_delay()))
