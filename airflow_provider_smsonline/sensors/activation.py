# The sensor that waits for an activation's code: pokes getStatus with the sync hook, or defers
# to the trigger so that no worker is held. A wait that ends without a code cancels the activation
# for a refund by default. Light at import: the hook, aiohttp and the trigger load late.
"""Sensor that waits for the verification code of an SMS.online activation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from airflow_provider_smsonline._compat import conf
from airflow_provider_smsonline.operators.rent import check_fields, fail_or_retry

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.bases.sensor import PokeReturnValue

    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

#: The XCom keys the sensor pushes besides ``return_value`` (``{"code": ..., "text": ...}``).
XCOM_KEYS = ("code", "text")


def _activation_id(value: object) -> int:
    from airflow_provider_smsonline.protocol import validate_activation_id

    return validate_activation_id(value)


def _pattern(value: object) -> Any:
    from airflow_provider_smsonline.validation import validate_pattern

    validate_pattern(value)
    return value or None


class ActivationCodeSensor(BaseSensorOperator):
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
    :param sms_text: poll getStatusV2 (a peers' action) to get the SMS text too.
    """

    template_fields: Sequence[str] = ("activation_id", "pattern")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        activation_id: int | str,
        pattern: str | None = None,
        smsonline_conn_id: str = "smsonline_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10.0,
        cancel_on_timeout: bool = True,
        sms_text: bool = False,
        **kwargs: Any,
    ) -> None:
        from airflow_provider_smsonline.validation import validate_poll_interval

        poll_interval = validate_poll_interval(poll_interval)
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.activation_id = activation_id
        self.pattern = pattern
        self.smsonline_conn_id = smsonline_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.cancel_on_timeout = cancel_on_timeout
        self.sms_text = sms_text
        check_fields(self._validators(), rendered=False)

    def _validators(self) -> dict[str, tuple[Callable[[Any], Any], Any]]:
        return {"activation_id": (_activation_id, self.activation_id), "pattern": (_pattern, self.pattern)}

    def _rendered(self) -> dict[str, Any]:
        from airflow_provider_smsonline._compat import AirflowFailException

        try:
            return check_fields(self._validators(), rendered=True)
        except ValueError as error:
            raise AirflowFailException(f"{self.task_id}: {error} (after rendering)") from None

    def hook(self) -> SmsOnlineHook:
        """A hook on ``smsonline_conn_id``."""
        from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

        return SmsOnlineHook(smsonline_conn_id=self.smsonline_conn_id)

    def execute(self, context: Context) -> Any:
        from airflow_provider_smsonline._compat import AirflowSensorTimeout

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
        from airflow_provider_smsonline.triggers.activation import ActivationCodeTrigger

        self.log.info(
            "Deferring: waiting in the triggerer for the code of activation %s", args["activation_id"]
        )
        timeout = timedelta(seconds=self.timeout)
        self.defer(
            trigger=ActivationCodeTrigger(
                activation_id=args["activation_id"],
                smsonline_conn_id=self.smsonline_conn_id,
                pattern=args["pattern"],
                poll_interval=self.poll_interval,
                timeout_at=(datetime.now(timezone.utc) + timeout).isoformat(),
                sms_text=self.sms_text,
            ),
            method_name="execute_complete",
            timeout=timeout,
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One getStatus: push the XComs and finish on a code, else keep waiting."""
        from airflow.sdk.bases.sensor import PokeReturnValue

        from airflow_provider_smsonline._compat import AirflowFailException
        from airflow_provider_smsonline.exceptions import SmsOnlineError
        from airflow_provider_smsonline.protocol import STATUS_CANCEL, code_of
        from airflow_provider_smsonline.validation import validate_pattern

        args = self._rendered()
        activation_id = args["activation_id"]
        try:
            with self.hook() as hook:
                state = hook.get_status(activation_id, v2=self.sms_text)
        except (SmsOnlineError, ValueError) as error:
            if isinstance(error, SmsOnlineError) and error.retryable:
                self.log.warning("Activation %s: %s; trying again at the next poke", activation_id, error)
                return False
            failure = fail_or_retry(error, self.smsonline_conn_id)
        else:
            if state.status == STATUS_CANCEL:
                raise AirflowFailException(
                    f"activation {activation_id} was cancelled or ended before a code arrived; not retrying"
                )
            code = code_of(state, validate_pattern(args["pattern"]))
            if code is None:
                self.log.info("Activation %s: no code yet (%s)", activation_id, state.status)
                return False
            result = {"code": code, "text": state.text}
            self._push(context, result)
            return PokeReturnValue(is_done=True, xcom_value=result)
        raise failure from None

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: push the XComs, or cancel and time out, or fail.

        :raises AirflowSensorTimeout: the trigger gave up at the sensor's ``timeout``.
        :raises AirflowFailException: the activation ended, or a failure only a person can fix.
        """
        from airflow_provider_smsonline._compat import AirflowFailException, AirflowSensorTimeout

        payload = event or {}
        if payload.get("status") == "success":
            result = {"code": payload.get("code"), "text": payload.get("text")}
            self._push(context, result)
            return result
        if payload.get("status") == "timeout":
            self._end_without_code(self._rendered()["activation_id"])
            raise AirflowSensorTimeout(f"{self.task_id}: {payload.get('message')}")
        message = payload.get("message") or f"the trigger sent an unexpected event {event!r}"
        raise AirflowFailException(f"{self.task_id}: {message}; not retrying")

    def _end_without_code(self, activation_id: int) -> None:
        """The wait ended without a code: cancel for a refund (or complete, if one just came)."""
        from airflow_provider_smsonline.exceptions import SmsOnlineError
        from airflow_provider_smsonline.operators.activation import settle_activation

        if not self.cancel_on_timeout:
            return
        try:
            with self.hook() as hook:
                outcome = settle_activation(hook, activation_id, self.log)
        except (SmsOnlineError, ValueError) as error:
            self.log.error(
                "The wait for activation %s ended without a code and ending it failed (%s); without a "
                "code the service refunds it after about 20 minutes",
                activation_id,
                error,
            )
            return
        self.log.warning("The wait for activation %s ended without a code: %s", activation_id, outcome)

    def _push(self, context: Context, result: dict[str, Any]) -> None:
        ti = context["ti"]
        for key in XCOM_KEYS:
            ti.xcom_push(key=key, value=result[key])
        self.log.info("Activation code received; it is in XCom 'code'")
