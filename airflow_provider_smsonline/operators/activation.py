# Operators of the activation family: buy a one-time number (once per task instance, under a price
# limit), complete it, cancel it. Nothing heavy at import: the hook loads when a task runs.
"""Operators that buy, complete and cancel SMS.online activations (one-time numbers)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_smsonline import validation
from airflow_provider_smsonline.operators.rent import (
    _SmsOnlineOperator,
    check_fields,
    fail_or_retry,
    price_above_limit,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

#: The XCom keys :class:`ActivateNumberOperator` pushes, besides ``return_value``.
XCOM_KEYS = ("id", "number")
#: Seconds a cancel waits, at most, for the early-cancel window (about 2 minutes) to pass.
EARLY_CANCEL_WAIT = 150.0
#: Seconds between cancel attempts while the early-cancel window is open.
EARLY_CANCEL_RETRY = 15.0

# Indirection so tests can watch the waits without waiting.
_sleep = time.sleep


def _activation_id(value: object) -> int:
    from airflow_provider_smsonline.protocol import validate_activation_id

    return validate_activation_id(value)


def _max_price(value: object) -> Decimal | None:
    from airflow_provider_smsonline.protocol import validate_max_price

    return validate_max_price(value)


def settle_activation(hook: SmsOnlineHook, activation_id: int, log: Any) -> str:
    """End an activation the way its state asks: complete it when a code arrived, else cancel it
    for a refund, waiting out the early-cancel window (up to :data:`EARLY_CANCEL_WAIT` s).

    :returns: ``"completed"``, ``"cancelled"``, ``"ended"`` (already over) or ``"refund_later"``
        (the window did not pass in time: the service refunds it after about 20 minutes).
    """
    from airflow_provider_smsonline.exceptions import EarlyCancelDeniedError
    from airflow_provider_smsonline.protocol import STATUS_CANCEL, STATUS_OK

    state = hook.get_status(activation_id)
    if state.status == STATUS_CANCEL:
        return "ended"
    if state.status == STATUS_OK:
        hook.complete_activation(activation_id)
        return "completed"
    deadline = time.monotonic() + EARLY_CANCEL_WAIT
    while True:
        try:
            hook.cancel_activation(activation_id)
            return "cancelled"
        except EarlyCancelDeniedError:
            if time.monotonic() + EARLY_CANCEL_RETRY > deadline:
                log.warning(
                    "Activation %s cannot be cancelled yet; without a code the service refunds it "
                    "after about 20 minutes.",
                    activation_id,
                )
                return "refund_later"
            _sleep(EARLY_CANCEL_RETRY)


class ActivateNumberOperator(_SmsOnlineOperator):
    """Buy an activation: a number for one service's verification code (getNumber).

    Pushes ``id`` (int) and ``number`` (str) under their own XCom keys and returns them as a dict
    (``return_value``). A task instance buys at most one activation, across retries and lost
    answers (see :mod:`airflow_provider_smsonline.ledger.activation`).

    Budget guard: with ``max_price`` the price is looked up first (getPrices); above the limit
    nothing is bought and the task fails without retry, naming the price and the limit. The
    limit also travels as getNumber's ``maxPrice``, so a price that rose between the look-up and
    the purchase is refused by the server (``WRONG_MAX_PRICE``, nothing charged) and fails the
    same way.

    :param service: service code, e.g. ``"tg"`` (templated).
    :param country: country id, e.g. ``0`` (templated).
    :param operator: mobile operator code, ``None`` for any (templated).
    :param max_price: the most one activation may cost, e.g. ``10.5``; ``None``: no limit
        (templated).
    :param smsonline_conn_id: the connection holding the API key.
    :param cancel_on_failure: cancel (refund) the activation if the task fails after buying it.
    """

    template_fields: Sequence[str] = ("service", "country", "operator", "max_price")

    def __init__(
        self,
        *,
        service: str,
        country: int | str,
        operator: str | None = None,
        max_price: float | str | Decimal | None = None,
        cancel_on_failure: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.country = country
        self.operator = operator
        self.max_price = max_price
        self.cancel_on_failure = cancel_on_failure
        check_fields(self._validators(), rendered=False)

    def _validators(self) -> dict[str, tuple[Callable[[Any], Any], Any]]:
        return {
            "service": (validation.validate_service, self.service),
            "country": (validation.validate_country, self.country),
            "operator": (validation.validate_operator, self.operator),
            "max_price": (_max_price, self.max_price),
        }

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_smsonline.exceptions import OutcomeUnknownError
        from airflow_provider_smsonline.ledger import ChargeLedger
        from airflow_provider_smsonline.ledger.activation import buy_once, forget

        args = self._rendered()
        with self.hook() as hook:
            if args["max_price"] is not None:
                self._api(lambda: self._check_price(hook, args))
            ledger = ChargeLedger.for_context(context)
            activation, charged = self._api(
                lambda: buy_once(
                    ledger,
                    hook,
                    lambda: hook.get_number(
                        args["service"], args["country"], args["operator"], args["max_price"]
                    ),
                    service=args["service"],
                    country=args["country"],
                ),
                passthrough=OutcomeUnknownError,
            )
            result = activation.to_xcom()
            try:
                ti = context["ti"]
                for key in XCOM_KEYS:
                    ti.xcom_push(key=key, value=result[key])
            except Exception:
                if charged and self.cancel_on_failure:
                    outcome = settle_activation(hook, activation.id, self.log)
                    if outcome in ("cancelled", "ended"):
                        forget(ledger)
                    self.log.warning("Task failed after buying activation %s: %s", activation.id, outcome)
                raise
        self.log.info("Activation %s: number %s", activation.id, activation.number)
        return result

    def _check_price(self, hook: SmsOnlineHook, args: dict[str, Any]) -> None:
        from airflow_provider_smsonline.protocol import price_of

        listed = price_of(hook.get_prices(args["service"], args["country"]), args["service"], args["country"])
        if listed is not None and listed.cost > args["max_price"]:
            what = f"an activation of {args['service']!r} in country {args['country']}"
            raise price_above_limit(what, listed.cost, args["max_price"])
        # Not listed: the server's maxPrice check still applies.


class CompleteActivationOperator(_SmsOnlineOperator):
    """Confirm the code and complete an activation (setStatus 6). Completing twice is not an error.

    :param activation_id: the activation's id, e.g. ``activate.output["id"]`` (templated).
    :param smsonline_conn_id: the connection holding the API key.
    """

    template_fields: Sequence[str] = ("activation_id",)

    def __init__(self, *, activation_id: int | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation_id = activation_id
        check_fields(self._validators(), rendered=False)

    def _validators(self) -> dict[str, tuple[Callable[[Any], Any], Any]]:
        return {"activation_id": (_activation_id, self.activation_id)}

    def execute(self, context: Context) -> None:
        activation_id = self._rendered()["activation_id"]
        with self.hook() as hook:
            self._api(lambda: hook.complete_activation(activation_id))
        self.log.info("Activation %s completed", activation_id)


class CancelActivationOperator(CompleteActivationOperator):
    """End an activation as a teardown would: cancel it for a refund when no code arrived
    (setStatus 8, waiting out the early-cancel window of about 2 minutes), complete it when a
    code did, nothing when it has already ended.

    :param activation_id: the activation's id (templated).
    :param smsonline_conn_id: the connection holding the API key.
    """

    def execute(self, context: Context) -> None:
        from airflow_provider_smsonline.exceptions import SmsOnlineError

        activation_id = self._rendered()["activation_id"]
        with self.hook() as hook:
            try:
                outcome = settle_activation(hook, activation_id, self.log)
            except (SmsOnlineError, ValueError) as error:
                mapped = fail_or_retry(error, self.smsonline_conn_id)
                if mapped is error:
                    raise
                raise mapped from None
        self.log.info("Activation %s: %s", activation_id, outcome)
