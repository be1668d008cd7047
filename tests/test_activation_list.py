# Activation waits at scale, against the sandbox (documented shapes) in real time: the waits on one
# account share one getActiveActivations a round and each takes its own code from it; getStatus
# only for what the list cannot say (a code not confirmed yet, an activation that left the list, a
# list that cannot be read), with the same events and guarantees as one getStatus per poll; the
# activation webhook's hint brings the round forward, and a forged one costs no getStatus.
from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from airflow_provider_smsonline.exceptions import UnknownCodeError
from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient
from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.sandbox import Sandbox
from airflow_provider_smsonline.sandbox.activations import EARLY_CANCEL_SECONDS
from airflow_provider_smsonline.triggers.activation import ActivationCodeTrigger
from airflow_provider_smsonline.webhook import news
from airflow_provider_smsonline.webhook.hints import ACTIVATION, encode_hints, merge_hints
from tests.conftest import CANARY_KEY, connection_env
from tests.test_webhook_waits import until


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with Sandbox(port=0, api_key=CANARY_KEY, stock=200, balance=10_000) as running:
        monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(host=running.url, timeout=5))
        news.configure(enabled=False)
        yield running
    news.configure()


class Hints:
    """The hint Variable's text in memory, as the receiver writes it for the activation webhook."""

    def __init__(self) -> None:
        self.document: dict[str, Any] | None = None

    async def __call__(self) -> str | None:
        return None if self.document is None else encode_hints(self.document)

    def post(self, *activation_ids: int) -> None:
        keys = [(ACTIVATION, a) for a in activation_ids]
        self.document = merge_hints(self.document, keys, time.time())


@pytest.fixture
def hints() -> Iterator[Hints]:
    memory = Hints()
    news.configure(enabled=True, source=memory, interval=0.1)
    yield memory
    news.configure()


def buy(sandbox: Sandbox, count: int) -> list[int]:
    query = urlencode({"api_key": sandbox.api_key, "action": "getNumber", "service": "tg", "country": 0})
    ids = []
    for _ in range(count):
        with urllib.request.urlopen(f"{sandbox.url}?{query}", timeout=10) as answer:
            ids.append(int(answer.read().decode().split(":")[1]))
    return ids


def calls(sandbox: Sandbox, action: str) -> int:
    return int(sandbox.state()["requests"].get(action, 0))


class Waits:
    """Activation triggers running as tasks of this loop, as the triggerer runs them."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.events: dict[int, dict[str, Any]] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, *activation_ids: int) -> None:
        for activation_id in activation_ids:
            self.tasks.append(asyncio.create_task(self._run(activation_id)))

    async def _run(self, activation_id: int) -> None:
        async for event in ActivationCodeTrigger(activation_id, **self.kwargs).run():
            self.events[activation_id] = dict(event.payload)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def test_waits_on_one_account_share_one_list_call_a_round_and_each_fires_on_its_own_code(
    sandbox: Sandbox,
) -> None:
    ids = buy(sandbox, 50)

    async def main() -> tuple[dict[int, dict[str, Any]], int, int, float]:
        waits = Waits(poll_interval=0.5)
        waits.start(*ids)
        await asyncio.sleep(1.0)  # every wait has joined and seen a round
        before = calls(sandbox, "getActiveActivations")
        started = time.monotonic()
        await asyncio.sleep(3.0)
        lists = calls(sandbox, "getActiveActivations") - before
        per_second = lists / (time.monotonic() - started)
        sandbox.deliver_code(ids[3], "111111")
        sandbox.deliver_code(ids[40], "222222")
        await until(lambda: len(waits.events) == 2, 5)
        await asyncio.sleep(1.0)  # no other wait fires
        await waits.stop()
        return waits.events, calls(sandbox, "getStatus"), lists, per_second

    events, statuses, lists, per_second = asyncio.run(asyncio.wait_for(main(), 60))
    assert events == {
        ids[3]: {"status": "success", "activation_id": ids[3], "code": "111111", "text": None},
        ids[40]: {"status": "success", "activation_id": ids[40], "code": "222222", "text": None},
    }
    assert per_second <= 2.5, lists  # one call a round for 50 waits (50 getStatus a round before)
    assert statuses == 2  # one getStatus per code, to confirm it: none while nothing came


def test_an_activation_that_left_the_list_is_asked_once_with_get_status(sandbox: Sandbox) -> None:
    cancelled, completed, waiting = buy(sandbox, 3)
    sandbox.advance_clock(EARLY_CANCEL_SECONDS + 1)

    async def main() -> tuple[dict[int, dict[str, Any]], int]:
        waits = Waits(poll_interval=0.3)
        waits.start(cancelled, completed, waiting)
        await asyncio.sleep(1.0)
        with SmsOnlineHook() as hook:  # ended behind the waits' back: both leave the list
            hook.cancel_activation(cancelled)
            sandbox.books.deliver_code(completed, "424242")
            hook.complete_activation(completed)
        await until(lambda: len(waits.events) == 2, 5)
        await asyncio.sleep(1.5)  # rounds go on: no second getStatus for either
        await waits.stop()
        return waits.events, calls(sandbox, "getStatus")

    events, statuses = asyncio.run(asyncio.wait_for(main(), 60))
    assert events[cancelled]["status"] == "cancelled" and events[cancelled]["code"] == "STATUS_CANCEL"
    assert (events[completed]["status"], events[completed]["code"]) == ("success", "424242")
    assert waiting not in events
    assert statuses == 2  # one each: the list cannot say how they ended, getStatus can


def test_an_activation_gone_with_a_code_the_pattern_refuses_is_not_asked_again_each_round(
    sandbox: Sandbox,
) -> None:
    (activation,) = buy(sandbox, 1)
    sandbox.books.deliver_code(activation, "abc")
    with SmsOnlineHook() as hook:
        hook.complete_activation(activation)  # left the list; getStatus says STATUS_OK:abc

    async def main() -> tuple[dict[int, dict[str, Any]], int]:
        waits = Waits(poll_interval=1.0, pattern=r"(\d{4})")
        waits.start(activation)
        await asyncio.sleep(0.8)  # its first look: getStatus once
        before = calls(sandbox, "getStatus")
        await asyncio.sleep(0.9)  # rounds go on (a shorter wait would make them more often)
        await waits.stop()
        return waits.events, calls(sandbox, "getStatus") - before

    events, again = asyncio.run(asyncio.wait_for(main(), 60))
    assert events == {} and again == 0


def test_a_wait_that_starts_after_another_code_was_asked_for_fires_on_the_new_code_only(
    sandbox: Sandbox,
) -> None:
    # The list shows the old code either way; getStatus says "waiting for another" (the
    # guarantee of one getStatus per poll: the old code never fires).
    (activation,) = buy(sandbox, 1)
    sandbox.books.deliver_code(activation, "111111")
    with SmsOnlineHook() as hook:
        hook.request_another_code(activation)

    async def main() -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]], int]:
        waits = Waits(poll_interval=0.3)
        waits.start(activation)
        await asyncio.sleep(1.5)
        early = dict(waits.events)
        sandbox.books.deliver_code(activation, "222222")
        await until(lambda: activation in waits.events, 5)
        await waits.stop()
        return early, waits.events, calls(sandbox, "getStatus")

    early, events, statuses = asyncio.run(asyncio.wait_for(main(), 60))
    assert early == {}
    assert events[activation]["code"] == "222222"
    assert statuses == 2  # the old code confirmed once (waiting for another), the new one once


@pytest.mark.parametrize(
    "failure",
    [
        UnknownCodeError("the server answered NO_ACTIVE_ONES", code="NO_ACTIVE_ONES"),
        RuntimeError("a failure that is not the client's typed error"),
    ],
)
def test_where_the_list_cannot_be_read_each_wait_asks_get_status_itself(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    # An answer this provider does not know (e.g. the page's "no active activations", whose code
    # SMS.online does not show), or anything else: the list cannot say, so the waits ask getStatus.
    async def unknown(self: AsyncSmsOnlineClient) -> Any:
        raise failure

    monkeypatch.setattr(AsyncSmsOnlineClient, "get_active_activations", unknown)
    first, second = buy(sandbox, 2)
    sandbox.advance_clock(EARLY_CANCEL_SECONDS + 1)
    with SmsOnlineHook() as hook:
        hook.cancel_activation(first)

    async def main() -> dict[int, dict[str, Any]]:
        waits = Waits(poll_interval=0.3)
        waits.start(first, second)
        await asyncio.sleep(0.8)
        sandbox.books.deliver_code(second, "777777")
        await until(lambda: len(waits.events) == 2, 5)
        await waits.stop()
        return waits.events

    events = asyncio.run(asyncio.wait_for(main(), 60))
    assert events[first]["status"] == "cancelled"
    assert (events[second]["status"], events[second]["code"]) == ("success", "777777")


def test_server_failures_of_the_list_only_delay_the_waits(sandbox: Sandbox) -> None:
    (activation,) = buy(sandbox, 1)
    sandbox.inject_fault("getActiveActivations", "http_500", count=2)

    async def main() -> tuple[dict[int, dict[str, Any]], int]:
        waits = Waits(poll_interval=0.2)
        waits.start(activation)
        await asyncio.sleep(0.5)
        sandbox.books.deliver_code(activation, "5555")
        await until(lambda: activation in waits.events, 10)
        await waits.stop()
        return waits.events, calls(sandbox, "getStatus")

    events, statuses = asyncio.run(asyncio.wait_for(main(), 60))
    assert events[activation]["code"] == "5555" and statuses == 1


def test_a_list_too_large_for_the_connection_makes_each_wait_ask_get_status(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Eight activations list past 1 KiB, the smallest answer cap a connection takes: every round
    # fails alike, so after a few the waits stop waiting for the list.
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(host=sandbox.url, timeout=5, max_response_bytes=1024)
    )
    ids = buy(sandbox, 8)

    async def main() -> dict[int, dict[str, Any]]:
        waits = Waits(poll_interval=0.2)
        waits.start(ids[0])
        await asyncio.sleep(0.5)
        sandbox.books.deliver_code(ids[0], "8080")
        await until(lambda: ids[0] in waits.events, 10)
        await waits.stop()
        return waits.events

    events = asyncio.run(asyncio.wait_for(main(), 60))
    assert events[ids[0]]["code"] == "8080"


def test_the_activation_webhook_wakes_a_600_s_wait_at_once_and_a_forged_one_asks_no_get_status(
    sandbox: Sandbox, hints: Hints
) -> None:
    real, forged = buy(sandbox, 2)

    async def main() -> tuple[float, dict[int, dict[str, Any]], int, int]:
        waits = Waits(poll_interval=600)
        waits.start(real, forged)
        await until(lambda: calls(sandbox, "getActiveActivations") >= 1, 5)
        await asyncio.sleep(0.5)
        sandbox.books.deliver_code(real, "314159")
        hints.post(real)  # what the receiver writes when SMS.online posts the code
        took = await until(lambda: real in waits.events, 5)
        lists, statuses = calls(sandbox, "getActiveActivations"), calls(sandbox, "getStatus")
        hints.post(forged)  # a forged post: no code came
        await asyncio.sleep(6.0)  # past its episode's re-checks
        await waits.stop()
        forged_lists = calls(sandbox, "getActiveActivations") - lists
        return took, waits.events, forged_lists, calls(sandbox, "getStatus") - statuses

    took, events, forged_lists, forged_statuses = asyncio.run(asyncio.wait_for(main(), 60))
    assert events == {real: {"status": "success", "activation_id": real, "code": "314159", "text": None}}
    assert took < 1.5  # the poll would take 600 s
    assert forged_statuses == 0  # the code comes from the API: a forged post changes no list
    assert forged_lists <= 3  # one look at once, two re-checks


def test_a_flood_of_hints_for_every_watched_activation_costs_at_most_two_list_calls_a_second(
    sandbox: Sandbox, hints: Hints
) -> None:
    ids = buy(sandbox, 30)

    async def main() -> float:
        waits = Waits(poll_interval=600)
        waits.start(*ids)
        await asyncio.sleep(1.0)
        before, started = calls(sandbox, "getActiveActivations"), time.monotonic()
        posted = 0
        while time.monotonic() - started < 4.0:  # one activation after another: each a new episode
            hints.post(ids[posted % len(ids)])
            posted += 1
            await asyncio.sleep(0.05)
        rate = (calls(sandbox, "getActiveActivations") - before) / (time.monotonic() - started)
        await waits.stop()
        return rate

    rate = asyncio.run(asyncio.wait_for(main(), 60))
    assert rate <= 2.3 and calls(sandbox, "getStatus") == 0


def test_the_async_client_reads_each_active_activations_codes(sandbox: Sandbox) -> None:
    first, second = buy(sandbox, 2)
    sandbox.books.deliver_code(second, "9999")

    async def main() -> dict[int, tuple[str, ...]]:
        async with await AsyncSmsOnlineClient.from_conn_id("smsonline_default") as client:
            return {row.id: row.codes for row in await client.get_active_activations()}

    assert asyncio.run(main()) == {first: (), second: ("9999",)}
    body = json.loads(json.dumps(sandbox.state()["activations"]))
    assert {a["id"] for a in body} == {first, second}


def test_a_wait_cancelled_as_a_round_comes_is_cancelled_not_left_running() -> None:
    # The triggerer cancels a trigger (its task was cleared, its deferral timed out) at any moment,
    # also the very moment the account's round comes: the wait must end, not carry on waiting.
    from airflow_provider_smsonline.triggers._active_list import ActiveList, Round

    async def main() -> list[object]:
        shared = ActiveList(client=None)  # type: ignore[arg-type]  # no round is asked here
        waits = [asyncio.create_task(shared.next_round(0, 0.0, 5.0)) for _ in range(20)]
        await asyncio.sleep(0.05)  # all waiting for the round
        shared._publish(Round(1, 0.0, {}))
        for wait in waits:
            wait.cancel()
        return await asyncio.gather(*waits, return_exceptions=True)

    outcomes = asyncio.run(asyncio.wait_for(main(), 10))
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
