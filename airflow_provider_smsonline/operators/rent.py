# Operators of the rent family: rent, renew, finish and cancel numbers. What they share (the hook,
# field checks, error mapping, XCom, the charging path) is operators/base.py's.
"""Operators that rent, renew, finish and cancel SMS.online numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from airflow_provider_smsonline import validation
from airflow_provider_smsonline._compat import AirflowFailException
from airflow_provider_smsonline.operators.base import (
    ChargingOperator,
    NewNumberOperator,
    OneCall,
    SmsOnlineBaseOperator,
    price_above_limit,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
    from airflow_provider_smsonline.ledger import ChargeLedger
    from airflow_provider_smsonline.protocol import Rental

__all__ = [
    "XCOM_KEYS",
    "CancelRentOperator",
    "ContinueRentOperator",
    "FinishRentOperator",
    "RentNumberOperator",
]

#: The XCom keys every renting operator pushes, besides ``return_value``.
XCOM_KEYS = ("id", "number", "end_date")


class _Renting:
    """Mixed into a charging operator that pays for a rental (getRentNumber or
    continueRentNumber): its XCom keys and log line."""

    xcom_keys: tuple[str, ...] = XCOM_KEYS
    bought: str = "rental"
    log: Any

    def _log_bought(self, item: Rental, result: dict[str, Any]) -> None:
        self.log.info("Rental %s: number %s until %s", item.id, item.number, result["end_date"])


class RentNumberOperator(_Renting, NewNumberOperator):
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
        rent_time: int | str | None = None,
        webhook_url: str | None = None,
        webhook: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        with self._arguments_checked():
            _check_webhook(webhook, webhook_url)
        self.rent_time = rent_time
        self.webhook_url = webhook_url
        self.webhook = webhook
        self._check_at_parse()

    @classmethod
    def _check_partial(cls, given: Mapping[str, Any]) -> None:
        super()._check_partial(given)
        if "webhook" in given:
            _check_webhook(given["webhook"], given.get("webhook_url"))

    def _rendered(self) -> dict[str, Any]:
        args = super()._rendered()
        if self.webhook:
            args["webhook_url"] = _own_webhook_url(self.task_id)
        return args

    def _charge_once(
        self, ledger: ChargeLedger, hook: SmsOnlineHook, args: dict[str, Any]
    ) -> tuple[Rental, bool]:
        # the ledger loads when a task runs, not at DAG parse
        from airflow_provider_smsonline.ledger import charge_once

        call_args = {k: v for k, v in args.items() if k != "max_price"}
        asked = {k: args[k] for k in ("service", "country", "operator", "rent_time")}
        return charge_once(
            ledger, hook, lambda: hook.get_rent_number(**call_args), rent_time=args["rent_time"], asked=asked
        )

    charge_kind = "rental"

    def _release(self, hook: SmsOnlineHook, ledger: ChargeLedger, item: Rental) -> str | None:
        hook.cancel_rent(item.id)
        _released("cancelled")
        ledger.write(None)
        return "cancelled for a refund"

    def _cost(self, hook: SmsOnlineHook, item: Rental, args: dict[str, Any]) -> Decimal | None:
        """The rental's ``price`` in getRentList (asked with its id)."""
        return next((row.price for row in hook.get_rent_list(item.id) if row.id == item.id), None)

    def _what(self, args: dict[str, Any]) -> str:
        hours = f"{args['rent_time']} hours" if args["rent_time"] else "the default period"
        return f"renting {args['service']!r} in country {args['country']} for {hours}"

    def _check_price(self, hook: SmsOnlineHook, args: dict[str, Any], limit: Decimal) -> None:
        prices = hook.get_rent_prices(args["country"], rent_time=args["rent_time"])
        listed = next((p for p in prices if p.service == args["service"]), None)
        if listed is not None and listed.cost > limit:
            raise price_above_limit(self._what(args), listed.cost, limit)

    def _check_paid(self, context: Context, hook: SmsOnlineHook, item: Rental, limit: Decimal) -> None:
        """The price rose between the look-up and the rental: cancel it for a refund and fail."""
        # exceptions load when a task runs, not at DAG parse (docs/benchmarks.rst: the parse row)
        from airflow_provider_smsonline.exceptions import SmsOnlineError

        rent_id = item.id
        try:
            row = next((r for r in hook.get_rent_list(rent_id) if r.id == rent_id), None)
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
        _released("cancelled")
        self._ledger(context).write(None)
        raise AirflowFailException(f"{problem}; it was cancelled for a refund; not retrying")


def _check_webhook(webhook: object, webhook_url: object) -> None:
    if not isinstance(webhook, bool) or (webhook and webhook_url is not None):
        raise ValueError(f"webhook must be True or False, and True only without webhook_url, got {webhook!r}")


def _released(outcome: str) -> None:
    # metrics load when a task runs, not at DAG parse
    from airflow_provider_smsonline import metrics

    metrics.released("rental", outcome)


def _own_webhook_url(task_id: str) -> str:
    """This Airflow's webhook URL, or a failure without retry naming the missing setting."""
    # the receiver's package loads when a task runs, not at DAG parse
    from airflow_provider_smsonline.webhook import WebhookConfigError, webhook_url

    try:
        return webhook_url()
    except WebhookConfigError as error:
        raise AirflowFailException(f"{task_id}: webhook=True: {error}; nothing was rented") from None


class ContinueRentOperator(_Renting, ChargingOperator):
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

    field_checks = MappingProxyType(
        {"rent_time": lambda value: validation.validate_rent_time(value, optional=False)}
    )

    def __init__(self, *, rent_id: int | str, rent_time: int | str, **kwargs: Any) -> None:
        kwargs.setdefault("cancel_on_failure", False)  # cancelling would end the whole rental
        super().__init__(**kwargs)
        self.rent_id = rent_id
        self.rent_time = rent_time
        self._check_at_parse()

    def _charge_once(
        self, ledger: ChargeLedger, hook: SmsOnlineHook, args: dict[str, Any]
    ) -> tuple[Rental, bool]:
        # the ledger loads when a task runs, not at DAG parse
        from airflow_provider_smsonline.ledger import charge_once

        return charge_once(
            ledger,
            hook,
            lambda: hook.continue_rent(args["rent_id"], args["rent_time"]),
            rent_time=args["rent_time"],
            existing_id=args["rent_id"],
            asked={"rent_id": args["rent_id"], "rent_time": args["rent_time"]},
        )

    charge_kind = "renewal"

    def _cost(self, hook: SmsOnlineHook, item: Rental, args: dict[str, Any]) -> Decimal | None:
        """getContinueRentPrice of the same hours, asked right after: the price just paid (the
        renewal's answer states none)."""
        return hook.get_continue_rent_price(item.id, args["rent_time"])

    def _check_price(self, hook: SmsOnlineHook, args: dict[str, Any], limit: Decimal) -> None:
        price = hook.get_continue_rent_price(args["rent_id"], args["rent_time"])
        if price > limit:
            what = f"renewing rental {args['rent_id']} by {args['rent_time']} hours"
            raise price_above_limit(what, price, limit)


class FinishRentOperator(OneCall, SmsOnlineBaseOperator):
    """Finish a rental (setRentStatus 1): the number is released. Finishing twice is not an error.

    :param rent_id: the rental's id (templated).
    :param smsonline_conn_id: the connection holding the API key.
    """

    template_fields: Sequence[str] = ("rent_id",)
    id_field = "rent_id"

    def __init__(self, *, rent_id: int | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rent_id = rent_id
        self._check_at_parse()

    def execute(self, context: Context) -> None:
        self._call(lambda hook, rent_id: hook.finish_rent(rent_id), "Rental %s finished")
        _released("finished")


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
        if not self.finish_if_too_late:
            self._call(lambda hook, rent_id: hook.cancel_rent(rent_id), "Rental %s cancelled")
            _released("cancelled")
            return
        rent_id = self._rendered()["rent_id"]
        with self.hook() as hook:
            outcome = self._api(lambda: hook.release_rent(rent_id))
        _released(outcome)
        if outcome == "finished":
            self.log.info("Rental %s could no longer be cancelled; finished instead", rent_id)
        else:
            self.log.info("Rental %s cancelled", rent_id)
