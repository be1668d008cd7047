# The trigger class itself, loaded on first use of ``triggers.rent.RentSmsTrigger``: subclassing
# BaseTrigger imports airflow.triggers.base (pydantic models), which only the triggerer needs.
"""The implementation of :class:`airflow_provider_smsonline.triggers.rent.RentSmsTrigger`.

Import the class from :mod:`airflow_provider_smsonline.triggers.rent`, its public home and
serialized classpath; this module is private.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_smsonline import metrics
from airflow_provider_smsonline.exceptions import RentalExpiredError, SmsOnlineError
from airflow_provider_smsonline.protocol import SmsWalk
from airflow_provider_smsonline.protocol.matching import passed_over_note
from airflow_provider_smsonline.triggers.base import JITTER, PollingTrigger, now
from airflow_provider_smsonline.validation import validate_moment, validate_rent_id

if TYPE_CHECKING:
    from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient


class RentSmsTrigger(PollingTrigger):
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
    :param seen: fingerprints (:func:`~airflow_provider_smsonline.protocol.fingerprint`) of SMS
        that do not count: those the rental held when the wait started that are older than the
        DAG run. Every SMS listed above them counts, whatever the server's clock and zone; ``[]``
        or ``None`` (and no ``since``): any SMS.
    :param poll_interval: seconds between checks.
    :param jitter: the fraction by which each wait varies at random (0.1: ±10 %).
    :param end_date: ISO 8601; when the rental ends (naive means UTC). After it, one last check.
    :param passed_over: the server dates (ISO 8601) of the matching SMS the sensor found older
        than the DAG run: the ``"timeout"`` event's message says how many, and how to count them.
    :param timeout_at: ISO 8601; give up then. The triggerer enforces a deferral's timeout on
        its own; this also bounds runs that don't (``airflow dags test`` runs triggers in line
        and ignores deferral timeouts).
    """

    subject = "rental"
    id_field = "rent_id"
    awaited = "matching SMS"

    def __init__(
        self,
        rent_id: int,
        smsonline_conn_id: str = "smsonline_default",
        pattern: str | None = None,
        since: str | datetime | None = None,
        poll_interval: float = 10.0,
        jitter: float = JITTER,
        end_date: str | datetime | None = None,
        timeout_at: str | datetime | None = None,
        seen: Sequence[str] | None = None,
        passed_over: Sequence[str] | None = None,
    ) -> None:
        super().__init__(smsonline_conn_id, pattern, poll_interval, jitter, timeout_at)
        self.rent_id = validate_rent_id(rent_id)
        since_at = validate_moment("since", since)
        end_at = validate_moment("end_date", end_date)
        self.since = since_at.isoformat() if since_at else None
        self.end_date = end_at.isoformat() if end_at else None
        self._since_at, self._end_at = since_at, end_at
        if seen is not None and (isinstance(seen, str) or not all(isinstance(f, str) for f in seen)):
            raise ValueError(f"seen must be a list of SMS fingerprints (strings) or None, got {seen!r}")
        self.seen = list(seen) if seen is not None else None
        if isinstance(passed_over, str):
            raise ValueError(f"passed_over must be a list of ISO 8601 dates or None, got {passed_over!r}")
        moments = (validate_moment("passed_over", date) for date in passed_over or ())
        self._passed_over = [moment for moment in moments if moment is not None]
        self.passed_over = [moment.isoformat() for moment in self._passed_over] or None
        self._last_check_ended = False

    def _push_rental(self) -> int | None:
        return self.rent_id

    def _kwargs(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "end_date": self.end_date,
            "seen": self.seen,
            "passed_over": self.passed_over,
        }

    def _describe(self) -> str:
        if self.since:
            which = f"SMS stamped at or after {self.since}"
        elif self.seen:
            which = f"SMS listed above the {len(self.seen)} older than the DAG run"
        else:
            which = "any SMS"
        return f"Waiting for an SMS on rental {self.rent_id} (pattern {self.pattern!r}, {which})"

    def _timeout_note(self) -> str:
        return passed_over_note(self._passed_over, self.pattern)

    def _ended(self) -> bool:
        return self._end_at is not None and now() >= self._end_at

    async def check(self, client: AsyncSmsOnlineClient) -> dict[str, Any] | None:
        """The newest pages, as the shared walk asks for them; after ``end_date``, the last look."""
        self._last_check_ended = ended = self._ended()
        walk = SmsWalk(self._regex, since=self._since_at, seen=self.seen)
        page: int | None = walk.first_page
        while page is not None:
            page = walk.feed(await client.get_rent_status(self.rent_id, page=page, size=walk.page_size))
        if walk.match is not None:
            self.log.info("Rental %s: an SMS from %s matched", self.rent_id, walk.match.sms.phone_from)
            metrics.sms_event("wait", walk.match.sms.date)
            return {"status": "success", **walk.match.to_xcom()}
        if ended:
            message = f"rental {self.rent_id} ended at {self.end_date} before a matching SMS arrived"
            return self.event("expired", message, "ended")
        return None

    def final_event(self, error: SmsOnlineError) -> dict[str, Any] | None:
        if isinstance(error, RentalExpiredError):
            return self.event("expired", f"rental {self.rent_id} has ended ({error})", error.code)
        if error.retryable and self._last_check_ended:
            message = f"rental {self.rent_id} ended at {self.end_date}; the last check failed"
            return self.event("expired", f"{message} ({error})", "ended")
        return super().final_event(error)

    def _next_delay(self) -> float:
        delay = super()._next_delay()
        if self._end_at is not None:
            # Check once more just after the rental ends rather than a whole interval later.
            delay = min(delay, max(0.0, (self._end_at - now()).total_seconds()) + 1.0)
        return delay


# Its public home: where the triggerer imports it from and what serialize() names.
RentSmsTrigger.__module__ = "airflow_provider_smsonline.triggers.rent"
