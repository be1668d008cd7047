# The activation trigger class, loaded on first use of ``triggers.activation.ActivationCodeTrigger``:
# subclassing BaseTrigger imports airflow.triggers.base (pydantic models), which only the triggerer
# needs. The rent trigger's loop (triggers/base.py) on the process's shared pool; its look is the
# account's shared getActiveActivations round (_active_list.py), and getStatus only for what the
# list cannot say.
"""The implementation of :class:`airflow_provider_smsonline.triggers.activation.ActivationCodeTrigger`.

Import the class from :mod:`airflow_provider_smsonline.triggers.activation`, its public home
and serialized classpath; this module is private.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_smsonline import metrics
from airflow_provider_smsonline.protocol import (
    STATUS_CANCEL,
    STATUS_WAIT_CODE,
    STATUS_WAIT_RETRY,
    ActivationStatus,
    code_of,
)
from airflow_provider_smsonline.triggers._active_list import ActiveList, active_list
from airflow_provider_smsonline.triggers.base import JITTER, PollingTrigger
from airflow_provider_smsonline.validation import validate_activation_id
from airflow_provider_smsonline.webhook import news
from airflow_provider_smsonline.webhook.hints import ACTIVATION

if TYPE_CHECKING:
    from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient


class ActivationCodeTrigger(PollingTrigger):
    """Wait until the activation's code arrives, then fire one event.

    Runs in the triggerer on the process's shared HTTP pool, as
    :class:`~airflow_provider_smsonline.triggers.rent.RentSmsTrigger` does. The activation waits
    on one account in one triggerer share one getActiveActivations call per round (SMS.online's
    way to watch many at once): a round every ``poll_interval`` seconds (the shortest among the
    waits), sooner when the activation webhook names one of them (never two within half a
    second), later while the server or the network fails. Each wait reads its own row of the
    round and asks getStatus only for what the list cannot say: when its activation lists a code
    it has not seen yet (a new code and "waiting for another" look alike in the list), and when
    its activation left the list (cancelled, completed, expired). getStatus decides, as before;
    where the list cannot be read at all, each wait asks getStatus every ``poll_interval``.
    The event's payload, always with ``activation_id``:

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
    :param sms_text: also read the SMS text, with getStatusV2 (a peers' action), once getStatus
        shows a code (getStatusV2 cannot say that an activation was cancelled).
    """

    subject = "activation"
    id_field = "activation_id"
    awaited = "code"

    def __init__(
        self,
        activation_id: int,
        smsonline_conn_id: str = "smsonline_default",
        pattern: str | None = None,
        poll_interval: float = 10.0,
        jitter: float = JITTER,
        timeout_at: str | datetime | None = None,
        sms_text: bool = False,
    ) -> None:
        super().__init__(smsonline_conn_id, pattern, poll_interval, jitter, timeout_at)
        self.activation_id = validate_activation_id(activation_id)
        self.sms_text = bool(sms_text)
        self._list: ActiveList | None = None
        self._joined = 0.0
        self._round = 0  # the last round read
        self._confirmed: tuple[str, ...] | None = None  # the listed codes getStatus last saw
        self._own_look_at = float("-inf")  # the last getStatus made without a new code listed
        self._gone = False  # it left the list and getStatus said how it ended (no code can come)

    def _kwargs(self) -> dict[str, Any]:
        return {"sms_text": self.sms_text}

    async def _wait(self) -> dict[str, Any]:
        try:
            return await super()._wait()
        finally:
            if self._list is not None:
                self._list.leave(self)
                self._list = None

    async def _pause_for_news(self, seconds: float, *, found: bool = False) -> None:
        """Until the account's next round (which a webhook hint brings forward), at most ``seconds``."""
        if self._list is None:
            await super()._pause_for_news(seconds, found=found)
            return
        await self._list.next_round(self._round, self._joined, seconds)

    async def check(self, client: AsyncSmsOnlineClient) -> dict[str, Any] | None:
        """This activation's row of the account's last round; getStatus when a code it has not
        seen is listed, when it left the list, or when the list cannot be read."""
        if self._list is None:
            self._list = active_list(client)
            self._joined = self._list.join(self, self.activation_id, self.poll_interval)
        shared = self._list.fresh(self._round, self._joined)
        if shared is not None:
            self._round = shared.number
        if shared is None or shared.codes is None:
            if self._list.refused:
                return await self._own_look(client)
            return None  # no round yet, or the server failed: the list retries, the wait waits
        codes = shared.codes.get(self.activation_id)
        if codes is None:  # not listed: cancelled, completed or expired (getStatus says which)
            return None if self._gone else await self._own_look(client)
        self._gone = False
        if not codes or codes == self._confirmed:
            return None
        hints = news.reader()
        if hints is not None:  # a new code is listed: the webhook's episode for it ends
            hints.resolve((ACTIVATION, self.activation_id))
        done = self._decide(await self._status(client))
        self._confirmed = codes
        return done

    async def _own_look(self, client: AsyncSmsOnlineClient) -> dict[str, Any] | None:
        """getStatus, at most once per ``poll_interval``. An activation that ended (not waiting
        for a code any more) is not asked again while it stays off the list."""
        now = asyncio.get_running_loop().time()
        if now - self._own_look_at < self.poll_interval * (1 - self.jitter):
            return None
        self._own_look_at = now
        state = await self._status(client)
        self._gone = state.status not in (STATUS_WAIT_CODE, STATUS_WAIT_RETRY)
        return self._decide(state)

    async def _status(self, client: AsyncSmsOnlineClient) -> ActivationStatus:
        """One getStatus; with ``sms_text``, then getStatusV2 for the text once a code shows."""
        state = await client.get_status(self.activation_id)
        if self.sms_text and state.received:  # getStatusV2 cannot say cancelled: text only
            state = await client.get_status(self.activation_id, v2=True)
        return state

    def _decide(self, state: ActivationStatus) -> dict[str, Any] | None:
        """The event ``state`` ends the wait with, if it does."""
        if state.status == STATUS_CANCEL:
            message = f"activation {self.activation_id} was cancelled or ended before a code arrived"
            return self.event("cancelled", message, STATUS_CANCEL)
        code = code_of(state, self._regex)
        if code is None:
            return None
        self.log.info("Activation %s: a code arrived", self.activation_id)
        metrics.sms_event("activation")
        return {"status": "success", "code": code, "text": state.text}


# Its public home: where the triggerer imports it from and what serialize() names.
ActivationCodeTrigger.__module__ = "airflow_provider_smsonline.triggers.activation"
