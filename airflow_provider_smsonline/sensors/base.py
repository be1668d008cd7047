# What the provider's sensors share beyond operators/base.py: poke or defer on one flag, the
# poll interval that is also the poke interval, the deferral with its deadline, and turning the
# trigger's event back into XCom or a task state. Light at import: triggers load on deferral.
"""The base of the provider's sensors."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

# in airflow.sdk.bases.operator on 3.1 to 3.3; no parse cost, BaseSensorOperator imports that module
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason

from airflow_provider_smsonline._compat import AirflowFailException, AirflowSensorTimeout, conf
from airflow_provider_smsonline.operators.base import SmsOnlineTask, fail_or_retry
from airflow_provider_smsonline.validation import validate_poll_interval

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["SmsOnlineSensor"]


class SmsOnlineSensor(SmsOnlineTask, BaseSensorOperator):
    """A sensor that pokes with the sync hook, or defers to a trigger with ``deferrable=True``.

    A subclass pokes (``poke``), builds its trigger (:meth:`_trigger`), says what the trigger's
    success payload means (:meth:`_success`) and which XCom keys it pushes (:meth:`_xcom`), and
    what to do when the wait times out (:meth:`_on_timeout`, default nothing).

    :param smsonline_conn_id: the connection holding the API key.
    :param deferrable: wait in the triggerer instead of a worker.
    :param poll_interval: seconds between checks in the triggerer; also the default
        ``poke_interval`` for poke and reschedule modes.
    """

    def __init__(
        self,
        *,
        smsonline_conn_id: str = "smsonline_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        with self._arguments_checked(kwargs.get("task_id")):  # before Airflow's __init__ sets it
            poll_interval = validate_poll_interval(poll_interval)
        # Airflow fills poke_interval from default_args one class up, after this: theirs wins.
        if "poke_interval" not in kwargs and "poke_interval" not in (kwargs.get("default_args") or {}):
            kwargs["poke_interval"] = poll_interval
        super().__init__(**kwargs)
        self.smsonline_conn_id = smsonline_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval

    @classmethod
    def _check_partial(cls, given: Mapping[str, Any]) -> None:
        super()._check_partial(given)
        if "poll_interval" in given:
            validate_poll_interval(given["poll_interval"])

    # ------------------------------------------------------------------ what a subclass fills in

    def _trigger(self, args: dict[str, Any], timeout_at: str) -> Any:
        """The trigger to defer to, giving up at ``timeout_at`` (ISO 8601)."""
        raise NotImplementedError

    def _success(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The result (``return_value``) of a trigger's success payload."""
        raise NotImplementedError

    def _xcom(self, result: dict[str, Any]) -> dict[str, Any]:
        """The XCom keys pushed besides ``return_value``, with their values."""
        return result

    def _on_timeout(self) -> None:
        """The deferred wait timed out (trigger event or scheduler), before ``AirflowSensorTimeout``."""

    # ------------------------------------------------------------------ the shared path

    def _defer(self, args: dict[str, Any]) -> None:
        timeout = timedelta(seconds=self.timeout)
        timeout_at = (datetime.now(timezone.utc) + timeout).isoformat()
        self.defer(trigger=self._trigger(args, timeout_at), method_name="execute_complete", timeout=timeout)

    def _poke_failed(self, error: Exception, what: str) -> bool:
        """A failed poke: ``False`` (poke again) for a retryable error, else the task's failure."""
        # exceptions load when a task runs, not at DAG parse (docs/benchmarks.rst: the parse row)
        from airflow_provider_smsonline.exceptions import SmsOnlineError

        if isinstance(error, SmsOnlineError) and error.retryable:
            self.log.warning("%s: %s; trying again at the next poke", what, error)
            return False
        raise fail_or_retry(error, self.smsonline_conn_id) from None

    def _finish(self, context: Context, result: dict[str, Any]) -> dict[str, Any]:
        """Push the XComs of ``result`` and log it; ``result`` is the ``return_value``."""
        values = self._xcom(result)
        self._push(context, values, values)
        self._log_result(result)
        return result

    def _log_result(self, result: dict[str, Any]) -> None:
        """The log line of a wait that ended with ``result``."""

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Resume after the deferral: a trigger timeout from the scheduler runs :meth:`_on_timeout` too.

        When the deferral's ``timeout`` passes before the trigger's ``"timeout"`` event is handled,
        Airflow resumes the task with ``__fail__`` and a trigger timeout instead of calling
        :meth:`execute_complete`; Airflow's sensor then raises ``AirflowSensorTimeout`` (from
        Airflow 3.2 skipped with ``soft_fail`` or ``never_fail``; 3.1 raises it regardless).
        """
        error = (next_kwargs or {}).get("error")
        if next_method == TRIGGER_FAIL_REPR and error == TriggerFailureReason.TRIGGER_TIMEOUT:
            self._on_timeout()
        return super().resume_execution(next_method, next_kwargs, context)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: push the XComs, or time out, or fail.

        :param event: the trigger's payload.
        :raises AirflowSensorTimeout: the trigger gave up at the sensor's ``timeout``.
        :raises AirflowFailException: what was waited on ended, or a failure only a person can fix.
        """
        payload = event or {}
        if payload.get("status") == "success":
            return self._finish(context, self._success(payload))
        if payload.get("status") == "timeout":
            self._on_timeout()
            raise AirflowSensorTimeout(f"{self.task_id}: {payload.get('message')}")
        # "expired", "cancelled" and "error" alike: only a person (or a new wait) can fix them.
        message = payload.get("message") or f"the trigger sent an unexpected event {event!r}"
        raise AirflowFailException(f"{self.task_id}: {message}; not retrying")
