# The sensor that waits for an SMS on a rental: pokes with the sync hook, or defers to the
# trigger so that no worker is held. Light at import: protocol, the hook, aiohttp and the trigger
# load late.
"""Sensor that waits for an SMS (optionally matching a regex) on an SMS.online rental."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.sensor import PokeReturnValue

from airflow_provider_smsonline import validation
from airflow_provider_smsonline._compat import AirflowFailException
from airflow_provider_smsonline.operators.base import fail_or_retry
from airflow_provider_smsonline.sensors.base import SmsOnlineSensor

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_smsonline.protocol import SmsMatch

__all__ = ["XCOM_KEYS", "RentSmsSensor"]

#: The XCom keys the sensor pushes besides ``return_value`` (``{"sms": ..., "code": ...}``).
XCOM_KEYS = ("sms", "code", "text")


def _validate_since(value: object) -> datetime | None:
    return validation.validate_moment("since", value)


class RentSmsSensor(SmsOnlineSensor):
    """Wait for an SMS on a rental, optionally one whose text matches ``pattern``, and push its code.

    Only SMS that reach the rental after the wait starts count. Without ``since``, the sensor
    notes which SMS the rental holds when it starts (their fingerprints, not their texts) and
    every SMS listed above those is new, whatever clock and zone the server writes its dates in;
    in ``reschedule`` mode, where nothing survives between pokes, SMS stamped at or after the
    first poke's start count (the server's dates read in the connection's ``server_timezone``).
    With ``since``, SMS stamped at or after it count. Of the new SMS, the newest matching one
    wins; its code is the pattern's first group that matched, else the whole match; without a
    pattern any new SMS matches and ``code`` is ``None``.

    XCom: ``return_value`` is ``{"sms": {...}, "code": str | None}``; the keys ``sms``
    (``phone_from``, ``text``, ``service``, ``date``), ``code`` and ``text`` hold the parts.

    With ``deferrable=True`` the wait runs in the triggerer
    (:class:`~airflow_provider_smsonline.triggers.rent.RentSmsTrigger`) and holds no worker
    slot. A rental that ends first fails the task without retry, as do a bad key or an unknown
    rental; server and network trouble only delays the wait. ``timeout`` ends it as Airflow's
    sensors do (``AirflowSensorTimeout``, or skipped with ``soft_fail``).

    :param rent_id: the rental's id, e.g. ``rent.output["id"]`` (templated).
    :param pattern: a Python regular expression searched in each SMS text, e.g.
        ``r"\\b(\\d{4,8})\\b"``; ``None`` for any SMS (templated).
    :param since: ISO 8601 date and time (naive means UTC): only SMS stamped at or after it
        count, as the server dates them. Default: the SMS the rental holds when the wait starts
        are old, every later one is new (templated).
    :param smsonline_conn_id: the connection holding the API key.
    :param deferrable: wait in the triggerer instead of a worker.
    :param poll_interval: seconds between checks in the triggerer; also the default
        ``poke_interval`` for poke and reschedule modes.
    """

    template_fields: Sequence[str] = ("rent_id", "pattern", "since")

    def __init__(
        self,
        *,
        rent_id: int | str,
        pattern: str | None = None,
        since: str | datetime | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rent_id = rent_id
        self.pattern = pattern
        self.since = since
        self._args: dict[str, Any] | None = None
        self._seen: list[str] | None = None
        self._check_at_parse()

    # ------------------------------------------------------------------ arguments

    def _args_of_run(self, context: Context) -> dict[str, Any]:
        """The rendered arguments, validated once per run, with ``since`` resolved."""
        if self._args is None:
            args = self._rendered()
            if args["since"] is None and self.reschedule:
                args["since"] = self._started_at(context)
            self._args = args
        return self._args

    def _started_at(self, context: Context) -> datetime:
        """When this task instance started waiting: the first reschedule's start, else this run's."""
        ti = context.get("ti")
        started = None
        if ti is not None:
            if self.reschedule and hasattr(ti, "get_first_reschedule_date"):
                started = ti.get_first_reschedule_date(context)
            started = started or getattr(ti, "start_date", None)
        if not isinstance(started, datetime):
            return datetime.now(timezone.utc)
        return started if started.tzinfo is not None else started.replace(tzinfo=timezone.utc)

    # ------------------------------------------------------------------ waiting

    def execute(self, context: Context) -> Any:
        self._args = None  # a new run renders afresh
        args = self._args_of_run(context)
        self._seen = self._baseline(args) if args["since"] is None else None
        if not self.deferrable:
            return super().execute(context)
        self.log.info("Deferring: waiting in the triggerer for an SMS on rental %s", args["rent_id"])
        self._defer(args)

    def _trigger(self, args: dict[str, Any], timeout_at: str) -> Any:
        # the trigger class loads when a task defers, not at DAG parse (triggers/_lazy.py)
        from airflow_provider_smsonline.triggers.rent import RentSmsTrigger

        return RentSmsTrigger(
            rent_id=args["rent_id"],
            smsonline_conn_id=self.smsonline_conn_id,
            pattern=args["pattern"],
            since=args["since"].isoformat() if args["since"] is not None else None,
            seen=self._seen,
            poll_interval=self.poll_interval,
            timeout_at=timeout_at,
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One check with the sync hook: push the XComs and finish on a match, else keep waiting."""
        # exceptions load when a task runs, not at DAG parse (docs/benchmarks.rst: the parse row)
        from airflow_provider_smsonline.exceptions import RentalExpiredError, SmsOnlineError

        args = self._args_of_run(context)
        try:
            match = self._check(args)
        except RentalExpiredError as error:
            raise self._ended(args["rent_id"], str(error)) from None
        except (SmsOnlineError, ValueError) as error:
            return self._poke_failed(error, f"Rental {args['rent_id']}")
        if match is None:
            self.log.info("Rental %s: no matching SMS yet", args["rent_id"])
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._finish(context, match.to_xcom()))

    def _baseline(self, args: dict[str, Any]) -> list[str]:
        """Fingerprints of the newest SMS the rental holds now: they and all below them are old.

        :raises AirflowFailException: the rental has ended, or a failure only a person can fix.
        :raises SmsOnlineError: a retryable failure (the task's retries apply).
        """
        # protocol and exceptions load when a task runs, not at DAG parse (docs/benchmarks.rst)
        from airflow_provider_smsonline.exceptions import RentalExpiredError, SmsOnlineError
        from airflow_provider_smsonline.protocol import PAGE_SIZE, fingerprint

        try:
            with self.hook() as hook:
                messages = hook.get_rent_status(args["rent_id"], page=0, size=PAGE_SIZE)
        except RentalExpiredError as error:
            raise self._ended(args["rent_id"], str(error)) from None
        except (SmsOnlineError, ValueError) as error:
            raise fail_or_retry(error, self.smsonline_conn_id) from None
        self.log.info("Rental %s holds %d SMS already; waiting for a new one", args["rent_id"], len(messages))
        return [fingerprint(sms) for sms in messages]

    def _check(self, args: dict[str, Any]) -> SmsMatch | None:
        from airflow_provider_smsonline.protocol import SmsWalk  # at run time, as above

        walk = SmsWalk(validation.validate_pattern(args["pattern"]), since=args["since"], seen=self._seen)
        with self.hook() as hook:
            page: int | None = walk.first_page
            while page is not None:
                page = walk.feed(hook.get_rent_status(args["rent_id"], page=page, size=walk.page_size))
        return walk.match

    # ------------------------------------------------------------------ results

    def _success(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"sms": payload["sms"], "code": payload.get("code")}

    def _xcom(self, result: dict[str, Any]) -> dict[str, Any]:
        return {"sms": result["sms"], "code": result["code"], "text": result["sms"]["text"]}

    def _log_result(self, result: dict[str, Any]) -> None:
        self.log.info(
            "Rental SMS from %s at %s matched%s",
            result["sms"]["phone_from"],
            result["sms"]["date"],
            "" if result["code"] is None else "; its code is in XCom 'code'",
        )

    def _ended(self, rent_id: int, why: str) -> BaseException:
        return AirflowFailException(f"rental {rent_id} has ended before a matching SMS arrived ({why})")
