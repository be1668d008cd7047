# The docs' table of bad inputs (docs/errors.rst), row by row: each input gets an error naming the field and
# what is allowed, at the moment a user would meet it (DAG parse, rendering, or the first call).
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.operators.activation import ActivateNumberOperator
from airflow_provider_smsonline.operators.rent import (
    CancelRentOperator,
    ContinueRentOperator,
    FinishRentOperator,
    RentNumberOperator,
)
from airflow_provider_smsonline.sensors.rent import RentSmsSensor
from tests.conftest import CANARY_KEY, MOCK_ENDPOINT

ERRORS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "errors.rst"


def rent(**changes: Any) -> RentNumberOperator:
    args: dict[str, Any] = {"task_id": "rent", "service": "tg", "country": 0}
    args.update(changes)
    return RentNumberOperator(**args)


# (docs row label, what to do, expected exception type, fragment the message must contain)
PARSE_TIME: list[tuple[str, Callable[[], object], str]] = [
    ('`service=""`', lambda: rent(service=""), "service must be a non-empty string"),
    ("`service=None`", lambda: rent(service=None), "service must be a non-empty string"),
    (
        '`service="x" * 70000`',
        lambda: rent(service="x" * 70000),
        "service must be a non-empty string of at most 64",
    ),
    ("`country=-1`", lambda: rent(country=-1), "country must be a non-negative integer"),
    ('`country="ru"`', lambda: rent(country="ru"), "country must be a non-negative integer"),
    ("`country=True`", lambda: rent(country=True), "country must be a non-negative integer"),
    ("`operator=5`", lambda: rent(operator=5), "operator must be a string"),
    (
        "`rent_time=5`",
        lambda: rent(rent_time=5),
        "rent_time must be one of 4, 8, 12, 24, 72, 168, 360, 720, 2160",
    ),
    ('`rent_time="week"`', lambda: rent(rent_time="week"), "rent_time must be one of 4, 8, 12"),
    (
        '`webhook_url="ftp://example.com/h"`',
        lambda: rent(webhook_url="ftp://example.com/h"),
        "webhook_url must be an http:// or https:// URL",
    ),
    (
        '`webhook_url="http://"`',
        lambda: rent(webhook_url="http://"),
        "webhook_url must be an http:// or https:// URL",
    ),
    (
        '`webhook_url="example.com/hook"`',
        lambda: rent(webhook_url="example.com/hook"),
        "webhook_url must be an http:// or https:// URL",
    ),
    (
        "`ContinueRentOperator(rent_time=None)`",
        lambda: ContinueRentOperator(task_id="c", rent_id=1, rent_time=None),
        "rent_time is required",
    ),
    (
        "`rent_id=-3`",
        lambda: FinishRentOperator(task_id="f", rent_id=-3),
        "rent_id must be a non-negative integer",
    ),
    (
        '`rent_id="abc"`',
        lambda: CancelRentOperator(task_id="c", rent_id="abc"),
        "rent_id must be a non-negative integer",
    ),
    # Dynamic task mapping: what ``partial`` is given is known at parse, as ``__init__``'s arguments are.
    (
        "`RentNumberOperator.partial(country=-1)`",
        lambda: RentNumberOperator.partial(task_id="rent", service="tg", country=-1),
        "country must be a non-negative integer",
    ),
    (
        '`ActivateNumberOperator.partial(service="")`',
        lambda: ActivateNumberOperator.partial(task_id="buy", service="", country=0),
        "service must be a non-empty string",
    ),
    (
        '`RentSmsSensor.partial(pattern="(")`',
        lambda: RentSmsSensor.partial(task_id="wait", pattern="("),
        "pattern is not a valid regular expression",
    ),
    (
        "`RentSmsSensor.partial(poll_interval=0)`",
        lambda: RentSmsSensor.partial(task_id="wait", poll_interval=0),
        "poll_interval must be a positive number of seconds",
    ),
    (
        '`RentNumberOperator.partial(webhook=True, webhook_url="https://...")`',
        lambda: RentNumberOperator.partial(task_id="rent", webhook=True, webhook_url="https://example.com/h"),
        "webhook must be True or False, and True only without webhook_url",
    ),
]

# Dynamic task mapping: ``expand`` values reach the operator when Airflow unmaps the mapped task to
# run it (a literal list the same way as an XCom). (docs row label, class, ``partial`` arguments,
# one mapped task's arguments, fragment of the message)
MAPPED: list[tuple[str, type[Any], dict[str, Any], dict[str, Any], str]] = [
    (
        '`FinishRentOperator.partial(...).expand(rent_id=["abc"])`',
        FinishRentOperator,
        {},
        {"rent_id": "abc"},
        "rent_id must be a non-negative integer",
    ),
    (
        "`RentNumberOperator.partial(...).expand(country=[0, -1])`",
        RentNumberOperator,
        {"service": "tg"},
        {"country": -1},
        "country must be a non-negative integer",
    ),
    (
        "`RentSmsSensor.partial(...).expand(poll_interval=[0])`",
        RentSmsSensor,
        {"rent_id": 1},
        {"poll_interval": 0},
        "poll_interval must be a positive number of seconds",
    ),
    (
        '`RentNumberOperator.partial(...).expand(webhook=["yes"])`',
        RentNumberOperator,
        {"service": "tg", "country": 0},
        {"webhook": "yes"},
        "webhook must be True or False",
    ),
]

RENDERED: list[tuple[str, dict[str, Any], str]] = [
    (
        '`country="{{ params.country }}"` rendering `ru`',
        {"country": "{{ params.country }}"},
        "country must be a non-negative integer",
    ),
    (
        '`rent_time="{{ params.hours }}"` rendering `7`',
        {"rent_time": "{{ params.hours }}"},
        "rent_time must be one of 4, 8, 12",
    ),
    (
        '`webhook_url="{{ params.hook }}"` rendering `not a url`',
        {"webhook_url": "{{ params.hook }}"},
        "webhook_url must be an http:// or https:// URL",
    ),
]
RENDERED_VALUES = {"country": "ru", "rent_time": "7", "webhook_url": "not a url"}

CONNECTION: list[tuple[str, dict[str, Any], str]] = [
    ("no password (API key)", {"password": ""}, "has no API key"),
    ("host `ftp://example.com`", {"host": "ftp://example.com"}, "connection host must be empty, a host name"),
    ("port `70000`", {"port": 70000}, "connection port must be between 1 and 65535"),
    ('extra `timeout: "abc"`', {"extra": {"timeout": "abc"}}, "connection extra timeout must be a number"),
    (
        "extra `timeout: 0`",
        {"extra": {"timeout": 0}},
        "connection extra timeout must be a number from 0.1 to 3600",
    ),
    (
        'extra `verify_ssl: "maybe"`',
        {"extra": {"verify_ssl": "maybe"}},
        "connection extra verify_ssl must be true or false",
    ),
    (
        'extra `server_timezone: "Mars/Base"`',
        {"extra": {"server_timezone": "Mars/Base"}},
        "connection extra server_timezone must be an IANA time zone",
    ),
    (
        'extra `proxy: "ftp://proxy"`',
        {"extra": {"proxy": "ftp://proxy"}},
        "connection extra proxy must be an http://, https:// or socks5:// URL",
    ),
    (
        "extra `read_retries: -1`",
        {"extra": {"read_retries": -1}},
        "connection extra read_retries must be an integer from 0 to 10",
    ),
    (
        "extra `timeout: 1e10`",
        {"extra": {"timeout": 1e10}},
        "connection extra timeout must be a number from 0.1 to 3600",
    ),
    (
        "extra `ca_bundle` naming a missing file",
        {"extra": {"ca_bundle": "/nonexistent/ca.pem"}},
        "connection extra ca_bundle must be the path of a readable CA file",
    ),
    (
        "extra `verify_ssl: false` with a `ca_bundle`",
        {"extra": {"verify_ssl": False, "ca_bundle": "/etc/passwd"}},
        "verify_ssl=false and ca_bundle contradict each other",
    ),
    ("extra that is a JSON list", {"extra": [1, 2]}, "extra must be a JSON object"),
    ("extra that is not valid JSON", {"extra": "{timeout: 20"}, "extra is not valid JSON"),
    (
        'extra `proxy: "http://[::1"`',
        {"extra": {"proxy": "http://[::1"}},
        "connection extra proxy must be an http://, https:// or socks5:// URL with a host",
    ),
    (
        "extra `max_response_bytes: 10`",
        {"extra": {"max_response_bytes": 10}},
        "connection extra max_response_bytes must be an integer from 1024 to 67108864",
    ),
]


@pytest.mark.parametrize(("label", "make", "message"), PARSE_TIME, ids=[c[0] for c in PARSE_TIME])
def test_bad_argument_fails_at_dag_parse_naming_the_field(
    label: str, make: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_a_bad_argument_at_dag_parse_names_the_task_and_the_dag_files_line() -> None:
    # In a DAG of several rent tasks the error says which one, and where the DAG file made it:
    # the DAG processor stores only the last frames of the traceback, which are the provider's.
    from airflow.sdk import DAG

    with DAG("my_otp", schedule=None):
        RentNumberOperator(task_id="rent_tg", service="tg", country=0, rent_time=4)
        with pytest.raises(ValueError) as raised:
            RentNumberOperator(task_id="rent_wa", service="wa", country=0, rent_time=5)
        line = raised.tb.tb_lineno
        with pytest.raises(ValueError) as sensor_raised:
            RentSmsSensor(task_id="wait_wa", rent_id=1, poll_interval=0)
        with pytest.raises(ValueError) as partial_raised:
            RentNumberOperator.partial(task_id="rent_many", service="", country=0)

    assert str(raised.value) == (
        "rent_wa: rent_time must be one of 4, 8, 12, 24, 72, 168, 360, 720, 2160 (hours), got 5 "
        f"(test_bad_input.py, line {line})"
    )
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert str(sensor_raised.value).startswith("wait_wa: poll_interval must be a positive number")
    assert str(partial_raised.value).startswith("rent_many: service must be a non-empty string")


@pytest.mark.parametrize(("label", "cls", "given", "mapped", "message"), MAPPED, ids=[c[0] for c in MAPPED])
def test_bad_mapped_value_fails_its_mapped_task_without_retry(
    label: str, cls: type[Any], given: dict[str, Any], mapped: dict[str, Any], message: str
) -> None:
    from airflow_provider_smsonline._compat import AirflowFailException

    task = cls.partial(task_id="mapped", **given).expand(**{name: [value] for name, value in mapped.items()})
    with pytest.raises(AirflowFailException, match=re.escape(message)) as failure:
        task.unmap(mapped)  # what Airflow does as the mapped task instance starts
    assert str(failure.value).startswith("mapped: ")
    assert "(checked as the mapped task instance started); not retrying" in str(failure.value)
    # Outside mapping the same value stays a ValueError at DAG parse.
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(task_id="plain", **given, **mapped)


def test_mapped_task_with_good_values_unmaps_to_the_operator_with_them() -> None:
    task = RentNumberOperator.partial(task_id="rent", service="tg", rent_time=24).expand(country=[0, 7])
    unmapped = task.unmap({"country": 7})
    assert isinstance(unmapped, RentNumberOperator)
    assert (unmapped.service, unmapped.country, unmapped.rent_time) == ("tg", 7, 24)
    templated = RentSmsSensor.partial(task_id="wait", pattern="{{ params.p }}").expand(rent_id=[1])
    sensor = templated.unmap({"rent_id": 1})
    assert isinstance(sensor, RentSmsSensor) and sensor.pattern == "{{ params.p }}"  # checked after rendering


def test_a_bad_value_from_the_dags_default_args_fails_each_mapped_instance_without_retry() -> None:
    from airflow.sdk import DAG

    from airflow_provider_smsonline._compat import AirflowFailException

    with DAG("mapped_defaults", schedule=None, default_args={"country": -1}):
        task = RentNumberOperator.partial(task_id="rent", service="tg").expand(rent_time=[4, 8])
    with pytest.raises(AirflowFailException, match="country must be a non-negative integer"):
        task.unmap({"rent_time": 4})


def test_the_documented_mapped_sensor_over_rentals_parses() -> None:
    from airflow.sdk import DAG

    with DAG("mapped_wait", schedule=None) as dag:
        rent = RentNumberOperator.partial(task_id="rent", country=0).expand(service=["tg", "wa"])
        RentSmsSensor.partial(task_id="wait", deferrable=True).expand(
            rent_id=rent.output.map(lambda r: r["id"])
        )
    assert dag.get_task("wait").upstream_task_ids == {"rent"}


def test_partial_on_a_task_is_refused_as_airflow_refuses_it() -> None:
    task = FinishRentOperator(task_id="finish", rent_id=1)
    with pytest.raises(TypeError, match="partial can only be called on Operator classes"):
        task.partial(task_id="again")


def test_a_subclass_with_its_own_init_gets_airflows_partial_unchecked() -> None:
    class RentByCountryCode(RentNumberOperator):
        def __init__(self, *, country: object, **kwargs: Any) -> None:
            super().__init__(country={"ru": 0}.get(str(country), country), **kwargs)

    task = RentByCountryCode.partial(task_id="rent", service="tg", country="ru").expand(rent_time=[4])
    assert task.unmap({"rent_time": 4}).country == 0  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="country must be a non-negative integer"):
        RentByCountryCode(task_id="plain", service="tg", country="xx")  # its __init__ still checks


@pytest.mark.parametrize(("label", "changes", "message"), RENDERED, ids=[c[0] for c in RENDERED])
def test_templated_value_that_renders_wrong_fails_the_task_without_retry(
    label: str, changes: dict[str, Any], message: str
) -> None:
    from airflow_provider_smsonline._compat import AirflowFailException

    operator = rent(**changes)  # accepted at parse: only rendering tells
    for field in changes:
        setattr(operator, field, RENDERED_VALUES[field])  # what rendering produced
    with pytest.raises(AirflowFailException, match=re.escape(message)) as failure:
        operator.execute(context={})  # type: ignore[arg-type]
    assert "after rendering" in str(failure.value)


@pytest.mark.parametrize(("label", "fields", "message"), CONNECTION, ids=[c[0] for c in CONNECTION])
def test_bad_connection_field_is_named_on_first_use(
    label: str, fields: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn: dict[str, Any] = {"conn_type": "smsonline", "host": MOCK_ENDPOINT, "password": CANARY_KEY}
    conn.update(fields)
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_BAD", json.dumps(conn))
    hook = SmsOnlineHook("smsonline_bad")
    with pytest.raises(ValueError, match=re.escape(message)):
        hook.get_balance()
    ok, shown = hook.test_connection()
    assert not ok and message in shown


def test_bad_connection_fails_the_operator_without_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_smsonline._compat import AirflowFailException

    conn = {"conn_type": "smsonline", "host": "ftp://example.com", "password": CANARY_KEY}
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_BAD", json.dumps(conn))
    operator = FinishRentOperator(task_id="finish", rent_id=1, smsonline_conn_id="smsonline_bad")
    with pytest.raises(AirflowFailException, match="connection host must be"):
        operator.execute(context={})  # type: ignore[arg-type]


def test_docs_list_every_bad_input() -> None:
    page = ERRORS_PAGE.read_text()
    labels = [c[0] for c in PARSE_TIME] + [c[0] for c in MAPPED]
    labels += [c[0] for c in RENDERED] + [c[0] for c in CONNECTION]
    # The labels are written with `code` spans; the page writes them as ``literals``.
    missing = [label for label in labels if re.sub(r"`([^`]+)`", r"``\1``", label) not in page]
    assert not missing, f"the docs' bad-input table (docs/errors.rst) lacks rows for: {missing}"
