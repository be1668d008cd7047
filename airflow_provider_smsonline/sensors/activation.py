# The sensor that waits for an activation's code: pokes getStatus with the sync hook, or defers
# to the trigger so that no worker is held. A wait that ends without a code cancels the activation
# for a refund by default. Light at import: the hook, aiohttp and the trigger load late.
"""Sensor that waits for the verification code of an SMS.online activation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.sensor import PokeReturnValue

from airflow_provider_smsonline import validation
from airflow_provider_smsonline._compat import AirflowFailException, AirflowSensorTimeout
from airflow_provider_smsonline.sensors.base import SmsOnlineSensor

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["XCOM_KEYS", "ActivationCodeSensor"]

#: The XCom keys the sensor pushes besides ``return_value`` (``{"code": ..., "text": ...}``).
XCOM_KEYS = ("code", "text")


class ActivationCodeSensor(SmsOnlineSensor):
    """Wait for an activation's code (getStatus ``STATUS_OK``) and push it.

    XCom: ``return_value`` is ``{"code": str, "text": str | None}``; the keys ``code`` and
    ``text`` hold the parts (``text``: the SMS text when the API gives it, with
    ``sms_text=True``; else ``None``).

    With ``pattern``, the code is the pattern's first group that matched (else the whole match),
    searched in the SMS text when given, else in the API's code; a code that does not match is
    waited past. An activation cancelled or ended first fails the task without retry, as do a
    bad key or an unknown activation; server and network trouble only delays the wait.

    When the wait ends without a code (``timeout``) the activation is cancelled for a refund
    (``cancel_on_timeout``), waiting out the early-cancel window of about 2 minutes if needed;
    then ``AirflowSensorTimeout`` is raised as Airflow's sensors do (skipped with ``soft_fail``).

    :param activation_id: the activation's id, e.g. ``activate.output["id"]`` (templated).
    :param pattern: a Python regular expression, e.g. ``r"(\\d{4,8})"``; ``None``: the code as
        the API gives it (templated).
    :param smsonline_conn_id: the connection holding the API key.
    :param deferrable: wait in the triggerer instead of a worker.
    :param poll_interval: seconds between checks in the triggerer; also the default
        ``poke_interval`` for poke and reschedule modes.
    :param cancel_on_timeout: cancel the activation (refund) when the wait times out.
    :param sms_text: also read the SMS text, with getStatusV2 (a peers' action), once getStatus
        shows a code. getStatus decides the state: getStatusV2 cannot say that an activation was
        cancelled.
    """

    template_fields: Sequence[str] = ("activation_id", "pattern")

    def __init__(
        self,
        *,
        activation_id: int | str,
        pattern: str | None = None,
        cancel_on_timeout: bool = True,
        sms_text: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.activation_id = activation_id
        self.pattern = pattern
        self.cancel_on_timeout = cancel_on_timeout
        self.sms_text = sms_text
        self._check_at_parse()

    def execute(self, context: Context) -> Any:
        args = self._rendered()
        if not self.deferrable:
            try:
                return super().execute(context)
            except AirflowSensorTimeout:
                self._end_without_code(args["activation_id"])
                raise
            except Exception as error:
                if self.soft_fail and type(error).__name__ == "AirflowSkipException":
                    self._end_without_code(args["activation_id"])
                raise
        self.log.info(
            "Deferring: waiting in the triggerer for the code of activation %s", args["activation_id"]
        )
        self._defer(args)

    def _trigger(self, args: dict[str, Any], timeout_at: str) -> Any:
        # the trigger class loads when a task defers, not at DAG parse (triggers/_lazy.py)
        from airflow_provider_smsonline.triggers.activation import ActivationCodeTrigger

        return ActivationCodeTrigger(
            activation_id=args["activation_id"],
            smsonline_conn_id=self.smsonline_conn_id,
            pattern=args["pattern"],
            poll_interval=self.poll_interval,
            timeout_at=timeout_at,
            sms_text=self.sms_text,
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One getStatus: push the XComs and finish on a code, else keep waiting."""
        # protocol and exceptions load when a task runs, not at DAG parse (docs/benchmarks.rst)
        from airflow_provider_smsonline.exceptions import SmsOnlineError
        from airflow_provider_smsonline.protocol import STATUS_CANCEL, code_of

        args = self._rendered()
        activation_id = args["activation_id"]
        try:
            with self.hook() as hook:
                state = hook.get_status(activation_id)
                if self.sms_text and state.received:  # getStatusV2 cannot say cancelled: text only
                    state = hook.get_status(activation_id, v2=True)
        except (SmsOnlineError, ValueError) as error:
            return self._poke_failed(error, f"Activation {activation_id}")
        if state.status == STATUS_CANCEL:
            raise AirflowFailException(
                f"activation {activation_id} was cancelled or ended before a code arrived; not retrying"
            )
        code = code_of(state, validation.validate_pattern(args["pattern"]))
        if code is None:
            self.log.info("Activation %s: no code yet (%s)", activation_id, state.status)
            return False
        return PokeReturnValue(
            is_done=True, xcom_value=self._finish(context, {"code": code, "text": state.text})
        )

    def _success(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"code": payload.get("code"), "text": payload.get("text")}

    def _on_timeout(self) -> None:
        self._end_without_code(self._rendered()["activation_id"])

    def _end_without_code(self, activation_id: int) -> None:
        """The wait ended without a code: cancel for a refund (or complete, if one just came)."""
        from airflow_provider_smsonline.exceptions import SmsOnlineError  # as in poke

        if not self.cancel_on_timeout:
            return
        try:
            with self.hook() as hook:
                outcome = hook.end_activation(activation_id)
        except (SmsOnlineError, ValueError) as error:
            self.log.error(
                "The wait for activation %s ended without a code and ending it failed (%s); without a "
                "code the service refunds it after about 20 minutes",
                activation_id,
                error,
            )
            return
        self.log.warning("The wait for activation %s ended without a code: %s", activation_id, outcome)

    def _log_result(self, result: dict[str, Any]) -> None:
        self.log.info("Activation code received; it is in XCom 'code'")
