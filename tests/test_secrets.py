# The API key travels in every URL. This file asserts that no form of it (raw, form-encoded,
# percent-encoded) reaches what a person or a log can see: errors and their whole chains,
# formatted tracebacks, log lines, the Test button's message, XCom, reprs.
from __future__ import annotations

import json
import logging
import pickle
import secrets
import traceback
from collections.abc import Callable
from typing import Any

import pytest
import requests
import requests_mock as requests_mock_module

from airflow_provider_smsonline.exceptions import SmsOnlineError
from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.operators.rent import FinishRentOperator, RentNumberOperator
from airflow_provider_smsonline.policy import ClientConfig
from tests.conftest import (
    CANARY_FORMS,
    CANARY_KEY,
    MOCK_ENDPOINT,
    FakeTaskInstance,
    LoopbackApi,
    action_url,
    assert_no_key,
    connection_env,
    task_context,
)

HTML_WITH_URL = "<html><body>502 Bad Gateway while fetching {url}</body></html>"


def chain(error: BaseException) -> list[BaseException]:
    """The error and everything reachable through ``__cause__`` and ``__context__``."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo.extend([current.__cause__, current.__context__])
    return seen


def assert_error_is_clean(error: BaseException) -> None:
    """No form of the key in the error, its chain, its attributes, its traceback or its pickle."""
    for link in chain(error):
        assert_no_key(str(link))
        assert_no_key(repr(link))
        assert_no_key(repr(vars(link)))
    assert_no_key("".join(traceback.format_exception(error)))
    assert_no_key(pickle.dumps(error).decode("latin-1"))


def raising(kind: type[requests.exceptions.RequestException], text: str) -> Callable[..., str]:
    """A requests-mock callback raising ``kind`` with a text that embeds the URL, as requests does."""

    def callback(request: Any, context: Any) -> str:
        raise kind(f"{text} (url: {request.url})")

    return callback


def echoing(status: int, template: str) -> Callable[..., str]:
    """A requests-mock callback answering a body that echoes the request's URL and raw key."""

    def callback(request: Any, context: Any) -> str:
        context.status_code = status
        return template.format(url=request.url, key=CANARY_KEY)

    return callback


#: Failure kinds served by requests-mock, each embedding the key where a real one would.
MOCKED_FAILURES: dict[str, dict[str, Any]] = {
    "read-timeout": {"text": raising(requests.exceptions.ReadTimeout, "Read timed out.")},
    "connect-timeout": {"text": raising(requests.exceptions.ConnectTimeout, "Connect timed out.")},
    "reset": {"text": raising(requests.exceptions.ConnectionError, "Connection aborted, reset by peer")},
    "ssl": {"text": raising(requests.exceptions.SSLError, "certificate verify failed")},
    "chunked": {"text": raising(requests.exceptions.ChunkedEncodingError, "Connection broken")},
    "500-echo": {"text": echoing(500, "Internal error for {url}")},
    "502-html": {"text": echoing(502, HTML_WITH_URL)},
    "200-garbage-echo": {"text": echoing(200, "Warning: bad request {url}\nkey={key}")},
    "redirect": {
        "status_code": 302,
        "headers": {"Location": f"https://elsewhere.invalid/h?api_key={CANARY_KEY}"},
    },
    "oversized": {"content": b"x" * 4096},
    "BAD_KEY": {"text": "BAD_KEY"},
    "BANNED": {"text": "BANNED:'2025-12-31 23:59:59'"},
    "NO_NUMBERS-json": {"text": '{"status": "error", "message": "NO_NUMBERS"}'},
    "unknown-code-echoing-the-key": {"text": echoing(200, "WRONG_KEY:{key}")},
    "json-code-echoing-the-key": {
        "text": echoing(403, '{{"status": "error", "message": "INVALID_KEY {key}"}}')
    },
}

CALLS: dict[str, Callable[[SmsOnlineHook], object]] = {
    "get_balance": lambda hook: hook.get_balance(),
    "get_rent_number": lambda hook: hook.get_rent_number("tg", 0),
    "continue_rent": lambda hook: hook.continue_rent(1, 24),
    "cancel_rent": lambda hook: hook.cancel_rent(1),
}


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMSONLINE_DEFAULT",
        connection_env(read_retries=1, retry_backoff=0, max_response_bytes=1024),
    )


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("failure", MOCKED_FAILURES)
def test_hook_error_and_its_chain_never_hold_the_key(
    conn: None, requests_mock: requests_mock_module.Mocker, failure: str, call: str
) -> None:
    requests_mock.get(MOCK_ENDPOINT, **MOCKED_FAILURES[failure])
    with pytest.raises(SmsOnlineError) as raised:
        CALLS[call](SmsOnlineHook())
    assert_error_is_clean(raised.value)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("behaviour", [("reset",), ("stall", 0.5), ("reply", 502, HTML_WITH_URL)])
def test_hook_error_over_a_real_socket_never_holds_the_key(
    monkeypatch: pytest.MonkeyPatch, loopback_api: LoopbackApi, behaviour: tuple[Any, ...], call: str
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMSONLINE_DEFAULT",
        connection_env(host=loopback_api.endpoint, timeout=0.2, read_retries=0),
    )
    loopback_api.behave(behaviour)
    with pytest.raises(SmsOnlineError) as raised:
        CALLS[call](SmsOnlineHook())
    assert_error_is_clean(raised.value)


@pytest.mark.parametrize("call", CALLS)
def test_hook_error_over_a_refused_connection_never_holds_the_key(
    monkeypatch: pytest.MonkeyPatch, refused_endpoint: str, call: str
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(host=refused_endpoint, read_retries=0)
    )
    with pytest.raises(SmsOnlineError) as raised:
        CALLS[call](SmsOnlineHook())
    assert raised.value.code == "not_sent"
    assert_error_is_clean(raised.value)


# ----------------------------------------------------------------------------- logs


def test_hook_log_lines_never_hold_the_key(
    monkeypatch: pytest.MonkeyPatch,
    loopback_api: LoopbackApi,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMSONLINE_DEFAULT",
        connection_env(
            host=loopback_api.endpoint, timeout=5, read_retries=2, retry_backoff=0, verify_ssl=False
        ),
    )
    loopback_api.behave(("reset",), ("reply", 502, HTML_WITH_URL), ("reply", 200, "ACCESS_BALANCE:1"))
    hook = SmsOnlineHook()
    hook.get_balance()  # two failures, two retry warnings, then an answer
    loopback_api.behave(("reply", 200, "BAD_KEY"))
    hook.test_connection()
    output = capsys.readouterr()
    assert "retry 1 of 2" in output.out + output.err  # the hook's own (structlog) lines were captured
    assert_no_key(output.out + output.err)
    own = [r for r in caplog.records if not r.name.startswith("urllib3")]
    for record in own:
        assert_no_key(record.getMessage())
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # the wire was logged at DEBUG


def test_urllib3_debug_lines_are_masked_by_airflows_masker(
    monkeypatch: pytest.MonkeyPatch, loopback_api: LoopbackApi, caplog: pytest.LogCaptureFixture
) -> None:
    # urllib3 logs each request's URL, query and key included, at DEBUG. In a plain pytest
    # process Airflow's masker is not installed on logging, so caplog sees the URL as sent; in
    # a task, the masker filters every record. What is checked here is that the masker knows
    # every form of the key, so that it would redact these very lines.
    from airflow.sdk._shared.secrets_masker import redact

    caplog.set_level(logging.DEBUG, logger="urllib3")
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(host=loopback_api.endpoint))
    loopback_api.behave(("reply", 200, "ACCESS_BALANCE:1"))
    SmsOnlineHook().get_balance()
    wire = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any("/stubs/handler_api.php?" in line for line in wire)
    for line in wire:
        assert_no_key(str(redact(line)))


def test_register_secrets_gives_airflows_masker_every_form_of_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    key = f"fresh+{secrets.token_urlsafe(12)}/key=="  # unknown to the masker until the hook runs
    forms = ClientConfig(endpoint=MOCK_ENDPOINT, api_key=key).secret_forms()
    assert len(forms) >= 2 and key in forms
    assert all(redact(f"x {form} y") != "x *** y" for form in forms)
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(password=key))
    SmsOnlineHook().config  # noqa: B018 - reading the connection registers the key
    for form in forms:
        assert redact(f"x {form} y") == "x *** y"


def test_client_config_knows_the_raw_and_both_encoded_forms() -> None:
    assert set(ClientConfig(endpoint=MOCK_ENDPOINT, api_key=CANARY_KEY).secret_forms()) == set(CANARY_FORMS)


# ----------------------------------------------------------------------------- what people see


@pytest.mark.parametrize(
    "failure", ["reset", "read-timeout", "502-html", "BAD_KEY", "unknown-code-echoing-the-key", "redirect"]
)
def test_test_connection_message_never_holds_the_key(
    conn: None, requests_mock: requests_mock_module.Mocker, failure: str
) -> None:
    requests_mock.get(MOCK_ENDPOINT, **MOCKED_FAILURES[failure])
    ok, message = SmsOnlineHook().test_connection()
    assert ok is False
    assert_no_key(message)


def test_test_connection_success_message_never_holds_the_key(
    conn: None, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(MOCK_ENDPOINT, text="ACCESS_BALANCE:5")
    ok, message = SmsOnlineHook().test_connection()
    assert ok is True
    assert_no_key(message)


def test_client_config_repr_never_holds_the_key() -> None:
    config = ClientConfig(endpoint=MOCK_ENDPOINT, api_key=CANARY_KEY)
    assert_no_key(repr(config))
    assert_no_key(str(config))
    assert "***" in repr(config)


def test_operator_return_value_and_xcom_never_hold_the_key(
    smsonline_conn: str, memory_variables: dict[str, object], requests_mock: requests_mock_module.Mocker
) -> None:
    rental = {
        "status": "success",
        "phone": {"id": 5, "endDate": "2025-05-10T12:34:56", "number": "79990001122"},
    }
    requests_mock.get(action_url("getRentList"), text='{"status": "success", "values": []}')
    requests_mock.get(action_url("getRentNumber"), text=json.dumps(rental))
    ti = FakeTaskInstance()
    result = RentNumberOperator(task_id="rent", service="tg", country=0).execute(task_context(ti))
    assert_no_key(json.dumps(result))
    assert_no_key(json.dumps(ti.xcoms))
    assert_no_key(json.dumps(memory_variables))  # the ledger's Variable


@pytest.mark.parametrize("failure", ["BAD_KEY", "unknown-code-echoing-the-key", "502-html", "reset"])
def test_operator_failure_never_holds_the_key(
    conn: None, requests_mock: requests_mock_module.Mocker, failure: str
) -> None:
    requests_mock.get(MOCK_ENDPOINT, **MOCKED_FAILURES[failure])
    with pytest.raises(Exception) as raised:
        FinishRentOperator(task_id="finish", rent_id=1).execute({})  # type: ignore[arg-type]
    assert_error_is_clean(raised.value)
