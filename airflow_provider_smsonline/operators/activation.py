# Operators of the activation family: buy a one-time number (once per task instance, under a price
# limit), complete it, cancel it. What they share with the rent family is operators/base.py's; how
# an activation ends within its windows is the hook's (SmsOnlineHook.end_activation).
"""Operators that buy, complete and cancel SMS.online activations (one-time numbers)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_smsonline.operators.base import (
    NewNumberOperator,
    OneCall,
    SmsOnlineBaseOperator,
    price_above_limit,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
    from airflow_provider_smsonline.ledger import ChargeLedger
    from airflow_provider_smsonline.protocol import Activation

__all__ = ["XCOM_KEYS", "ActivateNumberOperator", "CancelActivationOperator", "CompleteActivationOperator"]

#: The XCom keys :class:`ActivateNumberOperator` pushes, besides ``return_value``.
XCOM_KEYS = ("id", "number")


class ActivateNumberOperator(NewNumberOperator):
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
    :param ref: a partner id, sent as getNumber's ``ref``; ``None``: none (templated).
    :param activation_type: how the code comes: 0 an SMS (the server's default), 1 by number,
        2 a voice call; sent as getNumber's ``activationType``; ``None``: not sent (templated).
    :param smsonline_conn_id: the connection holding the API key.
    :param cancel_on_failure: cancel (refund) the activation if the task fails after buying it.
    """

    template_fields: Sequence[str] = (
        "service",
        "country",
        "operator",
        "max_price",
        "ref",
        "activation_type",
    )

    def __init__(
        self, *, ref: str | None = None, activation_type: int | str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.ref = ref
        self.activation_type = activation_type
        self._check_at_parse()

    xcom_keys = XCOM_KEYS
    bought = "activation"
    charge_kind = "activation"

    def _charge_once(
        self, ledger: ChargeLedger, hook: SmsOnlineHook, args: dict[str, Any]
    ) -> tuple[Activation, bool]:
        # the ledger loads when a task runs, not at DAG parse
        from airflow_provider_smsonline.ledger.activation import buy_once

        return buy_once(
            ledger,
            hook,
            lambda: hook.get_number(
                args["service"],
                args["country"],
                args["operator"],
                args["max_price"],
                ref=args["ref"],
                activation_type=args["activation_type"],
            ),
            service=args["service"],
            country=args["country"],
            asked={k: args[k] for k in ("service", "country", "operator")},
        )

    def _release(self, hook: SmsOnlineHook, ledger: ChargeLedger, item: Activation) -> str | None:
        # the ledger loads when a task runs, not at DAG parse
        from airflow_provider_smsonline.ledger.activation import forget

        outcome = hook.end_activation(item.id)
        _released(outcome)
        if outcome in ("cancelled", "ended"):
            forget(ledger)
        return outcome

    def _cost(self, hook: SmsOnlineHook, item: Activation, args: dict[str, Any]) -> Decimal | None:
        """The answer's cost (getNumberV2), else ``activationCost`` in getActiveActivations."""
        if item.cost is not None:
            return item.cost
        return next((row.cost for row in hook.get_active_activations() if row.id == item.id), None)

    def _check_price(self, hook: SmsOnlineHook, args: dict[str, Any], limit: Decimal) -> None:
        # protocol loads when a task runs, not at DAG parse (docs/benchmarks.rst: the parse row)
        from airflow_provider_smsonline.protocol import price_of

        listed = price_of(hook.get_prices(args["service"], args["country"]), args["service"], args["country"])
        if listed is not None and listed.cost > limit:
            what = f"an activation of {args['service']!r} in country {args['country']}"
            raise price_above_limit(what, listed.cost, limit)
        # Not listed: the server's maxPrice check still applies.


class CompleteActivationOperator(OneCall, SmsOnlineBaseOperator):
    """Confirm the code and complete an activation (setStatus 6). Completing twice is not an error.

    :param activation_id: the activation's id, e.g. ``activate.output["id"]`` (templated).
    :param smsonline_conn_id: the connection holding the API key.
    """

    template_fields: Sequence[str] = ("activation_id",)
    id_field = "activation_id"

    def __init__(self, *, activation_id: int | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation_id = activation_id
        self._check_at_parse()

    def execute(self, context: Context) -> None:
        self._call(
            lambda hook, activation_id: hook.complete_activation(activation_id), "Activation %s completed"
        )
        _released("completed")


class CancelActivationOperator(CompleteActivationOperator):
    """End an activation as a teardown would: cancel it for a refund when no code arrived
    (setStatus 8, waiting out the early-cancel window of about 2 minutes), complete it when a
    code did, nothing when it has already ended.

    :param activation_id: the activation's id (templated).
    :param smsonline_conn_id: the connection holding the API key.
    """

    def execute(self, context: Context) -> None:
        activation_id = self._rendered()["activation_id"]
        with self.hook() as hook:
            outcome = self._api(lambda: hook.end_activation(activation_id))
        _released(outcome)
        self.log.info("Activation %s: %s", activation_id, outcome)


def _released(outcome: str) -> None:
    # metrics load when a task runs, not at DAG parse
    from airflow_provider_smsonline import metrics

    metrics.released("activation", outcome)
