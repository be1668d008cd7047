# The activation trigger class, loaded on first use of ``triggers.activation.ActivationCodeTrigger``:
# subclassing BaseTrigger imports airflow.triggers.base (pydantic models), which only the triggerer
# needs. Same async path as the rent trigger: the process's shared pool, one getStatus per poll.
"""The implementation of :class:`airflow_provider_smsonline.triggers.activation.ActivationCodeTrigger`.

Import the class from :mod:`airflow_provider_smsonline.triggers.activation`, its public home
and serialized classpath; this module is private.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_smsonline.protocol import code_of, validate_activation_id
from airflow_provider_smsonline.triggers._rent import MAX_BACKOFF
from airflow_provider_smsonline.validation import validate_moment, validate_pattern, validate_poll_interval

# Indirection so tests can watch the waits without waiting.
_sleep = asyncio.sleep


class ActivationCodeTrigger(BaseTrigger):
    """Poll getStatus until the activation's code arrives, then fire one event.

    Runs in the triggerer on the process's shared HTTP pool, as
    :class:`~airflow_provider_smsonline.triggers.rent.RentSmsTrigger` does: polls every
    ``poll_interval`` seconds give or take ``jitter``, backs off exponentially (up to
    :data:`~airflow_provider_smsonline.triggers.rent.MAX_BACKOFF` seconds) while the server or
    the network fails. The event's payload, always with ``activation_id``:

    * ``{"status": "success", "code": str, "text": str | None}``;
    * ``{"status": "cancelled", "message": str, "code": "STATUS_CANCEL"}``: the activation was
      cancelled or ended (refunded) first;
    * ``{"status": "error", "message": str, "code": str}``: a failure no wait can fix;
    * ``{"status": "timeout", "message": str, "code": "timeout"}``: ``timeout_at`` passed first.

    Messages never contain the API key; the serialized kwargs hold the connection id only.

    :param activation_id: the activation's id.
    :param smsonline_conn_id: the Airflow connection holding the API key.
    :param pattern: a regular expression searched in the SMS text (or the code); ``None``: the
        code as the API gives it.
    :param poll_interval: seconds between checks.
    :param jitter: the fraction by which each wait varies at random (0.1: ±10 %).
    :param timeout_at: ISO 8601; give up then.
    :param sms_text: poll getStatusV2, which also gives the SMS text (a peers' action).
    """

    def __init__(
        self,
        activation_id: int,
        smsonline_conn_id: str = "smsonline_default",
        pattern: str | None = None,
        poll_interval: float = 10.0,
        jitter: float = 0.1,
        timeout_at: str | datetime | None = None,
        sms_text: bool = False,
    ) -> None:
        super().__init__()
        self.activation_id = validate_activation_id(activation_id)
        self.smsonline_conn_id = smsonline_conn_id
        self._regex = validate_pattern(pattern)
        self.pattern = pattern or None
        self.poll_interval = validate_poll_interval(poll_interval)
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter < 1:
            raise ValueError(f"jitter must be a fraction from 0 up to (not including) 1, got {jitter!r}")
        self.jitter = float(jitter)
        self._timeout_at = validate_moment("timeout_at", timeout_at)
        self.timeout_at = self._timeout_at.isoformat() if self._timeout_at else None
        self.sms_text = bool(sms_text)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The classpath and JSON-able kwargs that rebuild this trigger (no key: the conn id)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "activation_id": self.activation_id,
                "smsonline_conn_id": self.smsonline_conn_id,
                "pattern": self.pattern,
                "poll_interval": self.poll_interval,
                "jitter": self.jitter,
                "timeout_at": self.timeout_at,
                "sms_text": self.sms_text,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait, then yield exactly one :class:`TriggerEvent` (see the class for its payload)."""
        yield TriggerEvent(await self._wait())

    async def _wait(self) -> dict[str, Any]:
        from airflow_provider_smsonline._compat import AirflowNotFoundException
        from airflow_provider_smsonline.exceptions import SmsOnlineError
        from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient
        from airflow_provider_smsonline.protocol import STATUS_CANCEL

        try:
            client = await AsyncSmsOnlineClient.from_conn_id(self.smsonline_conn_id)
        except AirflowNotFoundException:
            return self._event("error", f"no connection {self.smsonline_conn_id!r}", "no_connection")
        except ValueError as error:
            return self._event("error", str(error), "bad_connection")
        self.log.info(
            "Waiting for the code of activation %s, checking every %g s",
            self.activation_id,
            self.poll_interval,
        )
        async with client:
            failures = 0
            while True:
                if self._timeout_at is not None and _now() >= self._timeout_at:
                    message = f"no code arrived on activation {self.activation_id} by {self.timeout_at}"
                    return self._event("timeout", message, "timeout")
                try:
                    state = await client.get_status(self.activation_id, v2=self.sms_text)
                except SmsOnlineError as error:
                    if not error.retryable:
                        return self._event("error", str(error), error.code)
                    failures += 1
                    delay = self._capped(self._jittered(min(MAX_BACKOFF, self.poll_interval * 2**failures)))
                    self.log.warning(
                        "Activation %s: %s; checking again in %.1f s", self.activation_id, error, delay
                    )
                    await _sleep(delay)
                    continue
                if state.status == STATUS_CANCEL:
                    message = f"activation {self.activation_id} was cancelled or ended before a code arrived"
                    return self._event("cancelled", message, STATUS_CANCEL)
                code = code_of(state, self._regex)
                if code is not None:
                    self.log.info("Activation %s: a code arrived", self.activation_id)
                    return {
                        "status": "success",
                        "activation_id": self.activation_id,
                        "code": code,
                        "text": state.text,
                    }
                failures = 0
                await _sleep(self._capped(self._jittered(self.poll_interval)))

    def _jittered(self, seconds: float) -> float:
        return seconds * random.uniform(1 - self.jitter, 1 + self.jitter)

    def _capped(self, delay: float) -> float:
        if self._timeout_at is None:
            return delay
        return min(delay, max(0.0, (self._timeout_at - _now()).total_seconds()))

    def _event(self, status: str, message: str, code: str) -> dict[str, Any]:
        return {"status": status, "activation_id": self.activation_id, "message": message, "code": code}


# Its public home: where the triggerer imports it from and what serialize() names.
ActivationCodeTrigger.__module__ = "airflow_provider_smsonline.triggers.activation"


def _now() -> datetime:
    return datetime.now(timezone.utc)
