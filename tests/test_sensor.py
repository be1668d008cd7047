# RentSmsSensor as a DAG author meets it: arguments checked at parse and after rendering,
# pokes against a mocked getRentStatus (requests-mock), deferral to the trigger and the resume.
from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests_mock
from airflow.sdk.bases.sensor import PokeReturnValue

from airflow_provider_smsonline import protocol
from airflow_provider_smsonline._compat import AirflowFailException, AirflowSensorTimeout, TaskDeferred
from airflow_provider_smsonline.sensors.rent import RentSmsSensor
from airflow_provider_smsonline.triggers.rent import RentSmsTrigger
from tests.conftest import MOCK_ENDPOINT, FakeTaskInstance, assert_no_key, connection_env, task_context

STARTED = datetime(2025, 5, 10, 12, 0, 0, tzinfo=timezone.utc)
CODE_PATTERN = r"code:? (\d{4,8})"


class SensorTaskInstance(FakeTaskInstance):
    """The shared fake task instance, plus what a sensor reads: when it started (and first poked)."""

    def __init__(self, start_date: datetime = STARTED, first_reschedule: datetime | None = None) -> None:
        super().__init__(task_id="wait_for_code")
        self.start_date = start_date
        self.first_reschedule = first_reschedule

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)  # XComs must be JSON-able
        super().xcom_push(key, value)

    def get_first_reschedule_date(self, context: Any) -> datetime | None:
        return self.first_reschedule


class DagRun:
    """What a sensor reads of its DAG run: when it started."""

    def __init__(self, start_date: datetime) -> None:
        self.start_date = start_date
        self.run_after = start_date - timedelta(seconds=5)
        self.logical_date = start_date - timedelta(days=1)


def context_of(ti: SensorTaskInstance, run_started: datetime | None = None) -> Any:
    context = task_context(ti)
    if run_started is not None:
        context["dag_run"] = DagRun(run_started)
    return context


def rented_in_this_run(ti: SensorTaskInstance, rent_id: int = 7) -> None:
    """Record rental ``rent_id`` in the charge ledger as the rent task of ``ti``'s run does."""
    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
    from airflow_provider_smsonline.ledger import ChargeLedger, Done, account_of

    rental = protocol.Rental(id=rent_id, number="79990001122", end_date=STARTED + timedelta(hours=4))
    rent_task = FakeTaskInstance(task_id="rent", run_id=ti.run_id)
    ledger = ChargeLedger.for_context(task_context(rent_task))
    claim = ledger.claim(account_of(SmsOnlineHook()), rent_id)
    ledger.write(Done(rental=rental, claim=claim))


def sms_body(*messages: tuple[str, datetime]) -> str:
    values = {
        str(i): {"phoneFrom": "Telegram", "text": text, "service": "tg", "date": protocol.format_sms_date(at)}
        for i, (text, at) in enumerate(messages)
    }
    return json.dumps({"status": "success", "quantity": str(len(values)), "values": values})


def sensor(**kwargs: Any) -> RentSmsSensor:
    return RentSmsSensor(**{"task_id": "wait_for_code", "rent_id": 7, "pattern": CODE_PATTERN, **kwargs})


@pytest.fixture
def api(smsonline_conn: str) -> Any:
    with requests_mock.Mocker() as mocker:
        yield mocker


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("rent_id", {"rent_id": -1}),
        ("rent_id", {"rent_id": "abc"}),
        ("pattern", {"pattern": "code: (\\d+"}),
        ("since", {"since": "last tuesday"}),
        ("poll_interval", {"poll_interval": 0}),
    ],
)
def test_bad_arguments_fail_at_dag_parse_naming_the_field(field: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=rf"^wait_for_code: {field} "):
        sensor(**kwargs)


def test_templated_arguments_are_accepted_at_dag_parse() -> None:
    wait = sensor(rent_id="{{ ti.xcom_pull('rent', key='id') }}", pattern="{{ params.pattern }}")
    assert wait.template_fields == ("rent_id", "pattern", "since")


def test_a_bad_rendered_argument_fails_without_retry_naming_the_field(api: Any) -> None:
    wait = sensor(pattern="{{ params.pattern }}")
    wait.pattern = "code: (\\d+"  # what rendering produced

    with pytest.raises(AirflowFailException, match=r"pattern is not a valid regular expression"):
        wait.execute(context_of(SensorTaskInstance()))
    assert not api.called


# ----------------------------------------------------------------------------- poking


def test_poke_returns_false_while_no_sms_has_arrived(api: Any) -> None:
    api.get(MOCK_ENDPOINT, text="STATUS_WAIT_CODE")

    assert sensor().poke(context_of(SensorTaskInstance())) is False


def test_poke_pushes_the_code_sms_and_text_on_a_match(api: Any) -> None:
    at = STARTED + timedelta(minutes=2)
    api.get(MOCK_ENDPOINT, text=sms_body(("Telegram code: 482913", at)))
    ti = SensorTaskInstance()

    result = sensor().poke(context_of(ti))

    sms = {"phone_from": "Telegram", "text": "Telegram code: 482913", "service": "tg", "date": at.isoformat()}
    assert isinstance(result, PokeReturnValue) and result.is_done
    assert result.xcom_value == {"sms": sms, "code": "482913"}
    assert ti.xcoms == {"sms": sms, "code": "482913", "text": "Telegram code: 482913"}


def test_execute_returns_sms_and_code_as_return_value(api: Any) -> None:
    api.get(
        MOCK_ENDPOINT,
        [{"text": "STATUS_WAIT_CODE"}, {"text": sms_body(("code: 1234", STARTED + timedelta(seconds=5)))}],
    )

    assert sensor(poke_interval=0).execute(context_of(SensorTaskInstance()))["code"] == "1234"


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_an_sms_that_landed_before_the_wait_on_a_rental_of_this_run_counts(
    api: Any, memory_variables: dict[str, object], mode: str
) -> None:
    # rent -> ask the site for the code -> wait: the code is there before the sensor's first look.
    api.get(MOCK_ENDPOINT, text=sms_body(("code: 482913", STARTED - timedelta(hours=5))))
    ti = SensorTaskInstance()
    rented_in_this_run(ti)

    result = sensor(mode=mode, poke_interval=0, timeout=5).execute(context_of(ti, run_started=STARTED))

    assert result["code"] == "482913"  # whatever date the server wrote: the rental is this run's


def test_a_rental_of_another_run_is_not_new_to_this_one(
    api: Any, memory_variables: dict[str, object]
) -> None:
    api.get(MOCK_ENDPOINT, text=sms_body(("code: 1111", STARTED - timedelta(minutes=1))))
    other_run = SensorTaskInstance()
    rented_in_this_run(other_run)
    ti = SensorTaskInstance()
    ti.run_id = "manual__2025-01-02"

    with pytest.raises(AirflowSensorTimeout):
        sensor(poke_interval=0, timeout=0).execute(context_of(ti, run_started=STARTED))


@pytest.mark.parametrize("server_offset_hours", [3, -5])
def test_a_kept_numbers_sms_from_before_the_run_never_counts_and_one_after_the_wait_starts_always_does(
    api: Any, monkeypatch: pytest.MonkeyPatch, server_offset_hours: int
) -> None:
    # The server writes its dates in UTC+3 or UTC-5 and the connection says so: an SMS from before
    # the run is old, one from after its start counts though it was there when the wait started,
    # and one that arrives during the wait counts whatever date it carries.
    zone = f"Etc/GMT{-server_offset_hours:+d}"
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(read_retries=0, server_timezone=zone))
    local = timezone(timedelta(hours=server_offset_hours))
    before_run = ("code: 1111", (STARTED - timedelta(minutes=1)).astimezone(local))
    after_run = ("code: 2222", (STARTED + timedelta(seconds=30)).astimezone(local))
    during_wait = ("code: 3333", (STARTED - timedelta(hours=9)).astimezone(local))  # a date far off
    api.get(
        MOCK_ENDPOINT,
        [
            {"text": sms_body(after_run, before_run)},  # the first wait's look as it starts
            {"text": sms_body(after_run, before_run)},  # its first poke
            {"text": sms_body(before_run)},  # a second wait's look as it starts
            {"text": sms_body(before_run)},  # its first poke: nothing new
            {"text": sms_body(during_wait, before_run)},
        ],
    )
    ti = SensorTaskInstance()
    context = context_of(ti, run_started=STARTED)

    assert sensor(poke_interval=0, timeout=5).execute(context)["code"] == "2222"
    assert sensor(poke_interval=0, timeout=5).execute(context)["code"] == "3333"


def test_a_rescheduled_sensor_counts_a_kept_numbers_sms_dated_from_the_runs_start(api: Any) -> None:
    api.get(
        MOCK_ENDPOINT,
        text=sms_body(
            ("code: 2468", STARTED + timedelta(minutes=1)), ("code: 1111", STARTED - timedelta(seconds=1))
        ),
    )
    later_run = SensorTaskInstance(start_date=STARTED + timedelta(minutes=5), first_reschedule=STARTED)

    result = sensor(mode="reschedule").poke(context_of(later_run, run_started=STARTED))

    assert isinstance(result, PokeReturnValue) and later_run.xcoms["code"] == "2468"


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_a_timeout_says_how_many_sms_were_passed_over_as_older_than_the_run_and_how_to_count_them(
    api: Any, mode: str
) -> None:
    api.get(
        MOCK_ENDPOINT,
        text=sms_body(
            ("code: 1111", STARTED - timedelta(minutes=1)), ("hello", STARTED - timedelta(hours=1))
        ),
    )

    with pytest.raises(AirflowSensorTimeout) as timed_out:
        sensor(mode=mode, timeout=0, poke_interval=0).execute(
            context_of(SensorTaskInstance(), run_started=STARTED)
        )

    message = str(timed_out.value)
    assert message.startswith("Sensor has timed out")
    assert message.endswith(
        " 1 SMS matching the pattern was passed over as older than this DAG run (server dates "
        "2025-05-10T11:59:00+00:00, read in the connection's server_timezone); to count SMS from "
        'before the run, pass since, e.g. since="2025-05-10T11:59:00+00:00" (if those dates look hours '
        "off, the connection's server_timezone is not the server's zone)"
    )


def test_a_soft_failed_timeout_skips_saying_what_was_passed_over(api: Any) -> None:
    from airflow_provider_smsonline._compat import AirflowSkipException

    api.get(MOCK_ENDPOINT, text=sms_body(("code: 1111", STARTED - timedelta(minutes=1))))

    with pytest.raises(AirflowSkipException, match=r"^Sensor has timed out.* 1 SMS matching the pattern was"):
        sensor(timeout=0, poke_interval=0, soft_fail=True).execute(
            context_of(SensorTaskInstance(), run_started=STARTED)
        )


def test_a_timeout_with_nothing_passed_over_says_nothing_more(api: Any) -> None:
    api.get(MOCK_ENDPOINT, text=sms_body(("hello", STARTED - timedelta(minutes=1))))

    with pytest.raises(AirflowSensorTimeout) as timed_out:
        sensor(timeout=0, poke_interval=0).execute(context_of(SensorTaskInstance(), run_started=STARTED))

    assert "passed over" not in str(timed_out.value)


def test_the_documented_since_counts_a_kept_numbers_sms_from_the_hour_before_the_run(api: Any) -> None:
    from airflow.sdk.execution_time import macros

    page = (Path(__file__).resolve().parent.parent / "docs" / "sensors.rst").read_text()
    template = re.search(r'since="(\{\{ \(dag_run\.start_date[^"]+)"', page)
    assert template, "docs/sensors.rst shows no since for a kept number's older SMS"
    older = [("code: 1111", STARTED - timedelta(minutes=50)), ("code: 2222", STARTED - timedelta(minutes=70))]
    api.get(MOCK_ENDPOINT, text=sms_body(*older))
    context = context_of(SensorTaskInstance(), run_started=STARTED)
    context["macros"] = macros
    without_since = sensor(poke_interval=0, timeout=0)
    with pytest.raises(AirflowSensorTimeout):
        without_since.execute(context)
    wait = sensor(since=template.group(1), poke_interval=0, timeout=0)

    wait.render_template_fields(context)

    assert wait.execute(context)["code"] == "1111"


def test_the_run_starts_at_its_start_date_else_when_it_could_run_else_at_the_tasks_start() -> None:
    from airflow_provider_smsonline.sensors.rent import run_started_at

    ti = SensorTaskInstance(start_date=STARTED + timedelta(minutes=3))
    assert run_started_at(context_of(ti, run_started=STARTED)) == STARTED
    context = context_of(ti, run_started=STARTED)
    context["dag_run"].start_date = None
    assert run_started_at(context) == STARTED - timedelta(seconds=5)
    assert run_started_at(context_of(ti)) == STARTED + timedelta(minutes=3)


def test_an_explicit_since_replaces_the_task_start(api: Any) -> None:
    api.get(MOCK_ENDPOINT, text=sms_body(("code: 1111", STARTED - timedelta(minutes=1))))
    wait = sensor(since=(STARTED - timedelta(hours=1)).isoformat())

    result = wait.poke(context_of(SensorTaskInstance()))

    assert isinstance(result, PokeReturnValue)
    assert (result.xcom_value or {}).get("code") == "1111"


def test_an_ended_rental_fails_the_task_without_retry(api: Any) -> None:
    api.get(MOCK_ENDPOINT, text="RENT_DIE")

    with pytest.raises(AirflowFailException, match=r"rental 7 has ended before a matching SMS arrived"):
        sensor().poke(context_of(SensorTaskInstance()))


def test_a_server_error_only_delays_the_wait(api: Any) -> None:
    bad_gateway = {"status_code": 502, "text": "<html>Bad gateway</html>"}
    api.get(MOCK_ENDPOINT, [{"text": "STATUS_WAIT_CODE"}, bad_gateway])  # the look as it starts, a poke

    assert sensor().poke(context_of(SensorTaskInstance())) is False


def test_a_refused_key_fails_without_retry_and_without_the_key(api: Any) -> None:
    api.get(MOCK_ENDPOINT, text="BAD_KEY")

    with pytest.raises(AirflowFailException) as failure:
        sensor().poke(context_of(SensorTaskInstance()))
    assert "API key was refused" in str(failure.value)
    assert_no_key(str(failure.value))


def test_the_sensor_times_out_as_airflow_sensors_do(api: Any) -> None:
    api.get(MOCK_ENDPOINT, text="STATUS_WAIT_CODE")

    with pytest.raises(AirflowSensorTimeout):
        sensor(timeout=0, poke_interval=0).execute(context_of(SensorTaskInstance()))


# ----------------------------------------------------------------------------- deferring


def test_a_deferrable_sensor_defers_to_the_trigger_with_its_arguments(api: Any) -> None:
    old = ("code: 1111", STARTED - timedelta(seconds=1))
    after_run = ("code: 2222", STARTED)
    api.get(MOCK_ENDPOINT, text=sms_body(after_run, old))
    wait = sensor(deferrable=True, poll_interval=3, timeout=900)

    with pytest.raises(TaskDeferred) as deferred:
        wait.execute(context_of(SensorTaskInstance(), run_started=STARTED))

    trigger = deferred.value.trigger
    assert isinstance(trigger, RentSmsTrigger)
    kwargs = trigger.serialize()[1]
    gives_up_at = datetime.fromisoformat(kwargs.pop("timeout_at"))
    assert kwargs == {
        "rent_id": 7,
        "smsonline_conn_id": "smsonline_default",
        "pattern": CODE_PATTERN,
        "since": None,
        "seen": [protocol.fingerprint(protocol.parse_rent_status(200, sms_body(old))[0])],
        "passed_over": ["2025-05-10T11:59:59+00:00"],
        "poll_interval": 3.0,
        "jitter": 0.1,
        "end_date": None,
    }
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(seconds=900)
    in_900_s = datetime.now(timezone.utc) + timedelta(seconds=900)
    assert abs((gives_up_at - in_900_s).total_seconds()) < 5  # also bounds `airflow dags test`


def test_a_deferrable_sensor_on_a_rental_of_this_run_counts_every_sms(
    api: Any, memory_variables: dict[str, object]
) -> None:
    api.get(MOCK_ENDPOINT, text=sms_body(("code: 1111", STARTED - timedelta(hours=1))))
    ti = SensorTaskInstance()
    rented_in_this_run(ti)

    with pytest.raises(TaskDeferred) as deferred:
        sensor(deferrable=True).execute(context_of(ti, run_started=STARTED))

    kwargs = deferred.value.trigger.serialize()[1]
    assert (kwargs["seen"], kwargs["since"], kwargs["passed_over"]) == ([], None, None)
    assert [r.qs.get("action") for r in api.request_history] == []  # no look needed


def test_execute_complete_pushes_the_code_and_returns_sms_and_code() -> None:
    sms = {"phone_from": "Telegram", "text": "code: 5150", "service": "tg", "date": STARTED.isoformat()}
    event = {"status": "success", "rent_id": 7, "sms": sms, "code": "5150"}
    ti = SensorTaskInstance()

    result = sensor().execute_complete(context_of(ti), event)

    assert result == {"sms": sms, "code": "5150"}
    assert ti.xcoms == {"sms": sms, "code": "5150", "text": "code: 5150"}


def test_execute_complete_fails_without_retry_when_the_rental_expired() -> None:
    event = {
        "status": "expired",
        "rent_id": 7,
        "message": "rental 7 has ended (RENT_DIE)",
        "code": "RENT_DIE",
    }

    with pytest.raises(AirflowFailException, match=r"rental 7 has ended \(RENT_DIE\)"):
        sensor().execute_complete(context_of(SensorTaskInstance()), event)


def test_execute_complete_raises_sensor_timeout_when_the_trigger_gave_up() -> None:
    event = {"status": "timeout", "rent_id": 7, "message": "no matching SMS arrived", "code": "timeout"}

    with pytest.raises(AirflowSensorTimeout, match="no matching SMS arrived"):
        sensor().execute_complete(context_of(SensorTaskInstance()), event)


def test_the_sensor_module_imports_without_the_hook_requests_or_the_trigger() -> None:
    code = (
        "import sys, airflow.sdk; before = set(sys.modules); "  # what Airflow loads itself
        "import airflow_provider_smsonline.sensors.rent; "
        "print([m for m in ('requests', 'aiohttp', 'airflow_provider_smsonline.hooks.smsonline', "
        "'airflow_provider_smsonline.hooks.async_client', 'airflow_provider_smsonline.triggers.rent') "
        "if m in sys.modules and m not in before])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]"
