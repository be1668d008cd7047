# SmsReceivedTrigger, the asset watcher behind SMS-driven DAGs: driven against the sandbox (a real
# HTTP server in a thread, writing its dates in a zone the trigger is never told), with its waits
# recorded instead of waited and its record kept in memory. The last test runs it for real: the
# scheduler, triggerer, dag-processor and api-server on loopback, the triggerer restarted midway.
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from airflow_provider_smsonline.sandbox import Sandbox
from airflow_provider_smsonline.triggers import base, events
from airflow_provider_smsonline.triggers import records as watch_records
from airflow_provider_smsonline.triggers.base import MAX_BACKOFF
from airflow_provider_smsonline.triggers.events import (
    ENDED_RECHECK,
    KNOWN_LIMIT,
    RECORD_DELAY,
    SmsReceivedTrigger,
)
from airflow_provider_smsonline.triggers.records import VariableRecords, WatchRecordError, record_key
from tests.conftest import CANARY_KEY, assert_no_key, connection_env

CODE = r"code:? (\d{4,8})"


# ----------------------------------------------------------------------------- harness


class MemoryRecords:
    """Watch records in a dict, JSON round-tripped as Variables would be; counts the writes."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.saves = 0

    async def load(self, key: str) -> dict[str, Any] | None:
        return json.loads(json.dumps(self.data[key])) if key in self.data else None

    async def save(self, key: str, record: dict[str, Any]) -> None:
        self.saves += 1
        self.data[key] = json.loads(json.dumps(record))

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)


class Clock:
    """The trigger's waits, recorded and not waited.

    ``at[n]`` runs at the trigger's n-th wait (counted from 1 over the clock's life); at wait
    ``stop_at`` the triggerer "stops": the wait raises ``CancelledError`` into the trigger, as a
    shutdown or a reassignment does.
    """

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.at: dict[int, Callable[[], object]] = {}
        self.stop_at = 0

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) >= self.stop_at:
            raise asyncio.CancelledError
        action = self.at.get(len(self.waits))
        if action is not None:
            action()
        await asyncio.sleep(0)

    def run(self, trigger: SmsReceivedTrigger, waits: int) -> list[dict[str, Any]]:
        """Run ``trigger`` until it has waited ``waits`` more times; the payloads it fired."""
        self.stop_at = len(self.waits) + waits

        async def main() -> list[dict[str, Any]]:
            fired: list[dict[str, Any]] = []
            try:
                async for event in trigger.run():
                    fired.append(event.payload)
            except asyncio.CancelledError:
                pass
            return fired

        return asyncio.run(asyncio.wait_for(main(), timeout=30))


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(port=0, api_key=CANARY_KEY, utc_offset=3) as running:
        yield running


@pytest.fixture
def conn(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(host=sandbox.url, timeout=5))
    return "smsonline_default"


@pytest.fixture
def records(monkeypatch: pytest.MonkeyPatch) -> MemoryRecords:
    memory = MemoryRecords()
    monkeypatch.setattr(events, "_records", memory)
    return memory


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    recorder = Clock()
    monkeypatch.setattr(base, "_sleep", recorder.sleep)
    return recorder


class Logs:
    """What was logged, as (level, message): Airflow's structlog writes trigger logs to the
    console (captured by capsys), other loggers reach caplog."""

    def __init__(self, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
        self.capsys, self.caplog = capsys, caplog
        caplog.set_level(logging.DEBUG)

    def lines(self) -> list[tuple[str, str]]:
        found = [(r.levelname.lower(), r.getMessage()) for r in self.caplog.records]
        out = self.capsys.readouterr()
        console = re.sub(r"\x1b\[[0-9;]*m", "", out.out + out.err)  # colours, on some versions
        self.raw = console + self.caplog.text
        for line in console.splitlines():
            logged = re.search(r"\[(debug|info|warning|error|critical)\s*\] (.*)", line)
            if logged:
                found.append((logged.group(1), logged.group(2)))
        return found


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Logs:
    return Logs(capsys, caplog)


def api(sandbox: Sandbox, **params: object) -> str:
    query = urlencode({"api_key": sandbox.api_key, **params})
    with urllib.request.urlopen(f"{sandbox.url}?{query}", timeout=10) as answer:
        return answer.read().decode()


def rent(sandbox: Sandbox) -> int:
    return int(json.loads(api(sandbox, action="getRentNumber", service="tg", country=0))["phone"]["id"])


def texts(payloads: list[dict[str, Any]]) -> list[str]:
    return [p["sms"]["text"] for p in payloads]


def deliver(sandbox: Sandbox, rent_id: int, *messages: str) -> Callable[[], None]:
    def send() -> None:
        for text in messages:
            sandbox.deliver_sms(rent_id, text=text, phone_from="Telegram")

    return send


# ----------------------------------------------------------------------------- serialization, arguments


def test_serialize_round_trips_to_the_same_trigger_and_the_same_airflow_identity() -> None:
    from airflow.triggers.base import BaseEventTrigger

    trigger = SmsReceivedTrigger(rent_id=1049, smsonline_conn_id="sms", pattern=CODE, poll_interval=15)
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**json.loads(json.dumps(kwargs)))

    assert classpath == "airflow_provider_smsonline.triggers.events.SmsReceivedTrigger"
    assert kwargs == {"rent_id": 1049, "smsonline_conn_id": "sms", "pattern": CODE, "poll_interval": 15.0}
    assert rebuilt.serialize() == (classpath, kwargs)
    assert BaseEventTrigger.hash(*rebuilt.serialize()) == BaseEventTrigger.hash(classpath, kwargs)
    assert rebuilt.record_key == trigger.record_key


def test_it_is_accepted_as_an_asset_watcher_and_its_kwargs_hold_no_key(conn: str) -> None:
    from airflow.sdk import Asset, AssetWatcher

    trigger = SmsReceivedTrigger(rent_id=7)
    asset = Asset("inbox", watchers=[AssetWatcher(name="rental_7", trigger=trigger)])

    assert asset.watchers[0].trigger is trigger
    assert_no_key(json.dumps(trigger.serialize()) + repr(trigger))


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("rent_id", {"rent_id": -1}),
        ("rent_id", {"rent_id": "{{ ti.xcom_pull('rent') }}"}),
        ("smsonline_conn_id", {"smsonline_conn_id": ""}),
        ("pattern", {"pattern": "(unclosed"}),
        ("poll_interval", {"poll_interval": 0}),
        ("poll_interval", {"poll_interval": 0.5}),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_field(field: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=rf"^{field} "):
        SmsReceivedTrigger(**{"rent_id": 7, **kwargs})


def test_the_record_belongs_to_the_connection_rental_and_pattern_not_the_poll_interval() -> None:
    key = record_key("smsonline_default", 1049, CODE)

    assert key.startswith("smsonline_watch__1049__smsonline_default__")
    assert SmsReceivedTrigger(1049, pattern=CODE, poll_interval=5).record_key == key
    assert SmsReceivedTrigger(1049, pattern=CODE, poll_interval=60).record_key == key
    assert len({key, record_key("other", 1049, CODE), record_key("smsonline_default", 1050, CODE)}) == 3
    assert record_key("smsonline_default", 1049, None) != key
    assert len(record_key("c" * 250, 2**53 - 1, CODE)) <= 250


# ----------------------------------------------------------------------------- what fires


@pytest.mark.parametrize("server_offset_hours", [3, -5])
def test_each_new_sms_fires_once_oldest_first_and_those_already_there_never(
    records: MemoryRecords, clock: Clock, monkeypatch: pytest.MonkeyPatch, server_offset_hours: int
) -> None:
    with Sandbox(port=0, api_key=CANARY_KEY, utc_offset=server_offset_hours) as sandbox:
        monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(host=sandbox.url, timeout=5))
        rent_id = rent(sandbox)
        deliver(sandbox, rent_id, "old code 1111", "old news")()
        clock.at[1] = deliver(sandbox, rent_id, "Your code: 482913", "Lunch at noon?")
        clock.at[4] = deliver(sandbox, rent_id, "code 777000")

        fired = clock.run(SmsReceivedTrigger(rent_id, pattern=CODE, poll_interval=10), waits=8)

    assert texts(fired) == ["Your code: 482913", "Lunch at noon?", "code 777000"]
    assert [p["code"] for p in fired] == ["482913", None, "777000"]
    first = fired[0]
    assert first["rent_id"] == rent_id and first["sms"]["phone_from"] == "Telegram"
    assert set(first["sms"]) == {"phone_from", "text", "service", "date"}
    assert len({p["sms_id"] for p in fired}) == 3
    json.dumps(fired)  # the triggerer stores it as JSON


def test_quiet_checks_write_nothing_and_wait_the_poll_interval_give_or_take_ten_percent(
    sandbox: Sandbox, conn: str, records: MemoryRecords, clock: Clock
) -> None:
    rent_id = rent(sandbox)

    fired = clock.run(SmsReceivedTrigger(rent_id, poll_interval=20), waits=30)

    assert fired == []
    assert records.saves == 1  # the baseline, once
    assert all(18 <= w <= 22 for w in clock.waits) and len(set(clock.waits)) > 1
    assert sandbox.state()["polls"][str(rent_id)] == 30  # the baseline, then one per wait


def test_an_sms_is_recorded_only_after_airflow_had_time_to_store_its_event(
    sandbox: Sandbox, conn: str, records: MemoryRecords, clock: Clock
) -> None:
    rent_id = rent(sandbox)
    trigger = SmsReceivedTrigger(rent_id, poll_interval=10)
    clock.at[1] = deliver(sandbox, rent_id, "hello")

    fired = clock.run(trigger, waits=3)

    assert texts(fired) == ["hello"]
    assert clock.waits[1] == RECORD_DELAY  # the wait between the event and its record
    assert fired[0]["sms_id"] in records.data[trigger.record_key]["known"]


def test_a_burst_past_five_pages_fires_the_newest_hundred_and_says_so(
    sandbox: Sandbox, conn: str, records: MemoryRecords, clock: Clock, logs: Logs
) -> None:
    rent_id = rent(sandbox)
    trigger = SmsReceivedTrigger(rent_id, poll_interval=10)
    clock.at[1] = deliver(sandbox, rent_id, *(f"message {i}" for i in range(130)))

    fired = clock.run(trigger, waits=4)

    assert texts(fired) == [f"message {i}" for i in range(30, 130)]
    warned = [m for level, m in logs.lines() if level == "warning"]
    assert any(f"Rental {rent_id}: more than 100 SMS arrived since the last check" in m for m in warned)
    assert len(records.data[trigger.record_key]["known"]) == KNOWN_LIMIT


# ----------------------------------------------------------------------------- restarts


def test_after_a_restart_sms_received_meanwhile_fire_and_those_fired_before_do_not(
    sandbox: Sandbox, conn: str, records: MemoryRecords, clock: Clock
) -> None:
    rent_id = rent(sandbox)
    deliver(sandbox, rent_id, "before the watch")()
    first = SmsReceivedTrigger(rent_id, pattern=CODE, poll_interval=10)
    clock.at[1] = deliver(sandbox, rent_id, "code 1111")

    before = clock.run(first, waits=4)  # event, its record, then the triggerer stops
    deliver(sandbox, rent_id, "code 2222", "code 3333")()  # while no triggerer runs the watch
    kwargs = first.serialize()[1]  # what the triggerer re-creates the trigger from
    after = clock.run(SmsReceivedTrigger(**json.loads(json.dumps(kwargs))), waits=4)

    assert texts(before) == ["code 1111"]
    assert texts(after) == ["code 2222", "code 3333"]


def test_a_triggerer_that_stops_right_after_an_event_fires_that_sms_again_never_zero_times(
    sandbox: Sandbox, conn: str, records: MemoryRecords, clock: Clock
) -> None:
    rent_id = rent(sandbox)
    trigger = SmsReceivedTrigger(rent_id, poll_interval=10)
    clock.at[1] = deliver(sandbox, rent_id, "hello")

    before = clock.run(trigger, waits=2)  # stops in the wait between the event and its record
    after = clock.run(SmsReceivedTrigger(rent_id, poll_interval=10), waits=4)

    assert clock.waits[1] == RECORD_DELAY
    assert texts(before) == texts(after) == ["hello"]
    assert before[0]["sms_id"] == after[0]["sms_id"]  # a handler can tell it is the same SMS


def test_a_new_poll_interval_keeps_the_record_and_misses_nothing(
    sandbox: Sandbox, conn: str, records: MemoryRecords, clock: Clock
) -> None:
    rent_id = rent(sandbox)
    clock.run(SmsReceivedTrigger(rent_id, poll_interval=10), waits=2)
    deliver(sandbox, rent_id, "while the DAG was redeployed")()

    after = clock.run(SmsReceivedTrigger(rent_id, poll_interval=120), waits=3)

    assert texts(after) == ["while the DAG was redeployed"]


# ----------------------------------------------------------------------------- failures


def test_server_errors_back_off_exponentially_up_to_five_minutes_and_the_watch_goes_on(
    sandbox: Sandbox, conn: str, records: MemoryRecords, clock: Clock
) -> None:
    rent_id = rent(sandbox)
    clock.at[1] = lambda: sandbox.inject_fault("getRentStatus", "http_500", count=4)
    clock.at[5] = deliver(sandbox, rent_id, "after the outage")

    fired = clock.run(SmsReceivedTrigger(rent_id, poll_interval=50), waits=7)

    assert texts(fired) == ["after the outage"]
    backoffs = clock.waits[1:5]
    for wait, expected in zip(backoffs, (100, 200, 300, 300), strict=True):
        assert expected * 0.9 <= wait <= expected * 1.1 and wait <= MAX_BACKOFF


def test_an_outage_of_days_keeps_the_watch_backing_off_at_five_minutes(
    sandbox: Sandbox, conn: str, records: MemoryRecords, clock: Clock
) -> None:
    rent_id = rent(sandbox)
    # Over 1,100 failed checks in a row (four days at five minutes): the doubling must not overflow.
    clock.at[1] = lambda: sandbox.inject_fault("getRentStatus", "http_500", count=1100)
    clock.at[1102] = deliver(sandbox, rent_id, "after four days")

    fired = clock.run(SmsReceivedTrigger(rent_id, poll_interval=50), waits=1104)

    assert texts(fired) == ["after four days"]
    assert max(clock.waits[1:1101]) <= MAX_BACKOFF


def test_a_record_that_cannot_be_read_delays_the_start_instead_of_taking_a_new_baseline(
    sandbox: Sandbox, conn: str, records: MemoryRecords, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rent_id = rent(sandbox)
    clock.run(SmsReceivedTrigger(rent_id, poll_interval=10), waits=2)
    deliver(sandbox, rent_id, "while the metadata DB was away")()
    real_load, failures = records.load, [1, 1]

    async def flaky_load(key: str) -> dict[str, Any] | None:
        if failures:
            failures.pop()
            raise WatchRecordError(f"could not read Variable {key!r} (ConnectionError: refused)")
        return await real_load(key)

    monkeypatch.setattr(records, "load", flaky_load)
    after = clock.run(SmsReceivedTrigger(rent_id, poll_interval=10), waits=4)

    assert texts(after) == ["while the metadata DB was away"]


def test_an_ended_rental_is_logged_its_record_deleted_and_checked_again_hourly(
    sandbox: Sandbox, conn: str, records: MemoryRecords, clock: Clock, logs: Logs
) -> None:
    rent_id = rent(sandbox)
    trigger = SmsReceivedTrigger(rent_id, poll_interval=10)
    clock.at[1] = lambda: api(sandbox, action="setRentStatus", id=rent_id, status=1)  # finished

    fired = clock.run(trigger, waits=4)

    assert fired == []
    assert clock.waits[1:] == [ENDED_RECHECK] * 3
    assert trigger.record_key not in records.data
    ended = [(level, m) for level, m in logs.lines() if "has ended" in m]
    assert len(ended) == 3 and {level for level, _ in ended} == {"warning"}
    message = ended[0][1]
    assert f"Rental {rent_id} has ended (STATUS_FINISH" in message
    assert "fires no more events" in message and "Remove its AssetWatcher" in message


def test_a_refused_key_is_logged_and_retried_with_the_connection_read_afresh(
    sandbox: Sandbox, records: MemoryRecords, clock: Clock, monkeypatch: pytest.MonkeyPatch, logs: Logs
) -> None:
    rent_id = rent(sandbox)
    wrong = connection_env(host=sandbox.url, password="Wr0ng+" + CANARY_KEY, timeout=5)
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", wrong)
    fixed = connection_env(host=sandbox.url, timeout=5)
    clock.at[1] = lambda: monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", fixed)
    clock.at[2] = deliver(sandbox, rent_id, "code 9090")

    fired = clock.run(SmsReceivedTrigger(rent_id, pattern=CODE, poll_interval=10), waits=4)

    assert 0.9 * MAX_BACKOFF <= clock.waits[0] <= MAX_BACKOFF * 1.1
    assert [p["code"] for p in fired] == ["9090"]
    refused = [(level, m) for level, m in logs.lines() if "BAD_KEY" in m]
    assert refused and refused[0][0] == "error"
    assert f"Watch of rental {rent_id}: BAD_KEY" in refused[0][1]
    assert "no SMS can fire until this is fixed" in refused[0][1]
    assert_no_key(logs.raw + json.dumps(fired) + json.dumps(records.data))


def test_events_logs_and_records_never_hold_the_key(
    sandbox: Sandbox, conn: str, records: MemoryRecords, clock: Clock, logs: Logs
) -> None:
    rent_id = rent(sandbox)
    clock.at[1] = lambda: sandbox.inject_fault("getRentStatus", "garbage", count=1)
    clock.at[2] = deliver(sandbox, rent_id, f"echo {CANARY_KEY[:4]}")

    fired = clock.run(SmsReceivedTrigger(rent_id, poll_interval=10), waits=5)

    assert len(fired) == 1
    lines = logs.lines()
    assert any(level == "warning" and "checking again in" in m for level, m in lines)  # the garbage
    assert any("fires an event" in m for _, m in lines)
    assert_no_key(logs.raw + json.dumps(fired) + json.dumps(records.data))


# ----------------------------------------------------------------------------- the Variable store


@pytest.fixture
def variables(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Airflow Variables as a dict, behind the functions VariableRecords calls."""
    stored: dict[str, str] = {}
    monkeypatch.setattr(watch_records, "_variable_get", lambda key: stored.get(key))
    monkeypatch.setattr(
        watch_records, "_variable_set", lambda key, text, description: stored.__setitem__(key, text)
    )
    monkeypatch.setattr(watch_records, "_variable_delete", lambda key: stored.pop(key, None))
    return stored


def test_variable_records_round_trip_as_json_and_delete(variables: dict[str, str]) -> None:
    async def main(store: VariableRecords) -> tuple[Any, Any]:
        await store.save("smsonline_watch__1", {"known": ["a", "b"]})
        loaded = await store.load("smsonline_watch__1")
        await store.delete("smsonline_watch__1")
        return loaded, await store.load("smsonline_watch__1")

    assert asyncio.run(main(VariableRecords())) == ({"known": ["a", "b"]}, None)


def test_a_write_that_airflow_swallowed_is_caught_by_reading_it_back(
    variables: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Variable.set logs an API failure and returns: only reading back tells.
    monkeypatch.setattr(watch_records, "_variable_set", lambda key, text, description: None)

    with pytest.raises(WatchRecordError, match="did not keep what was written"):
        asyncio.run(VariableRecords().save("smsonline_watch__1", {"known": []}))


def test_a_failing_variable_backend_is_a_watch_record_error_naming_the_variable(
    variables: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(key: str) -> str:
        raise ConnectionError("api server refused")

    monkeypatch.setattr(watch_records, "_variable_get", refuse)

    with pytest.raises(
        WatchRecordError, match=r"could not read Variable 'smsonline_watch__1' \(ConnectionError"
    ):
        asyncio.run(VariableRecords().load("smsonline_watch__1"))


def test_a_variable_that_is_not_a_record_reads_as_none(variables: dict[str, str]) -> None:
    variables["smsonline_watch__1"] = "not json"

    assert asyncio.run(VariableRecords().load("smsonline_watch__1")) is None


class TriggerCommsDecoder:
    """The triggerer runner's channel, as far as watch records use it: Variables in a dict."""

    def __init__(self) -> None:
        self.variables: dict[str, str] = {}
        self.sent: list[str] = []
        self.refuse_writes = False

    async def asend(self, message: Any) -> Any:
        from airflow.sdk.exceptions import ErrorType
        from airflow.sdk.execution_time.comms import ErrorResponse, OKResponse, VariableResult

        self.sent.append(type(message).__name__)
        await asyncio.sleep(0)
        if type(message).__name__ == "GetVariable":
            if message.key not in self.variables:
                return ErrorResponse(error=ErrorType.VARIABLE_NOT_FOUND, detail={"key": message.key})
            return VariableResult(key=message.key, value=self.variables[message.key])
        if type(message).__name__ == "MaskSecret":
            return None
        if type(message).__name__ == "PutVariable":
            if self.refuse_writes:
                return ErrorResponse(error=ErrorType.GENERIC_ERROR, detail={"status_code": 503})
            self.variables[message.key] = message.value
            return None  # Airflow 3.1's supervisor answers a PutVariable with nothing
        self.variables.pop(message.key, None)
        return OKResponse(ok=True)


@pytest.fixture
def channel(monkeypatch: pytest.MonkeyPatch) -> TriggerCommsDecoder:
    """As in a triggerer: the Task SDK's SUPERVISOR_COMMS is the runner's channel."""
    from airflow.sdk.execution_time import task_runner

    fake = TriggerCommsDecoder()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", fake, raising=False)
    for name in ("_variable_get", "_variable_set", "_variable_delete"):  # never the Task SDK's Variable
        monkeypatch.setattr(
            watch_records, name, lambda *args: pytest.fail("the Task SDK's Variable was used")
        )
    return fake


def test_in_a_triggerer_records_travel_as_messages_on_the_triggers_own_loop(
    channel: TriggerCommsDecoder,
) -> None:
    async def main(store: VariableRecords) -> tuple[Any, Any, Any]:
        missing = await store.load("smsonline_watch__1")
        await store.save("smsonline_watch__1", {"known": ["a"]})
        loaded = await store.load("smsonline_watch__1")
        await store.delete("smsonline_watch__1")
        return missing, loaded, await store.load("smsonline_watch__1")

    assert asyncio.run(main(VariableRecords())) == (None, {"known": ["a"]}, None)
    assert channel.sent == [
        "GetVariable",
        "PutVariable",
        "GetVariable",
        "GetVariable",
        "DeleteVariable",
        "GetVariable",
    ]


def test_in_a_triggerer_a_refused_write_is_a_watch_record_error(channel: TriggerCommsDecoder) -> None:
    channel.refuse_writes = True

    with pytest.raises(
        WatchRecordError, match=r"could not write Variable 'smsonline_watch__1' \(GENERIC_ERROR"
    ):
        asyncio.run(VariableRecords().save("smsonline_watch__1", {"known": []}))


def test_on_airflow_3_1_a_triggerer_learns_the_key_forms_on_the_triggers_loop(
    channel: TriggerCommsDecoder, conn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Airflow 3.1 has no amask_secret, and its mask_secret from a worker thread breaks the
    # runner's channel: the masking must travel as messages on the trigger's loop.
    import airflow.sdk.log

    from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient

    monkeypatch.delattr(airflow.sdk.log, "amask_secret", raising=False)
    monkeypatch.setattr(asyncio, "to_thread", lambda *args: pytest.fail("masked from a worker thread"))

    async def main() -> AsyncSmsOnlineClient:
        return await AsyncSmsOnlineClient.from_conn_id(conn)

    client = asyncio.run(main())

    assert channel.sent.count("MaskSecret") == len(client.config.secret_forms()) >= 2


# ----------------------------------------------------------------------------- for real

EXAMPLE = Path(__file__).resolve().parent.parent / "example_dags" / "smsonline_inbox.py"
AIRFLOW = (sys.executable, "-m", "airflow")


class Component:
    """``airflow <command> <args>`` in its own process group; output in ``<home>/<command>.log``."""

    def __init__(self, command: str, home: Path, env: dict[str, str], *args: str) -> None:
        self.command, self.home, self.env, self.args = command, home, env, args
        self.log_path = home / f"{command}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Component:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*AIRFLOW, self.command, *self.args],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM to the process group (a graceful stop), SIGKILL after ``grace`` seconds."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        # Children (the triggerer's runner, task processes) share the group.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def query(home: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Read Airflow's SQLite metadata DB while the components write it."""
    for _ in range(50):
        try:
            with closing(sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True, timeout=5)) as db:
                return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            time.sleep(0.2)
    raise AssertionError(f"the metadata DB stayed locked: {sql}")


def wait_for(what: str, condition: Callable[[], object], timeout: float, *logs: Component) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    tails = "\n".join(f"--- {c.command}\n{c.tail()}" for c in logs)
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def asset_event_payloads(home: Path) -> list[dict[str, Any]]:
    rows = query(home, "SELECT extra FROM asset_event ORDER BY id")
    return [json.loads(extra)["payload"] for (extra,) in rows]


@pytest.mark.airflow
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_sms_delivered_to_the_sandbox_become_asset_events_and_inbox_runs_across_a_triggerer_restart(
    tmp_path: Path,
) -> None:
    from tests.airflow_server import AirflowServer

    timings: dict[str, float] = {}
    started = time.monotonic()
    with Sandbox(port=0, api_key=CANARY_KEY, utc_offset=3) as sandbox:
        rent_id = rent(sandbox)
        sandbox.deliver_sms(rent_id, text="old code 000000", phone_from="Telegram")
        polls = lambda: sandbox.state()["polls"].get(str(rent_id), 0)  # noqa: E731

        # The example as shipped, but polling every 2 s instead of 30.
        dags = tmp_path / "dags"
        dags.mkdir()
        source = EXAMPLE.read_text()
        assert "poll_interval=30," in source
        (dags / EXAMPLE.name).write_text(source.replace("poll_interval=30,", "poll_interval=2,"))

        env = {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API_AUTH__JWT_SECRET": "events-test-" + os.urandom(8).hex(),
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
            "AIRFLOW_VAR_SMSONLINE_KEPT_RENTAL": json.dumps({"id": rent_id, "number": "x", "end_date": "x"}),
        }
        server = AirflowServer(home=tmp_path / "home", dags_folder=dags, env=env)
        server.local.use_sandbox(sandbox, timeout=5)
        components: list[Component] = []
        try:
            server.start()
            home = server.home
            env = server.environ()
            env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"{server.url}/execution/"
            # --skip-serve-logs: no log server on every interface (and no fixed port to collide on).
            scheduler = Component("scheduler", home, env, "--skip-serve-logs")
            processor = Component("dag-processor", home, env)
            triggerer = Component("triggerer", home, env, "--skip-serve-logs")
            components += [scheduler, processor, triggerer]
            for component in components:
                component.start()
            timings["start"] = time.monotonic() - started

            # The watch has started once the triggerer polled past its baseline.
            wait_for("the watch to start", lambda: polls() >= 2, 150, processor, triggerer)
            timings["watching"] = time.monotonic() - started
            sandbox.deliver_sms(rent_id, text="Your code: 111111", phone_from="Telegram")
            time.sleep(3)
            sandbox.deliver_sms(rent_id, text="Lunch at noon?", phone_from="+15550100")
            wait_for("2 asset events", lambda: len(asset_event_payloads(home)) >= 2, 60, triggerer)
            timings["two events"] = time.monotonic() - started

            # Stop the triggerer once the watch has recorded them (a check after the record),
            # then deliver while none runs.
            seen = polls()
            wait_for("the record", lambda: polls() >= seen + 2, 30, triggerer)
            triggerer.stop()
            timings["triggerer stopped"] = time.monotonic() - started
            sandbox.deliver_sms(rent_id, text="code 333333 sent while no triggerer ran", phone_from="Bank")
            triggerer.start()
            wait_for("the third asset event", lambda: len(asset_event_payloads(home)) >= 3, 90, triggerer)
            timings["third event"] = time.monotonic() - started
            seen = polls()
            wait_for("more checks", lambda: polls() >= seen + 3, 30, triggerer)

            def runs_done() -> list[tuple[Any, ...]]:
                runs = query(
                    home, "SELECT run_id, state, run_type FROM dag_run WHERE dag_id = 'smsonline_inbox'"
                )
                return runs if runs and all(state in ("success", "failed") for _, state, _ in runs) else []

            runs = wait_for("the inbox runs", runs_done, 120, scheduler)
            timings["runs done"] = time.monotonic() - started
            handled = [
                item
                for (value,) in query(
                    home,
                    "SELECT value FROM xcom WHERE dag_id = 'smsonline_inbox' AND task_id = 'handle_sms' "
                    "AND key = 'return_value'",
                )
                for item in json.loads(value)
            ]
            payloads = asset_event_payloads(home)
            record_rows = query(home, "SELECT key FROM variable WHERE key LIKE 'smsonline_watch__%'")
            logs = b"".join(p.read_bytes() for p in home.rglob("*.log")) + (home / "airflow.db").read_bytes()
        finally:
            for component in components:
                component.stop()
            server.stop()

    print(f"timings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
    # Each SMS after the watch started is one asset event, in order; the old one never fires;
    # the one delivered while no triggerer ran fires once after the restart; none fires twice.
    assert [p["sms"]["text"] for p in payloads] == [
        "Your code: 111111",
        "Lunch at noon?",
        "code 333333 sent while no triggerer ran",
    ]
    assert [p["code"] for p in payloads] == ["111111", None, "333333"]
    assert {p["rent_id"] for p in payloads} == {rent_id}
    # The scheduler ran the inbox DAG for them: every run succeeded and each SMS was handled once.
    assert runs and all(state == "success" and run_type == "asset_triggered" for _, state, run_type in runs)
    assert sorted(h["sms_id"] for h in handled) == sorted(p["sms_id"] for p in payloads)
    # One record, in an Airflow Variable, for the one watch.
    watch = f"smsonline_watch__{rent_id}__smsonline_default"
    assert [key.rpartition("__")[0] for (key,) in record_rows] == [watch]
    assert_no_key(logs)
