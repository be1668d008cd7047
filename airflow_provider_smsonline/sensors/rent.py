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
from airflow_provider_smsonline._compat import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)
from airflow_provider_smsonline.operators.base import fail_or_retry
from airflow_provider_smsonline.sensors.base import SmsOnlineSensor

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_smsonline.protocol import Sms, SmsMatch

__all__ = ["XCOM_KEYS", "RentSmsSensor", "run_started_at"]

#: The XCom keys the sensor pushes besides ``return_value`` (``{"sms": ..., "code": ...}``).
XCOM_KEYS = ("sms", "code", "text")


def run_started_at(context: Context) -> datetime:
    """When this task's DAG run started (its ``start_date``; else when it could run, ``run_after``;
    else its logical date; else this try's start), time-zone aware."""
    dag_run = context.get("dag_run")
    ti = context.get("ti")
    for value in (
        getattr(dag_run, "start_date", None),
        getattr(dag_run, "run_after", None),
        getattr(dag_run, "logical_date", None),
        getattr(ti, "start_date", None),
    ):
        if isinstance(value, datetime):
            return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc)


class RentSmsSensor(SmsOnlineSensor):
    """Wait for an SMS on a rental, optionally one whose text matches ``pattern``, and push its code.

    Which SMS count, without ``since``: every SMS on a rental rented in this DAG run (the
    charge ledger knows which task rented it), so a code that lands between the rent task and
    the wait is found; on any other rental (a kept number), the SMS that arrive after the wait
    starts, whatever date the server writes, and of those already there the ones dated at or
    after the DAG run's start (the server's dates read in the connection's ``server_timezone``).
    In ``reschedule`` mode, where nothing survives between pokes, a kept number's SMS count when
    dated at or after the run's start. With ``since``, SMS stamped at or after it count instead.
    Of the SMS that count, the newest matching one wins; its code is the pattern's first group
    that matched, else the whole match; without a pattern any SMS matches and ``code`` is
    ``None``. A wait that times out says how many matching SMS it passed over as older than the
    run, with their dates, and the ``since`` that would count them.

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
        count, as the server dates them. Default: the SMS of this DAG run, as above (templated).
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
        # The rule of this try (see _choose_rule): SMS that do not count, or the moment from which
        # SMS count; and the matching SMS passed over as older than the run.
        self._seen: list[str] | None = None
        self._from: datetime | None = None
        self._passed_over: list[Sms] = []
        self._check_at_parse()

    # ------------------------------------------------------------------ which SMS count

    def _args_of_run(self, context: Context) -> dict[str, Any]:
        """The rendered arguments, validated once per try, and the rule of which SMS count."""
        if self._args is None:
            self._args = self._rendered()
            self._choose_rule(context, self._args)
        return self._args

    def _choose_rule(self, context: Context, args: dict[str, Any]) -> None:
        """Decide which SMS count for this try (see the class), logging why."""
        rent_id = args["rent_id"]
        self._seen, self._from, self._passed_over = None, args["since"], []
        if args["since"] is not None:
            self.log.info("Rental %s: SMS stamped at or after %s count", rent_id, args["since"].isoformat())
            return
        if self._rented_in_run(context, rent_id):
            self.log.info("Rental %s was rented in this DAG run: every SMS on it counts", rent_id)
            self._seen = []
            return
        started = run_started_at(context)
        if self.reschedule and not self.deferrable:
            self._from = started
            self.log.info(
                "Rental %s was not rented in this DAG run: SMS dated at or after the run's start (%s) "
                "count, the server's dates read in the connection's server_timezone",
                rent_id,
                started.isoformat(),
            )
            return
        self._seen, self._passed_over = self._baseline(args, started)

    def _rented_in_run(self, context: Context, rent_id: int) -> bool:
        """Whether the charge ledger knows ``rent_id`` as rented by a task of this DAG run."""
        # the ledger loads when a task runs, not at DAG parse
        from airflow_provider_smsonline.ledger import VariableStore, account_of
        from airflow_provider_smsonline.ledger.owner import rented_in_run

        ti = context["ti"]
        try:
            with self.hook() as hook:
                account = account_of(hook)
            return rented_in_run(VariableStore(), account, rent_id, str(ti.dag_id), str(ti.run_id))
        except Exception as error:  # its SMS are then judged by date; a bad connection fails later
            self.log.warning("Could not tell whether rental %s was rented in this run (%s)", rent_id, error)
            return False

    def _baseline(self, args: dict[str, Any], started: datetime) -> tuple[list[str], list[Sms]]:
        """The SMS the rental holds now that are older than the run (their fingerprints: they and
        every SMS listed below them do not count), and those of them that match the pattern.

        :raises AirflowFailException: the rental has ended, or a failure only a person can fix.
        :raises SmsOnlineError: a retryable failure (the task's retries apply).
        """
        # protocol and exceptions load when a task runs, not at DAG parse (docs/benchmarks.rst)
        from airflow_provider_smsonline.exceptions import RentalExpiredError, SmsOnlineError
        from airflow_provider_smsonline.protocol import MAX_PAGES, PAGE_SIZE, fingerprint
        from airflow_provider_smsonline.protocol.matching import older_than

        rent_id, older, held = args["rent_id"], [], 0
        regex = validation.validate_pattern(args["pattern"])
        try:
            with self.hook() as hook:
                for page in range(MAX_PAGES):
                    messages = hook.get_rent_status(rent_id, page=page, size=PAGE_SIZE)
                    held += len(messages)
                    older = older_than(messages, started)
                    if older or len(messages) < PAGE_SIZE:
                        break
        except RentalExpiredError as error:
            raise self._ended(rent_id, str(error)) from None
        except (SmsOnlineError, ValueError) as error:
            raise fail_or_retry(error, self.smsonline_conn_id) from None
        passed = [sms for sms in older if regex is None or regex.search(sms.text)]
        self.log.info(
            "Rental %s was not rented in this DAG run; it holds %d SMS, %d of them dated before the run "
            "started (%s, the server's dates read in the connection's server_timezone): those do not "
            "count, the others and every later one do",
            rent_id,
            held,
            len(older),
            started.isoformat(),
        )
        return [fingerprint(sms) for sms in older], passed

    def _timeout_note(self, pattern: object) -> str:
        from airflow_provider_smsonline.protocol.matching import passed_over_note  # at run time, as above

        return passed_over_note([sms.date for sms in self._passed_over], pattern)

    # ------------------------------------------------------------------ waiting

    def execute(self, context: Context) -> Any:
        self._args = None  # a new try renders afresh
        args = self._args_of_run(context)
        if self.deferrable:
            self.log.info("Deferring: waiting in the triggerer for an SMS on rental %s", args["rent_id"])
            self._defer(args)  # raises TaskDeferred
        try:
            return super().execute(context)
        except (AirflowSensorTimeout, AirflowSkipException) as ended:
            # Airflow's timeout, or with soft_fail its skip: either says what was passed over.
            note = self._timeout_note(args["pattern"])
            if not note or not str(ended).startswith("Sensor has timed out"):
                raise
            raise type(ended)(f"{ended} {note}") from None

    def _trigger(self, args: dict[str, Any], timeout_at: str) -> Any:
        # the trigger class loads when a task defers, not at DAG parse (triggers/_lazy.py)
        from airflow_provider_smsonline.triggers.rent import RentSmsTrigger

        return RentSmsTrigger(
            rent_id=args["rent_id"],
            smsonline_conn_id=self.smsonline_conn_id,
            pattern=args["pattern"],
            since=self._from.isoformat() if self._from is not None else None,
            seen=self._seen,
            poll_interval=self.poll_interval,
            timeout_at=timeout_at,
            passed_over=[sms.date.isoformat() for sms in self._passed_over] or None,
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

    def _check(self, args: dict[str, Any]) -> SmsMatch | None:
        from airflow_provider_smsonline.protocol import SmsWalk  # at run time, as above

        walk = SmsWalk(validation.validate_pattern(args["pattern"]), since=self._from, seen=self._seen)
        with self.hook() as hook:
            page: int | None = walk.first_page
            while page is not None:
                page = walk.feed(hook.get_rent_status(args["rent_id"], page=page, size=walk.page_size))
        if args["since"] is None and self._seen is None:  # reschedule: the run's start is the rule
            self._passed_over = walk.passed_over
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
