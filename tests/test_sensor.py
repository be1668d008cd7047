# RentSmsSensor as a DAG author meets it: arguments checked at parse and after rendering,
# pokes against a mocked getRentStatus (requests-mock), deferral to the trigger and the resume.
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests_mock
from airflow.sdk.bases.sensor import PokeReturnValue

from airflow_provider_smsonline import protocol
from airflow_provider_smsonline._compat import AirflowFailException, AirflowSensorTimeout, TaskDeferred
from airflow_provider_smsonline.sensors.rent import RentSmsSensor
from airflow_provider_smsonline.triggers.rent import RentSmsTrigger
from tests.conftest import MOCK_ENDPOINT, FakeTaskInstance, assert_no_key, task_context

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


def context_of(ti: SensorTaskInstance) -> Any:
    return task_context(ti)


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


@pytest.mark.parametrize("server_offset_hours", [3, -5])
def test_an_sms_already_on_the_rental_never_counts_and_a_later_one_always_does(
    api: Any, server_offset_hours: int
) -> None:
    # The server writes its dates in a zone it never names: UTC+3 puts the old SMS "after" the
    # start, a server behind UTC puts the new one "before" it. Neither may fool the wait.
    now = datetime.now(timezone.utc) + timedelta(hours=server_offset_hours)
    old = ("code: 1111", now - timedelta(minutes=1))
    new = ("code: 2222", now - timedelta(seconds=30))  # listed first: the server's newest
    api.get(
        MOCK_ENDPOINT,
        [{"text": sms_body(old)}, {"text": sms_body(old)}, {"text": sms_body(new, old)}],
    )

    result = sensor(poke_interval=0).execute(
        context_of(SensorTaskInstance(start_date=datetime.now(timezone.utc)))
    )

    assert result["code"] == "2222"


def test_a_rescheduled_sensor_counts_sms_since_its_first_poke(api: Any) -> None:
    api.get(MOCK_ENDPOINT, text=sms_body(("code: 2468", STARTED + timedelta(minutes=1))))
    later_run = SensorTaskInstance(start_date=STARTED + timedelta(minutes=5), first_reschedule=STARTED)

    result = sensor(mode="reschedule").poke(context_of(later_run))

    assert isinstance(result, PokeReturnValue) and later_run.xcoms["code"] == "2468"


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
    api.get(MOCK_ENDPOINT, status_code=502, text="<html>Bad gateway</html>")

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
    old = ("code: 1111", STARTED)
    api.get(MOCK_ENDPOINT, text=sms_body(old))
    wait = sensor(deferrable=True, poll_interval=3, timeout=900)

    with pytest.raises(TaskDeferred) as deferred:
        wait.execute(context_of(SensorTaskInstance()))

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
        "poll_interval": 3.0,
        "jitter": 0.1,
        "end_date": None,
    }
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(seconds=900)
    in_900_s = datetime.now(timezone.utc) + timedelta(seconds=900)
    assert abs((gives_up_at - in_900_s).total_seconds()) < 5  # also bounds `airflow dags test`


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
