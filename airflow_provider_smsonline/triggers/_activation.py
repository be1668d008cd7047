# The activation trigger class, loaded on first use of ``triggers.activation.ActivationCodeTrigger``:
# subclassing BaseTrigger imports airflow.triggers.base (pydantic models), which only the triggerer
# needs. The rent trigger's loop (triggers/base.py): the process's shared pool, one getStatus per poll.
"""The implementation of :class:`airflow_provider_smsonline.triggers.activation.ActivationCodeTrigger`.

Import the class from :mod:`airflow_provider_smsonline.triggers.activation`, its public home
and serialized classpath; this module is private.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_smsonline import metrics
from airflow_provider_smsonline.protocol import STATUS_CANCEL, code_of
from airflow_provider_smsonline.triggers.base import JITTER, PollingTrigger
from airflow_provider_smsonline.validation import validate_activation_id

if TYPE_CHECKING:
    from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient


class ActivationCodeTrigger(PollingTrigger):
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

    def _kwargs(self) -> dict[str, Any]:
        return {"sms_text": self.sms_text}

    async def check(self, client: AsyncSmsOnlineClient) -> dict[str, Any] | None:
        """One getStatus; with ``sms_text``, then getStatusV2 for the text once a code shows."""
        state = await client.get_status(self.activation_id)
        if self.sms_text and state.received:  # getStatusV2 cannot say cancelled: text only
            state = await client.get_status(self.activation_id, v2=True)
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
