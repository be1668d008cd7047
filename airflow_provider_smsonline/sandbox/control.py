# What the control API reads and moves besides the books: the movable clock, the request and
# webhook counters, and the JSON snapshot of everything that GET /sandbox/state answers.
"""The sandbox's clock, counters and state snapshot. Plain data; the lock is the caller's."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import airflow_provider_smsonline.sandbox.inputs as inputs
from airflow_provider_smsonline import protocol
from airflow_provider_smsonline.protocol import Sms
from airflow_provider_smsonline.sandbox.books import Books
from airflow_provider_smsonline.sandbox.faults import Faults

#: The ``webhooks.deliveries`` log keeps this many of the latest attempts.
WEBHOOK_LOG_SIZE = 1000


@dataclass(frozen=True)
class Delivery:
    """An SMS delivered to a rental, and the webhook post it calls for (if the rental has a URL).

    :ivar rental_id: the rental.
    :ivar sms: the SMS as stored.
    :ivar webhook_url: where to post ``payload``, or ``None``.
    :ivar payload: the webhook body (``protocol.encode_webhook``), or ``None``.
    """

    rental_id: int
    sms: Sms
    webhook_url: str | None
    payload: str | None


@dataclass(frozen=True)
class CodeDelivery:
    """A code delivered to an activation, and the activation webhook post it calls for (when the
    account's profile has a URL: one for the whole account, as SMS.online's profile has).

    :ivar activation_id: the activation.
    :ivar webhook_url: where to post ``payload``, or ``None``.
    :ivar payload: the webhook body (``protocol.encode_activation_webhook``), or ``None``.
    """

    activation_id: int
    webhook_url: str | None
    payload: str | None


class Clock:
    """Sandbox time: UTC now plus an offset that only moves forward, up to a limit."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        """UTC now plus however far the clock was advanced."""
        return datetime.now(timezone.utc) + self.offset

    def advance(self, seconds: object) -> None:
        """Move forward by ``seconds``; refused, and nothing moved, if the clock would run more than
        :data:`~.inputs.MAX_CLOCK_OFFSET_SECONDS` ahead of real time."""
        room = inputs.MAX_CLOCK_OFFSET_SECONDS - int(self.offset.total_seconds())
        self.offset += timedelta(seconds=inputs.seconds(seconds, "advance_seconds", room))

    def to_json(self) -> dict[str, Any]:
        """``now`` (ISO 8601, UTC) and ``offset_seconds``."""
        return {"now": self.now().isoformat(), "offset_seconds": self.offset.total_seconds()}


class Activity:
    """Requests per action, and the outcomes of webhook posts."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.requests_total = 0
        self.webhooks = {"sent": 0, "failed": 0, "pending": 0}
        self.webhook_log: deque[dict[str, Any]] = deque(maxlen=WEBHOOK_LOG_SIZE)

    def count_request(self, action: str) -> None:
        """One API request for ``action`` (``other`` for an unknown one)."""
        self.requests_total += 1
        self.requests[action] = self.requests.get(action, 0) + 1

    def webhook_due(self) -> None:
        """A webhook post is on its way."""
        self.webhooks["pending"] += 1

    def webhook_done(self, delivery: Delivery | CodeDelivery, ok: bool, detail: str, at: datetime) -> None:
        """A webhook post ended (``ok``: the endpoint answered 2xx)."""
        self.webhooks["pending"] = max(self.webhooks["pending"] - 1, 0)
        self.webhooks["sent" if ok else "failed"] += 1
        subject = (
            {"rental_id": delivery.rental_id}
            if isinstance(delivery, Delivery)
            else {"activation_id": delivery.activation_id}
        )
        self.webhook_log.append(
            {
                **subject,
                "url": delivery.webhook_url,
                "ok": ok,
                "detail": detail,
                "at": at.isoformat(),
            }
        )


def snapshot(
    *,
    clock: Clock,
    books: Books,
    activity: Activity,
    faults: Faults,
    cancel_window: timedelta,
    utc_offset: timedelta,
    documented_only: bool,
) -> dict[str, Any]:
    """Everything, as the JSON-able dict ``GET /sandbox/state`` answers (dates in ISO 8601, UTC)."""
    now = clock.now()
    return {
        "now": now.isoformat(),
        "clock_offset_seconds": clock.offset.total_seconds(),
        "cancel_window_seconds": cancel_window.total_seconds(),
        "utc_offset_hours": utc_offset.total_seconds() / 3600,
        "documented_only": documented_only,
        "balance": protocol.format_amount(books.balance),
        "rentals": books.rentals_json(now),
        "charges": books.charges_json(),
        "requests": dict(activity.requests),
        "requests_total": activity.requests_total,
        "polls": books.polls_json(),
        "webhooks": {**activity.webhooks, "deliveries": list(activity.webhook_log)},
        "faults": faults.pending_json(),
        "random_faults": faults.plan_json(),
        "faults_injected": faults.injected_json(),
        "stock": books.stock.to_json(),
    }
