# SmsOnlineHook as a specification: how a connection becomes an endpoint and settings, what
# goes on the wire, and what a caller gets when the wire or the server fails. Charging calls
# are never sent twice; reads are retried.
from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import requests_mock as requests_mock_module

from airflow_provider_smsonline.exceptions import (
    AccountError,
    NoNumbersError,
    OutcomeUnknownError,
    RentalNotFoundError,
    ServerError,
    TransportError,
)
from airflow_provider_smsonline.hooks import smsonline as hook_module
from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook, build_endpoint
from tests.conftest import (
    CANARY_KEY,
    MOCK_ENDPOINT,
    LoopbackApi,
    assert_no_key,
    connection_env,
    sent_actions,
    sent_query,
)

RENTAL = json.dumps(
    {"status": "success", "phone": {"id": 1049, "endDate": "2025-05-10T12:34:56", "number": "79999876543"}}
)
HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"


def last(mocker: requests_mock_module.Mocker) -> Any:
    """The last request requests-mock saw."""
    assert mocker.last_request is not None, "no request was sent"
    return mocker.last_request


def use_connection(monkeypatch: pytest.MonkeyPatch, **fields: Any) -> None:
    """Make ``smsonline_default`` the connection ``fields`` describe (defaults: mock endpoint, canary)."""
    conn: dict[str, Any] = {"conn_type": "smsonline", "host": MOCK_ENDPOINT, "password": CANARY_KEY}
    conn.update(fields)
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", json.dumps(conn))


@pytest.fixture
def retrying_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    """``smsonline_default`` with the default two read retries and no backoff sleep."""
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(retry_backoff=0))
    return "smsonline_default"


class FakeClock:
    """Stands in for the hook module's ``time``: records sleeps instead of sleeping."""

    def __init__(self) -> None:
        import time

        self.monotonic = time.monotonic
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(hook_module, "time", fake)
    return fake


# ----------------------------------------------------------------------------- the endpoint


@pytest.mark.parametrize(
    ("host", "port", "endpoint"),
    [
        ("", None, "https://api.sms.online/stubs/handler_api.php"),
        (None, None, "https://api.sms.online/stubs/handler_api.php"),
        ("api.sms.online", None, "https://api.sms.online/stubs/handler_api.php"),
        ("  api.example.com  ", None, "https://api.example.com/stubs/handler_api.php"),
        ("api.example.com:8443", None, "https://api.example.com:8443/stubs/handler_api.php"),
        ("http://127.0.0.1:8765/stubs/handler_api.php", None, "http://127.0.0.1:8765/stubs/handler_api.php"),
        ("https://proxy.example.com/sms/handler.php", None, "https://proxy.example.com/sms/handler.php"),
        ("https://api.example.com/", None, "https://api.example.com/stubs/handler_api.php"),
        (
            "https://api.example.com/stubs/handler_api.php?api_key=x#f",
            None,
            "https://api.example.com/stubs/handler_api.php",
        ),
        (
            "http://api.example.com:8000/stubs/handler_api.php",
            9000,
            "http://api.example.com:9000/stubs/handler_api.php",
        ),
        ("", 8443, "https://api.sms.online:8443/stubs/handler_api.php"),
        ("http://[::1]:8765/stubs/handler_api.php", None, "http://[::1]:8765/stubs/handler_api.php"),
    ],
)
def test_endpoint_is_built_from_host_and_port(host: str | None, port: int | None, endpoint: str) -> None:
    assert build_endpoint(host, port) == endpoint


def test_empty_host_connection_calls_the_public_endpoint(
    monkeypatch: pytest.MonkeyPatch, requests_mock: requests_mock_module.Mocker
) -> None:
    use_connection(monkeypatch, host="")
    requests_mock.get("https://api.sms.online/stubs/handler_api.php", text="ACCESS_BALANCE:1")
    assert SmsOnlineHook().get_balance() == Decimal("1")
    assert requests_mock.call_count == 1


def test_bare_host_connection_with_a_port_calls_https_on_that_port(
    monkeypatch: pytest.MonkeyPatch, requests_mock: requests_mock_module.Mocker
) -> None:
    use_connection(monkeypatch, host="api.example.com", port=8443)
    requests_mock.get("https://api.example.com:8443/stubs/handler_api.php", text="ACCESS_BALANCE:1")
    assert SmsOnlineHook().get_balance() == Decimal("1")


@pytest.mark.parametrize(
    "host",
    [
        "ftp://example.com",
        "http://",
        "https://:8080/x",
        "http://[bad",
        "https://host:notaport/",
        "file:///etc/passwd",
    ],
)
def test_bad_host_raises_value_error_naming_the_field(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    use_connection(monkeypatch, host=host)
    with pytest.raises(ValueError, match="connection host must be empty, a host name"):
        SmsOnlineHook().get_balance()


@pytest.mark.parametrize("port", [70000, -1])
def test_bad_port_raises_value_error_naming_the_field(port: int) -> None:
    with pytest.raises(ValueError, match="connection port must be between 1 and 65535"):
        build_endpoint("api.example.com", port)


# ----------------------------------------------------------------------------- extras


def test_timeout_extra_sets_the_read_timeout_and_caps_connecting(
    monkeypatch: pytest.MonkeyPatch, requests_mock: requests_mock_module.Mocker
) -> None:
    use_connection(monkeypatch, extra={"timeout": 45})
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:1")
    SmsOnlineHook().get_balance()
    assert last(requests_mock).timeout == (10.0, 45.0)


def test_short_timeout_extra_also_bounds_connecting(
    monkeypatch: pytest.MonkeyPatch, requests_mock: requests_mock_module.Mocker
) -> None:
    use_connection(monkeypatch, extra={"timeout": "2.5"})
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:1")
    SmsOnlineHook().get_balance()
    assert last(requests_mock).timeout == (2.5, 2.5)


def test_default_timeout_is_thirty_seconds(
    monkeypatch: pytest.MonkeyPatch, requests_mock: requests_mock_module.Mocker
) -> None:
    use_connection(monkeypatch)
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:1")
    SmsOnlineHook().get_balance()
    assert last(requests_mock).timeout == (10.0, 30.0)


def test_airflow2_style_prefixed_extra_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    use_connection(monkeypatch, extra={"extra__smsonline__timeout": "7", "extra__smsonline__read_retries": 0})
    config = SmsOnlineHook().config
    assert (config.timeout, config.read_retries) == (7.0, 0)


@pytest.mark.parametrize("value", [False, "false", "0", "no", "off"])
def test_verify_ssl_false_turns_verification_off_and_warns(
    monkeypatch: pytest.MonkeyPatch,
    requests_mock: requests_mock_module.Mocker,
    capsys: pytest.CaptureFixture[str],
    value: object,
) -> None:
    use_connection(monkeypatch, extra={"verify_ssl": value})
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:1")
    SmsOnlineHook().get_balance()
    assert last(requests_mock).verify is False
    output = capsys.readouterr()
    assert "TLS certificate verification is OFF" in output.out + output.err
    assert_no_key(output.out + output.err)


def test_verify_ssl_on_by_default_without_a_warning(
    monkeypatch: pytest.MonkeyPatch,
    requests_mock: requests_mock_module.Mocker,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_connection(monkeypatch)
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:1")
    SmsOnlineHook().get_balance()
    assert last(requests_mock).verify not in (False, None)
    output = capsys.readouterr()
    assert "verification is OFF" not in output.out + output.err


def test_ca_bundle_extra_is_what_requests_verifies_with(
    monkeypatch: pytest.MonkeyPatch, requests_mock: requests_mock_module.Mocker, tmp_path: Path
) -> None:
    bundle = tmp_path / "inspecting-proxy.pem"
    bundle.write_text("")
    use_connection(monkeypatch, extra={"ca_bundle": str(bundle)})
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:1")
    SmsOnlineHook().get_balance()
    assert last(requests_mock).verify == str(bundle)


def test_proxy_extra_is_used_for_both_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    use_connection(monkeypatch, extra={"proxy": "socks5h://127.0.0.1:1080"})
    session = SmsOnlineHook().get_conn()
    assert session.proxies == {"http": "socks5h://127.0.0.1:1080", "https": "socks5h://127.0.0.1:1080"}


def test_server_timezone_extra_reads_dates_in_that_zone(
    monkeypatch: pytest.MonkeyPatch, requests_mock: requests_mock_module.Mocker
) -> None:
    use_connection(monkeypatch, extra={"server_timezone": "Europe/Moscow"})
    requests_mock.get(MOCK_ENDPOINT, text=RENTAL)
    rental = SmsOnlineHook().get_rent_number("tg", 0)
    assert rental.end_date.utcoffset() == timedelta(hours=3)


BAD_EXTRAS: list[tuple[str, object, str]] = [
    ("timeout", "abc", "connection extra timeout must be a number from 0.1 to 3600"),
    ("timeout", 0, "connection extra timeout must be a number from 0.1 to 3600"),
    ("timeout", "nan", "connection extra timeout must be a number"),
    ("timeout", "inf", "connection extra timeout must be a number"),
    ("timeout", True, "connection extra timeout must be a number"),
    ("verify_ssl", "maybe", "connection extra verify_ssl must be true or false"),
    ("server_timezone", "Mars/Base", "connection extra server_timezone must be an IANA time zone"),
    ("proxy", "ftp://proxy", "connection extra proxy must be an http://, https:// or socks5:// URL"),
    ("read_retries", -1, "connection extra read_retries must be an integer from 0 to 10"),
    ("read_retries", "two", "connection extra read_retries must be an integer from 0 to 10"),
    ("read_retries", 1.5, "connection extra read_retries must be an integer from 0 to 10"),
    (
        "max_response_bytes",
        10,
        "connection extra max_response_bytes must be an integer from 1024 to 67108864",
    ),
    ("retry_backoff", -1, "connection extra retry_backoff must be a number from 0 to 60"),
    ("retry_backoff", "Infinity", "connection extra retry_backoff must be a number"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD_EXTRAS)
def test_bad_extra_raises_value_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
    requests_mock: requests_mock_module.Mocker,
    name: str,
    value: object,
    message: str,
) -> None:
    use_connection(monkeypatch, extra={name: value})
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:1")
    with pytest.raises(ValueError, match=re.escape(message)):
        SmsOnlineHook().get_balance()
    assert requests_mock.call_count == 0


def test_missing_api_key_raises_value_error_naming_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    use_connection(monkeypatch, password="  ")
    with pytest.raises(ValueError, match="has no API key: put it in the connection's password"):
        SmsOnlineHook().get_balance()


# ----------------------------------------------------------------------------- the query


def test_query_carries_the_api_key_and_the_action(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:1")
    SmsOnlineHook().get_balance()
    assert last(requests_mock).method == "GET"
    assert sent_query(requests_mock.last_request) == {"action": "getBalance", "api_key": CANARY_KEY}


def test_rent_number_sends_only_the_optionals_given(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(MOCK_ENDPOINT, text=RENTAL)
    SmsOnlineHook().get_rent_number("tg", 0)
    assert sent_query(requests_mock.last_request) == {
        "action": "getRentNumber",
        "api_key": CANARY_KEY,
        "service": "tg",
        "country": "0",
    }


def test_rent_number_sends_every_optional_given(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(MOCK_ENDPOINT, text=RENTAL)
    SmsOnlineHook().get_rent_number(
        "tg", 12, operator="mts", rent_time=24, webhook_url="https://x.example/h?a=1"
    )
    query = sent_query(requests_mock.last_request)
    assert {k: query[k] for k in ("operator", "rent_time", "url")} == {
        "operator": "mts",
        "rent_time": "24",
        "url": "https://x.example/h?a=1",
    }


def test_bad_argument_is_refused_before_anything_is_sent(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(MOCK_ENDPOINT, text=RENTAL)
    with pytest.raises(ValueError, match="rent_time must be one of"):
        SmsOnlineHook().get_rent_number("tg", 0, rent_time=5)
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    ("call", "body", "expected_query"),
    [
        (
            lambda h: h.get_rent_status(5),
            '{"status":"success","values":{}}',
            {"id": "5", "page": "0", "size": "10"},
        ),
        (lambda h: h.finish_rent(5), '{"status":"success"}', {"id": "5", "status": "1"}),
        (lambda h: h.cancel_rent(5), '{"status":"success"}', {"id": "5", "status": "2"}),
        (lambda h: h.continue_rent(5, 8), RENTAL, {"id": "5", "rent_time": "8"}),
        (
            lambda h: h.get_continue_rent_price(5, 8),
            '{"status":"success","price":"1"}',
            {"id": "5", "rent_time": "8"},
        ),
        (lambda h: h.get_rent_prices(3), '{"status":"success","values":{}}', {"country": "3"}),
        (lambda h: h.get_rent_list(), '{"status":"success","values":[]}', {}),
    ],
)
def test_each_call_sends_its_parameters(
    smsonline_conn: str,
    requests_mock: requests_mock_module.Mocker,
    call: Any,
    body: str,
    expected_query: dict[str, str],
) -> None:
    requests_mock.get(MOCK_ENDPOINT, text=body)
    call(SmsOnlineHook())
    query = sent_query(requests_mock.last_request)
    query.pop("action")
    assert query == {"api_key": CANARY_KEY, **expected_query}


# ----------------------------------------------------------------------------- session and connection


def test_one_session_serves_every_call_of_a_hook(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[requests.Session] = []

    class CountedSession(requests.Session):
        def __init__(self) -> None:
            super().__init__()
            created.append(self)

    monkeypatch.setattr(requests, "Session", CountedSession)
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:1")
    hook = SmsOnlineHook()
    for _ in range(5):
        hook.get_balance()
    assert len(created) == 1
    assert requests_mock.call_count == 5


def test_connection_is_looked_up_once_across_many_calls(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []
    original = SmsOnlineHook.get_connection

    def counting(cls: type, conn_id: str) -> Any:
        lookups.append(conn_id)
        return original(conn_id)

    monkeypatch.setattr(SmsOnlineHook, "get_connection", classmethod(counting))
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:1")
    hook = SmsOnlineHook()
    for _ in range(4):
        hook.get_balance()
    hook.test_connection()
    assert lookups == ["smsonline_default"]


def test_closing_the_hook_closes_its_session_and_a_later_call_opens_another(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:1")
    with SmsOnlineHook() as hook:
        first = hook.get_conn()
        hook.get_balance()
    assert hook._session is None
    hook.get_balance()
    assert hook.get_conn() is not first


def test_hook_is_built_the_way_connection_get_hook_builds_it(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:2")
    hook = SmsOnlineHook(**{SmsOnlineHook.conn_name_attr: "smsonline_default"})
    assert hook.get_balance() == Decimal("2")


# ----------------------------------------------------------------------------- balance and the Test button


def test_get_balance_returns_the_balance(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:123.45")
    assert SmsOnlineHook().get_balance() == Decimal("123.45")


def test_test_connection_succeeds_showing_the_balance(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:123.45")
    ok, message = SmsOnlineHook().test_connection()
    assert ok is True
    assert message == "Connected to smsonline.invalid: balance 123.45"


@pytest.mark.parametrize("body", ["BAD_KEY", '{"status": "error", "message": "BAD_KEY"}'])
def test_test_connection_fails_on_a_refused_key_without_showing_it(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker, body: str
) -> None:
    requests_mock.get(MOCK_ENDPOINT, text=body, status_code=401)
    ok, message = SmsOnlineHook().test_connection()
    assert ok is False
    assert "BAD_KEY" in message and "API key" in message
    assert_no_key(message)


def test_test_connection_fails_on_a_network_error_without_showing_the_key(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(MOCK_ENDPOINT, exc=requests.exceptions.ConnectionError("reset"))
    ok, message = SmsOnlineHook().test_connection()
    assert ok is False
    assert message.startswith("Could not reach SMS.online") and "the connection broke" in message
    assert_no_key(message)


def test_test_connection_fails_on_a_bad_connection_field(monkeypatch: pytest.MonkeyPatch) -> None:
    use_connection(monkeypatch, extra={"timeout": "soon"})
    ok, message = SmsOnlineHook().test_connection()
    assert ok is False
    assert "connection extra timeout" in message


# ----------------------------------------------------------------------------- charging calls

#: Failures after which a charging request may have reached the server: requests-mock kwargs.
LOST_ANSWERS: dict[str, dict[str, Any]] = {
    "connection-reset": {"exc": requests.exceptions.ConnectionError("Connection aborted.")},
    "read-timeout": {"exc": requests.exceptions.ReadTimeout("Read timed out.")},
    "broken-chunks": {"exc": requests.exceptions.ChunkedEncodingError("Connection broken")},
    "500-text": {"status_code": 500, "text": "Internal Server Error"},
    "502-html": {"status_code": 502, "text": HTML_502},
    "503-empty": {"status_code": 503, "text": ""},
    "200-garbage": {"status_code": 200, "text": "Warning: mysqli_connect(): too many connections"},
    "200-empty": {"status_code": 200, "text": ""},
    "200-unreadable-rental": {"status_code": 200, "text": '{"status": "success", "phone": {"id": 5}}'},
    "oversized": {"status_code": 200, "content": b"x" * 4096},
}


@pytest.mark.parametrize("failure", LOST_ANSWERS)
def test_rent_number_with_a_lost_answer_is_sent_once_and_raises_outcome_unknown(
    monkeypatch: pytest.MonkeyPatch, requests_mock: requests_mock_module.Mocker, failure: str
) -> None:
    use_connection(monkeypatch, extra={"read_retries": 5, "retry_backoff": 0, "max_response_bytes": 1024})
    requests_mock.get(MOCK_ENDPOINT, **LOST_ANSWERS[failure])
    with pytest.raises(OutcomeUnknownError) as raised:
        SmsOnlineHook().get_rent_number("tg", 0)
    assert requests_mock.call_count == 1
    assert raised.value.action == "getRentNumber"
    assert "get_rent_list" in str(raised.value)


@pytest.mark.parametrize("failure", ["connection-reset", "read-timeout", "502-html"])
def test_continue_rent_with_a_lost_answer_is_sent_once_and_raises_outcome_unknown(
    retrying_conn: str, requests_mock: requests_mock_module.Mocker, failure: str
) -> None:
    requests_mock.get(MOCK_ENDPOINT, **LOST_ANSWERS[failure])
    with pytest.raises(OutcomeUnknownError) as raised:
        SmsOnlineHook().continue_rent(1049, 24)
    assert requests_mock.call_count == 1
    assert raised.value.action == "continueRentNumber"


def test_rent_number_over_a_refused_connection_raises_not_sent(
    monkeypatch: pytest.MonkeyPatch, refused_endpoint: str
) -> None:
    use_connection(monkeypatch, host=refused_endpoint, extra={"read_retries": 2, "retry_backoff": 0})
    with pytest.raises(TransportError) as raised:
        SmsOnlineHook().get_rent_number("tg", 0)
    assert not isinstance(raised.value, OutcomeUnknownError)
    assert raised.value.code == "not_sent"
    assert "connection refused" in str(raised.value)


def test_rent_number_connect_timeout_raises_not_sent(
    retrying_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(MOCK_ENDPOINT, exc=requests.exceptions.ConnectTimeout("connect timed out"))
    with pytest.raises(TransportError) as raised:
        SmsOnlineHook().get_rent_number("tg", 0)
    assert raised.value.code == "not_sent"
    assert requests_mock.call_count == 1


@pytest.mark.parametrize(
    ("body", "error_class"),
    [("NO_NUMBERS", NoNumbersError), ("NO_BALANCE", AccountError), ("ERROR_SQL", ServerError)],
)
def test_rent_number_refused_with_a_code_raises_that_error_after_one_request(
    retrying_conn: str, requests_mock: requests_mock_module.Mocker, body: str, error_class: type[Exception]
) -> None:
    requests_mock.get(MOCK_ENDPOINT, text=body)
    with pytest.raises(error_class) as raised:
        SmsOnlineHook().get_rent_number("tg", 0)
    assert not isinstance(raised.value, OutcomeUnknownError)
    assert requests_mock.call_count == 1


def test_rent_number_success_returns_the_rental(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(MOCK_ENDPOINT, text=RENTAL)
    rental = SmsOnlineHook().get_rent_number("tg", 0)
    assert (rental.id, rental.number, rental.end_date.isoformat()) == (
        1049,
        "79999876543",
        "2025-05-10T12:34:56+00:00",
    )


# ----------------------------------------------------------------------------- retries of reads


@pytest.mark.parametrize(
    "failure",
    [
        {"status_code": 502, "text": HTML_502},
        {"status_code": 503, "text": ""},
        {"exc": requests.exceptions.ConnectionError("Connection aborted.")},
        {"exc": requests.exceptions.ReadTimeout("Read timed out.")},
        {"status_code": 200, "text": "ERROR_SQL"},
    ],
)
def test_read_is_retried_after_a_server_or_network_failure(
    retrying_conn: str, requests_mock: requests_mock_module.Mocker, clock: FakeClock, failure: dict[str, Any]
) -> None:
    requests_mock.get(MOCK_ENDPOINT, [failure, failure, {"text": "ACCESS_BALANCE:5"}])
    assert SmsOnlineHook().get_balance() == Decimal("5")
    assert requests_mock.call_count == 3


def test_read_gives_up_after_its_retries(
    retrying_conn: str, requests_mock: requests_mock_module.Mocker, clock: FakeClock
) -> None:
    requests_mock.get(MOCK_ENDPOINT, status_code=502, text=HTML_502)
    with pytest.raises(ServerError) as raised:
        SmsOnlineHook().get_rent_list()
    assert raised.value.http_status == 502
    assert requests_mock.call_count == 3


def test_read_retries_back_off_exponentially(
    monkeypatch: pytest.MonkeyPatch, requests_mock: requests_mock_module.Mocker, clock: FakeClock
) -> None:
    use_connection(monkeypatch, extra={"read_retries": 3, "retry_backoff": 0.5})
    requests_mock.get(MOCK_ENDPOINT, status_code=503, text="")
    with pytest.raises(ServerError):
        SmsOnlineHook().get_balance()
    assert clock.sleeps == [0.5, 1.0, 2.0]


def test_read_over_a_refused_connection_is_retried(
    monkeypatch: pytest.MonkeyPatch, refused_endpoint: str, clock: FakeClock
) -> None:
    use_connection(monkeypatch, host=refused_endpoint, extra={"read_retries": 2, "retry_backoff": 0})
    with pytest.raises(TransportError) as raised:
        SmsOnlineHook().get_balance()
    assert raised.value.code == "not_sent"
    assert len(clock.sleeps) == 2


def test_set_rent_status_is_retried_after_a_server_failure(
    retrying_conn: str, requests_mock: requests_mock_module.Mocker, clock: FakeClock
) -> None:
    requests_mock.get(
        MOCK_ENDPOINT, [{"status_code": 502, "text": HTML_502}, {"text": '{"status":"success"}'}]
    )
    SmsOnlineHook().finish_rent(5)
    assert sent_actions(requests_mock) == ["setRentStatus", "setRentStatus"]


@pytest.mark.parametrize(
    ("call", "body", "error_class"),
    [
        (lambda h: h.get_balance(), "BAD_KEY", AccountError),
        (lambda h: h.get_rent_status(5), "NO_ID_RENT", RentalNotFoundError),
        (lambda h: h.get_rent_prices(0), '{"status":"error","message":"NO_NUMBERS"}', NoNumbersError),
    ],
)
def test_read_is_not_retried_after_an_api_error_code(
    retrying_conn: str,
    requests_mock: requests_mock_module.Mocker,
    clock: FakeClock,
    call: Any,
    body: str,
    error_class: type[Exception],
) -> None:
    requests_mock.get(MOCK_ENDPOINT, text=body)
    with pytest.raises(error_class):
        call(SmsOnlineHook())
    assert requests_mock.call_count == 1
    assert clock.sleeps == []


def test_read_retries_zero_means_one_attempt(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(MOCK_ENDPOINT, status_code=502, text=HTML_502)
    with pytest.raises(ServerError):
        SmsOnlineHook().get_balance()
    assert requests_mock.call_count == 1


# ----------------------------------------------------------------------------- redirects and size


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("call", ["get_balance", "get_rent_number"])
def test_redirect_is_not_followed_nor_retried(
    retrying_conn: str, requests_mock: requests_mock_module.Mocker, clock: FakeClock, status: int, call: str
) -> None:
    requests_mock.get(MOCK_ENDPOINT, status_code=status, headers={"Location": "https://elsewhere.invalid/h"})
    elsewhere = requests_mock.get("https://elsewhere.invalid/h", text="ACCESS_BALANCE:1")
    hook = SmsOnlineHook()
    with pytest.raises(ServerError) as raised:
        hook.get_balance() if call == "get_balance" else hook.get_rent_number("tg", 0)
    assert raised.value.code == "redirect"
    assert raised.value.http_status == status
    assert "elsewhere.invalid" in str(raised.value)
    assert requests_mock.call_count == 1
    assert not elsewhere.called


def test_answer_larger_than_the_limit_is_refused(
    monkeypatch: pytest.MonkeyPatch, requests_mock: requests_mock_module.Mocker
) -> None:
    use_connection(monkeypatch, extra={"max_response_bytes": 1024, "read_retries": 0})
    requests_mock.get(MOCK_ENDPOINT, content=b'{"status":"success","values":[' + b" " * 2000 + b"]}")
    with pytest.raises(TransportError, match="exceeded 1024 bytes"):
        SmsOnlineHook().get_rent_list()


def test_answer_declaring_a_length_over_the_limit_is_refused(
    monkeypatch: pytest.MonkeyPatch, loopback_api: LoopbackApi
) -> None:
    use_connection(
        monkeypatch, host=loopback_api.endpoint, extra={"max_response_bytes": 1024, "read_retries": 0}
    )
    loopback_api.behave(("reply", 200, b"ACCESS_BALANCE:1" + b" " * 2000))
    with pytest.raises(TransportError, match="exceeded 1024 bytes"):
        SmsOnlineHook().get_balance()


def test_answer_at_the_limit_is_read(
    monkeypatch: pytest.MonkeyPatch, requests_mock: requests_mock_module.Mocker
) -> None:
    use_connection(monkeypatch, extra={"max_response_bytes": 1024, "read_retries": 0})
    body = b"ACCESS_BALANCE:1".ljust(1024)
    requests_mock.get(MOCK_ENDPOINT, content=body)
    assert SmsOnlineHook().get_balance() == Decimal("1")


# ----------------------------------------------------------------------------- over a real socket


def test_calls_work_over_a_real_socket(monkeypatch: pytest.MonkeyPatch, loopback_api: LoopbackApi) -> None:
    use_connection(monkeypatch, host=loopback_api.endpoint)
    loopback_api.behave(("reply", 200, "ACCESS_BALANCE:42.00"))
    assert SmsOnlineHook().get_balance() == Decimal("42.00")
    assert loopback_api.paths[0].startswith("/stubs/handler_api.php?")


def test_reset_on_a_real_socket_makes_rent_number_outcome_unknown(
    monkeypatch: pytest.MonkeyPatch, loopback_api: LoopbackApi
) -> None:
    use_connection(monkeypatch, host=loopback_api.endpoint, extra={"read_retries": 2, "retry_backoff": 0})
    loopback_api.behave(("reset",))
    with pytest.raises(OutcomeUnknownError, match="the connection broke"):
        SmsOnlineHook().get_rent_number("tg", 0)
    assert len(loopback_api.paths) == 1


def test_stall_on_a_real_socket_times_out_and_makes_rent_number_outcome_unknown(
    monkeypatch: pytest.MonkeyPatch, loopback_api: LoopbackApi
) -> None:
    use_connection(monkeypatch, host=loopback_api.endpoint, extra={"timeout": 0.2, "read_retries": 2})
    loopback_api.behave(("stall", 0.6))
    with pytest.raises(OutcomeUnknownError, match="no complete answer within"):
        SmsOnlineHook().get_rent_number("tg", 0)
    assert len(loopback_api.paths) == 1


@pytest.mark.timeout(20)  # unbounded, the trickle would last 120 s
def test_answer_trickling_past_the_timeout_is_cut_off(
    monkeypatch: pytest.MonkeyPatch, loopback_api: LoopbackApi
) -> None:
    use_connection(monkeypatch, host=loopback_api.endpoint, extra={"timeout": 0.5, "read_retries": 0})
    loopback_api.behave(("trickle", b"ACCESS_BALANCE:1".ljust(600), 0.2))
    with pytest.raises(TransportError, match=r"no complete answer within 0.5 s"):
        SmsOnlineHook().get_balance()


def test_unknown_code_answering_rent_number_makes_the_outcome_unknown(
    monkeypatch: pytest.MonkeyPatch, requests_mock: requests_mock_module.Mocker
) -> None:
    use_connection(monkeypatch, extra={"read_retries": 0})
    requests_mock.get(MOCK_ENDPOINT, text="RENT_OK_BUT_NEW")  # maybe a success this provider cannot read
    with pytest.raises(OutcomeUnknownError, match="may have succeeded"):
        SmsOnlineHook().get_rent_number("tg", 0)


# ----------------------------------------------------------------------------- settings beat the environment


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_verify_ssl_false_holds_when_the_environment_names_a_ca_bundle(
    monkeypatch: pytest.MonkeyPatch, requests_mock: requests_mock_module.Mocker, variable: str
) -> None:
    monkeypatch.setenv(variable, "/etc/ssl/environment-bundle.pem")
    use_connection(monkeypatch, extra={"verify_ssl": False})
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:1")
    SmsOnlineHook().get_balance()
    assert last(requests_mock).verify is False


def test_ca_bundle_extra_wins_over_the_environment_bundle(
    monkeypatch: pytest.MonkeyPatch, requests_mock: requests_mock_module.Mocker, tmp_path: Path
) -> None:
    bundle = tmp_path / "inspecting-proxy.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/environment-bundle.pem")
    use_connection(monkeypatch, extra={"ca_bundle": str(bundle)})
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:1")
    SmsOnlineHook().get_balance()
    assert last(requests_mock).verify == str(bundle)


def test_proxy_extra_wins_over_the_environment_proxy(
    monkeypatch: pytest.MonkeyPatch, requests_mock: requests_mock_module.Mocker
) -> None:
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(variable, "http://environment-proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    use_connection(monkeypatch, extra={"proxy": "http://configured-proxy.invalid:8080"})
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:1")
    SmsOnlineHook().get_balance()
    assert last(requests_mock).proxies["http"] == "http://configured-proxy.invalid:8080"
