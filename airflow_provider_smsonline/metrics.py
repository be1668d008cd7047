# Every metric the provider sends, in one place: its name, its tags, and the one lookup of Airflow's
# Stats (the Task SDK's airflow.sdk.observability on Airflow 3.2 and 3.3, airflow.stats on 3.1),
# so that whatever backend Airflow is configured with (StatsD, OpenTelemetry, Datadog) receives
# them. Call sites are one line each. Nothing here imports Airflow until a metric is sent, and no
# metric ever fails the caller. Tags carry names and ids the provider chose or the user wrote in a
# DAG (action, kind, outcome, DAG id, connection id), never the API key, a phone number or an SMS.
"""The provider's metrics, sent through Airflow's Stats (StatsD or OpenTelemetry).

Each metric is sent twice, as Airflow sends its own: once under its name with tags (for
OpenTelemetry, and StatsD with Datadog or InfluxDB tags), and once under a name that carries the
tags' values (``smsonline.charges.rental.my_dag``) for plain StatsD, which drops tags. Airflow's
``[metrics]`` settings apply (``statsd_on``, ``otel_on``, the prefix, allow and block lists).
The table of names and tags: ``docs/metrics.rst``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

__all__ = [
    "API_CALLS",
    "API_DURATION",
    "API_ERRORS",
    "BALANCE",
    "CHARGES",
    "REFUNDS",
    "RELEASES",
    "SMS_EVENTS",
    "SMS_LATENCY",
    "SPEND",
    "WEBHOOK_POSTS",
    "api_call",
    "balance",
    "charged",
    "released",
    "sms_event",
    "webhook_post",
]

log = logging.getLogger(__name__)

#: Counter: every request to SMS.online, whatever its answer. Tags: ``action``.
API_CALLS = "smsonline.api.calls"
#: Counter: requests that ended in an error. Tags: ``action``, ``code`` (the API's or the provider's).
API_ERRORS = "smsonline.api.errors"
#: Timer: seconds from sending a request to its parsed answer (retries counted apart). Tags: ``action``.
API_DURATION = "smsonline.api.duration"
#: Counter: paid calls that charged (a retry that found its earlier purchase does not count).
#: Tags: ``kind`` (``rental``, ``renewal``, ``activation``), ``dag_id``.
CHARGES = "smsonline.charges"
#: Counter, incremented by the amount paid (the account's currency, as getBalance reports it).
#: Tags: ``kind``, ``dag_id``.
SPEND = "smsonline.spend"
#: Counter: rentals and activations given back by a task. Tags: ``kind`` (``rental``,
#: ``activation``), ``outcome`` (``finished``, ``cancelled``, ``completed``, ``ended``, ``refund_later``).
RELEASES = "smsonline.releases"
#: Counter: releases that refund (a cancel, or an activation the service refunds later). Tags: ``kind``.
REFUNDS = "smsonline.refunds"
#: Counter: posts to the webhook receiver, by its answer. Tags: ``outcome``, ``status``.
WEBHOOK_POSTS = "smsonline.webhook.posts"
#: Gauge: the balance, each time it is read (getBalance). Tags: ``conn_id``.
BALANCE = "smsonline.balance"
#: Counter: trigger events fired for an SMS or a code. Tags: ``trigger`` (``wait``, ``watch``,
#: ``activation``).
SMS_EVENTS = "smsonline.sms.events"
#: Timer: from an SMS's date to the event it fired (rental SMS only: a code's answer carries no
#: date). Tags: ``trigger``.
SMS_LATENCY = "smsonline.sms.latency"

#: What the webhook receiver's answers mean, by HTTP status.
WEBHOOK_OUTCOMES: Mapping[int, str] = {
    200: "accepted",
    400: "bad_body",
    404: "not_found",
    405: "bad_method",
    408: "slow_body",
    413: "too_large",
    429: "rate_limited",
}

# An error code is a tag only when it looks like one: the API's upper-case codes or the
# provider's lower-case ones. Anything else a server could put there becomes "other".
_CODE = re.compile(r"^(?:[A-Z][A-Z0-9_]{1,39}|[a-z][a-z_]{1,39})$")
_NAME_PART = re.compile(r"[^A-Za-z0-9_-]")
_REFUNDING = frozenset({"cancelled", "refund_later"})

_stats: Any = None


def api_call(action: str, seconds: float, error: Exception | None = None) -> None:
    """One request to SMS.online answered (``error``: the typed error it ended in)."""
    tags = {"action": action}
    _send("incr", API_CALLS, 1, tags)
    _send("timing", API_DURATION, max(0.0, seconds) * 1000.0, tags)
    if error is not None:
        code = str(getattr(error, "code", "") or "")
        _send("incr", API_ERRORS, 1, {**tags, "code": code if _CODE.match(code) else "other"})


def charged(kind: str, dag_id: str, amount: Decimal | None) -> None:
    """A paid call charged, for a task of ``dag_id``; ``amount`` ``None`` when unknown (no spend)."""
    tags = {"kind": kind, "dag_id": dag_id}
    _send("incr", CHARGES, 1, tags)
    if amount is not None and amount >= 0:
        _send("incr", SPEND, float(amount), tags)


def released(kind: str, outcome: str) -> None:
    """A task gave a rental or an activation back, with ``outcome``."""
    _send("incr", RELEASES, 1, {"kind": kind, "outcome": outcome})
    if outcome in _REFUNDING:
        _send("incr", REFUNDS, 1, {"kind": kind})


def webhook_post(status: int) -> None:
    """The webhook receiver answered a request with ``status``."""
    _send("incr", WEBHOOK_POSTS, 1, {"outcome": WEBHOOK_OUTCOMES.get(status, "other"), "status": str(status)})


def balance(conn_id: str, value: Decimal) -> None:
    """The balance of the account behind ``conn_id`` was read."""
    _send("gauge", BALANCE, float(value), {"conn_id": conn_id})


def sms_event(trigger: str, received: datetime | None = None) -> None:
    """A trigger fired for an SMS (or a code) that arrived at ``received`` (``None``: not dated).

    The latency is sent only for a date that is not in the future: the server's dates are read in
    the connection's ``server_timezone``, and a wrong zone could put them hours off.
    """
    tags = {"trigger": trigger}
    _send("incr", SMS_EVENTS, 1, tags)
    if received is not None:
        at = received if received.tzinfo is not None else received.replace(tzinfo=timezone.utc)
        seconds = time.time() - at.timestamp()
        if seconds >= 0:
            _send("timing", SMS_LATENCY, seconds * 1000.0, tags)


# ----------------------------------------------------------------------------- sending


def _send(method: str, name: str, value: float, tags: dict[str, str]) -> None:
    """``Stats.<method>`` under ``name`` with ``tags``, and under the name carrying their values."""
    try:
        stats = _stats or _lookup()
        send = getattr(stats, method)
        flat = ".".join([name, *(_NAME_PART.sub("_", v.replace(".", "__")) or "_" for v in tags.values())])
        send(name, value, tags=tags)
        send(flat, value, tags=None)
    except Exception:  # a metric never fails a task, a trigger or a page
        log.debug("Could not send metric %s", name, exc_info=True)


def _lookup() -> Any:
    """Airflow's Stats: ``airflow.sdk.observability.stats`` (the Task SDK's, Airflow 3.2 and
    3.3), else ``airflow.stats`` (3.1): where common-compat's ``Stats`` looks, without
    depending on that provider."""
    global _stats
    try:
        from airflow.sdk.observability.stats import Stats as found
    except ImportError:  # Airflow 3.1
        from airflow.stats import Stats as found  # type: ignore[no-redef]
    _stats = found
    return found
