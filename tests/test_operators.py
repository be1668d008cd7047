# The operators as a specification: arguments checked when the DAG is parsed (or rendered),
# what a task returns and pushes, and which failures fail the task for good and which retry.
from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
import requests_mock as requests_mock_module

from airflow_provider_smsonline._compat import AirflowFailException
from airflow_provider_smsonline.exceptions import (
    NoNumbersError,
    OutcomeUnknownError,
    ServerError,
    SmsOnlineError,
)
from airflow_provider_smsonline.operators.rent import (
    CancelRentOperator,
    ContinueRentOperator,
    FinishRentOperator,
    RentNumberOperator,
)
from tests.conftest import CANARY_KEY, FakeTaskInstance, action_url, sent_actions, sent_query, task_context

RENTAL = {
    "status": "success",
    "phone": {"id": 1049, "endDate": "2025-05-10T12:34:56", "number": "79999876543"},
}
EXTENDED = {
    "status": "success",
    "phone": {"id": 1049, "endDate": "2025-05-11T12:34:56", "number": "79999876543"},
}
EMPTY_LIST = {"status": "success", "values": []}
HTML_502 = "<html><body><h1>502 Bad Gateway</h1></body></html>"
ALLOWED_RENT_TIMES = "4, 8, 12, 24, 72, 168, 360, 720, 2160"


def rent(**changes: Any) -> RentNumberOperator:
    args: dict[str, Any] = {"task_id": "rent", "service": "tg", "country": 0}
    args.update(changes)
    return RentNumberOperator(**args)


@pytest.fixture
def context(task_instance: FakeTaskInstance, memory_variables: dict[str, object], smsonline_conn: str) -> Any:
    """A task's context: the fake task instance, the ledger in memory, the mocked connection."""
    return {"ti": task_instance}


def answer(mocker: requests_mock_module.Mocker, action: str, body: object = None, **kwargs: Any) -> Any:
    """Make the mocked server answer ``action`` with ``body`` (JSON-encoded unless a str)."""
    if body is not None:
        kwargs["text"] = body if isinstance(body, str) else json.dumps(body)
    return mocker.get(action_url(action), **kwargs)


# ----------------------------------------------------------------------------- validation at parse

CONSTRUCTION_ERRORS: list[tuple[str, Callable[[], object], str]] = [
    (
        "service",
        lambda: rent(service=""),
        "service must be a non-empty string of at most 64 characters (a service code such as 'tg')",
    ),
    ("country", lambda: rent(country=-1), "country must be a non-negative integer (a country id such as 0)"),
    ("country-text", lambda: rent(country="ru"), "country must be a non-negative integer"),
    (
        "operator",
        lambda: rent(operator=5),
        "operator must be a string of at most 64 characters (an operator code) or None",
    ),
    ("rent_time", lambda: rent(rent_time=5), f"rent_time must be one of {ALLOWED_RENT_TIMES} (hours)"),
    ("webhook_url", lambda: rent(webhook_url="ftp://x/h"), "webhook_url must be an http:// or https:// URL"),
    (
        "continue-rent_id",
        lambda: ContinueRentOperator(task_id="c", rent_id="abc", rent_time=24),
        "rent_id must be a non-negative integer",
    ),
    (
        "continue-rent_time",
        lambda: ContinueRentOperator(task_id="c", rent_id=1, rent_time=48),
        f"rent_time must be one of {ALLOWED_RENT_TIMES}",
    ),
    (
        "continue-rent_time-missing",
        lambda: ContinueRentOperator(task_id="c", rent_id=1, rent_time=None),  # type: ignore[arg-type]
        f"rent_time is required: one of {ALLOWED_RENT_TIMES}",
    ),
    ("finish-rent_id", lambda: FinishRentOperator(task_id="f", rent_id=-3), "rent_id must be a non-negative"),
    (
        "cancel-rent_id",
        lambda: CancelRentOperator(task_id="c", rent_id=None),  # type: ignore[arg-type]
        "rent_id must be a non-negative",
    ),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("field", "make", "message"), CONSTRUCTION_ERRORS, ids=[c[0] for c in CONSTRUCTION_ERRORS]
)
def test_bad_argument_fails_at_construction_naming_the_field_and_allowed_values(
    field: str, make: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_rent_number_template_fields_are_the_six_arguments() -> None:
    assert set(RentNumberOperator.template_fields) == {
        "service",
        "country",
        "operator",
        "rent_time",
        "webhook_url",
        "max_price",
    }


def test_templated_arguments_are_not_checked_at_construction() -> None:
    operator = rent(
        service="{{ params.service }}",
        country="{{ params.country }}",
        operator="{{ params.operator }}",
        rent_time="{% if true %}{{ params.hours }}{% endif %}",
        webhook_url="{{ params.url }}",
    )
    assert operator.country == "{{ params.country }}"


@pytest.mark.parametrize(
    ("field", "rendered", "message"),
    [
        ("service", "   ", "service must be a non-empty string"),
        ("country", "ru", "country must be a non-negative integer"),
        ("rent_time", "7", f"rent_time must be one of {ALLOWED_RENT_TIMES}"),
        ("webhook_url", "not a url", "webhook_url must be an http:// or https:// URL"),
    ],
)
def test_templated_argument_that_renders_wrong_fails_the_task_naming_the_field(
    context: Any, requests_mock: requests_mock_module.Mocker, field: str, rendered: str, message: str
) -> None:
    operator = rent(**{field: "{{ params.value }}"})
    operator.render_template_fields({"params": {"value": rendered}})  # type: ignore[arg-type]
    with pytest.raises(AirflowFailException, match=re.escape(message)) as failure:
        operator.execute(context)
    assert "after rendering" in str(failure.value)
    assert requests_mock.call_count == 0


def test_templated_arguments_that_render_right_are_sent(
    context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", EMPTY_LIST)
    rent_call = answer(requests_mock, "getRentNumber", RENTAL)
    operator = rent(service="{{ params.s }}", country="{{ params.c }}", rent_time="{{ params.h }}")
    operator.render_template_fields({"params": {"s": "wa", "c": 12, "h": 24}})  # type: ignore[arg-type]
    operator.execute(context)
    query = sent_query(rent_call.last_request)
    assert (query["service"], query["country"], query["rent_time"]) == ("wa", "12", "24")


# ----------------------------------------------------------------------------- RentNumberOperator


def test_rent_number_returns_id_number_and_iso_end_date(
    context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", EMPTY_LIST)
    answer(requests_mock, "getRentNumber", RENTAL)
    result = rent().execute(context)
    assert result == {"id": 1049, "number": "79999876543", "end_date": "2025-05-10T12:34:56+00:00"}
    assert datetime.fromisoformat(result["end_date"]) == datetime(
        2025, 5, 10, 12, 34, 56, tzinfo=timezone.utc
    )


def test_rent_number_pushes_id_number_and_end_date_as_xcom_keys(
    context: Any, task_instance: FakeTaskInstance, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", EMPTY_LIST)
    answer(requests_mock, "getRentNumber", RENTAL)
    rent().execute(context)
    assert task_instance.xcoms == {
        "id": 1049,
        "number": "79999876543",
        "end_date": "2025-05-10T12:34:56+00:00",
    }


def test_rent_number_sends_the_operator_arguments(
    context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", EMPTY_LIST)
    rent_call = answer(requests_mock, "getRentNumber", RENTAL)
    rent(service="tg", country=7, operator="mts", rent_time=168, webhook_url="https://h.example/x").execute(
        context
    )
    assert sent_query(rent_call.last_request) == {
        "action": "getRentNumber",
        "api_key": CANARY_KEY,
        "service": "tg",
        "country": "7",
        "operator": "mts",
        "rent_time": "168",
        "uri": "https://h.example/x",
        "url": "https://h.example/x",
    }


def test_rent_number_retry_after_success_reuses_the_rental_without_paying_again(
    context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    listed = {
        "status": "success",
        "values": [{"id": "1049", "phone": "79999876543", "price": "1", "hours": "4"}],
    }
    requests_mock.get(
        action_url("getRentList"), [{"text": json.dumps(EMPTY_LIST)}, {"text": json.dumps(listed)}]
    )
    answer(requests_mock, "getRentNumber", RENTAL)
    first = rent().execute(context)
    second = rent().execute(context)
    assert first == second
    assert sent_actions(requests_mock).count("getRentNumber") == 1


def test_rent_number_cleared_after_its_rental_ended_rents_anew(
    context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", EMPTY_LIST)  # the first rental is no longer listed
    answer(requests_mock, "getRentNumber", RENTAL)
    rent().execute(context)
    rent().execute(context)
    assert sent_actions(requests_mock).count("getRentNumber") == 2


FATAL_CODES = [
    "BAD_KEY",
    "BAD_ACTION",
    "BAD_SERVICE",
    "BAD_COUNTRY",
    "INVALID_TIME",
    "ACCOUNT_INACTIVE",
    "BANNED:'2025-12-31 23:59:59'",
    "ACCOUNT_BLOCKED",
    "NO_BALANCE",
]


@pytest.mark.parametrize("json_style", [False, True], ids=["plain", "json"])
@pytest.mark.parametrize("code", FATAL_CODES)
def test_rent_number_error_only_a_person_can_fix_fails_without_retry(
    context: Any, requests_mock: requests_mock_module.Mocker, code: str, json_style: bool
) -> None:
    answer(requests_mock, "getRentList", EMPTY_LIST)
    body = json.dumps({"status": "error", "message": code}) if json_style else code
    answer(requests_mock, "getRentNumber", body)
    with pytest.raises(AirflowFailException) as failure:
        rent().execute(context)
    assert code.split(":")[0] in str(failure.value)
    assert "not retrying" in str(failure.value)


def test_rent_number_account_failure_names_the_connection(
    context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", EMPTY_LIST)
    answer(requests_mock, "getRentNumber", "BAD_KEY")
    with pytest.raises(AirflowFailException, match="connection 'smsonline_default'"):
        rent().execute(context)


@pytest.mark.parametrize(
    ("kwargs", "error_class"),
    [
        ({"text": "NO_NUMBERS"}, NoNumbersError),
        ({"text": '{"status": "error", "msg": "NO_NUMBERS"}'}, NoNumbersError),
        ({"text": "ERROR_SQL"}, ServerError),
        ({"text": "SQL_ERROR", "status_code": 500}, ServerError),
        ({"text": HTML_502, "status_code": 502}, OutcomeUnknownError),
        ({"text": "", "status_code": 503}, OutcomeUnknownError),
    ],
)
def test_rent_number_passing_failure_raises_a_retryable_error(
    context: Any,
    requests_mock: requests_mock_module.Mocker,
    kwargs: dict[str, Any],
    error_class: type[Exception],
) -> None:
    answer(requests_mock, "getRentList", EMPTY_LIST)
    answer(requests_mock, "getRentNumber", **kwargs)
    with pytest.raises(SmsOnlineError) as raised:
        rent().execute(context)
    assert isinstance(raised.value, error_class)
    assert not isinstance(raised.value, AirflowFailException)
    assert sent_actions(requests_mock).count("getRentNumber") == 1


def test_rent_number_retry_after_a_lost_answer_adopts_the_rental_instead_of_paying_again(
    context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", EMPTY_LIST)
    answer(requests_mock, "getRentNumber", status_code=502, text=HTML_502)
    with pytest.raises(OutcomeUnknownError):
        rent().execute(context)
    answer(requests_mock, "getRentList", {"status": "success", "values": [{"id": "77", "phone": "7999"}]})
    result = rent().execute(context)  # the task's retry
    assert result["id"] == 77
    assert sent_actions(requests_mock).count("getRentNumber") == 1


def test_rent_number_ambiguous_recovery_fails_naming_the_candidates(
    context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    from airflow_provider_smsonline.ledger import ChargeLedger, Listed, Pending

    started = datetime(2025, 1, 1, tzinfo=timezone.utc)
    ChargeLedger.for_context(context).write(  # an earlier try's lost answer
        Pending(started=started, until=started, snapshot=(Listed(1, "1"),), rent_time=None)
    )
    values = [{"id": "1", "phone": "1"}, {"id": "501", "phone": "2"}, {"id": "502", "phone": "3"}]
    answer(requests_mock, "getRentList", {"status": "success", "values": values})
    answer(requests_mock, "getRentNumber", RENTAL)
    with pytest.raises(AirflowFailException) as failure:
        rent().execute(context)
    assert "501" in str(failure.value) and "502" in str(failure.value)
    assert "getRentNumber" not in sent_actions(requests_mock)


def test_rent_number_failing_after_paying_cancels_the_rental_for_a_refund(
    context: Any,
    task_instance: FakeTaskInstance,
    requests_mock: requests_mock_module.Mocker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer(requests_mock, "getRentList", EMPTY_LIST)
    answer(requests_mock, "getRentNumber", RENTAL)
    cancel = answer(requests_mock, "setRentStatus", {"status": "success"})

    def broken_push(key: str, value: object) -> None:
        raise RuntimeError("XCom backend is down")

    monkeypatch.setattr(task_instance, "xcom_push", broken_push)
    with pytest.raises(RuntimeError, match="XCom backend is down"):
        rent().execute(context)
    assert sent_query(cancel.last_request) == {
        "action": "setRentStatus",
        "api_key": CANARY_KEY,
        "id": "1049",
        "status": "2",
    }


def test_rent_number_failing_after_paying_keeps_the_rental_when_asked(
    context: Any,
    task_instance: FakeTaskInstance,
    requests_mock: requests_mock_module.Mocker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer(requests_mock, "getRentList", EMPTY_LIST)
    answer(requests_mock, "getRentNumber", RENTAL)

    def broken_push(key: str, value: object) -> None:
        raise RuntimeError("XCom backend is down")

    monkeypatch.setattr(task_instance, "xcom_push", broken_push)
    with pytest.raises(RuntimeError):
        rent(cancel_on_failure=False).execute(context)
    assert "setRentStatus" not in sent_actions(requests_mock)


def test_rent_number_with_a_bad_connection_fails_without_retry(
    task_instance: FakeTaskInstance, memory_variables: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMSONLINE_DEFAULT",
        json.dumps({"conn_type": "smsonline", "host": "ftp://nope", "password": CANARY_KEY}),
    )
    with pytest.raises(AirflowFailException, match="connection host must be"):
        rent().execute(task_context(task_instance))


# ----------------------------------------------------------------------------- ContinueRentOperator


def test_continue_rent_returns_and_pushes_the_new_end_date(
    context: Any, task_instance: FakeTaskInstance, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(
        requests_mock,
        "getRentList",
        {"status": "success", "values": [{"id": "1049", "phone": "79999876543"}]},
    )
    extend = answer(requests_mock, "continueRentNumber", EXTENDED)
    result = ContinueRentOperator(task_id="extend", rent_id="1049", rent_time="24").execute(context)
    assert result == {"id": 1049, "number": "79999876543", "end_date": "2025-05-11T12:34:56+00:00"}
    assert task_instance.xcoms["end_date"] == "2025-05-11T12:34:56+00:00"
    assert sent_query(extend.last_request)["rent_time"] == "24"


def test_continue_rent_of_an_expired_rental_fails_without_retry(
    context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", EMPTY_LIST)
    answer(requests_mock, "continueRentNumber", "RENT_DIE")
    with pytest.raises(AirflowFailException, match="RENT_DIE"):
        ContinueRentOperator(task_id="extend", rent_id=1049, rent_time=24).execute(context)


def test_continue_rent_template_fields_are_its_arguments() -> None:
    assert set(ContinueRentOperator.template_fields) == {"rent_id", "rent_time", "max_price"}


# ----------------------------------------------------------------------------- Finish / Cancel


@pytest.mark.parametrize(
    "body", ['{"status": "success"}', "ALREADY_FINISH", '{"status":"error","msg":"ALREADY_FINISH"}']
)
def test_finish_rent_succeeds_also_when_already_finished(
    context: Any, requests_mock: requests_mock_module.Mocker, body: str
) -> None:
    finish = answer(requests_mock, "setRentStatus", body)
    FinishRentOperator(task_id="finish", rent_id="1049").execute(context)
    assert sent_query(finish.last_request) == {
        "action": "setRentStatus",
        "api_key": CANARY_KEY,
        "id": "1049",
        "status": "1",
    }


def test_finish_rent_of_an_unknown_rental_fails_without_retry(
    context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "setRentStatus", "NO_ID_RENT")
    with pytest.raises(AirflowFailException, match="NO_ID_RENT"):
        FinishRentOperator(task_id="finish", rent_id=1).execute(context)


def test_finish_rent_server_failure_is_retryable(
    context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "setRentStatus", HTML_502, status_code=502)
    with pytest.raises(ServerError) as raised:
        FinishRentOperator(task_id="finish", rent_id=1).execute(context)
    assert not isinstance(raised.value, AirflowFailException)


@pytest.mark.parametrize("body", ['{"status": "success"}', "ALREADY_CANCEL"])
def test_cancel_rent_succeeds_also_when_already_cancelled(
    context: Any, requests_mock: requests_mock_module.Mocker, body: str
) -> None:
    cancel = answer(requests_mock, "setRentStatus", body)
    CancelRentOperator(task_id="cancel", rent_id=1049).execute(context)
    assert sent_query(cancel.last_request)["status"] == "2"
    assert requests_mock.call_count == 1


@pytest.mark.parametrize("json_style", [False, True])
def test_cancel_rent_after_the_refund_window_fails_without_retry(
    context: Any, requests_mock: requests_mock_module.Mocker, json_style: bool
) -> None:
    answer(
        requests_mock,
        "setRentStatus",
        '{"status":"error","message":"CANT_CANCEL"}' if json_style else "CANT_CANCEL",
    )
    with pytest.raises(AirflowFailException, match="CANT_CANCEL"):
        CancelRentOperator(task_id="cancel", rent_id=1049).execute(context)
    assert requests_mock.call_count == 1


def test_cancel_rent_after_the_refund_window_finishes_instead_when_asked(
    context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(
        action_url("setRentStatus"), [{"text": "CANT_CANCEL"}, {"text": '{"status": "success"}'}]
    )
    CancelRentOperator(task_id="cancel", rent_id=1049, finish_if_too_late=True).execute(context)
    assert [sent_query(r)["status"] for r in requests_mock.request_history] == ["2", "1"]


def test_default_args_poke_interval_reaches_both_sensors_and_poll_interval_is_the_fallback() -> None:
    from airflow.sdk import DAG

    from airflow_provider_smsonline.sensors.activation import ActivationCodeSensor
    from airflow_provider_smsonline.sensors.rent import RentSmsSensor

    with DAG(dag_id="defaults_poke", schedule=None, default_args={"poke_interval": 60}):
        wait = RentSmsSensor(task_id="wait", rent_id=1)
        code = ActivationCodeSensor(task_id="code", activation_id=1)
        own = RentSmsSensor(task_id="own", rent_id=1, poke_interval=5)
    assert (wait.poke_interval, code.poke_interval, own.poke_interval) == (60, 60, 5)
    fallback = RentSmsSensor(task_id="w", rent_id=1, poll_interval=3)
    assert (wait.poll_interval, fallback.poke_interval) == (10, 3)


def test_a_decimal_max_price_is_checked_at_dag_parse() -> None:
    from decimal import Decimal

    with pytest.raises(ValueError, match="max_price"):
        RentNumberOperator(task_id="rent", service="tg", country=0, max_price=Decimal("-1"))
    assert RentNumberOperator(task_id="ok", service="tg", country=0, max_price=Decimal("2.5")).max_price


def test_default_args_fill_the_arguments_every_operator_and_sensor_inherits() -> None:
    from airflow.sdk import DAG

    from airflow_provider_smsonline.operators.activation import ActivateNumberOperator
    from airflow_provider_smsonline.sensors.rent import RentSmsSensor

    defaults = {"smsonline_conn_id": "smsonline_prod", "max_price": 5, "poll_interval": 3, "country": 7}
    with DAG(dag_id="defaults", schedule=None, default_args=defaults):
        rent = RentNumberOperator(task_id="rent", service="tg")
        activate = ActivateNumberOperator(task_id="activate", service="tg")
        wait = RentSmsSensor(task_id="wait", rent_id=1)
    assert (rent.smsonline_conn_id, rent.max_price, rent.country) == ("smsonline_prod", 5, 7)
    assert (activate.smsonline_conn_id, activate.max_price, activate.country) == ("smsonline_prod", 5, 7)
    assert (wait.smsonline_conn_id, wait.poll_interval) == ("smsonline_prod", 3.0)
