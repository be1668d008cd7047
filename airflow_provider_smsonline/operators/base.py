# What every operator and sensor of this provider shares: the connection id and the hook, fields
# checked at DAG parse and again after rendering, API errors turned into task states, XCom, and
# the charging operators' one path (budget guard, one charge per task instance, release after a
# failure). Nothing heavy at import: the hook (and requests) load when a task runs.
"""The base of the provider's operators and sensors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseOperator

from airflow_provider_smsonline import validation
from airflow_provider_smsonline._compat import AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.definitions.mappedoperator import OperatorPartial

    from airflow_provider_smsonline.exceptions import PriceLimitError
    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
    from airflow_provider_smsonline.ledger import ChargeLedger

__all__ = [
    "FIELD_CHECKS",
    "ChargingOperator",
    "NewNumberOperator",
    "OneCall",
    "SmsOnlineBaseOperator",
    "SmsOnlineTask",
    "check_fields",
    "fail_or_retry",
    "is_templated",
    "price_above_limit",
]

T = TypeVar("T")
if TYPE_CHECKING:
    #: ``{field: (validator, value)}``: how each templated field is checked.
    Validators = dict[str, tuple[Callable[[Any], Any], Any]]


def _pattern_text(value: object) -> str | None:
    validation.validate_pattern(value)
    return value or None  # type: ignore[return-value]


def _since(value: object) -> datetime | None:
    return validation.validate_moment("since", value)


#: How each templated field of the provider's operators and sensors is checked, by its name.
FIELD_CHECKS: Mapping[str, Callable[[Any], Any]] = MappingProxyType(
    {
        "service": validation.validate_service,
        "country": validation.validate_country,
        "operator": validation.validate_operator,
        "rent_time": validation.validate_rent_time,
        "webhook_url": validation.validate_webhook_url,
        "max_price": validation.validate_max_price,
        "rent_id": validation.validate_rent_id,
        "activation_id": validation.validate_activation_id,
        "ref": validation.validate_ref,
        "activation_type": validation.validate_activation_type,
        "pattern": _pattern_text,
        "since": _since,
    }
)


def is_templated(value: object) -> bool:
    """Whether ``value`` is only known after rendering: a Jinja string, what Airflow resolves (an
    XComArg), an object with ``template_fields`` of its own, or a collection Airflow renders item by
    item. Anything else (a number, a ``Decimal``, a ``datetime``...) is checked at DAG parse."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, (list, tuple, set, dict)):
        return True
    return hasattr(value, "resolve") or hasattr(value, "template_fields")


def check_fields(validators: Validators, *, rendered: bool) -> dict[str, Any]:
    """Validate ``{field: (validator, value)}``; before rendering, templated values are skipped.

    :returns: the validated values (templated ones as they are).
    :raises ValueError: naming the field and what is allowed.
    """
    checked = {}
    for name, (validate, value) in validators.items():
        checked[name] = value if (not rendered and is_templated(value)) else validate(value)
    return checked


#: Packages whose frames are not where a task was defined: this one, Airflow, and the stdlib's
#: wrappers between a DAG file and ``__init__``.
_NOT_DAG_CODE = ("airflow_provider_smsonline", "airflow", "contextlib", "functools", "abc")


def _at_parse(task_id: object, error: ValueError) -> str:
    """The message of a bad argument found at DAG parse: the task's id, the error (which names
    the field, the value and what is allowed) and the DAG file's line that made the task, so that
    in a DAG of many tasks the one to fix is plain whatever traceback the DAG processor shows."""
    where = ""
    frame = sys._getframe(1)
    while frame is not None:
        package = str(frame.f_globals.get("__name__", "")).partition(".")[0]
        if package not in _NOT_DAG_CODE:
            where = f" ({os.path.basename(frame.f_code.co_filename)}, line {frame.f_lineno})"
            break
        frame = frame.f_back  # type: ignore[assignment]
    return f"{task_id or 'a task'}: {error}{where}"


def fail_or_retry(error: Exception, conn_id: str) -> BaseException:
    """The exception a task should raise for ``error``: retryable ones as they are, the rest as
    :class:`AirflowFailException`, so that no retry is spent on what only a person can fix."""
    # exceptions load when a task runs, not at DAG parse (docs/benchmarks.rst: the parse row)
    from airflow_provider_smsonline.exceptions import AccountError, SmsOnlineError

    if isinstance(error, SmsOnlineError) and error.retryable:
        return error
    if isinstance(error, AccountError):
        return AirflowFailException(f"{error} (connection {conn_id!r}); not retrying")
    return AirflowFailException(f"{error}; not retrying")


def price_above_limit(what: str, price: Decimal, limit: Decimal) -> PriceLimitError:
    """The budget guard's refusal: nothing was charged; the task fails without retry."""
    from airflow_provider_smsonline.exceptions import PriceLimitError  # as in fail_or_retry

    return PriceLimitError(
        f"{what} costs {price}, above max_price {limit}; nothing was charged",
        code="max_price",
        price=price,
        limit=limit,
    )


class _CheckedPartial:
    """``partial`` of the provider's classes: Airflow's, after checking its arguments at DAG parse
    (``expand``'s are checked as each mapped task instance starts); on a task it raises
    ``TypeError``, as Airflow's does. A user's subclass with an ``__init__`` of its own, which may
    turn its arguments into other values, gets Airflow's unchecked."""

    def __get__(self, obj: object, cls: type[SmsOnlineTask] | None = None) -> Callable[..., OperatorPartial]:
        if obj is not None:
            return super(SmsOnlineTask, obj).partial  # type: ignore[misc, no-any-return]  # Airflow's refusal
        assert cls is not None
        airflow_partial = super(SmsOnlineTask, cls).partial  # type: ignore[misc]
        if not cls.__init__.__module__.startswith(f"{__name__.partition('.')[0]}."):
            return airflow_partial  # type: ignore[no-any-return]

        def partial(**kwargs: Any) -> OperatorPartial:
            try:
                cls._check_partial(kwargs)
            except ValueError as error:
                raise ValueError(_at_parse(kwargs.get("task_id"), error)) from None
            return airflow_partial(**kwargs)  # type: ignore[no-any-return]

        return partial


class SmsOnlineTask:
    """What the provider's operators and sensors share; mixed in before Airflow's base class.

    Every templated field is checked as :data:`FIELD_CHECKS` (or the class's own
    :attr:`field_checks`) says (one neither names is not checked), by :meth:`_check_at_parse`
    at the end of ``__init__`` and again by :meth:`_rendered` once rendered.
    """

    ui_color = "#e8f4ea"
    #: Checks of this class's own that replace :data:`FIELD_CHECKS` entries of the same name.
    field_checks: Mapping[str, Callable[[Any], Any]] = MappingProxyType({})
    template_fields: Any
    smsonline_conn_id: str
    task_id: str
    log: Any

    @classmethod
    def _checks(cls) -> dict[str, Callable[[Any], Any]]:
        """``{field: check}`` of the templated fields; one with no check (a user's) passes as it is."""
        checks = {name: cls.field_checks.get(name) or FIELD_CHECKS.get(name) for name in cls.template_fields}
        return {name: check for name, check in checks.items() if check is not None}

    def _validators(self) -> Validators:
        return {name: (check, getattr(self, name)) for name, check in self._checks().items()}

    def _check_at_parse(self) -> None:
        """Check every field that is known before rendering (a ``ValueError`` names it)."""
        with self._arguments_checked():
            check_fields(self._validators(), rendered=False)

    @contextmanager
    def _arguments_checked(self, task_id: str | None = None) -> Iterator[None]:
        """Around ``__init__``'s checks: a ``ValueError`` stays one at DAG parse, but in a mapped
        task, whose values arrive when Airflow unmaps it to run, it fails the task without retry.

        :param task_id: the task's id, for checks made before Airflow's ``__init__`` has set it.
        """
        try:
            yield
        except ValueError as error:
            task_id = task_id or getattr(self, "task_id", None)
            # Airflow sets this on the instance before any __init__ runs (3.1 to 3.3).
            if not getattr(self, "_BaseOperator__from_mapped", False):
                raise ValueError(_at_parse(task_id, error)) from None
            task_id = task_id or type(self).__name__
            problem = f"{task_id}: {error} (checked as the mapped task instance started); not retrying"
            raise AirflowFailException(problem) from None

    @classmethod
    def _check_partial(cls, given: Mapping[str, Any]) -> None:
        """Check what ``partial`` is given as ``__init__`` checks it (a ``ValueError`` names the
        field); a subclass with checks of arguments that are not templated adds them."""
        checks = cls._checks()
        check_fields({name: (checks[name], given[name]) for name in checks if name in given}, rendered=False)

    partial = _CheckedPartial()

    def _rendered(self) -> dict[str, Any]:
        """The rendered fields, checked; a bad one fails the task without retry."""
        try:
            return check_fields(self._validators(), rendered=True)
        except ValueError as error:
            raise AirflowFailException(f"{self.task_id}: {error} (after rendering)") from None

    def hook(self) -> SmsOnlineHook:
        """A hook on ``smsonline_conn_id``."""
        # the hook (requests) and the ledger load when a task runs, not at DAG parse
        from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

        return SmsOnlineHook(smsonline_conn_id=self.smsonline_conn_id)

    def _api(
        self, call: Callable[[], T], passthrough: type[Exception] | tuple[type[Exception], ...] = ()
    ) -> T:
        """Run ``call``, raising provider errors as the task should see them."""
        from airflow_provider_smsonline.exceptions import SmsOnlineError  # as in fail_or_retry

        try:
            return call()
        except passthrough:
            raise
        except (SmsOnlineError, ValueError) as error:
            mapped = fail_or_retry(error, self.smsonline_conn_id)
            if mapped is error:
                raise
        raise mapped from None

    @staticmethod
    def _push(context: Context, result: Mapping[str, Any], keys: Iterable[str]) -> None:
        """Push ``result[key]`` under each XCom key (``return_value`` is Airflow's)."""
        ti = context["ti"]
        for key in keys:
            ti.xcom_push(key=key, value=result[key])


class SmsOnlineBaseOperator(SmsOnlineTask, BaseOperator):
    """The base of the provider's operators.

    :param smsonline_conn_id: the connection holding the API key.
    """

    def __init__(self, *, smsonline_conn_id: str = "smsonline_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.smsonline_conn_id = smsonline_conn_id


class OneCall(SmsOnlineTask):
    """Mixed into an operator that makes one call on one rental or activation, named by
    :attr:`id_field`; its ``execute`` says which call (:meth:`_call`). A plain mixin: every
    ``BaseOperator`` subclass costs class-creation time at DAG parse."""

    #: The templated field holding the id.
    id_field: str = ""

    def _call(self, call: Callable[[SmsOnlineHook, int], object], done: str) -> None:
        """Make ``call`` with the rendered id and log ``done`` (a format with the id's ``%s``)."""
        item_id = self._rendered()[self.id_field]
        with self.hook() as hook:
            self._api(lambda: call(hook, item_id))
        self.log.info(done, item_id)


class ChargingOperator(SmsOnlineBaseOperator):
    """An operator that pays: at most one charge per task instance (through the charge ledger),
    a budget guard before paying, XCom after, and what it bought released if the task fails.

    What is bought is a :class:`~airflow_provider_smsonline.protocol.Rental` or an
    :class:`~airflow_provider_smsonline.protocol.Activation`. A subclass says what is its own:
    :meth:`_check_price` (the look-up behind ``max_price``), :meth:`_charge_once` (the call,
    through its ledger), :meth:`_release` (how a purchase is undone) and, optionally,
    :meth:`_check_paid` (a check after paying).

    :param max_price: the most it may cost; ``None``: no limit (templated).
    :param cancel_on_failure: release (refund) what was bought if the task fails after buying it.
    """

    #: The XCom keys pushed besides ``return_value``.
    xcom_keys: tuple[str, ...] = ()
    #: What is bought, as a log line says it ("rental", "activation").
    bought: str = ""
    #: The charge, as the metrics tag it (``kind``: "rental", "renewal", "activation").
    charge_kind: str = ""

    def __init__(
        self,
        *,
        max_price: float | str | Decimal | None = None,
        cancel_on_failure: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_price = max_price
        self.cancel_on_failure = cancel_on_failure

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_smsonline.exceptions import OutcomeUnknownError  # as in fail_or_retry

        args = self._rendered()
        limit = args.get("max_price")
        with self.hook() as hook:
            if limit is not None:
                self._api(lambda: self._check_price(hook, args, limit))
            ledger = self._ledger(context)
            # OutcomeUnknownError stays retryable here: the ledger keeps the pending marker, so
            # the next try reconciles before it could charge again.
            item, charged = self._api(
                lambda: self._charge_once(ledger, hook, args), passthrough=OutcomeUnknownError
            )
            if charged:
                self._report_charge(hook, item, args)
            result = self._result(item)
            try:
                self._push(context, result, self.xcom_keys)
            except Exception as error:
                self._release_after_failure(hook, ledger, item, charged, error)
                raise
            self._log_bought(item, result)
            if limit is not None:
                self._check_paid(context, hook, item, limit)
        return result

    @staticmethod
    def _ledger(context: Context) -> ChargeLedger:
        # the hook (requests) and the ledger load when a task runs, not at DAG parse
        from airflow_provider_smsonline.ledger import ChargeLedger

        return ChargeLedger.for_context(context)

    # ------------------------------------------------------------------ what a subclass fills in

    def _check_price(self, hook: SmsOnlineHook, args: dict[str, Any], limit: Decimal) -> None:
        """Raise :func:`price_above_limit` when the look-up says the price is above ``limit``."""

    def _charge_once(
        self, ledger: ChargeLedger, hook: SmsOnlineHook, args: dict[str, Any]
    ) -> tuple[Any, bool]:
        """Pay at most once per task instance: what was bought, and whether this try paid."""
        raise NotImplementedError

    def _release(self, hook: SmsOnlineHook, ledger: ChargeLedger, item: Any) -> str | None:
        """Undo a purchase for a refund; what happened (``None``: it is kept)."""
        return None

    def _check_paid(self, context: Context, hook: SmsOnlineHook, item: Any, limit: Decimal) -> None:
        """After paying with ``max_price`` set: a check of what it cost (default: none)."""

    def _cost(self, hook: SmsOnlineHook, item: Any, args: dict[str, Any]) -> Decimal | None:
        """What the purchase cost, as SMS.online states it (``None``: not stated). May read the
        API once; a failure raises."""
        return None

    def _report_charge(self, hook: SmsOnlineHook, item: Any, args: dict[str, Any]) -> None:
        """Send the charge and its cost as metrics (:mod:`airflow_provider_smsonline.metrics`);
        a cost that cannot be read is left out, never fails the task."""
        from airflow_provider_smsonline import metrics  # as in fail_or_retry

        try:
            cost = self._cost(hook, item, args)
        except Exception as error:  # a metric never fails a task that has paid
            self.log.info("What %s %s cost is unknown (%s); no spend metric", self.bought, item.id, error)
            cost = None
        metrics.charged(self.charge_kind, self.dag_id, cost)

    def _result(self, item: Any) -> dict[str, Any]:
        """What is pushed: the purchase's ``to_xcom()`` (a rental's or an activation's)."""
        return dict(item.to_xcom())

    def _log_bought(self, item: Any, result: dict[str, Any]) -> None:
        self.log.info("%s %s: number %s", self.bought.capitalize(), result["id"], result["number"])

    # ------------------------------------------------------------------ failure after paying

    def _release_after_failure(
        self, hook: SmsOnlineHook, ledger: ChargeLedger, item: Any, charged: bool, error: Exception
    ) -> None:
        """Paid for, but the task fails: release it for a refund, or say that it is kept."""
        from airflow_provider_smsonline.exceptions import SmsOnlineError  # as in fail_or_retry

        item_id = self._result(item)["id"]
        if not (charged and self.cancel_on_failure):
            self.log.error(
                "Task failed after paying for %s %s; it is kept (a retry reuses it).", self.bought, item_id
            )
            return
        try:
            outcome = self._release(hook, ledger, item)
        except SmsOnlineError as release_error:
            problem = (
                f"{self.bought} {item_id} is paid for, but the task failed ({type(error).__name__}) and "
                f"releasing it failed too: {release_error}"
            )
            raise AirflowFailException(problem) from None
        if outcome is None:
            self.log.error(
                "Task failed after paying for %s %s; it is kept (a retry reuses it).", self.bought, item_id
            )
        else:
            self.log.warning("Task failed after buying %s %s: %s", self.bought, item_id, outcome)


class NewNumberOperator(ChargingOperator):
    """A charging operator that buys a new number: for ``service`` in ``country``, optionally
    from one ``operator`` (a rental or an activation).

    :param service: service code, e.g. ``"tg"`` (templated).
    :param country: country id, e.g. ``0`` (templated).
    :param operator: mobile operator code, ``None`` for any (templated).
    """

    def __init__(
        self, *, service: str, country: int | str, operator: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.country = country
        self.operator = operator
