# The provider's metrics as the configured Stats backend receives them: names, tags and values for
# each call site, recorded by a stand-in for Airflow's Stats (the real StatsD path is
# test_account_page.py's). No Airflow process, no server.
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import requests_mock as requests_mock_module

from airflow_provider_smsonline import metrics
from airflow_provider_smsonline.exceptions import AccountError, NoNumbersError
from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.operators.activation import (
    ActivateNumberOperator,
    CancelActivationOperator,
    CompleteActivationOperator,
)
from airflow_provider_smsonline.operators.rent import (
    CancelRentOperator,
    ContinueRentOperator,
    FinishRentOperator,
    RentNumberOperator,
)
from airflow_provider_smsonline.protocol import STATUS_OK, ActivationStatus, Sms
from airflow_provider_smsonline.sandbox import Sandbox
from airflow_provider_smsonline.triggers.activation import ActivationCodeTrigger
from airflow_provider_smsonline.triggers.events import SmsReceivedTrigger
from airflow_provider_smsonline.triggers.rent import RentSmsTrigger
from tests.conftest import CANARY_FORMS, action_url
from tests.test_events import clock, conn, deliver, records, sandbox
from tests.test_events import rent as rent_number

__all__ = ["clock", "conn", "records", "sandbox"]  # the asset watch's fixtures, from test_events

RENTAL = {
    "status": "success",
    "phone": {"id": 1049, "endDate": "2025-05-10T12:34:56", "number": "79999876543"},
}
NUMBER = "79999876543"
EMPTY_LIST = {"status": "success", "values": []}
LISTED = {"status": "success", "values": [{"id": "1049", "phone": NUMBER, "price": "2.5", "hours": "4"}]}


class Recorder:
    """Airflow's Stats, as far as the provider uses it: every call kept as (method, name, value, tags)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, float, dict[str, str] | None]] = []

    def incr(
        self, stat: str, count: float = 1, rate: float = 1, *, tags: dict[str, str] | None = None
    ) -> None:
        self.sent.append(("incr", stat, count, tags))

    def gauge(self, stat: str, value: float, rate: float = 1, *, tags: dict[str, str] | None = None) -> None:
        self.sent.append(("gauge", stat, value, tags))

    def timing(self, stat: str, dt: float, *, tags: dict[str, str] | None = None) -> None:
        self.sent.append(("timing", stat, dt, tags))

    def named(self, name: str) -> list[tuple[str, str, float, dict[str, str] | None]]:
        return [entry for entry in self.sent if entry[1] == name]


@pytest.fixture
def stats(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(metrics, "_stats", recorder)
    return recorder


@pytest.fixture
def context(task_instance: Any, memory_variables: dict[str, object], smsonline_conn: str) -> Any:
    return {"ti": task_instance}


def answer(mocker: requests_mock_module.Mocker, action: str, body: object, **kwargs: Any) -> Any:
    text = body if isinstance(body, str) else json.dumps(body)
    return mocker.get(action_url(action), text=text, **kwargs)


# ----------------------------------------------------------------------------- the lookup


def test_stats_are_the_task_sdks_observability_stats_on_airflow_3_3(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.observability.stats import Stats

    monkeypatch.setattr(metrics, "_stats", None)
    assert metrics._lookup() is Stats


def test_a_failing_stats_backend_never_fails_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("no backend")

    monkeypatch.setattr(metrics, "_stats", Broken())
    metrics.api_call("getBalance", 0.1)
    metrics.charged("rental", "dag", Decimal(1))


# ----------------------------------------------------------------------------- the hook


def test_each_api_call_is_counted_and_timed_by_action_with_a_flat_name_for_plain_statsd(
    stats: Recorder, smsonline_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getBalance", "ACCESS_BALANCE:12.50")
    with SmsOnlineHook() as hook:
        hook.get_balance()
    assert stats.named(metrics.API_CALLS) == [("incr", metrics.API_CALLS, 1, {"action": "getBalance"})]
    assert stats.named(metrics.API_CALLS + ".getBalance") == [
        ("incr", "smsonline.api.calls.getBalance", 1, None)
    ]
    ((method, _, millis, tags),) = stats.named(metrics.API_DURATION)
    assert (method, tags) == ("timing", {"action": "getBalance"}) and millis >= 0
    assert stats.named(metrics.API_ERRORS) == []


def test_the_balance_is_a_gauge_tagged_with_the_connection_each_time_it_is_read(
    stats: Recorder, smsonline_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getBalance", "ACCESS_BALANCE:12.50")
    with SmsOnlineHook() as hook:
        hook.get_balance()
        hook.get_balance()
    assert stats.named(metrics.BALANCE) == [("gauge", metrics.BALANCE, 12.5, {"conn_id": smsonline_conn})] * 2
    assert (
        stats.named("smsonline.balance.smsonline_default")
        == [("gauge", "smsonline.balance.smsonline_default", 12.5, None)] * 2
    )


def test_a_failed_call_is_counted_as_an_error_with_the_apis_code(
    stats: Recorder, smsonline_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentNumber", "NO_NUMBERS")
    with SmsOnlineHook() as hook, pytest.raises(NoNumbersError):
        hook.get_rent_number("tg", 0)
    assert stats.named(metrics.API_ERRORS) == [
        ("incr", metrics.API_ERRORS, 1, {"action": "getRentNumber", "code": "NO_NUMBERS"})
    ]
    assert stats.named("smsonline.api.errors.getRentNumber.NO_NUMBERS")


def test_an_error_code_that_is_not_a_code_is_tagged_other(stats: Recorder) -> None:
    error = NoNumbersError("x", code=f"+{NUMBER} sent {CANARY_FORMS[0]}")
    metrics.api_call("getRentNumber", 0.2, error)
    assert stats.named(metrics.API_ERRORS)[0][3] == {"action": "getRentNumber", "code": "other"}


# ----------------------------------------------------------------------------- charges and spend


def test_a_rental_sends_its_charge_and_its_listed_price_as_spend_tagged_with_kind_and_dag(
    stats: Recorder, context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(
        action_url("getRentList"), [{"text": json.dumps(EMPTY_LIST)}, {"text": json.dumps(LISTED)}]
    )
    answer(requests_mock, "getRentNumber", RENTAL)
    operator = RentNumberOperator(task_id="rent", service="tg", country=0)
    operator.execute(context)
    tags = {"kind": "rental", "dag_id": operator.dag_id}
    assert stats.named(metrics.CHARGES) == [("incr", metrics.CHARGES, 1, tags)]
    assert stats.named(metrics.SPEND) == [("incr", metrics.SPEND, 2.5, tags)]
    assert stats.named(f"smsonline.spend.rental.{operator.dag_id}") == [
        ("incr", f"smsonline.spend.rental.{operator.dag_id}", 2.5, None)
    ]


def test_a_retry_that_finds_its_earlier_rental_sends_no_second_charge(
    stats: Recorder, context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(
        action_url("getRentList"), [{"text": json.dumps(EMPTY_LIST)}, {"text": json.dumps(LISTED)}]
    )
    answer(requests_mock, "getRentNumber", RENTAL)
    RentNumberOperator(task_id="rent", service="tg", country=0).execute(context)
    RentNumberOperator(task_id="rent", service="tg", country=0).execute(context)
    assert len(stats.named(metrics.CHARGES)) == 1 and len(stats.named(metrics.SPEND)) == 1


def test_a_price_that_cannot_be_read_leaves_out_the_spend_and_the_task_succeeds(
    stats: Recorder, context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(
        action_url("getRentList"), [{"text": json.dumps(EMPTY_LIST)}, {"status_code": 502, "text": "<html>"}]
    )
    answer(requests_mock, "getRentNumber", RENTAL)
    result = RentNumberOperator(task_id="rent", service="tg", country=0).execute(context)
    assert result["id"] == 1049
    assert len(stats.named(metrics.CHARGES)) == 1 and stats.named(metrics.SPEND) == []


def test_a_renewal_is_charged_as_renewal_at_the_quoted_price(
    stats: Recorder, context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", LISTED)
    answer(requests_mock, "continueRentNumber", RENTAL)
    answer(requests_mock, "getContinueRentPrice", {"status": "success", "price": "3"})
    operator = ContinueRentOperator(task_id="renew", rent_id=1049, rent_time=24)
    operator.execute(context)
    assert stats.named(metrics.SPEND) == [
        ("incr", metrics.SPEND, 3.0, {"kind": "renewal", "dag_id": operator.dag_id})
    ]


def test_an_activation_is_charged_at_its_active_activation_cost(
    stats: Recorder, context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(
        action_url("getActiveActivations"),
        [
            {"text": json.dumps({"status": "success", "activeActivations": []})},
            {
                "text": json.dumps(
                    {
                        "status": "success",
                        "activeActivations": [{"activationId": "77", "activationCost": "0.3"}],
                    }
                )
            },
        ],
    )
    answer(requests_mock, "getNumber", f"ACCESS_NUMBER:77:{NUMBER}")
    operator = ActivateNumberOperator(task_id="buy", service="tg", country=0)
    operator.execute(context)
    assert stats.named(metrics.CHARGES) == [
        ("incr", metrics.CHARGES, 1, {"kind": "activation", "dag_id": operator.dag_id})
    ]
    assert stats.named(metrics.SPEND)[0][2] == 0.3


# ----------------------------------------------------------------------------- releases


def test_a_cancel_is_a_release_and_a_refund_a_finish_only_a_release(
    stats: Recorder, context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "setRentStatus", {"status": "success"})
    CancelRentOperator(task_id="cancel", rent_id=1049).execute(context)
    FinishRentOperator(task_id="finish", rent_id=1049).execute(context)
    assert [entry[3] for entry in stats.named(metrics.RELEASES)] == [
        {"kind": "rental", "outcome": "cancelled"},
        {"kind": "rental", "outcome": "finished"},
    ]
    assert stats.named(metrics.REFUNDS) == [("incr", metrics.REFUNDS, 1, {"kind": "rental"})]


def test_a_completed_activation_is_a_release_without_refund(
    stats: Recorder, context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "setStatus", "ACCESS_ACTIVATION")
    CompleteActivationOperator(task_id="complete", activation_id=77).execute(context)
    assert stats.named(metrics.RELEASES) == [
        ("incr", metrics.RELEASES, 1, {"kind": "activation", "outcome": "completed"})
    ]
    assert stats.named(metrics.REFUNDS) == []


def test_an_activation_ended_without_a_code_is_a_refund(
    stats: Recorder, context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getStatus", "STATUS_WAIT_CODE")
    answer(requests_mock, "setStatus", "ACCESS_CANCEL")
    CancelActivationOperator(task_id="cancel", activation_id=77).execute(context)
    assert stats.named(metrics.RELEASES)[0][3] == {"kind": "activation", "outcome": "cancelled"}
    assert stats.named(metrics.REFUNDS) == [("incr", metrics.REFUNDS, 1, {"kind": "activation"})]


# ----------------------------------------------------------------------------- webhook and events


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "accepted"), (404, "not_found"), (413, "too_large"), (429, "rate_limited"), (599, "other")],
)
def test_webhook_posts_are_counted_by_outcome(stats: Recorder, status: int, outcome: str) -> None:
    metrics.webhook_post(status)
    assert stats.named(metrics.WEBHOOK_POSTS) == [
        ("incr", metrics.WEBHOOK_POSTS, 1, {"outcome": outcome, "status": str(status)})
    ]


def test_the_webhook_receiver_counts_a_post_with_a_wrong_token(stats: Recorder) -> None:
    from airflow_provider_smsonline.webhook.hints import HintWriter
    from airflow_provider_smsonline.webhook.receiver import WebhookReceiver

    receiver = WebhookReceiver("t" * 32, HintWriter(store=None))  # type: ignore[arg-type]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/webhook/" + "x" * 32, "headers": []}
    asyncio.run(receiver(scope, receive, send))
    assert sent[0]["status"] == 404
    assert stats.named(metrics.WEBHOOK_POSTS)[0][3] == {"outcome": "not_found", "status": "404"}


def test_a_wait_that_finds_its_sms_sends_the_event_and_its_latency(stats: Recorder) -> None:
    received = datetime.now(timezone.utc) - timedelta(seconds=30)

    class Client:
        async def get_rent_status(self, rent_id: int, page: int = 0, size: int = 10) -> list[Sms]:
            return [Sms(phone_from="Telegram", text="code 123456", service="tg", date=received)]

    trigger = RentSmsTrigger(rent_id=1049, pattern=r"(\d{6})")
    assert asyncio.run(trigger.check(Client()))["status"] == "success"  # type: ignore[arg-type, index]
    assert stats.named(metrics.SMS_EVENTS) == [("incr", metrics.SMS_EVENTS, 1, {"trigger": "wait"})]
    ((_, _, millis, tags),) = stats.named(metrics.SMS_LATENCY)
    assert tags == {"trigger": "wait"} and 29_000 <= millis <= 60_000


def test_an_asset_watch_sends_an_event_for_each_sms_it_fires(
    stats: Recorder, sandbox: Sandbox, conn: str, records: Any, clock: Any
) -> None:
    rent_id = rent_number(sandbox)
    clock.at[1] = deliver(sandbox, rent_id, "code 482913", "code 777000")
    fired = clock.run(SmsReceivedTrigger(rent_id, poll_interval=10), waits=4)
    assert len(fired) == 2
    assert stats.named(metrics.SMS_EVENTS) == [("incr", metrics.SMS_EVENTS, 1, {"trigger": "watch"})] * 2


def test_an_activation_code_sends_an_event_without_latency(stats: Recorder) -> None:
    trigger = ActivationCodeTrigger(activation_id=77)
    # the state a look decides on (getStatus, once the account's list shows a code)
    assert trigger._decide(ActivationStatus(STATUS_OK, "482913"))["code"] == "482913"  # type: ignore[index]
    assert stats.named(metrics.SMS_EVENTS) == [("incr", metrics.SMS_EVENTS, 1, {"trigger": "activation"})]
    assert stats.named(metrics.SMS_LATENCY) == []


def test_an_sms_dated_in_the_future_sends_no_latency(stats: Recorder) -> None:
    metrics.sms_event("watch", datetime.now(timezone.utc) + timedelta(hours=3))
    assert len(stats.named(metrics.SMS_EVENTS)) == 1 and stats.named(metrics.SMS_LATENCY) == []


# ----------------------------------------------------------------------------- never a secret


def test_no_metric_name_or_tag_holds_the_key_or_a_phone_number(
    stats: Recorder, context: Any, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(
        action_url("getRentList"), [{"text": json.dumps(EMPTY_LIST)}, {"text": json.dumps(LISTED)}]
    )
    answer(requests_mock, "getRentNumber", RENTAL)
    answer(requests_mock, "setRentStatus", "BAD_KEY")
    answer(requests_mock, "getBalance", "ACCESS_BALANCE:1")
    RentNumberOperator(task_id="rent", service="tg", country=0).execute(context)
    with SmsOnlineHook() as hook:
        hook.get_balance()
        with pytest.raises(AccountError):
            hook.finish_rent(1049)
    sent = json.dumps(stats.sent)
    assert len(stats.sent) > 10
    assert NUMBER not in sent
    assert not any(form in sent for form in CANARY_FORMS)
