# The waits woken by webhook hints, against the sandbox in real time: an asset watch and the
# deferrable sensor's trigger that poll every 600 s fire within a couple of seconds of a hint,
# with the same guarantees (the old SMS never fires, each new one once), at most two getRentStatus
# calls per SMS, and none for a hint about a rental nobody watches.
from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from airflow_provider_smsonline.sandbox import Sandbox
from airflow_provider_smsonline.triggers import events
from airflow_provider_smsonline.triggers.events import SmsReceivedTrigger
from airflow_provider_smsonline.triggers.rent import RentSmsTrigger
from airflow_provider_smsonline.webhook import news
from airflow_provider_smsonline.webhook.hints import RENTAL, encode_hints, merge_hints
from tests.conftest import CANARY_KEY, connection_env


class Source:
    """The hint Variable's text, in memory."""

    def __init__(self) -> None:
        self.document: dict[str, Any] | None = None

    async def __call__(self) -> str | None:
        return None if self.document is None else encode_hints(self.document)

    def hint(self, rent_id: int, kind: str = RENTAL) -> None:
        self.document = merge_hints(self.document, [(kind, rent_id)], time.time())


class MemoryRecords:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    async def load(self, key: str) -> dict[str, Any] | None:
        return self.data.get(key)

    async def save(self, key: str, record: dict[str, Any]) -> None:
        self.data[key] = json.loads(json.dumps(record))

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with Sandbox(port=0, api_key=CANARY_KEY, utc_offset=3) as running:
        monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(host=running.url, timeout=5))
        yield running


@pytest.fixture
def source(monkeypatch: pytest.MonkeyPatch) -> Iterator[Source]:
    memory = Source()
    news.configure(enabled=True, source=memory, interval=0.25)
    monkeypatch.setattr(events, "_records", MemoryRecords())
    monkeypatch.setattr(events, "RECORD_DELAY", 0.2)
    yield memory
    news.configure()


def rent(sandbox: Sandbox) -> int:
    query = urlencode({"api_key": sandbox.api_key, "action": "getRentNumber", "service": "tg", "country": 0})
    with urllib.request.urlopen(f"{sandbox.url}?{query}", timeout=10) as answer:
        return int(json.loads(answer.read())["phone"]["id"])


def polls(sandbox: Sandbox, rent_id: int) -> int:
    return int(sandbox.state()["polls"].get(str(rent_id), 0))


async def until(condition: Any, timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "timed out"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def test_a_watch_polling_every_600_s_fires_within_a_second_or_two_of_each_hint(
    sandbox: Sandbox, source: Source
) -> None:
    rent_id, other = rent(sandbox), rent(sandbox)
    sandbox.deliver_sms(rent_id, text="old code 000000", phone_from="Telegram")
    trigger = SmsReceivedTrigger(rent_id=rent_id, pattern=r"(\d{6})", poll_interval=600)

    async def main() -> tuple[list[dict[str, Any]], list[float], list[int]]:
        fired: list[dict[str, Any]] = []
        latencies, calls = [], []

        async def watch() -> None:
            async for event in trigger.run():
                fired.append(event.payload)

        task = asyncio.create_task(watch())
        await until(lambda: polls(sandbox, rent_id) >= 1, 10)  # the baseline
        await asyncio.sleep(0.5)
        for n, text in enumerate(["Your code: 111111", "Lunch at noon?"], start=1):
            before = polls(sandbox, rent_id)
            sandbox.deliver_sms(rent_id, text=text, phone_from="Telegram")
            source.hint(rent_id)  # what the receiver records when SMS.online posts
            latencies.append(await until(lambda n=n: len(fired) >= n, 5))
            await asyncio.sleep(7)  # past the re-checks
            calls.append(polls(sandbox, rent_id) - before)
        before = polls(sandbox, other)
        source.hint(other)  # a rental no wait watches (or a forged id)
        source.hint(10**9)
        await asyncio.sleep(2)
        calls.append(polls(sandbox, other) - before)
        task.cancel()
        return fired, latencies, calls

    fired, latencies, calls = asyncio.run(asyncio.wait_for(main(), 60))
    assert [p["sms"]["text"] for p in fired] == ["Your code: 111111", "Lunch at noon?"]
    assert [p["code"] for p in fired] == ["111111", None]
    assert max(latencies) < 2.0, latencies
    assert calls[:2] == [1, 1]  # one look per SMS: it found the SMS, so no re-check
    assert calls[2] == 0  # a hint for an unwatched rental costs no getRentStatus


def test_a_webhook_ahead_of_get_rent_status_is_caught_by_the_re_check(
    sandbox: Sandbox, source: Source
) -> None:
    rent_id = rent(sandbox)
    trigger = SmsReceivedTrigger(rent_id=rent_id, poll_interval=600)

    async def main() -> tuple[list[dict[str, Any]], float, int]:
        fired: list[dict[str, Any]] = []

        async def watch() -> None:
            async for event in trigger.run():
                fired.append(event.payload)

        task = asyncio.create_task(watch())
        await until(lambda: polls(sandbox, rent_id) >= 1, 10)
        await asyncio.sleep(0.5)
        before = polls(sandbox, rent_id)
        source.hint(rent_id)  # the post came first...
        await asyncio.sleep(0.6)
        sandbox.deliver_sms(rent_id, text="late in the list", phone_from="Bank")  # ...the SMS after
        took = await until(lambda: len(fired) >= 1, 8)
        await asyncio.sleep(6)
        task.cancel()
        return fired, took, polls(sandbox, rent_id) - before

    fired, took, calls = asyncio.run(asyncio.wait_for(main(), 60))
    assert [p["sms"]["text"] for p in fired] == ["late in the list"]
    assert took < 2.5 and calls == 2  # the look at the hint (nothing yet), the re-check 1.5 s later


def test_the_deferrable_sensors_trigger_polling_every_600_s_fires_at_the_hint(
    sandbox: Sandbox, source: Source
) -> None:
    rent_id = rent(sandbox)
    trigger = RentSmsTrigger(rent_id=rent_id, pattern=r"(\d{4})", poll_interval=600, seen=[])

    async def main() -> tuple[dict[str, Any], float]:
        async def first() -> dict[str, Any]:
            async for event in trigger.run():
                return dict(event.payload)
            raise AssertionError("no event")

        task = asyncio.create_task(first())
        await until(lambda: polls(sandbox, rent_id) >= 1, 10)
        await asyncio.sleep(0.5)
        started = time.monotonic()
        sandbox.deliver_sms(rent_id, text="code 4321", phone_from="Bank")
        source.hint(rent_id)
        payload = await task
        return payload, time.monotonic() - started

    payload, took = asyncio.run(asyncio.wait_for(main(), 30))
    assert payload["status"] == "success" and payload["code"] == "4321"
    assert took < 2.0
