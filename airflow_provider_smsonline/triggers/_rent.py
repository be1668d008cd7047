# The trigger class itself, loaded on first use of ``triggers.rent.RentSmsTrigger``: subclassing
# BaseTrigger imports airflow.triggers.base (pydantic models), which only the triggerer needs.
"""The implementation of :class:`airflow_provider_smsonline.triggers.rent.RentSmsTrigger`.

Import the class from :mod:`airflow_provider_smsonline.triggers.rent`, its public home and
serialized classpath; this module is private.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_smsonline.protocol import SmsMatch, SmsWalk
from airflow_provider_smsonline.validation import (
    validate_moment,
    validate_pattern,
    validate_poll_interval,
    validate_rent_id,
)
from airflow_provider_smsonline.webhook.news import wait_for_news

if TYPE_CHECKING:
    from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient


#: The longest wait, in seconds, between attempts while the server or the network fails.
MAX_BACKOFF = 300.0

# Indirection so tests can watch the waits without waiting.
_sleep = asyncio.sleep

# ----------------------------------------------------------------------------- the trigger


class RentSmsTrigger(BaseTrigger):
    """Poll getRentStatus until an SMS matching ``pattern`` arrives, then fire one event.

    Runs in the triggerer on the process's shared HTTP pool (no thread, no client per trigger).
    Polls every ``poll_interval`` seconds give or take ``jitter``; while the server or the
    network fails it backs off exponentially, up to
    :data:`~airflow_provider_smsonline.triggers.rent.MAX_BACKOFF` seconds. The event's
    payload, always with ``rent_id``:

    * ``{"status": "success", "sms": {"phone_from", "text", "service", "date"}, "code": str | None}``
      (see :func:`~airflow_provider_smsonline.protocol.find_sms_match` for which SMS and which code);
    * ``{"status": "expired", "message": str, "code": str}``: the rental ended first (the API's
      ``RENT_DIE``, ``STATUS_FINISH`` … in ``code``; ``"ended"`` once ``end_date`` has passed
      and a last check found nothing);
    * ``{"status": "error", "message": str, "code": str}``: a failure no wait can fix (bad key,
      unknown rental, refused request, missing or invalid connection);
    * ``{"status": "timeout", "message": str, "code": "timeout"}``: ``timeout_at`` passed first.

    Messages never contain the API key; the serialized kwargs hold the connection id only.

    :param rent_id: the rental's id.
    :param smsonline_conn_id: the Airflow connection holding the API key.
    :param pattern: a regular expression searched in each SMS text; ``None`` for any SMS.
    :param since: ISO 8601; only SMS stamped at or after this second count (the server's dates,
        read in the connection's ``server_timezone``). Ignored when ``seen`` is given.
    :param seen: fingerprints of the SMS the rental held when the wait started
        (:func:`~airflow_provider_smsonline.protocol.fingerprint`): every SMS listed above them
        is new, whatever the server's clock and zone. ``None`` (and no ``since``): any SMS.
    :param poll_interval: seconds between checks.
    :param jitter: the fraction by which each wait varies at random (0.1: ±10 %).
    :param end_date: ISO 8601; when the rental ends (naive means UTC). After it, one last check.
    :param timeout_at: ISO 8601; give up then. The triggerer enforces a deferral's timeout on
        its own; this also bounds runs that don't (``airflow dags test`` runs triggers in line
        and ignores deferral timeouts).
    """

    def __init__(
        self,
        rent_id: int,
        smsonline_conn_id: str = "smsonline_default",
        pattern: str | None = None,
        since: str | datetime | None = None,
        poll_interval: float = 10.0,
        jitter: float = 0.1,
        end_date: str | datetime | None = None,
        timeout_at: str | datetime | None = None,
        seen: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.rent_id = validate_rent_id(rent_id)
        self.smsonline_conn_id = smsonline_conn_id
        self._regex = validate_pattern(pattern)
        self.pattern = pattern or None
        since_at = validate_moment("since", since)
        end_at = validate_moment("end_date", end_date)
        self.since = since_at.isoformat() if since_at else None
        self.end_date = end_at.isoformat() if end_at else None
        self._since_at, self._end_at = since_at, end_at
        self._timeout_at = validate_moment("timeout_at", timeout_at)
        self.timeout_at = self._timeout_at.isoformat() if self._timeout_at else None
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter < 1:
            raise ValueError(f"jitter must be a fraction from 0 up to (not including) 1, got {jitter!r}")
        self.poll_interval = validate_poll_interval(poll_interval)
        self.jitter = float(jitter)
        if seen is not None and (isinstance(seen, str) or not all(isinstance(f, str) for f in seen)):
            raise ValueError(f"seen must be a list of SMS fingerprints (strings) or None, got {seen!r}")
        self.seen = list(seen) if seen is not None else None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The classpath and JSON-able kwargs that rebuild this trigger (no key: the conn id)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "rent_id": self.rent_id,
                "smsonline_conn_id": self.smsonline_conn_id,
                "pattern": self.pattern,
                "since": self.since,
                "poll_interval": self.poll_interval,
                "jitter": self.jitter,
                "end_date": self.end_date,
                "timeout_at": self.timeout_at,
                "seen": self.seen,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait, then yield exactly one :class:`TriggerEvent` (see the class for its payload)."""
        payload = await self._wait()
        yield TriggerEvent(payload)

    # ------------------------------------------------------------------ internals

    async def _wait(self) -> dict[str, Any]:
        from airflow_provider_smsonline._compat import AirflowNotFoundException
        from airflow_provider_smsonline.exceptions import RentalExpiredError, SmsOnlineError
        from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient

        try:
            client = await AsyncSmsOnlineClient.from_conn_id(self.smsonline_conn_id)
        except AirflowNotFoundException:
            return self._event("error", f"no connection {self.smsonline_conn_id!r}", "no_connection")
        except ValueError as error:
            return self._event("error", str(error), "bad_connection")

        self.log.info(
            "Waiting for an SMS on rental %s (pattern %r, since %s), checking every %g s",
            self.rent_id,
            self.pattern,
            self.since or "any time",
            self.poll_interval,
        )
        async with client:
            failures = 0
            while True:
                if self._timeout_at is not None and _now() >= self._timeout_at:
                    message = f"no matching SMS arrived on rental {self.rent_id} by {self.timeout_at}"
                    return self._event("timeout", message, "timeout")
                ended = self._end_at is not None and _now() >= self._end_at
                try:
                    match = await self._check(client)
                except RentalExpiredError as error:
                    return self._event("expired", f"rental {self.rent_id} has ended ({error})", error.code)
                except SmsOnlineError as error:
                    if not error.retryable:
                        return self._event("error", str(error), error.code)
                    if ended:
                        message = f"rental {self.rent_id} ended at {self.end_date}; the last check failed"
                        return self._event("expired", f"{message} ({error})", "ended")
                    failures += 1
                    delay = self._capped(self._jittered(min(MAX_BACKOFF, self.poll_interval * 2**failures)))
                    self.log.warning("Rental %s: %s; checking again in %.1f s", self.rent_id, error, delay)
                    await _sleep(delay)
                    continue
                if match is not None:
                    self.log.info("Rental %s: an SMS from %s matched", self.rent_id, match.sms.phone_from)
                    return {"status": "success", "rent_id": self.rent_id, **match.to_xcom()}
                if ended:
                    message = f"rental {self.rent_id} ended at {self.end_date} before a matching SMS arrived"
                    return self._event("expired", message, "ended")
                failures = 0
                await wait_for_news(self.rent_id, self._next_poll_delay(), sleep=_sleep)

    async def _check(self, client: AsyncSmsOnlineClient) -> SmsMatch | None:
        """One check: the newest pages, as the shared walk asks for them."""
        walk = SmsWalk(self._regex, since=self._since_at, seen=self.seen)
        page: int | None = walk.first_page
        while page is not None:
            page = walk.feed(await client.get_rent_status(self.rent_id, page=page, size=walk.page_size))
        return walk.match

    def _jittered(self, seconds: float) -> float:
        return seconds * random.uniform(1 - self.jitter, 1 + self.jitter)

    def _next_poll_delay(self) -> float:
        delay = self._jittered(self.poll_interval)
        if self._end_at is not None:
            # Check once more just after the rental ends rather than a whole interval later.
            delay = min(delay, max(0.0, (self._end_at - _now()).total_seconds()) + 1.0)
        return self._capped(delay)

    def _capped(self, delay: float) -> float:
        """``delay``, but no later than ``timeout_at``."""
        if self._timeout_at is None:
            return delay
        return min(delay, max(0.0, (self._timeout_at - _now()).total_seconds()))

    def _event(self, status: str, message: str, code: str) -> dict[str, Any]:
        return {"status": status, "rent_id": self.rent_id, "message": message, "code": code}


# Its public home: where the triggerer imports it from and what serialize() names.
RentSmsTrigger.__module__ = "airflow_provider_smsonline.triggers.rent"


def _now() -> datetime:
    return datetime.now(timezone.utc)
