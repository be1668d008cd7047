# Operators: validate arguments, call the hook, push XCom, map errors to task states.
# Nothing heavy at import: the hook (and requests) load when a task runs.
"""Operators that rent, renew, finish and cancel SMS.online numbers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseOperator

from airflow_provider_smsonline import validation

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
    from airflow_provider_smsonline.protocol import Rental

T = TypeVar("T")

#: The XCom keys every renting operator pushes, besides ``return_value``.
XCOM_KEYS = ("id", "number", "end_date")


def is_templated(value: object) -> bool:
    """Whether ``value`` is only known after rendering (a Jinja string or an XComArg)."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    return not isinstance(value, (int, float, bool, type(None)))


def check_fields(
    validators: dict[str, tuple[Callable[[Any], Any], Any]], *, rendered: bool
) -> dict[str, Any]:
    """Validate ``{field: (validator, value)}``; before rendering, templated values are skipped.

    :returns: the validated values (templated ones as they are).
    :raises ValueError: naming the field and what is allowed.
    """
    checked = {}
    for name, (validate, value) in validators.items():
        checked[name] = value if (not rendered and is_templated(value)) else validate(value)
    return checked


def fail_or_retry(error: Exception, conn_id: str) -> BaseException:
    """The exception a task should raise for ``error``: retryable ones as they are, the rest as
    :class:`AirflowFailException`, so that no retry is spent on what only a person can fix."""
    from airflow_provider_smsonline._compat import AirflowFailException
    from airflow_provider_smsonline.exceptions import AccountError, SmsOnlineError

    if isinstance(error, SmsOnlineError) and error.retryable:
        return error
    if isinstance(error, AccountError):
        return AirflowFailException(f"{error} (connection {conn_id!r}); not retrying")
    return AirflowFailException(f"{error}; not retrying")


def _max_price(value: object) -> Decimal | None:
    from airflow_provider_smsonline.protocol import validate_max_price

    return validate_max_price(value)


def price_above_limit(what: str, price: Decimal, limit: Decimal) -> Exception:
    """The budget guard's refusal: nothing was charged; the task fails without retry."""
    from airflow_provider_smsonline.exceptions import PriceLimitError

    return PriceLimitError(
        f"{what} costs {price}, above max_price {limit}; nothing was charged",
        code="max_price",
        price=price,
        limit=limit,
    )


class _SmsOnlineOperator(BaseOperator):
    """Shared plumbing: the connection id, the hook, rendering checks and failure mapping."""

    ui_color = "#e8f4ea"

    def __init__(self, *, smsonline_conn_id: str = "smsonline_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.smsonline_conn_id = smsonline_conn_id

    def _validators(self) -> dict[str, tuple[Callable[[Any], Any], Any]]:
        return {}

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

    def _api(
        self, call: Callable[[], T], passthrough: type[Exception] | tuple[type[Exception], ...] = ()
    ) -> T:
        """Run ``call``, raising provider errors as the task should see them."""
        from airflow_provider_smsonline.exceptions import SmsOnlineError

        try:
            return call()
        except passthrough:
            raise
        except (SmsOnlineError, ValueError) as error:
            mapped = fail_or_retry(error, self.smsonline_conn_id)
            if mapped is error:
                raise
        raise mapped from None


class _ChargingOperator(_SmsOnlineOperator):
    """Runs one charging call per task instance through the charge ledger and pushes XCom."""

    def __init__(self, *, cancel_on_failure: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cancel_on_failure = cancel_on_failure

    def _charge(
        self,
        context: Context,
        hook: SmsOnlineHook,
        call: Callable[[], Rental],
        rent_time: int | None,
        existing_id: int | None = None,
    ) -> dict[str, Any]:
        from airflow_provider_smsonline.exceptions import OutcomeUnknownError
        from airflow_provider_smsonline.ledger import ChargeLedger, charge_once

        ledger = ChargeLedger.for_context(context)
        # OutcomeUnknownError stays retryable here: the ledger keeps the pending marker, so the
        # next try reconciles with getRentList before it could charge again.
        rental, charged = self._api(
            lambda: charge_once(ledger, hook, call, rent_time=rent_time, existing_id=existing_id),
            passthrough=OutcomeUnknownError,
        )
        result = rental.to_xcom()
        try:
            ti = context["ti"]
            for key in XCOM_KEYS:
                ti.xcom_push(key=key, value=result[key])
        except Exception as error:
            self._release_after_failure(hook, ledger, rental.id, charged and existing_id is None, error)
            raise
        self.log.info("Rental %s: number %s until %s", rental.id, rental.number, result["end_date"])
        return result

    def _release_after_failure(
        self, hook: SmsOnlineHook, ledger: Any, rent_id: int, cancellable: bool, error: Exception
    ) -> None:
        """The rental is paid for but the task fails: cancel it for a refund, or name it."""
        from airflow_provider_smsonline._compat import AirflowFailException
        from airflow_provider_smsonline.exceptions import SmsOnlineError

        if not (cancellable and self.cancel_on_failure):
            self.log.error("Task failed after paying for rental %s; it is kept (a retry reuses it).", rent_id)
            return
        try:
            hook.cancel_rent(rent_id)
        except SmsOnlineError as cancel_error:
            problem = (
                f"rental {rent_id} is paid for, but the task failed ({type(error).__name__}) and "
                f"cancelling it failed too: {cancel_error}"
            )
        else:
            ledger.write(None)
            self.log.warning("Task failed after renting; rental %s was cancelled for a refund.", rent_id)
            return
        raise AirflowFailException(problem) from None


class RentNumberOperator(_ChargingOperator):
    """Rent an SMS.online number for days or months (getRentNumber).

    Pushes ``id`` (int), ``number`` (str) and ``end_date`` (ISO 8601 str) under their own XCom
    keys and returns them as a dict (``return_value``). A task instance pays for at most one
    rental, across retries and lost answers (see :mod:`airflow_provider_smsonline.ledger`).

    Errors only a person can fix (bad key, service, country, rent time; account inactive,
    banned, blocked; no balance) fail the task without retry; NO_NUMBERS and server trouble
    are retried as the task's ``retries`` allow.

    :param service: service code, e.g. ``"tg"`` (templated).
    :param country: country id, e.g. ``0`` (templated).
    :param operator: mobile operator code, ``None`` for any (templated).
    :param rent_time: hours: 4, 8, 12, 24, 72, 168, 360, 720 or 2160; ``None`` for the
        server's default (templated).
    :param webhook_url: http(s) URL that receives each SMS (templated).
    :param webhook: ``True``: SMS.online posts each SMS to this Airflow's own receiver
        (:func:`~airflow_provider_smsonline.webhook.webhook_url`, built when the task runs from
        ``[smsonline] webhook_secret`` and ``[api] base_url``), which wakes the waits on the
        rental at once. Not with ``webhook_url``.
    :param max_price: the most the rental may cost, e.g. ``100``; ``None``: no limit (templated).
        The price is looked up first (getRentPrices for ``rent_time``); above the limit nothing
        is rented and the task fails without retry, naming the price and the limit. getRentNumber
        takes no limit of its own, so a price that rose between the look-up and the rental is
        caught afterwards from getRentList's ``price``: that rental is cancelled for a refund
        and the task fails the same way.
    :param smsonline_conn_id: the connection holding the API key.
    :param cancel_on_failure: cancel (refund) the rental if the task fails after renting it.
    """

    template_fields: Sequence[str] = (
        "service",
        "country",
        "operator",
        "rent_time",
        "webhook_url",
        "max_price",
    )

    def __init__(
        self,
        *,
        service: str,
        country: int | str,
        operator: str | None = None,
        rent_time: int | str | None = None,
        webhook_url: str | None = None,
        webhook: bool = False,
        max_price: float | str | Decimal | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(webhook, bool) or (webhook and webhook_url is not None):
            raise ValueError(
                f"webhook must be True or False, and True only without webhook_url, got {webhook!r}"
            )
        self.webhook = webhook
        self.service = service
        self.country = country
        self.operator = operator
        self.rent_time = rent_time
        self.webhook_url = webhook_url
        self.max_price = max_price
        check_fields(self._validators(), rendered=False)

    def _validators(self) -> dict[str, tuple[Callable[[Any], Any], Any]]:
        return {
            "service": (validation.validate_service, self.service),
            "country": (validation.validate_country, self.country),
            "operator": (validation.validate_operator, self.operator),
            "rent_time": (validation.validate_rent_time, self.rent_time),
            "webhook_url": (validation.validate_webhook_url, self.webhook_url),
            "max_price": (_max_price, self.max_price),
        }

    def execute(self, context: Context) -> dict[str, Any]:
        args = self._rendered()
        if self.webhook:
            args["webhook_url"] = _own_webhook_url(self.task_id)
        limit = args.pop("max_price")
        hook = self.hook()
        with hook:
            if limit is not None:
                self._api(lambda: self._check_price(hook, args, limit))
            result = self._charge(context, hook, lambda: hook.get_rent_number(**args), args["rent_time"])
            if limit is not None:
                self._check_paid(context, hook, result["id"], limit)
            return result

    def _what(self, args: dict[str, Any]) -> str:
        hours = f"{args['rent_time']} hours" if args["rent_time"] else "the default period"
        return f"renting {args['service']!r} in country {args['country']} for {hours}"

    def _check_price(self, hook: SmsOnlineHook, args: dict[str, Any], limit: Decimal) -> None:
        prices = hook.get_rent_prices(args["country"], rent_time=args["rent_time"])
        listed = next((p for p in prices if p.service == args["service"]), None)
        if listed is not None and listed.cost > limit:
            raise price_above_limit(self._what(args), listed.cost, limit)

    def _check_paid(self, context: Context, hook: SmsOnlineHook, rent_id: int, limit: Decimal) -> None:
        """The price rose between the look-up and the rental: cancel it for a refund and fail."""
        from airflow_provider_smsonline._compat import AirflowFailException
        from airflow_provider_smsonline.exceptions import SmsOnlineError
        from airflow_provider_smsonline.ledger import ChargeLedger

        try:
            row = next((r for r in hook.get_rent_list() if r.id == rent_id), None)
        except SmsOnlineError as error:
            self.log.warning(
                "Could not read what rental %s cost (%s); max_price was checked before", rent_id, error
            )
            return
        if row is None or row.price is None or row.price <= limit:
            return
        problem = (
            f"rental {rent_id} cost {row.price}, above max_price {limit} (the price rose after the look-up)"
        )
        try:
            hook.cancel_rent(rent_id)
        except SmsOnlineError as error:
            raise AirflowFailException(f"{problem}; cancelling it failed: {error}; not retrying") from None
        ChargeLedger.for_context(context).write(None)
        raise AirflowFailException(f"{problem}; it was cancelled for a refund; not retrying")


def _own_webhook_url(task_id: str) -> str:
    """This Airflow's webhook URL, or a failure without retry naming the missing setting."""
    from airflow_provider_smsonline._compat import AirflowFailException
    from airflow_provider_smsonline.webhook import WebhookConfigError, webhook_url

    try:
        return webhook_url()
    except WebhookConfigError as error:
        raise AirflowFailException(f"{task_id}: webhook=True: {error}; nothing was rented") from None


class ContinueRentOperator(_ChargingOperator):
    """Extend a rental by ``rent_time`` hours (continueRentNumber). Charges money, once per task
    instance. Pushes the same XCom keys as :class:`RentNumberOperator`, with the new end date.

    A rental that has already expired fails the task without retry (``RENT_DIE``,
    :class:`~airflow_provider_smsonline.exceptions.RentalExpiredError`).

    :param rent_id: the rental's id (templated).
    :param rent_time: hours to add: 4, 8, 12, 24, 72, 168, 360, 720 or 2160 (templated).
    :param max_price: the most the renewal may cost; ``None``: no limit (templated). The price
        is looked up first (getContinueRentPrice); above the limit nothing is renewed and the
        task fails without retry, naming the price and the limit. continueRentNumber takes no
        limit and a renewal cannot be undone: a price that rose between the look-up and the
        renewal is paid (the window is one round trip).
    :param smsonline_conn_id: the connection holding the API key.
    """

    template_fields: Sequence[str] = ("rent_id", "rent_time", "max_price")

    def __init__(
        self,
        *,
        rent_id: int | str,
        rent_time: int | str,
        max_price: float | str | Decimal | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("cancel_on_failure", False)  # cancelling would end the whole rental
        super().__init__(**kwargs)
        self.rent_id = rent_id
        self.rent_time = rent_time
        self.max_price = max_price
        check_fields(self._validators(), rendered=False)

    def _validators(self) -> dict[str, tuple[Callable[[Any], Any], Any]]:
        return {
            "rent_id": (validation.validate_rent_id, self.rent_id),
            "rent_time": (lambda v: validation.validate_rent_time(v, optional=False), self.rent_time),
            "max_price": (_max_price, self.max_price),
        }

    def execute(self, context: Context) -> dict[str, Any]:
        args = self._rendered()
        hook = self.hook()
        with hook:
            if args["max_price"] is not None:
                self._api(lambda: self._check_price(hook, args))
            return self._charge(
                context,
                hook,
                lambda: hook.continue_rent(args["rent_id"], args["rent_time"]),
                args["rent_time"],
                existing_id=args["rent_id"],
            )

    def _check_price(self, hook: SmsOnlineHook, args: dict[str, Any]) -> None:
        price = hook.get_continue_rent_price(args["rent_id"], args["rent_time"])
        if price > args["max_price"]:
            what = f"renewing rental {args['rent_id']} by {args['rent_time']} hours"
            raise price_above_limit(what, price, args["max_price"])


class FinishRentOperator(_SmsOnlineOperator):
    """Finish a rental (setRentStatus 1): the number is released. Finishing twice is not an error.

    :param rent_id: the rental's id (templated).
    :param smsonline_conn_id: the connection holding the API key.
    """

    template_fields: Sequence[str] = ("rent_id",)

    def __init__(self, *, rent_id: int | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rent_id = rent_id
        check_fields(self._validators(), rendered=False)

    def _validators(self) -> dict[str, tuple[Callable[[Any], Any], Any]]:
        return {"rent_id": (validation.validate_rent_id, self.rent_id)}

    def execute(self, context: Context) -> None:
        rent_id = self._rendered()["rent_id"]
        with self.hook() as hook:
            self._api(lambda: hook.finish_rent(rent_id))
        self.log.info("Rental %s finished", rent_id)


class CancelRentOperator(FinishRentOperator):
    """Cancel a rental for a refund (setRentStatus 2), allowed in its first minutes only.

    Cancelling twice is not an error; after the window the task fails without retry
    (``CANT_CANCEL``). Set ``finish_if_too_late=True`` to finish the rental instead.

    :param rent_id: the rental's id (templated).
    :param finish_if_too_late: finish instead of failing when the refund window has closed.
    :param smsonline_conn_id: the connection holding the API key.
    """

    def __init__(self, *, rent_id: int | str, finish_if_too_late: bool = False, **kwargs: Any) -> None:
        super().__init__(rent_id=rent_id, **kwargs)
        self.finish_if_too_late = finish_if_too_late

    def execute(self, context: Context) -> None:
        from airflow_provider_smsonline.exceptions import CancelNotAllowedError

        rent_id = self._rendered()["rent_id"]
        with self.hook() as hook:
            try:
                self._api(lambda: hook.cancel_rent(rent_id), passthrough=CancelNotAllowedError)
            except CancelNotAllowedError as error:
                if not self.finish_if_too_late:
                    raise fail_or_retry(error, self.smsonline_conn_id) from None
                self._api(lambda: hook.finish_rent(rent_id))
                self.log.info("Rental %s could no longer be cancelled; finished instead", rent_id)
                return
        self.log.info("Rental %s cancelled", rent_id)
