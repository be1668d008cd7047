# The activation family as a user meets it: the hook, the operators, the sensor and the trigger
# against the sandbox (documented shapes, dates in UTC+3), the protocol's typed answers and errors,
# at most one activation per task instance, and the budget guard on every charging operator.
from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

import pytest
import requests
from airflow.sdk import BaseSensorOperator

from airflow_provider_smsonline import protocol
from airflow_provider_smsonline._compat import AirflowFailException, AirflowSensorTimeout
from airflow_provider_smsonline.exceptions import (
    ActivationNotFoundError,
    EarlyCancelDeniedError,
    InvalidRequestError,
    OutcomeUnknownError,
    PriceLimitError,
    ServerError,
)
from airflow_provider_smsonline.hooks import smsonline as hook_module
from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.operators.activation import (
    ActivateNumberOperator,
    CancelActivationOperator,
    CompleteActivationOperator,
)
from airflow_provider_smsonline.operators.rent import ContinueRentOperator, RentNumberOperator
from airflow_provider_smsonline.sandbox import Sandbox
from airflow_provider_smsonline.sandbox.activations import EARLY_CANCEL_SECONDS, activation_price
from airflow_provider_smsonline.sensors.activation import ActivationCodeSensor
from airflow_provider_smsonline.triggers.activation import ActivationCodeTrigger
from tests.conftest import CANARY_KEY, FakeTaskInstance, assert_no_key, connection_env, task_context

# ----------------------------------------------------------------------------- fixtures


def _use(monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, **extra: object) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMSONLINE_DEFAULT",
        connection_env(host=sandbox.url, read_retries=0, timeout=1, **extra),
    )


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A documented-only sandbox (UTC+3), the default connection pointing at it."""
    with Sandbox(port=0, api_key=CANARY_KEY, seed=3) as sb:
        _use(monkeypatch, sb)
        yield sb


@pytest.fixture
def rich(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A rich sandbox (getNumberV2, getStatusV2, unmasked numbers)."""
    with Sandbox(port=0, api_key=CANARY_KEY, seed=4, documented_only=False) as sb:
        _use(monkeypatch, sb)
        yield sb


@pytest.fixture
def ti(memory_variables: dict[str, object]) -> FakeTaskInstance:
    return FakeTaskInstance(task_id="activate")


def balance(sb: Sandbox) -> Decimal:
    return Decimal(sb.state()["balance"])


def activations(sb: Sandbox) -> list[dict[str, Any]]:
    return sb.state()["activations"]


def requests_of(sb: Sandbox, action: str) -> int:
    return int(sb.state()["requests"].get(action, 0))


def post_code(sb: Sandbox, activation_id: int, body: object) -> requests.Response:
    return requests.post(f"{sb.base_url}/sandbox/activations/{activation_id}/code", json=body, timeout=5)


PRICE = activation_price("tg", 0)

# ----------------------------------------------------------------------------- protocol


@pytest.mark.parametrize(
    ("body", "status", "code", "text"),
    [
        ("STATUS_WAIT_CODE", "STATUS_WAIT_CODE", None, None),
        ("STATUS_OK:54321", "STATUS_OK", "54321", None),
        ("STATUS_WAIT_RETRY:54321", "STATUS_WAIT_RETRY", "54321", None),
        ("STATUS_CANCEL", "STATUS_CANCEL", None, None),
        (
            '{"verificationType":0,"sms":{"code":"777","text":"Code 777"},"call":null}',
            "STATUS_OK",
            "777",
            "Code 777",
        ),
        ('{"verificationType":0,"sms":null,"call":null}', "STATUS_WAIT_CODE", None, None),
    ],
)
def test_get_status_answers_become_a_status_and_a_code(body: str, status: str, code: str, text: str) -> None:
    state = protocol.parse_status(200, body)
    assert (state.status, state.code, state.text) == (status, code, text)


@pytest.mark.parametrize(
    ("body", "error", "code"),
    [
        ("NO_ACTIVATION", ActivationNotFoundError, "NO_ACTIVATION"),
        ("BAD_STATUS", InvalidRequestError, "BAD_STATUS"),
        ("EARLY_CANCEL_DENIED", EarlyCancelDeniedError, "EARLY_CANCEL_DENIED"),
        ("<html>502</html>", ServerError, "bad_response"),
    ],
)
def test_activation_errors_are_typed(body: str, error: type[Exception], code: str) -> None:
    with pytest.raises(error) as caught:
        protocol.parse_set_status(200, body, protocol.ACTIVATION_CANCEL)
    assert caught.value.code == code  # type: ignore[attr-defined]


def test_get_number_reads_plain_text_and_v2_json_and_the_price_refusal() -> None:
    assert protocol.parse_number(200, "ACCESS_NUMBER:635468021:79181234567") == protocol.Activation(
        635468021, "79181234567"
    )
    v2 = protocol.parse_number(200, '{"activationId":"12","phoneNumber":"7999","activationCost":"10.50"}')
    assert (v2.id, v2.number, v2.cost) == (12, "7999", Decimal("10.50"))
    with pytest.raises(PriceLimitError) as caught:
        protocol.parse_number(200, "WRONG_MAX_PRICE:12.5")
    assert caught.value.price == Decimal("12.5") and "12.5" in str(caught.value)
    with pytest.raises(ServerError):
        protocol.parse_number(200, "ACCESS_NUMBER:x:7999")


def test_get_active_activations_reads_the_documented_sample_and_none() -> None:
    sample = (
        '{"status":"success","activeActivations":[{"activationId":"635468021","countryCode":"0",'
        '"countryName":"Russia","serviceCode":"vk","phoneNumber":"79********1","activationCost":12.50,'
        '"activationStatus":"4","smsCode":["CODE"],"activationTime":"2022-06-01 16:59:16"}]}'
    )
    (row,) = protocol.parse_active_activations(200, sample)
    assert (row.id, row.service, row.country, row.number, row.cost) == (
        635468021,
        "vk",
        0,
        "79********1",
        Decimal("12.5"),
    )
    assert protocol.parse_active_activations(200, "NO_ACTIVATIONS") == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "max_price must be a positive number"),
        (-1, "max_price must be a positive number"),
        ("cheap", "max_price must be a positive number"),
        (float("nan"), "max_price must be a positive number"),
        (True, "got a bool"),
    ],
)
def test_bad_max_price_is_refused_naming_the_field(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ActivateNumberOperator(task_id="a", service="tg", country=0, max_price=value)
    with pytest.raises(ValueError, match=message):
        RentNumberOperator(task_id="r", service="tg", country=0, max_price=value)


def test_bad_activation_id_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="activation_id must be a non-negative integer"):
        CompleteActivationOperator(task_id="c", activation_id="abc")
    with pytest.raises(ValueError, match="activation_id"):
        ActivationCodeSensor(task_id="s", activation_id=-3)


# ----------------------------------------------------------------------------- the hook on the sandbox


def test_the_activation_life_cycle_through_the_hook(sandbox: Sandbox) -> None:
    start = balance(sandbox)
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
        assert activation.number.isdigit() and balance(sandbox) == start - PRICE
        assert hook.get_status(activation.id).status == protocol.STATUS_WAIT_CODE
        assert hook.mark_ready(activation.id) == "ACCESS_READY"
        assert post_code(sandbox, activation.id, {"code": "4321", "text": "Code 4321"}).status_code == 200
        state = hook.get_status(activation.id)
        assert (state.status, state.code) == (protocol.STATUS_OK, "4321")
        assert hook.request_another_code(activation.id) == "ACCESS_RETRY_GET"
        assert hook.get_status(activation.id) == protocol.ActivationStatus(protocol.STATUS_WAIT_RETRY, "4321")
        post_code(sandbox, activation.id, {"code": "8765"})
        assert hook.get_status(activation.id).code == "8765"
        assert hook.complete_activation(activation.id) == "ACCESS_ACTIVATION"
        with pytest.raises(ActivationNotFoundError):
            hook.get_status(activation.id + 10_000)
    assert balance(sandbox) == start - PRICE  # completed: paid


def test_cancel_is_denied_early_then_refunds(sandbox: Sandbox) -> None:
    start = balance(sandbox)
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
        with pytest.raises(EarlyCancelDeniedError):
            hook.cancel_activation(activation.id)
        sandbox.advance_clock(EARLY_CANCEL_SECONDS + 1)
        assert hook.cancel_activation(activation.id) == "ACCESS_CANCEL"
        assert hook.get_status(activation.id).status == protocol.STATUS_CANCEL
    assert balance(sandbox) == start


def test_get_prices_and_max_price_on_the_wire(sandbox: Sandbox) -> None:
    with SmsOnlineHook() as hook:
        (price,) = hook.get_prices("tg", 0)
        assert (price.service, price.country, price.cost) == ("tg", 0, PRICE)
        with pytest.raises(PriceLimitError) as caught:
            hook.get_number("tg", 0, max_price=PRICE / 2)
    assert caught.value.price == PRICE and caught.value.limit == PRICE / 2
    assert activations(sandbox) == []


def test_a_lost_get_number_answer_is_never_resent(sandbox: Sandbox) -> None:
    sandbox.inject_fault("getNumber", "reset_after_commit")
    with SmsOnlineHook() as hook, pytest.raises(OutcomeUnknownError) as caught:
        hook.get_number("tg", 0)
    assert "get_active_activations()" in str(caught.value)
    assert requests_of(sandbox, "getNumber") == 1 and len(activations(sandbox)) == 1


# ----------------------------------------------------------------------------- operators


def test_activate_pushes_id_and_number_and_a_retry_buys_nothing_more(
    sandbox: Sandbox, ti: FakeTaskInstance
) -> None:
    op = ActivateNumberOperator(task_id="activate", service="tg", country=0)
    result = op.execute(task_context(ti))
    assert ti.xcoms == {"id": result["id"], "number": result["number"]}
    again = op.execute(task_context(ti))  # a retry of the same task instance and run
    assert again == result
    assert requests_of(sandbox, "getNumber") == 1 and len(activations(sandbox)) == 1


def test_a_lost_answer_is_adopted_from_get_active_activations(rich: Sandbox, ti: FakeTaskInstance) -> None:
    rich.inject_fault("getNumber", "reset_after_commit")
    result = ActivateNumberOperator(task_id="activate", service="tg", country=0).execute(task_context(ti))
    (bought,) = activations(rich)
    assert result == {"id": bought["id"], "number": bought["number"]}
    assert requests_of(rich, "getNumber") == 1


def test_a_lost_answer_is_adopted_with_its_number_from_get_history(
    sandbox: Sandbox, ti: FakeTaskInstance
) -> None:
    # getActiveActivations masks the number (as its page's sample does); getHistory lists it whole.
    sandbox.inject_fault("getNumber", "reset_after_commit")
    result = ActivateNumberOperator(task_id="activate", service="tg", country=0).execute(task_context(ti))
    (bought,) = activations(sandbox)
    assert result == {"id": bought["id"], "number": bought["number"]}
    again = ActivateNumberOperator(task_id="activate", service="tg", country=0).execute(task_context(ti))
    assert again == result and requests_of(sandbox, "getNumber") == 1  # a retry reuses it


def test_a_lost_answer_whose_number_no_page_shows_fails_naming_the_activation(
    sandbox: Sandbox, ti: FakeTaskInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SmsOnlineHook, "get_activation_history", lambda self, start, end=None: [])
    sandbox.inject_fault("getNumber", "reset_after_commit")
    with pytest.raises(AirflowFailException) as caught:
        ActivateNumberOperator(task_id="activate", service="tg", country=0).execute(task_context(ti))
    (bought,) = activations(sandbox)
    message = str(caught.value)
    assert str(bought["id"]) in message and "masked" in message and "20 minutes" in message
    assert "not retrying" in message
    with pytest.raises(AirflowFailException):  # a retry still buys nothing
        ActivateNumberOperator(task_id="activate", service="tg", country=0).execute(task_context(ti))
    assert requests_of(sandbox, "getNumber") == 1


def test_a_failed_get_number_before_the_server_bought_lets_a_retry_buy_once(
    sandbox: Sandbox, ti: FakeTaskInstance
) -> None:
    sandbox.inject_fault("getNumber", "http_500")
    op = ActivateNumberOperator(task_id="activate", service="tg", country=0)
    with pytest.raises(OutcomeUnknownError):
        op.execute(task_context(ti))
    result = op.execute(task_context(ti))  # looks after the call's window, finds none, buys
    assert [a["id"] for a in activations(sandbox)] == [result["id"]]


def test_max_price_below_the_price_charges_nothing_and_fails_naming_both(
    sandbox: Sandbox, ti: FakeTaskInstance
) -> None:
    start = balance(sandbox)
    limit = PRICE - Decimal("0.01")
    with pytest.raises(AirflowFailException) as caught:
        ActivateNumberOperator(task_id="activate", service="tg", country=0, max_price=str(limit)).execute(
            task_context(ti)
        )
    assert str(PRICE) in str(caught.value) and str(limit) in str(caught.value)
    assert balance(sandbox) == start and requests_of(sandbox, "getNumber") == 0


def test_a_price_rise_after_the_look_up_is_refused_by_max_price(
    sandbox: Sandbox, ti: FakeTaskInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = [protocol.ActivationPrice(0, "tg", Decimal("0.01"), 5)]
    monkeypatch.setattr(SmsOnlineHook, "get_prices", lambda self, service=None, country=None: stale)
    start = balance(sandbox)
    with pytest.raises(AirflowFailException, match=r"WRONG_MAX_PRICE.*nothing was charged"):
        ActivateNumberOperator(task_id="activate", service="tg", country=0, max_price="0.05").execute(
            task_context(ti)
        )
    assert balance(sandbox) == start and activations(sandbox) == []


def test_at_or_under_max_price_the_activation_is_bought(sandbox: Sandbox, ti: FakeTaskInstance) -> None:
    result = ActivateNumberOperator(task_id="activate", service="tg", country=0, max_price=PRICE).execute(
        task_context(ti)
    )
    assert [a["id"] for a in activations(sandbox)] == [result["id"]]


def test_rent_max_price_checks_get_rent_prices_before_paying(sandbox: Sandbox, ti: FakeTaskInstance) -> None:
    start = balance(sandbox)
    with pytest.raises(AirflowFailException, match=r"costs \d.*above max_price 0.5; nothing was charged"):
        RentNumberOperator(task_id="rent", service="tg", country=0, rent_time=24, max_price="0.5").execute(
            task_context(ti)
        )
    assert balance(sandbox) == start and requests_of(sandbox, "getRentNumber") == 0


def test_a_rental_price_rise_after_the_look_up_is_refunded(
    sandbox: Sandbox, ti: FakeTaskInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = [protocol.RentPrice(0, "tg", Decimal("0.01"), 5)]
    monkeypatch.setattr(SmsOnlineHook, "get_rent_prices", lambda self, country, rent_time=None: stale)
    start = balance(sandbox)
    with pytest.raises(AirflowFailException, match=r"price rose after the look-up.*cancelled for a refund"):
        RentNumberOperator(task_id="rent", service="tg", country=0, max_price="0.05").execute(
            task_context(ti)
        )
    assert balance(sandbox) == start
    assert [r["status"] for r in sandbox.state()["rentals"]] == ["cancelled"]


def test_continue_rent_max_price_checks_the_renewal_price(sandbox: Sandbox, ti: FakeTaskInstance) -> None:
    with SmsOnlineHook() as hook:
        rental = hook.get_rent_number("tg", 0)
        price = hook.get_continue_rent_price(rental.id, 24)
    paid = balance(sandbox)
    with pytest.raises(AirflowFailException) as caught:
        ContinueRentOperator(task_id="renew", rent_id=rental.id, rent_time=24, max_price=price / 2).execute(
            task_context(ti)
        )
    assert str(price) in str(caught.value) and str(price / 2) in str(caught.value)
    assert balance(sandbox) == paid and requests_of(sandbox, "continueRentNumber") == 0


def test_cancel_operator_waits_out_the_early_window_then_refunds(
    sandbox: Sandbox, ti: FakeTaskInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = balance(sandbox)
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        sandbox.advance_clock(seconds)

    monkeypatch.setattr(hook_module, "_sleep", sleep)
    CancelActivationOperator(task_id="cancel", activation_id=activation.id).execute(task_context(ti))
    assert waits and balance(sandbox) == start
    assert activations(sandbox)[0]["status"] == "cancelled"


def test_cancel_operator_completes_an_activation_that_got_its_code(
    sandbox: Sandbox, ti: FakeTaskInstance
) -> None:
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
    post_code(sandbox, activation.id, {"code": "1111"})
    CancelActivationOperator(task_id="cancel", activation_id=activation.id).execute(task_context(ti))
    assert activations(sandbox)[0]["status"] == "completed"


def test_cancel_operator_completes_an_activation_waiting_for_another_code(
    sandbox: Sandbox, ti: FakeTaskInstance
) -> None:
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
        post_code(sandbox, activation.id, {"code": "1111"})
        hook.request_another_code(activation.id)  # STATUS_WAIT_RETRY:1111: a code came, 8 is refused
    CancelActivationOperator(task_id="cancel", activation_id=activation.id).execute(task_context(ti))
    assert activations(sandbox)[0]["status"] == "completed"


# ----------------------------------------------------------------------------- sensor and trigger


def test_sensor_pokes_until_the_code_and_pushes_it(sandbox: Sandbox, ti: FakeTaskInstance) -> None:
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
    sensor = ActivationCodeSensor(task_id="code", activation_id=activation.id, pattern=r"(\d{4})")
    assert sensor.poke(task_context(ti)) is False
    post_code(sandbox, activation.id, {"code": "9876"})
    done = sensor.poke(task_context(ti))
    assert done.is_done and done.xcom_value == {"code": "9876", "text": None}  # type: ignore[union-attr]
    assert ti.xcoms == {"code": "9876", "text": None}


def test_sensor_reads_the_sms_text_with_get_status_v2(rich: Sandbox, ti: FakeTaskInstance) -> None:
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
    post_code(rich, activation.id, {"code": "x", "text": "Your login code: 246810"})
    sensor = ActivationCodeSensor(
        task_id="code", activation_id=activation.id, pattern=r"code: (\d+)", sms_text=True
    )
    done = sensor.poke(task_context(ti))
    assert done.xcom_value == {"code": "246810", "text": "Your login code: 246810"}  # type: ignore[union-attr]


def test_with_sms_text_a_cancelled_activation_still_fails_the_sensor_and_ends_the_trigger(
    rich: Sandbox, ti: FakeTaskInstance
) -> None:
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
        rich.advance_clock(EARLY_CANCEL_SECONDS + 1)
        hook.cancel_activation(activation.id)  # getStatusV2 now shows no code, and no cancel either
    sensor = ActivationCodeSensor(task_id="code", activation_id=activation.id, sms_text=True)
    with pytest.raises(AirflowFailException, match="cancelled or ended before a code"):
        sensor.poke(task_context(ti))
    (event,) = _run(ActivationCodeTrigger(activation.id, poll_interval=1, sms_text=True))
    assert event["status"] == "cancelled"


def test_trigger_reads_the_sms_text_with_get_status_v2_once_the_code_shows(rich: Sandbox) -> None:
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
    post_code(rich, activation.id, {"code": "x", "text": "Your login code: 246810"})
    trigger = ActivationCodeTrigger(activation.id, pattern=r"code: (\d+)", poll_interval=1, sms_text=True)
    (event,) = _run(trigger)
    assert (event["code"], event["text"]) == ("246810", "Your login code: 246810")


def test_sensor_fails_without_retry_when_the_activation_was_cancelled(
    sandbox: Sandbox, ti: FakeTaskInstance
) -> None:
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
        sandbox.advance_clock(EARLY_CANCEL_SECONDS + 1)
        hook.cancel_activation(activation.id)
    with pytest.raises(AirflowFailException, match="cancelled or ended before a code"):
        ActivationCodeSensor(task_id="code", activation_id=activation.id).poke(task_context(ti))


def test_a_timed_out_wait_cancels_the_activation_for_a_refund(sandbox: Sandbox, ti: FakeTaskInstance) -> None:
    start = balance(sandbox)
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
    sandbox.advance_clock(EARLY_CANCEL_SECONDS + 1)
    sensor = ActivationCodeSensor(task_id="code", activation_id=activation.id, deferrable=True, timeout=60)
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute_complete(task_context(ti), {"status": "timeout", "message": "no code"})
    assert balance(sandbox) == start and activations(sandbox)[0]["status"] == "cancelled"


def test_the_timeout_event_cancels_the_activation_once(sandbox: Sandbox, ti: FakeTaskInstance) -> None:
    """The trigger's "timeout" event, resumed as Airflow does (resume_execution), ends it once."""
    start = balance(sandbox)
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
    sandbox.advance_clock(EARLY_CANCEL_SECONDS + 1)
    sensor = ActivationCodeSensor(task_id="code", activation_id=activation.id, deferrable=True, timeout=60)
    event = {"status": "timeout", "message": "no code"}
    with pytest.raises(AirflowSensorTimeout):
        sensor.resume_execution("execute_complete", {"event": event}, task_context(ti))
    assert balance(sandbox) == start and activations(sandbox)[0]["status"] == "cancelled"
    assert requests_of(sandbox, "getStatus") == 1  # end_activation ran once


def _resume_after_a_trigger_timeout(
    sensor: BaseSensorOperator, ti: FakeTaskInstance, error: str = "Trigger timeout"
) -> None:
    """Resume as Airflow does when the deferral's timeout passed before the trigger's event."""
    from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR

    sensor.resume_execution(TRIGGER_FAIL_REPR, {"error": error}, task_context(ti))


# the scheduler stores TriggerFailureReason.TRIGGER_TIMEOUT; the task reads it back from JSON, a str
@pytest.mark.parametrize("as_enum", [False, True])
def test_a_trigger_timeout_from_the_scheduler_cancels_the_activation_once(
    sandbox: Sandbox, ti: FakeTaskInstance, as_enum: bool
) -> None:
    from airflow.sdk.bases.operator import TriggerFailureReason

    start = balance(sandbox)
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
    sandbox.advance_clock(EARLY_CANCEL_SECONDS + 1)
    sensor = ActivationCodeSensor(task_id="code", activation_id=activation.id, deferrable=True, timeout=60)
    error = TriggerFailureReason.TRIGGER_TIMEOUT if as_enum else "Trigger timeout"
    with pytest.raises(AirflowSensorTimeout):
        _resume_after_a_trigger_timeout(sensor, ti, error)
    assert balance(sandbox) == start and activations(sandbox)[0]["status"] == "cancelled"
    assert requests_of(sandbox, "getStatus") == 1  # end_activation ran once


def test_a_trigger_timeout_with_soft_fail_cancels_the_activation_as_airflow_sensors_end(
    sandbox: Sandbox, ti: FakeTaskInstance
) -> None:
    """soft_fail ends the task as Airflow's own sensor does: skipped from Airflow 3.2, while 3.1's
    resume_execution raises AirflowSensorTimeout whatever soft_fail says."""
    start = balance(sandbox)
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
    sandbox.advance_clock(EARLY_CANCEL_SECONDS + 1)
    sensor = ActivationCodeSensor(
        task_id="code", activation_id=activation.id, deferrable=True, timeout=60, soft_fail=True
    )
    with pytest.raises(Exception) as airflows:  # what Airflow's sensor raises (classes moved in 3.2)
        _resume_after_a_trigger_timeout(BaseSensorOperator(task_id="plain", soft_fail=True), ti)
    with pytest.raises(Exception) as raised:
        _resume_after_a_trigger_timeout(sensor, ti)
    assert type(raised.value) is type(airflows.value)
    assert balance(sandbox) == start and activations(sandbox)[0]["status"] == "cancelled"


def test_a_trigger_failure_from_the_scheduler_keeps_the_activation(
    sandbox: Sandbox, ti: FakeTaskInstance
) -> None:
    """Only a timeout cancels: a failed trigger fails the task and leaves the activation waiting."""
    from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason

    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
    sensor = ActivationCodeSensor(task_id="code", activation_id=activation.id, deferrable=True, timeout=60)
    with pytest.raises(Exception) as raised:  # TaskDeferralError: airflow.sdk.exceptions from 3.2
        sensor.resume_execution(
            TRIGGER_FAIL_REPR, {"error": TriggerFailureReason.TRIGGER_FAILURE}, task_context(ti)
        )
    assert type(raised.value).__name__ == "TaskDeferralError"
    assert activations(sandbox)[0]["status"] == "waiting" and requests_of(sandbox, "getStatus") == 0


def test_without_cancel_on_timeout_the_activation_is_kept(sandbox: Sandbox, ti: FakeTaskInstance) -> None:
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
    sandbox.advance_clock(EARLY_CANCEL_SECONDS + 1)
    sensor = ActivationCodeSensor(task_id="code", activation_id=activation.id, cancel_on_timeout=False)
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute_complete(task_context(ti), {"status": "timeout", "message": "no code"})
    assert activations(sandbox)[0]["status"] == "waiting"


def _run(trigger: ActivationCodeTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(asyncio.wait_for(collect(), 20))  # a trigger that never ends fails the test


def test_trigger_fires_once_with_the_code(sandbox: Sandbox) -> None:
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
    post_code(sandbox, activation.id, {"code": "5555"})
    trigger = ActivationCodeTrigger(activation.id, poll_interval=1)
    cls, kwargs = trigger.serialize()
    assert cls == "airflow_provider_smsonline.triggers.activation.ActivationCodeTrigger"
    assert ActivationCodeTrigger(**kwargs).serialize() == (cls, kwargs)
    assert _run(trigger) == [
        {"status": "success", "activation_id": activation.id, "code": "5555", "text": None}
    ]


def test_trigger_reports_a_cancelled_activation_and_an_unknown_one(sandbox: Sandbox) -> None:
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
        sandbox.advance_clock(EARLY_CANCEL_SECONDS + 1)
        hook.cancel_activation(activation.id)
    (event,) = _run(ActivationCodeTrigger(activation.id, poll_interval=1))
    assert event["status"] == "cancelled"
    (event,) = _run(ActivationCodeTrigger(activation.id + 99_999, poll_interval=1))
    assert (event["status"], event["code"]) == ("error", "NO_ACTIVATION")


def test_deferrable_sensor_defers_to_the_activation_trigger(sandbox: Sandbox, ti: FakeTaskInstance) -> None:
    from airflow_provider_smsonline._compat import TaskDeferred

    sensor = ActivationCodeSensor(task_id="code", activation_id=7, deferrable=True, timeout=300)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(task_context(ti))
    assert isinstance(deferred.value.trigger, ActivationCodeTrigger)
    result = sensor.execute_complete(task_context(ti), {"status": "success", "code": "1", "text": None})
    assert result == {"code": "1", "text": None} and ti.xcoms["code"] == "1"


# ----------------------------------------------------------------------------- sandbox control, the key


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "code"),
        ({"code": ""}, "code"),
        ({"code": 5}, "code"),
        ({"code": "1", "text": 3}, "text"),
        ({"code": "1", "x": 1}, "x"),
    ],
)
def test_the_code_endpoint_refuses_bad_input_naming_the_field(
    sandbox: Sandbox, body: dict[str, Any], field: str
) -> None:
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
    response = post_code(sandbox, activation.id, body)
    assert response.status_code == 400 and field in response.text
    assert activations(sandbox)[0]["codes"] == []


def test_the_code_endpoint_answers_404_and_409(sandbox: Sandbox) -> None:
    assert post_code(sandbox, 1, {"code": "1"}).status_code == 404
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
        hook_complete = post_code(sandbox, activation.id, {"code": "1"})
        assert hook_complete.status_code == 200
        hook.complete_activation(activation.id)
    assert post_code(sandbox, activation.id, {"code": "2"}).status_code == 409


def test_an_unused_activation_is_refunded_when_its_window_ends(sandbox: Sandbox) -> None:
    start = balance(sandbox)
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
        sandbox.advance_clock(21 * 60)
        assert hook.get_status(activation.id).status == protocol.STATUS_CANCEL
    assert balance(sandbox) == start


def test_the_key_never_reaches_logs_errors_or_xcom(
    sandbox: Sandbox, ti: FakeTaskInstance, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox.inject_fault("getNumber", "http_500")
    with pytest.raises(OutcomeUnknownError) as caught:
        ActivateNumberOperator(task_id="activate", service="tg", country=0).execute(task_context(ti))
    ti2 = FakeTaskInstance(task_id="activate2")
    ActivateNumberOperator(task_id="activate2", service="tg", country=0).execute(task_context(ti2))
    assert_no_key(str(caught.value))
    assert_no_key(repr(caught.value.__cause__) + repr(caught.value.__context__))
    assert_no_key(caplog.text)
    assert_no_key(repr(ti2.xcoms))
