# The sandbox as a specification: every action's answer shape (read back through the client's own
# parse functions), every protocol error, the control API, each fault mode, webhooks and the CLI.
from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from airflow_provider_smsonline import protocol, validation
from airflow_provider_smsonline.exceptions import (
    AccountError,
    CancelNotAllowedError,
    InvalidRequestError,
    NoNumbersError,
    RentalExpiredError,
    RentalNotFoundError,
    ServerError,
)
from airflow_provider_smsonline.sandbox import FAULT_MODES, Answered, Sandbox, SandboxError, price_of
from airflow_provider_smsonline.sandbox.documented import (
    DOCUMENTED,
    RICH_EXTRAS,
    UNDOCUMENTED,
    mismatches,
    undocumented_fields,
)
from tests.conftest import CANARY_KEY, assert_no_key

ROOT = Path(__file__).resolve().parent.parent
NO_OFFSET_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(
        host="127.0.0.1", port=0, api_key=CANARY_KEY, balance=Decimal("1000"), stock=50, seed=0
    ) as sb:
        yield sb


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False  # loopback only: no proxy from the environment
        yield s


class Api:
    """Calls the sandbox's handler_api.php with the canary key, by GET (default) or form POST."""

    def __init__(self, sandbox: Sandbox, session: requests.Session) -> None:
        self.sandbox = sandbox
        self.session = session

    def get(self, **params: Any) -> tuple[int, bytes]:
        params.setdefault("api_key", CANARY_KEY)
        response = self.session.get(self.sandbox.url, params=params, timeout=5)
        return response.status_code, response.content

    def post(self, **params: Any) -> tuple[int, bytes]:
        params.setdefault("api_key", CANARY_KEY)
        response = self.session.post(self.sandbox.url, data=params, timeout=5)
        return response.status_code, response.content

    def rent(self, **params: Any) -> protocol.Rental:
        return protocol.parse_rental(
            *self.get(**{"action": "getRentNumber", "service": "tg", "country": 0, **params})
        )


@pytest.fixture
def api(sandbox: Sandbox, session: requests.Session) -> Api:
    return Api(sandbox, session)


@pytest.fixture
def rich_api(session: requests.Session) -> Iterator[Api]:
    """A sandbox with the fields SMS.online does not document, writing UTC (never a default)."""
    with Sandbox(
        host="127.0.0.1",
        port=0,
        api_key=CANARY_KEY,
        balance=Decimal("1000"),
        stock=50,
        seed=0,
        documented_only=False,
        utc_offset=0,
    ) as sb:
        yield Api(sb, session)


def control(sandbox: Sandbox, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, sandbox.base_url + path, json=body, timeout=5)


def error_code(status: int, body: bytes, parse: Any = protocol.parse_rental) -> str:
    with pytest.raises(Exception) as caught:
        parse(status, body)
    return caught.value.code


# ----------------------------------------------------------------------------- the package


def test_importing_the_sandbox_loads_neither_airflow_nor_requests() -> None:
    code = (
        "import sys, airflow_provider_smsonline.sandbox\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('airflow', 'requests')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=30)


def test_sandbox_modules_are_small_and_import_each_other_one_way() -> None:
    import ast

    package = ROOT / "airflow_provider_smsonline" / "sandbox"
    prefix = "airflow_provider_smsonline.sandbox."
    names = {path.stem for path in package.glob("*.py")}
    edges: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        source = path.read_text()
        assert len(source.splitlines()) < 400, f"{path.name} has grown past 400 lines"
        found = set()
        for node in ast.walk(ast.parse(source)):  # every import, those inside functions included
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        edges[path.stem] = {m.removeprefix(prefix) for m in found if m.startswith(prefix)} & names

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges[start])

    assert [name for name in edges if reaches(name, name, set())] == []


def test_sandbox_exposes_url_base_url_host_port_and_api_key(sandbox: Sandbox) -> None:
    assert sandbox.port > 0
    assert sandbox.base_url == f"http://127.0.0.1:{sandbox.port}"
    assert sandbox.url == f"http://127.0.0.1:{sandbox.port}/stubs/handler_api.php"
    assert (sandbox.host, sandbox.api_key) == ("127.0.0.1", CANARY_KEY)
    assert CANARY_KEY not in repr(sandbox)


def test_sandbox_refuses_a_non_loopback_host_unless_allowed() -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        Sandbox(host="0.0.0.0")
    Sandbox(host="0.0.0.0", allow_remote=True)  # constructing binds nothing


def test_stop_ends_idle_keep_alive_connections_and_frees_the_port() -> None:
    sb = Sandbox(port=0).start()
    connection = http.client.HTTPConnection("127.0.0.1", sb.port, timeout=5)
    connection.request("GET", "/stubs/handler_api.php?action=getBalance&api_key=sandbox")
    connection.getresponse().read()
    started = time.monotonic()
    sb.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", sb.port), timeout=1)
    sb.stop()  # twice is fine


# ----------------------------------------------------------------------------- success shapes


def test_get_balance_answers_access_balance_in_plain_text(api: Api) -> None:
    status, body = api.get(action="getBalance")
    assert (status, body) == (200, b"ACCESS_BALANCE:1000.00")
    assert protocol.parse_balance(status, body) == Decimal("1000.00")


def test_form_encoded_post_is_answered_like_get(api: Api) -> None:
    assert api.post(action="getBalance") == api.get(action="getBalance")
    rental = protocol.parse_rental(*api.post(action="getRentNumber", service="wa", country="1"))
    assert rental.number.startswith("380")


def test_get_rent_number_answers_the_documented_shape(api: Api) -> None:
    status, body = api.get(action="getRentNumber", service="tg", country=0, rent_time=24)
    payload = json.loads(body)
    assert payload["status"] == "success"
    assert set(payload["phone"]) == {"id", "endDate", "number"}
    assert isinstance(payload["phone"]["id"], int)
    assert NO_OFFSET_DATE.match(payload["phone"]["endDate"])
    rental = protocol.parse_rental(status, body)
    assert rental.number.startswith("7") and rental.number.isdigit()


def test_the_rich_sandbox_adds_the_cost_to_get_rent_number(rich_api: Api) -> None:
    status, body = rich_api.get(action="getRentNumber", service="tg", country=0, rent_time=24)
    assert protocol.parse_rental(status, body).extra["cost"] == str(price_of("tg", 0, 24))


def test_get_rent_number_charges_the_price_and_records_the_rental(api: Api, sandbox: Sandbox) -> None:
    rental = api.rent(rent_time=168, operator="mts", uri="http://127.0.0.1:9/hook")
    state = sandbox.state()
    price = price_of("tg", 0, 168)
    assert Decimal(state["balance"]) == Decimal("1000") - price
    assert state["charges"] == [
        {
            "rental_id": rental.id,
            "action": "getRentNumber",
            "amount": str(price),
            "hours": 168,
            "refunded": False,
            "at": state["charges"][0]["at"],
        }
    ]
    (record,) = state["rentals"]
    assert record["id"] == rental.id and record["number"] == rental.number
    assert (record["service"], record["country"], record["operator"]) == ("tg", 0, "mts")
    assert (record["rent_time"], record["status"], record["url"]) == (
        168,
        "active",
        "http://127.0.0.1:9/hook",
    )


def test_rent_time_defaults_to_4_hours(api: Api, sandbox: Sandbox) -> None:
    rental = api.rent()
    (record,) = sandbox.state()["rentals"]
    assert record["rent_time"] == 4
    created = protocol.parse_datetime(record["created"])
    # The answer's endDate is written in UTC+3 without an offset; read as UTC it is 3 h ahead.
    assert rental.end_date - created == timedelta(hours=4 + 3)


def test_rental_ids_increase_by_one_from_at_least_1000(api: Api) -> None:
    ids = [api.rent().id for _ in range(3)]
    assert ids[0] >= 1000 and ids == [ids[0], ids[0] + 1, ids[0] + 2]


def test_rental_ids_never_repeat_after_a_reset(api: Api, sandbox: Sandbox) -> None:
    # Claims on rental ids outlive a reset (they sit in Airflow Variables): a reused id would
    # be taken for another task's rental.
    before = [api.rent().id for _ in range(3)]
    sandbox.reset()
    assert control(sandbox, "POST", "/sandbox/reset", {}).status_code == 200
    after = [api.rent().id for _ in range(3)]
    assert min(after) > max(before)


def test_rental_ids_never_repeat_across_sandboxes_of_one_process(session: requests.Session) -> None:
    ids = []
    for _ in range(2):
        with Sandbox(port=0, api_key=CANARY_KEY) as sb:
            ids += [Api(sb, session).rent().id for _ in range(2)]
    assert len(set(ids)) == 4


def test_get_rent_status_without_sms_answers_status_wait_code(api: Api) -> None:
    rental = api.rent()
    status, body = api.get(action="getRentStatus", id=rental.id)
    assert json.loads(body) == {"status": "error", "message": "STATUS_WAIT_CODE"}
    assert protocol.parse_rent_status(status, body) == []


def test_get_rent_status_lists_sms_newest_first_keyed_by_index(api: Api, sandbox: Sandbox) -> None:
    rental = api.rent()
    sandbox.deliver_sms(rental.id, text="first 111", phone_from="Telegram")
    sandbox.deliver_sms(rental.id, text="second 222", phone_from="Telegram")
    status, body = api.get(action="getRentStatus", id=rental.id)
    payload = json.loads(body)
    assert payload["status"] == "success" and payload["quantity"] == "2"
    assert list(payload["values"]) == ["0", "1"]
    assert set(payload["values"]["0"]) == {"phoneFrom", "text", "service", "date"}
    messages = protocol.parse_rent_status(status, body)
    assert [m.text for m in messages] == ["second 222", "first 111"]
    assert messages[0].phone_from == "Telegram" and messages[0].service == "tg"


def test_get_rent_status_honours_page_and_size(api: Api, sandbox: Sandbox) -> None:
    rental = api.rent()
    for n in range(5):
        sandbox.deliver_sms(rental.id, text=f"sms {n}")
    pages = [
        [
            m.text
            for m in protocol.parse_rent_status(
                *api.get(action="getRentStatus", id=rental.id, page=p, size=2)
            )
        ]
        for p in range(4)
    ]
    assert pages == [["sms 4", "sms 3"], ["sms 2", "sms 1"], ["sms 0"], []]
    assert json.loads(api.get(action="getRentStatus", id=rental.id, page=2, size=2)[1])["quantity"] == "5"


def test_finish_answers_success_and_marks_the_rental_finished(api: Api, sandbox: Sandbox) -> None:
    rental = api.rent()
    status, body = api.get(action="setRentStatus", id=rental.id, status=1)
    assert json.loads(body) == {"status": "success"}
    protocol.parse_set_rent_status(status, body, protocol.RENT_STATUS_FINISH)
    assert sandbox.state()["rentals"][0]["status"] == "finished"


def test_cancel_within_the_window_refunds_the_charge(api: Api, sandbox: Sandbox) -> None:
    rental = api.rent()
    sandbox.advance_clock(19 * 60)
    _, body = api.get(action="setRentStatus", id=rental.id, status=2)
    assert json.loads(body) == {"status": "success"}
    state = sandbox.state()
    assert state["balance"] == "1000.00"
    assert state["charges"][0]["refunded"] is True
    assert state["rentals"][0]["status"] == "cancelled"


def test_get_rent_list_lists_active_rentals_with_string_fields_and_end_date(rich_api: Api) -> None:
    api = rich_api
    rented = api.rent(rent_time=8)
    status, body = api.get(action="getRentList", id=rented.id)
    (item,) = json.loads(body)["values"]
    assert {k: item[k] for k in ("id", "phone", "price", "hours")} == {
        "id": str(rented.id),
        "phone": rented.number,
        "price": str(price_of("tg", 0, 8)),
        "hours": "8",
    }
    assert NO_OFFSET_DATE.match(item["endDate"])
    (entry,) = protocol.parse_rent_list(status, body)
    assert (entry.id, entry.number, entry.hours) == (rented.id, rented.number, 8)
    assert protocol.parse_datetime(entry.extra["endDate"]) == rented.end_date


def test_get_rent_list_leaves_out_ended_rentals(api: Api) -> None:
    kept, finished = api.rent(), api.rent()
    api.get(action="setRentStatus", id=finished.id, status=1)
    assert [e.id for e in protocol.parse_rent_list(*api.get(action="getRentList", id=kept.id))] == [kept.id]
    assert protocol.parse_rent_list(*api.get(action="getRentList", id=finished.id)) == []


def test_get_rent_list_without_rentals_answers_no_numbers(api: Api) -> None:
    status, body = api.get(action="getRentList", id=1)
    assert json.loads(body) == {"status": "error", "message": "NO_NUMBERS"}
    assert protocol.parse_rent_list(status, body) == []


def test_continue_rent_number_extends_the_end_date_and_charges_again(api: Api, sandbox: Sandbox) -> None:
    rental = api.rent()
    renewed = protocol.parse_rental(*api.get(action="continueRentNumber", id=rental.id, rent_time=24))
    assert renewed.id == rental.id and renewed.number == rental.number
    assert renewed.end_date - rental.end_date == timedelta(hours=24)
    charges = sandbox.state()["charges"]
    assert [(c["action"], c["amount"]) for c in charges] == [
        ("getRentNumber", str(price_of("tg", 0, 4))),
        ("continueRentNumber", str(price_of("tg", 0, 24))),
    ]


def test_get_continue_rent_price_is_what_continue_charges(api: Api, sandbox: Sandbox) -> None:
    rental = api.rent()
    status, body = api.get(action="getContinueRentPrice", id=rental.id, rent_time=72)
    assert json.loads(body) == {"status": "success", "price": str(price_of("tg", 0, 72))}
    price = protocol.parse_price(status, body)
    before = Decimal(sandbox.state()["balance"])
    api.get(action="continueRentNumber", id=rental.id, rent_time=72)
    assert before - Decimal(sandbox.state()["balance"]) == price


def test_get_rent_prices_gives_cost_and_stock_per_service(api: Api) -> None:
    api.rent()
    status, body = api.get(action="getRentPrices", country=0)
    assert set(json.loads(body)["values"]) == {"0"}
    prices = {p.service: p for p in protocol.parse_rent_prices(status, body)}
    assert {"tg", "wa", "go", "ot"} <= set(prices)
    assert (prices["tg"].cost, prices["tg"].count) == (price_of("tg", 0, 4), 49)
    assert prices["wa"].count == 50


def test_price_grows_with_hours() -> None:
    for service in ("tg", "wa", "go", "ot"):
        prices = [price_of(service, 0, hours) for hours in validation.RENT_TIMES]
        assert prices == sorted(set(prices))


def test_rental_expires_when_its_end_date_passes(api: Api, sandbox: Sandbox) -> None:
    rental = api.rent()
    sandbox.advance_clock(4 * 3600)
    assert sandbox.state()["rentals"][0]["status"] == "expired"
    assert protocol.parse_rent_list(*api.get(action="getRentList", id=rental.id)) == []


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "key", ["wrong", "", CANARY_KEY + "x", None], ids=["wrong", "empty", "longer", "missing"]
)
def test_any_key_but_the_configured_one_answers_bad_key(sandbox: Sandbox, key: str | None) -> None:
    params = {"action": "getBalance"} if key is None else {"action": "getBalance", "api_key": key}
    response = requests.get(sandbox.url, params=params, timeout=5)
    assert response.content == b"BAD_KEY"
    with pytest.raises(AccountError) as caught:
        protocol.parse_balance(response.status_code, response.content)
    assert caught.value.code == "BAD_KEY"


@pytest.mark.parametrize("action", ["getFullSms", "", None], ids=["unknown", "empty", "missing"])
def test_unknown_action_answers_bad_action(api: Api, action: str | None) -> None:
    status, body = api.get() if action is None else api.get(action=action)
    assert body == b"BAD_ACTION"
    assert error_code(status, body) == "BAD_ACTION"


@pytest.mark.parametrize("service", ["xx", "", None], ids=["unknown", "empty", "missing"])
def test_unknown_or_missing_service_answers_bad_service(api: Api, service: str | None) -> None:
    params: dict[str, Any] = {"action": "getRentNumber", "country": 0}
    if service is not None:
        params["service"] = service
    status, body = api.get(**params)
    with pytest.raises(InvalidRequestError) as caught:
        protocol.parse_rental(status, body)
    assert caught.value.code == "BAD_SERVICE"


@pytest.mark.parametrize(
    "country", ["999", "ru", "-1", "", None], ids=["unknown", "ru", "-1", "empty", "missing"]
)
def test_unknown_or_bad_country_answers_bad_country(api: Api, country: str | None) -> None:
    params: dict[str, Any] = {"action": "getRentNumber", "service": "tg"}
    if country is not None:
        params["country"] = country
    assert error_code(*api.get(**params)) == "BAD_COUNTRY"


def test_get_rent_prices_of_an_unknown_country_answers_bad_country(api: Api) -> None:
    assert (
        error_code(*api.get(action="getRentPrices", country=5), protocol.parse_rent_prices) == "BAD_COUNTRY"
    )


def test_unknown_operator_answers_bad_operator(api: Api) -> None:
    assert error_code(*api.get(action="getRentNumber", service="tg", country=0, operator="kyivstar")) == (
        "BAD_OPERATOR"
    )


@pytest.mark.parametrize("rent_time", ["5", "week", "4.0"])
def test_rent_time_not_allowed_answers_invalid_time(api: Api, rent_time: str) -> None:
    status, body = api.get(action="getRentNumber", service="tg", country=0, rent_time=rent_time)
    assert json.loads(body) == {"status": "error", "message": "INVALID_TIME"}
    assert error_code(status, body) == "INVALID_TIME"


def test_continue_without_rent_time_answers_invalid_time(api: Api) -> None:
    rental = api.rent()
    assert error_code(*api.get(action="continueRentNumber", id=rental.id)) == "INVALID_TIME"


def test_balance_below_price_answers_no_balance_and_charges_nothing(api: Api, sandbox: Sandbox) -> None:
    sandbox.reset(balance="0.10")
    status, body = api.get(action="getRentNumber", service="tg", country=0)
    assert body == b"NO_BALANCE"
    assert error_code(status, body) == "NO_BALANCE"
    assert sandbox.state()["rentals"] == [] and sandbox.state()["balance"] == "0.10"


def test_exhausted_stock_answers_no_numbers(api: Api, sandbox: Sandbox) -> None:
    sandbox.reset(stock=1)
    api.rent()
    status, body = api.get(action="getRentNumber", service="tg", country=0)
    with pytest.raises(NoNumbersError):
        protocol.parse_rental(status, body)
    api.rent(country=1)  # other countries keep their own stock


def test_cancel_returns_the_number_to_stock(api: Api, sandbox: Sandbox) -> None:
    sandbox.reset(stock=1)
    rental = api.rent()
    api.get(action="setRentStatus", id=rental.id, status=2)
    assert api.rent().id == rental.id + 1


@pytest.mark.parametrize(
    "action, extra, parse",
    [
        ("getRentStatus", {}, protocol.parse_rent_status),
        ("setRentStatus", {"status": 1}, lambda s, b: protocol.parse_set_rent_status(s, b, 1)),
        ("continueRentNumber", {"rent_time": 4}, protocol.parse_rental),
        ("getContinueRentPrice", {"rent_time": 4}, protocol.parse_price),
    ],
)
@pytest.mark.parametrize("rent_id", ["424242", "abc", None], ids=["unknown", "abc", "missing"])
def test_unknown_rent_id_answers_no_id_rent(
    api: Api, action: str, extra: dict[str, Any], parse: Any, rent_id: str | None
) -> None:
    params = {"action": action, **extra}
    if rent_id is not None:
        params["id"] = rent_id
    status, body = api.get(**params)
    with pytest.raises(RentalNotFoundError) as caught:
        parse(status, body)
    assert caught.value.code == "NO_ID_RENT"


def test_cancel_after_the_window_answers_cant_cancel(api: Api, sandbox: Sandbox) -> None:
    rental = api.rent()
    sandbox.advance_clock(21 * 60)
    status, body = api.get(action="setRentStatus", id=rental.id, status=2)
    with pytest.raises(CancelNotAllowedError):
        protocol.parse_set_rent_status(status, body, protocol.RENT_STATUS_CANCEL)
    assert sandbox.state()["balance"] != "1000.00"


def test_cancel_window_is_configurable(session: requests.Session) -> None:
    with Sandbox(port=0, api_key=CANARY_KEY, cancel_window_seconds=60) as sb:
        api = Api(sb, session)
        rental = api.rent()
        sb.advance_clock(61)
        assert error_code(*api.get(action="setRentStatus", id=rental.id, status=2)) == "CANT_CANCEL"


def test_repeated_finish_answers_already_finish(api: Api) -> None:
    rental = api.rent()
    api.get(action="setRentStatus", id=rental.id, status=1)
    status, body = api.get(action="setRentStatus", id=rental.id, status=1)
    assert json.loads(body) == {"status": "error", "message": "ALREADY_FINISH"}
    protocol.parse_set_rent_status(status, body, protocol.RENT_STATUS_FINISH)  # the client: success


def test_repeated_cancel_answers_already_cancel(api: Api, sandbox: Sandbox) -> None:
    rental = api.rent()
    api.get(action="setRentStatus", id=rental.id, status=2)
    _, body = api.get(action="setRentStatus", id=rental.id, status=2)
    assert json.loads(body) == {"status": "error", "message": "ALREADY_CANCEL"}
    assert sandbox.state()["balance"] == "1000.00"  # refunded once only


@pytest.mark.parametrize("value", ["3", "0", "x", "", None], ids=["3", "0", "x", "empty", "missing"])
def test_bad_status_value_answers_incorect_status(api: Api, value: str | None) -> None:
    rental = api.rent()
    params: dict[str, Any] = {"action": "setRentStatus", "id": rental.id}
    if value is not None:
        params["status"] = value
    status, body = api.get(**params)
    assert json.loads(body) == {"status": "error", "message": "INCORECT_STATUS"}
    with pytest.raises(InvalidRequestError):
        protocol.parse_set_rent_status(status, body, protocol.RENT_STATUS_FINISH)


def test_continue_on_an_expired_rental_answers_rent_die(api: Api, sandbox: Sandbox) -> None:
    rental = api.rent()
    sandbox.advance_clock(4 * 3600 + 1)
    status, body = api.get(action="continueRentNumber", id=rental.id, rent_time=4)
    with pytest.raises(RentalExpiredError) as caught:
        protocol.parse_rental(status, body)
    assert caught.value.code == "RENT_DIE"
    assert len(sandbox.state()["charges"]) == 1


def test_continue_on_a_finished_rental_answers_rent_die(api: Api) -> None:
    rental = api.rent()
    api.get(action="setRentStatus", id=rental.id, status=1)
    assert error_code(*api.get(action="continueRentNumber", id=rental.id, rent_time=4)) == "RENT_DIE"


def test_get_rent_status_of_a_finished_rental_answers_status_finish(api: Api) -> None:
    rental = api.rent()
    api.get(action="setRentStatus", id=rental.id, status=1)
    status, body = api.get(action="getRentStatus", id=rental.id)
    with pytest.raises(RentalExpiredError) as caught:
        protocol.parse_rent_status(status, body)
    assert caught.value.code == "STATUS_FINISH"


def test_errors_come_both_as_plain_text_and_as_json(api: Api) -> None:
    assert api.get(action="nope")[1] == b"BAD_ACTION"
    assert json.loads(api.get(action="getRentList")[1])["status"] == "error"


# Bad input of every kind: never a 500, never a traceback, always something the client can read.
BAD_INPUTS: list[dict[str, Any]] = [
    {"action": "getRentNumber", "service": "tg", "country": "0" * 5000},
    {"action": "getRentNumber", "service": "t\x00g", "country": "0"},
    {"action": "getRentNumber", "service": "тг", "country": "٣"},
    {"action": "getRentNumber", "service": "tg", "country": "0", "operator": "%%%"},
    {"action": "getRentNumber", "service": "tg", "country": "0", "uri": "javascript:alert(1)"},
    {"action": "getRentNumber", "service": "tg", "country": "0", "rent_time": "1e9"},
    {"action": "getRentStatus", "id": "1000", "page": "-1", "size": "x"},
    {"action": "getRentStatus", "id": "9" * 40},
    {"action": "setRentStatus", "id": " ", "status": "1"},
    {"action": "continueRentNumber", "id": "1000", "rent_time": "-4"},
    {"action": "getRentPrices", "country": "1.5"},
    {"action": "getBalance", "api_key": "ключ"},
    {"action": "getBalance\r\nX-Injected: 1"},
]


@pytest.mark.parametrize("params", BAD_INPUTS, ids=range(len(BAD_INPUTS)))
def test_bad_input_never_answers_500(api: Api, params: dict[str, Any]) -> None:
    api.rent()
    for status, body in (api.get(**params), api.post(**params)):
        assert status < 500
        assert b"Traceback" not in body
        try:
            protocol.parse_rental(status, body)
        except Exception as exc:
            assert exc.code != "bad_response"  # an API code, not a broken answer


def test_malformed_http_never_answers_500(sandbox: Sandbox) -> None:
    raw = [
        b"GET /stubs/handler_api.php?%zz=%%&action=getBalance HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /stubs/handler_api.php HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n\xff\xfe\x00=&",
        b"POST /stubs/handler_api.php HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"POST /sandbox/faults HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n[1]",
        b"POST /sandbox/rentals/1/sms HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n{",
        b"BREW /stubs/handler_api.php HTTP/1.1\r\nHost: x\r\n\r\n",
        b"garbage\r\n\r\n",
    ]
    for request in raw:
        with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as s:
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        if answer.startswith(b"HTTP/"):  # a request line too broken for a version gets a bare body
            status = int(answer.split(b" ", 2)[1])
            assert status < 500 or status == 501, (request, answer)  # 501: unsupported method
        assert b"Traceback" not in answer


# ----------------------------------------------------------------------------- faults


def test_fault_http_500_answers_500_and_commits_nothing(api: Api, sandbox: Sandbox) -> None:
    sandbox.inject_fault(action="getRentNumber", mode="http_500")
    status, body = api.get(action="getRentNumber", service="tg", country=0)
    assert status == 500
    with pytest.raises(ServerError):
        protocol.parse_rental(status, body)
    assert sandbox.state()["rentals"] == [] and sandbox.state()["balance"] == "1000.00"


def test_fault_html_502_answers_an_html_page_and_commits_nothing(api: Api, sandbox: Sandbox) -> None:
    sandbox.inject_fault(action="getRentNumber", mode="html_502")
    status, body = api.get(action="getRentNumber", service="tg", country=0)
    assert status == 502 and body.lstrip().startswith(b"<html>")
    assert error_code(status, body) == "bad_response"
    assert sandbox.state()["charges"] == []


def test_fault_garbage_answers_200_with_bytes_the_client_cannot_read(api: Api, sandbox: Sandbox) -> None:
    sandbox.inject_fault(action="getBalance", mode="garbage")
    status, body = api.get(action="getBalance")
    assert status == 200
    with pytest.raises(ServerError) as caught:
        protocol.parse_balance(status, body)
    assert caught.value.code == "bad_response"


def test_fault_slow_answers_correctly_after_the_delay(api: Api, sandbox: Sandbox) -> None:
    sandbox.inject_fault(action="getBalance", mode="slow", delay=0.4)
    started = time.monotonic()
    assert api.get(action="getBalance")[1] == b"ACCESS_BALANCE:1000.00"
    assert time.monotonic() - started >= 0.4


def test_fault_reset_after_commit_resets_the_connection_after_charging(sandbox: Sandbox) -> None:
    sandbox.inject_fault(action="getRentNumber", mode="reset_after_commit")
    connection = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=5)
    query = urlencode({"action": "getRentNumber", "service": "tg", "country": 0, "api_key": CANARY_KEY})
    connection.request("GET", f"/stubs/handler_api.php?{query}")
    with pytest.raises(ConnectionResetError):
        connection.getresponse()
    state = sandbox.state()
    assert len(state["rentals"]) == 1 and state["rentals"][0]["status"] == "active"
    assert len(state["charges"]) == 1 and Decimal(state["balance"]) < 1000


def test_fault_reset_after_commit_is_a_connection_error_for_requests(api: Api, sandbox: Sandbox) -> None:
    sandbox.inject_fault(action="continueRentNumber", mode="reset_after_commit")
    rental = api.rent()
    with pytest.raises(requests.exceptions.ConnectionError):
        api.get(action="continueRentNumber", id=rental.id, rent_time=4)
    assert [c["action"] for c in sandbox.state()["charges"]] == ["getRentNumber", "continueRentNumber"]


def test_fault_timeout_after_commit_withholds_the_answer_after_charging(api: Api, sandbox: Sandbox) -> None:
    sandbox.inject_fault(action="getRentNumber", mode="timeout_after_commit", delay=30)
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.session.get(
            sandbox.url,
            params={"action": "getRentNumber", "service": "tg", "country": 0, "api_key": CANARY_KEY},
            timeout=(2, 0.5),
        )
    state = sandbox.state()
    assert len(state["rentals"]) == 1 and len(state["charges"]) == 1
    # the committed rental is what reconciliation finds
    rent_id = state["rentals"][0]["id"]
    assert [e.id for e in protocol.parse_rent_list(*api.get(action="getRentList", id=rent_id))] == [rent_id]


def test_stop_releases_connections_held_by_a_timeout_fault() -> None:
    sb = Sandbox(port=0).start()
    sb.inject_fault(action="getBalance", mode="timeout_after_commit", delay=60)
    connection = http.client.HTTPConnection("127.0.0.1", sb.port, timeout=10)
    connection.request("GET", "/stubs/handler_api.php?action=getBalance&api_key=sandbox")
    time.sleep(0.2)
    started = time.monotonic()
    sb.stop()
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        connection.getresponse()
    assert time.monotonic() - started < 3


def test_fault_count_limits_how_many_calls_fail(api: Api, sandbox: Sandbox) -> None:
    sandbox.inject_fault(action="getBalance", mode="http_500", count=2)
    assert [api.get(action="getBalance")[0] for _ in range(3)] == [500, 500, 200]


def test_fault_applies_to_its_action_only(api: Api, sandbox: Sandbox) -> None:
    sandbox.inject_fault(action="getRentNumber", mode="http_500")
    assert api.get(action="getBalance")[0] == 200
    assert sandbox.state()["faults"] == [
        {"action": "getRentNumber", "mode": "http_500", "count": 1, "delay": 0.0}
    ]


def test_faults_are_injected_and_cleared_over_http(api: Api, sandbox: Sandbox) -> None:
    added = control(
        sandbox, "POST", "/sandbox/faults", {"action": "getBalance", "mode": "html_502", "count": 3}
    )
    assert added.status_code == 200 and added.json()["faults"][0]["count"] == 3
    assert api.get(action="getBalance")[0] == 502
    cleared = control(sandbox, "DELETE", "/sandbox/faults")
    assert cleared.json() == {"faults": []}
    assert api.get(action="getBalance")[0] == 200


@pytest.mark.parametrize(
    "body",
    [
        {"action": "getBalance", "mode": "explode"},
        {"action": "noSuchAction", "mode": "http_500"},
        {"action": "getBalance", "mode": "slow", "count": 0},
        {"action": "getBalance", "mode": "slow", "delay": -1},
        {"mode": "http_500"},
    ],
    ids=["mode", "action", "count", "delay", "no-action"],
)
def test_a_bad_fault_is_refused_with_400(sandbox: Sandbox, body: dict[str, Any]) -> None:
    response = control(sandbox, "POST", "/sandbox/faults", body)
    assert response.status_code == 400 and "error" in response.json()
    assert sandbox.state()["faults"] == []


# ----------------------------------------------------------------------------- random faults and hooks


def _statuses(api: Api, action: str, calls: int) -> list[int]:
    return [api.get(action=action)[0] for _ in range(calls)]


def test_random_faults_fail_about_the_given_share_of_calls_in_the_given_modes(
    api: Api, sandbox: Sandbox
) -> None:
    sandbox.set_random_faults("getBalance", rate=0.3, modes=["http_500", "html_502"], seed=3)
    statuses = _statuses(api, "getBalance", 200)
    failed = sum(status != 200 for status in statuses)
    assert 40 <= failed <= 80
    injected = sandbox.state()["faults_injected"]["getBalance"]
    assert injected == {"http_500": statuses.count(500), "html_502": statuses.count(502)}


def test_random_faults_with_the_same_seed_fail_the_same_calls(session: requests.Session) -> None:
    runs = []
    for _ in range(2):
        with Sandbox(port=0, api_key=CANARY_KEY) as sb:
            sb.set_random_faults("getBalance", rate=0.5, modes=["http_500", "html_502"], seed=11)
            runs.append(_statuses(Api(sb, session), "getBalance", 40))
    assert runs[0] == runs[1] and len(set(runs[0])) > 1


def test_random_faults_draw_from_every_mode_by_default(api: Api, sandbox: Sandbox) -> None:
    plan = sandbox.set_random_faults(
        "getBalance", rate=1.0, seed=0, delays={"slow": 0, "timeout_after_commit": 0}
    )
    assert plan.modes == FAULT_MODES and plan.delays["slow"] == 0
    for _ in range(60):
        with contextlib.suppress(requests.exceptions.RequestException):
            api.get(action="getBalance")
    assert set(sandbox.state()["faults_injected"]["getBalance"]) == set(FAULT_MODES)


def test_random_faults_apply_to_their_action_only(api: Api, sandbox: Sandbox) -> None:
    sandbox.set_random_faults("getRentNumber", rate=1.0, modes=["http_500"], seed=0)
    assert _statuses(api, "getBalance", 5) == [200] * 5
    assert api.get(action="getRentNumber", service="tg", country=0)[0] == 500
    assert sandbox.state()["faults_injected"] == {"getRentNumber": {"http_500": 1}}


def test_queued_faults_apply_before_the_random_plan(api: Api, sandbox: Sandbox) -> None:
    sandbox.set_random_faults("getBalance", rate=1.0, modes=["http_500"], seed=0)
    sandbox.inject_fault("getBalance", "html_502")
    assert _statuses(api, "getBalance", 2) == [502, 500]
    assert sandbox.state()["faults_injected"] == {"getBalance": {"html_502": 1, "http_500": 1}}


def test_clearing_faults_ends_the_random_plan_and_keeps_the_counts(api: Api, sandbox: Sandbox) -> None:
    sandbox.set_random_faults("getBalance", rate=1.0, modes=["garbage"], seed=0)
    api.get(action="getBalance")
    sandbox.clear_faults()
    assert _statuses(api, "getBalance", 3) == [200] * 3
    state = sandbox.state()
    assert state["random_faults"] is None and state["faults_injected"] == {"getBalance": {"garbage": 1}}


def test_random_faults_are_set_over_http_and_shown_in_the_state(api: Api, sandbox: Sandbox) -> None:
    body = {"mode": "random", "action": "getBalance", "rate": 1, "modes": ["http_500"], "seed": 5}
    response = control(sandbox, "POST", "/sandbox/faults", body)
    assert response.status_code == 200
    assert response.json()["random"] == {
        "action": "getBalance",
        "rate": 1.0,
        "modes": ["http_500"],
        "delays": {"http_500": 0.0},
        "seed": 5,
    }
    assert api.get(action="getBalance")[0] == 500
    assert sandbox.state()["random_faults"]["modes"] == ["http_500"]
    assert control(sandbox, "DELETE", "/sandbox/faults").json() == {"faults": []}
    assert sandbox.state()["random_faults"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"action": "getBalance", "rate": 1.5},
        {"action": "getBalance", "rate": "half"},
        {"action": "getBalance", "rate": 0.5, "modes": ["explode"]},
        {"action": "getBalance", "rate": 0.5, "modes": []},
        {"action": "getBalance", "rate": 0.5, "seed": "x"},
        {"action": "getBalance", "rate": 0.5, "delays": {"slow": -1}},
        {"action": "noSuchAction", "rate": 0.5},
    ],
    ids=["rate-high", "rate-text", "mode", "no-modes", "seed", "delay", "action"],
)
def test_a_bad_random_fault_plan_is_refused_with_400(sandbox: Sandbox, body: dict[str, Any]) -> None:
    response = control(sandbox, "POST", "/sandbox/faults", {"mode": "random", **body})
    assert response.status_code == 400 and "error" in response.json()
    assert sandbox.state()["random_faults"] is None


def test_reset_forgets_the_random_plan_and_its_counts(api: Api, sandbox: Sandbox) -> None:
    sandbox.set_random_faults("getBalance", rate=1.0, modes=["http_500"], seed=0)
    api.get(action="getBalance")
    sandbox.reset()
    state = sandbox.state()
    assert state["random_faults"] is None and state["faults_injected"] == {}


def _hooked_sandbox(seen: list[Answered], **kwargs: Any) -> Sandbox:
    return Sandbox(port=0, api_key=CANARY_KEY, after_answer=seen.append, **kwargs)


def test_after_answer_hook_names_the_client_port_and_the_rental_after_the_answer_is_sent() -> None:
    seen: list[Answered] = []
    with _hooked_sandbox(seen) as sb:
        connection = http.client.HTTPConnection("127.0.0.1", sb.port, timeout=5)
        query = urlencode({"action": "getRentNumber", "service": "tg", "country": 0, "api_key": CANARY_KEY})
        connection.request("GET", f"/stubs/handler_api.php?{query}")
        rental = protocol.parse_rental(200, connection.getresponse().read())
        client_port = connection.sock.getsockname()[1]
        connection.close()
    assert seen == [Answered("getRentNumber", ("127.0.0.1", client_port), 200, rental.id, None)]


def test_after_answer_hook_names_the_fault_that_shaped_the_answer(session: requests.Session) -> None:
    seen: list[Answered] = []
    with _hooked_sandbox(seen) as sb:
        sb.inject_fault("getRentNumber", "http_500")
        sb.inject_fault("getBalance", "slow", delay=0)
        Api(sb, session).get(action="getRentNumber", service="tg", country=0)
        Api(sb, session).get(action="getBalance")
    assert [(a.action, a.status, a.rental_id, a.fault) for a in seen] == [
        ("getRentNumber", 500, None, "http_500"),
        ("getBalance", 200, None, "slow"),
    ]


def test_after_answer_hook_is_not_called_when_the_answer_is_withheld(session: requests.Session) -> None:
    seen: list[Answered] = []
    with _hooked_sandbox(seen) as sb:
        sb.inject_fault("getRentNumber", "reset_after_commit")
        with pytest.raises(requests.exceptions.ConnectionError):
            Api(sb, session).get(action="getRentNumber", service="tg", country=0)
        assert len(sb.state()["charges"]) == 1
    assert seen == []


def test_a_failing_after_answer_hook_never_reaches_the_client(session: requests.Session) -> None:
    def explode(answered: Answered) -> None:
        raise RuntimeError("hook bug")

    with Sandbox(port=0, api_key=CANARY_KEY, after_answer=explode) as sb:
        api = Api(sb, session)
        assert _statuses(api, "getBalance", 3) == [200] * 3


# ----------------------------------------------------------------------------- SMS and webhooks


class _Hook(BaseHTTPRequestHandler):
    received: list[bytes]
    arrived: threading.Event

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        type(self).arrived.set()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, type[_Hook]]]:
    handler = type("Hook", (_Hook,), {"received": [], "arrived": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()
    server.server_close()


def test_delivered_sms_is_posted_once_to_the_rentals_webhook(
    api: Api, sandbox: Sandbox, webhook_receiver: tuple[str, type[_Hook]]
) -> None:
    url, hook = webhook_receiver
    rental = api.rent(uri=url)
    response = control(
        sandbox,
        "POST",
        f"/sandbox/rentals/{rental.id}/sms",
        {"text": "Code 482913", "phone_from": "Telegram"},
    )
    assert response.status_code == 200 and response.json()["webhook"] is True
    assert hook.arrived.wait(5)
    (body,) = hook.received
    posted = protocol.parse_webhook(body)
    assert (posted.rent_id, posted.sms.text, posted.sms.phone_from) == (rental.id, "Code 482913", "Telegram")
    assert set(json.loads(body)) == {"rentId", "sms"}
    deadline = time.monotonic() + 5
    while sandbox.state()["webhooks"]["sent"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sandbox.state()["webhooks"]["sent"] == 1


def test_a_failing_webhook_is_counted_and_not_retried(api: Api, sandbox: Sandbox) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again below: nothing listens there
    rental = api.rent(uri=f"http://127.0.0.1:{port}/hook")
    sandbox.deliver_sms(rental.id, text="Code 1")
    deadline = time.monotonic() + 5
    while sandbox.state()["webhooks"]["failed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    webhooks = sandbox.state()["webhooks"]
    assert (webhooks["sent"], webhooks["failed"], webhooks["pending"]) == (0, 1, 0)
    assert len(webhooks["deliveries"]) == 1 and webhooks["deliveries"][0]["ok"] is False


def test_delivered_sms_is_readable_through_get_rent_status(api: Api, sandbox: Sandbox) -> None:
    rental = api.rent()
    control(
        sandbox,
        "POST",
        f"/sandbox/rentals/{rental.id}/sms",
        {"text": "hi", "phone_from": "X", "service": "ot"},
    )
    (sms,) = protocol.parse_rent_status(*api.get(action="getRentStatus", id=rental.id))
    assert (sms.text, sms.phone_from, sms.service) == ("hi", "X", "ot")


def test_sms_to_an_unknown_rental_is_404(sandbox: Sandbox) -> None:
    response = control(sandbox, "POST", "/sandbox/rentals/4242/sms", {"text": "hi"})
    assert response.status_code == 404 and "error" in response.json()
    with pytest.raises(SandboxError) as caught:
        sandbox.deliver_sms(4242, text="hi")
    assert caught.value.status == 404


def test_sms_to_a_finished_rental_is_409(api: Api, sandbox: Sandbox) -> None:
    rental = api.rent()
    api.get(action="setRentStatus", id=rental.id, status=1)
    response = control(sandbox, "POST", f"/sandbox/rentals/{rental.id}/sms", {"text": "hi"})
    assert response.status_code == 409


def test_sms_without_text_is_400(api: Api, sandbox: Sandbox) -> None:
    rental = api.rent()
    assert (
        control(sandbox, "POST", f"/sandbox/rentals/{rental.id}/sms", {"phone_from": "X"}).status_code == 400
    )


# ----------------------------------------------------------------------------- documented shapes, zones


def _answers_of_every_action(sandbox: Sandbox, session: requests.Session) -> dict[str, Any]:
    """A success answer of each action the sandbox serves, parsed (getBalance: its text)."""
    api = Api(sandbox, session)
    rental, other = api.rent(rent_time=8), api.rent(country=1)
    sandbox.deliver_sms(rental.id, text="Code 1")
    sandbox.deliver_sms(rental.id, text="Code 2")
    bodies = {
        "getBalance": api.get(action="getBalance")[1],
        "getRentNumber": api.get(action="getRentNumber", service="wa", country=2)[1],
        "continueRentNumber": api.get(action="continueRentNumber", id=rental.id, rent_time=4)[1],
        "getRentStatus": api.get(action="getRentStatus", id=rental.id)[1],
        "getRentList": api.get(action="getRentList", id=rental.id)[1],
        "getContinueRentPrice": api.get(action="getContinueRentPrice", id=rental.id, rent_time=24)[1],
        "getRentPrices": api.get(action="getRentPrices", country=0)[1],
        "setRentStatus": api.get(action="setRentStatus", id=other.id, status=1)[1],
        "getRentHistory": api.get(action="getRentHistory")[1],
    }
    # The activation family: one activation with a code, listed, then completed.
    number = api.get(action="getNumber", service="tg", country=0)[1].decode()
    activation = int(number.split(":")[1])
    sandbox.books.deliver_code(activation, "12345")
    bodies |= {
        "getNumber": number.encode(),
        "getStatus": api.get(action="getStatus", id=activation)[1],
        "getPrices": api.get(action="getPrices", service="tg", country=0)[1],
        "getActiveActivations": api.get(action="getActiveActivations")[1],
        "setStatus": api.get(action="setStatus", id=activation, status=6)[1],
        "getHistory": api.get(action="getHistory")[1],
    }
    plain = {"getBalance", "getNumber", "getStatus", "setStatus"}
    return {a: body.decode() if a in plain else json.loads(body) for a, body in bodies.items()}


def test_the_default_sandbox_answers_exactly_the_documented_shape_of_every_action_in_utc_plus_3(
    session: requests.Session,
) -> None:
    with Sandbox(port=0, api_key=CANARY_KEY) as sb:
        assert sb.state()["utc_offset_hours"] == 3
        answers = _answers_of_every_action(sb, session)
    assert set(answers) == set(DOCUMENTED) == set(sb.books.actions)
    for action, answer in answers.items():
        assert mismatches(DOCUMENTED[action].success, answer) == [], action


def test_the_rich_sandbox_adds_exactly_the_rich_extras_and_nothing_else(session: requests.Session) -> None:
    with Sandbox(port=0, api_key=CANARY_KEY, documented_only=False) as sandbox:
        answers = _answers_of_every_action(sandbox, session)
    for action, answer in answers.items():
        problems = mismatches(DOCUMENTED[action].success, answer)
        assert {problem for _, problem in problems} <= {UNDOCUMENTED}, (action, problems)
        assert undocumented_fields(action, answer) == RICH_EXTRAS.get(action, frozenset()), action


def test_the_shape_check_names_every_departure_from_the_docs() -> None:
    row = {"id": 1049, "phone": "79959707564", "price": "1.50", "endDate": "2025-01-01T00:00:00"}
    problems = mismatches(DOCUMENTED["getRentList"].success, {"status": "success", "values": [row]})
    assert sorted(problems) == [
        ("values[].endDate", UNDOCUMENTED),
        ("values[].hours", "missing"),
        ("values[].id", "expected a string (digits), got 1049"),
    ]
    assert mismatches(DOCUMENTED["getBalance"].success, "ACCESS_BALANCE:1.5") == []
    assert mismatches(DOCUMENTED["getRentStatus"].success, {"status": "success"}) == [
        ("quantity", "missing"),
        ("values", "missing"),
    ]


def test_documented_answers_are_read_by_the_client_as_today(session: requests.Session) -> None:
    with Sandbox(port=0, api_key=CANARY_KEY, documented_only=True) as sb:
        api = Api(sb, session)
        rental = api.rent()
        (entry,) = protocol.parse_rent_list(*api.get(action="getRentList", id=rental.id))
        renewed = protocol.parse_rental(*api.get(action="continueRentNumber", id=rental.id, rent_time=4))
    assert (entry.id, entry.number, entry.hours, dict(entry.extra)) == (rental.id, rental.number, 4, {})
    assert dict(rental.extra) == {} and renewed.end_date - rental.end_date == timedelta(hours=4)


@pytest.mark.parametrize("hours", [3, -4, 5.75, 0])
def test_utc_offset_writes_every_date_in_that_zone_without_an_offset(
    session: requests.Session, webhook_receiver: tuple[str, type[_Hook]], hours: float
) -> None:
    shift = timedelta(hours=hours)
    url, hook = webhook_receiver
    with Sandbox(port=0, api_key=CANARY_KEY, utc_offset=hours, documented_only=False) as sb:
        api = Api(sb, session)
        end_date = json.loads(api.get(action="getRentNumber", service="tg", country=0, uri=url)[1])["phone"]
        sb.deliver_sms(end_date["id"], text="Code 1")
        assert hook.arrived.wait(5)
        (record,) = sb.state()["rentals"]
        (listed,) = json.loads(api.get(action="getRentList", id=record["id"])[1])["values"]
        (history,) = json.loads(api.get(action="getRentHistory")[1])
        sms = json.loads(api.get(action="getRentStatus", id=record["id"])[1])["values"]["0"]
    true_end = protocol.parse_datetime(record["end_date"])
    true_sms = protocol.parse_datetime(record["sms"][0]["date"])
    created = protocol.parse_datetime(record["created"])
    assert end_date["endDate"] == listed["endDate"] == (true_end + shift).strftime("%Y-%m-%dT%H:%M:%S")
    assert sms["date"] == (true_sms + shift).strftime("%Y-%m-%d %H:%M:%S")
    assert json.loads(hook.received[0])["sms"]["date"] == sms["date"]
    assert history["date"] == (created + shift).strftime("%Y-%m-%d %H:%M:%S")
    assert sb.state()["utc_offset_hours"] == hours


@pytest.mark.parametrize("hours", [15, -12.5, 3.1, float("nan"), "3", True])
def test_an_impossible_utc_offset_is_refused_naming_it(hours: Any) -> None:
    with pytest.raises(ValueError, match="utc_offset must be a number of hours from -12 to 14"):
        Sandbox(port=0, utc_offset=hours)


def test_get_rent_history_lists_every_rental_newest_first_with_cost_sms_and_status(
    api: Api, sandbox: Sandbox
) -> None:
    first, second, third = api.rent(), api.rent(rent_time=8), api.rent()
    sandbox.deliver_sms(first.id, text="Code 1")
    api.get(action="setRentStatus", id=second.id, status=1)
    api.get(action="setRentStatus", id=third.id, status=2)
    history = json.loads(api.get(action="getRentHistory")[1])
    assert [(h["id"], h["status"], h["cost"]) for h in history] == [
        (third.id, "2", 0.0),
        (second.id, "1", float(price_of("tg", 0, 8))),
        (first.id, "0", float(price_of("tg", 0, 4))),
    ]
    assert json.loads(history[2]["sms"]) == ["Code 1"] and history[2]["phone"] == first.number
    paged = json.loads(api.get(action="getRentHistory", offset=1, limit=1)[1])
    assert [h["id"] for h in paged] == [second.id]
    sandbox.advance_clock(31 * 24 * 3600)
    assert json.loads(api.get(action="getRentHistory")[1]) == []  # the 30-day window


def test_cli_serves_documented_answers_in_the_given_zone() -> None:
    process, url = _start_cli("--api-key", "k1", "--utc-offset", "3")
    try:
        query = {"api_key": "k1", "action": "getRentNumber", "service": "tg", "country": 0}
        phone = requests.get(url, params=query, timeout=5).json()["phone"]
        query = {"api_key": "k1", "action": "getRentList", "id": phone["id"]}
        rows = requests.get(url, params=query, timeout=5).json()
        state = requests.get(url.replace("/stubs/handler_api.php", "/sandbox/state"), timeout=5).json()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert set(phone) == {"id", "endDate", "number"} and set(rows["values"][0]) == {
        "id",
        "phone",
        "price",
        "hours",
    }
    true_end = protocol.parse_datetime(state["rentals"][0]["end_date"])
    assert phone["endDate"] == (true_end + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S")


# ----------------------------------------------------------------------------- control API


def test_state_endpoint_answers_what_state_returns(api: Api, sandbox: Sandbox) -> None:
    rental = api.rent()
    sandbox.deliver_sms(rental.id, text="x")
    over_http = control(sandbox, "GET", "/sandbox/state").json()
    in_process = sandbox.state()
    assert {"balance", "rentals", "charges", "requests", "webhooks", "faults"} <= set(over_http)
    over_http.pop("now"), in_process.pop("now")
    assert over_http == json.loads(json.dumps(in_process))


def test_state_rentals_carry_every_field_with_iso_dates(api: Api, sandbox: Sandbox) -> None:
    api.rent()
    (record,) = sandbox.state()["rentals"]
    expected = {"id", "number", "service", "country", "operator", "rent_time", "url", "created", "end_date"}
    assert expected | {"status", "sms", "polls"} <= set(record)
    for key in ("created", "end_date"):
        assert protocol.parse_datetime(record[key]).utcoffset() == timedelta(0)
    assert isinstance(sandbox.state()["balance"], str)


def test_requests_are_counted_per_action_and_polls_per_rental(api: Api, sandbox: Sandbox) -> None:
    first, second = api.rent(), api.rent()
    for _ in range(3):
        api.get(action="getRentStatus", id=first.id)
    api.get(action="getRentStatus", id=second.id)
    api.get(action="getBalance")
    state = sandbox.state()
    assert state["requests"] == {"getRentNumber": 2, "getRentStatus": 4, "getBalance": 1}
    assert state["requests_total"] == 7
    assert state["polls"] == {str(first.id): 3, str(second.id): 1}


def test_reset_forgets_rentals_charges_counters_and_faults(api: Api, sandbox: Sandbox) -> None:
    api.rent()
    sandbox.inject_fault(action="getBalance", mode="http_500")
    response = control(sandbox, "POST", "/sandbox/reset", {})
    assert response.status_code == 200
    state = sandbox.state()
    assert (state["rentals"], state["charges"], state["faults"], state["requests"]) == ([], [], [], {})
    assert state["balance"] == "1000.00"


def test_clock_endpoint_moves_sandbox_time_forward(sandbox: Sandbox) -> None:
    before = protocol.parse_datetime(control(sandbox, "GET", "/sandbox/clock").json()["now"])
    moved = control(sandbox, "POST", "/sandbox/clock", {"advance_seconds": 3600}).json()
    assert moved["offset_seconds"] == 3600
    assert protocol.parse_datetime(moved["now"]) - before >= timedelta(hours=1)


# Bad control input of every kind: 400, a JSON error naming the field and what is allowed, and
# the sandbox exactly as it was. Rows: method, path ({rental}: an active rental), body (a dict is
# sent as JSON, bytes as they are), the field named, a fragment of what is allowed.
CLOCK, RESET, FAULTS, SMS = (
    "/sandbox/clock",
    "/sandbox/reset",
    "/sandbox/faults",
    "/sandbox/rentals/{rental}/sms",
)
RANDOM = {"mode": "random", "action": "getBalance", "rate": 0.5}
OVERSIZED = b'{"text": "' + b"x" * (1024 * 1024 + 16) + b'"}'
CONTROL_BAD_INPUTS: list[tuple[str, str, Any, str, str]] = [
    ("POST", CLOCK, {"advance_seconds": 4e11}, "advance_seconds", "at most"),
    ("POST", CLOCK, {"advance_seconds": -1}, "advance_seconds", "from 0"),
    ("POST", CLOCK, {"advance_seconds": True}, "advance_seconds", "number of seconds"),
    ("POST", CLOCK, {"advance_seconds": [60]}, "advance_seconds", "number of seconds"),
    ("POST", CLOCK, {"advance_seconds": None}, "advance_seconds", "number of seconds"),
    ("POST", CLOCK, b'{"advance_seconds": NaN}', "advance_seconds", "finite"),
    ("POST", CLOCK, b'{"advance_seconds": Infinity}', "advance_seconds", "finite"),
    ("POST", CLOCK, {}, "advance_seconds", "required"),
    ("POST", CLOCK, b"", "advance_seconds", "required"),
    ("POST", CLOCK, {"advance_seconds": 60, "jump": 1}, "jump", "allowed: advance_seconds"),
    ("POST", RESET, {"balance": 1e300}, "balance", "at most"),
    ("POST", RESET, {"balance": "1e30"}, "balance", "at most"),
    ("POST", RESET, {"balance": -5}, "balance", "from 0"),
    ("POST", RESET, {"balance": "NaN"}, "balance", "finite"),
    ("POST", RESET, b'{"balance": Infinity}', "balance", "finite"),
    ("POST", RESET, {"balance": True}, "balance", "a number"),
    ("POST", RESET, {"balance": {"usd": 1}}, "balance", "a number"),
    ("POST", RESET, {"stock": -1}, "stock", "from 0"),
    ("POST", RESET, {"stock": 10**12}, "stock", "at most 1000000000"),
    ("POST", RESET, {"stock": 1.5}, "stock", "an integer"),
    ("POST", RESET, {"stock": "many"}, "stock", "an integer"),
    ("POST", RESET, {"balanse": 5}, "balanse", "allowed: balance, stock"),
    ("POST", FAULTS, {"action": "getBalance", "mode": "explode"}, "mode", "one of http_500"),
    ("POST", FAULTS, {"action": "noSuchAction", "mode": "http_500"}, "action", "one of getBalance"),
    ("POST", FAULTS, {"action": 5, "mode": "http_500"}, "action", "one of getBalance"),
    ("POST", FAULTS, {"mode": "http_500"}, "action", "required"),
    ("POST", FAULTS, {"action": "getBalance"}, "mode", "required"),
    ("POST", FAULTS, {"action": "getBalance", "mode": "slow", "delay": 1e300}, "delay", "at most"),
    ("POST", FAULTS, b'{"action": "getBalance", "mode": "slow", "delay": NaN}', "delay", "finite"),
    ("POST", FAULTS, {"action": "getBalance", "mode": "slow", "delay": -1}, "delay", "from 0"),
    ("POST", FAULTS, {"action": "getBalance", "mode": "http_500", "count": 0}, "count", "from 1"),
    ("POST", FAULTS, {"action": "getBalance", "mode": "http_500", "count": 10**12}, "count", "at most"),
    ("POST", FAULTS, {"action": "getBalance", "mode": "http_500", "count": 2.5}, "count", "an integer"),
    ("POST", FAULTS, {"action": "getBalance", "mode": "http_500", "count": "x"}, "count", "an integer"),
    ("POST", FAULTS, {"action": "getBalance", "mode": "http_500", "times": 2}, "times", "allowed: action"),
    ("POST", FAULTS, b'{"mode": "random", "action": "getBalance", "rate": NaN}', "rate", "from 0 to 1"),
    ("POST", FAULTS, {**RANDOM, "rate": 2}, "rate", "from 0 to 1"),
    ("POST", FAULTS, {**RANDOM, "rate": "half"}, "rate", "from 0 to 1"),
    ("POST", FAULTS, {"mode": "random", "action": "getBalance"}, "rate", "required"),
    ("POST", FAULTS, {**RANDOM, "modes": ["explode"]}, "modes", "http_500"),
    ("POST", FAULTS, {**RANDOM, "modes": []}, "modes", "non-empty list"),
    ("POST", FAULTS, {**RANDOM, "modes": "http_500"}, "modes", "non-empty list"),
    ("POST", FAULTS, {**RANDOM, "seed": "x"}, "seed", "an integer"),
    ("POST", FAULTS, {**RANDOM, "seed": 2**70}, "seed", "an integer"),
    ("POST", FAULTS, {**RANDOM, "delays": {"slow": 1e300}}, "delays", "at most"),
    ("POST", FAULTS, {**RANDOM, "delays": {"explode": 1}}, "delays", "fault modes"),
    ("POST", FAULTS, {**RANDOM, "delays": [1]}, "delays", "fault modes"),
    ("POST", FAULTS, {**RANDOM, "rates": 0.5}, "rates", "allowed: mode"),
    ("POST", SMS, {}, "text", "required"),
    ("POST", SMS, {"text": 5}, "text", "a string"),
    ("POST", SMS, {"text": "x" * 20_000}, "text", "at most"),
    ("POST", SMS, {"text": "hi", "phone_from": ""}, "phone_from", "non-empty string"),
    ("POST", SMS, {"text": "hi", "phone_from": 7}, "phone_from", "non-empty string"),
    ("POST", SMS, {"text": "hi", "service": 5}, "service", "non-empty string"),
    ("POST", SMS, {"text": "hi", "colour": "red"}, "colour", "allowed: text"),
    *[
        ("POST", path, body, "body", allowed)
        for path in (CLOCK, RESET, FAULTS, SMS)
        for body, allowed in (
            (b"{", "a JSON object"),
            (b"[1]", "a JSON object"),
            (b"null", "a JSON object"),
            (b"\xff\xfe{}", "a JSON object"),
            (OVERSIZED, "at most"),
        )
    ],
]


def _state_but_now(sandbox: Sandbox) -> dict[str, Any]:
    state = sandbox.state()
    state.pop("now")
    return state


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "allowed"),
    CONTROL_BAD_INPUTS,
    ids=[f"{i}-{row[1].split('/')[2]}-{row[3]}" for i, row in enumerate(CONTROL_BAD_INPUTS)],
)
def test_bad_control_input_answers_400_naming_the_field_and_changes_nothing(
    api: Api, sandbox: Sandbox, method: str, path: str, body: Any, field: str, allowed: str
) -> None:
    rental = api.rent()
    sandbox.advance_clock(60)
    sandbox.inject_fault("getRentList", "http_500")
    before = _state_but_now(sandbox)
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    response = requests.request(
        method,
        sandbox.base_url + path.format(rental=rental.id),
        data=raw,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["field"] == field
    assert field in error["error"] and allowed in error["error"], error["error"]
    assert _state_but_now(sandbox) == before
    assert api.get(action="getBalance") == (200, b"ACCESS_BALANCE:" + before["balance"].encode())
    assert control(sandbox, "GET", "/sandbox/clock").status_code == 200


HOSTILE_VALUES: list[Any] = [
    None, True, -1, 0, 2.5, 1e308, -1e308, float("nan"), float("inf"), 2**80, "", "--5", "-0", "1e999",
    "٣", "x" * 5000, [], {}, [1], {"a": 1},
]  # fmt: skip
CONTROL_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    (CLOCK, {}, "advance_seconds"),
    (RESET, {}, "balance"),
    (RESET, {}, "stock"),
    (FAULTS, {"action": "getBalance", "mode": "http_500"}, "action"),
    (FAULTS, {"action": "getBalance", "mode": "http_500"}, "mode"),
    (FAULTS, {"action": "getBalance", "mode": "http_500"}, "count"),
    (FAULTS, {"action": "getBalance", "mode": "slow"}, "delay"),
    *[(FAULTS, dict(RANDOM), name) for name in ("action", "rate", "modes", "seed", "delays")],
    *[(SMS, {"text": "hi"}, name) for name in ("text", "phone_from", "service")],
]


def test_no_control_field_value_answers_500_and_a_refusal_changes_nothing(api: Api, sandbox: Sandbox) -> None:
    for path, base, name in CONTROL_FIELDS:
        sandbox.reset()
        rental = api.rent()
        for value in HOSTILE_VALUES:
            before = _state_but_now(sandbox)
            body = json.dumps({**base, name: value}).encode()
            response = requests.post(sandbox.base_url + path.format(rental=rental.id), data=body, timeout=10)
            assert response.status_code in (200, 400), (path, name, value, response.text)
            if response.status_code == 400:
                assert response.json()["field"] == name, (path, name, value)
                assert _state_but_now(sandbox) == before, (path, name, value)
            sandbox.clear_faults()
    assert api.get(action="getBalance")[0] == 200


def test_the_clock_refuses_to_run_past_its_limit_in_steps_too(sandbox: Sandbox) -> None:
    limit = control(sandbox, "POST", CLOCK, {"advance_seconds": 4e11}).json()["error"]
    maximum = float(re.search(r"at most (\d+)", limit).group(1))  # type: ignore[union-attr]
    assert control(sandbox, "POST", CLOCK, {"advance_seconds": maximum}).status_code == 200
    response = control(sandbox, "POST", CLOCK, {"advance_seconds": 1})
    assert response.status_code == 400 and response.json()["field"] == "advance_seconds"
    assert control(sandbox, "GET", CLOCK).json()["offset_seconds"] == maximum


def test_bad_control_input_in_process_raises_sandbox_error_naming_the_field(sandbox: Sandbox) -> None:
    calls = [
        lambda: sandbox.advance_clock(4e11),
        lambda: sandbox.reset(balance=Decimal("1e40")),
        lambda: sandbox.inject_fault("getBalance", "slow", delay=1e300),
    ]
    for call, field in zip(calls, ["advance_seconds", "balance", "delay"], strict=True):
        with pytest.raises(SandboxError) as caught:
            call()
        assert caught.value.field == field and caught.value.status == 400
    assert sandbox.state()["clock_offset_seconds"] == 0 and sandbox.state()["faults"] == []


def test_a_sandbox_with_an_absurd_balance_is_refused_naming_the_balance() -> None:
    with pytest.raises(ValueError, match="balance"):
        Sandbox(port=0, balance=Decimal("1e40"))


@pytest.mark.parametrize("path", ["/sandbox/nope", "/sandbox/rentals/x/sms", "/elsewhere"])
def test_unknown_paths_answer_404_json(sandbox: Sandbox, path: str) -> None:
    response = control(sandbox, "GET", path)
    assert response.status_code == 404 and "error" in response.json()


def test_a_wrong_method_on_a_control_path_answers_405(sandbox: Sandbox) -> None:
    assert control(sandbox, "POST", "/sandbox/state").status_code == 405


def test_keep_alive_serves_many_requests_on_one_connection(sandbox: Sandbox) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=5)
    connection.connect()
    local = connection.sock.getsockname()
    for _ in range(5):
        connection.request("GET", "/stubs/handler_api.php?action=getBalance&api_key=x")
        response = connection.getresponse()
        assert response.getheader("Content-Length") == str(len(response.read()))
    assert connection.sock.getsockname() == local
    connection.close()


# ----------------------------------------------------------------------------- the CLI


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_smsonline.sandbox", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    return process, line


def test_cli_prints_the_url_answers_get_balance_and_stops_on_sigterm() -> None:
    process, url = _start_cli("--api-key", "k1", "--balance", "12.5")
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/stubs/handler_api\.php", url), url
        response = requests.get(url, params={"action": "getBalance", "api_key": "k1"}, timeout=5)
        assert response.content == b"ACCESS_BALANCE:12.50"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.communicate()


def test_cli_logs_requests_only_when_verbose_and_never_the_api_key() -> None:
    process, url = _start_cli("--api-key", CANARY_KEY, "--verbose")
    try:
        requests.get(url, params={"action": "getBalance", "api_key": CANARY_KEY}, timeout=5)
        with socket.create_connection(("127.0.0.1", int(url.split(":")[2].split("/")[0])), timeout=5) as s:
            s.sendall(f"GET /x?api_key={CANARY_KEY} HTTP/1.1 junk\r\n\r\n".encode())
            s.recv(65536)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    finally:
        process.kill()
    assert "/stubs/handler_api.php" in stderr
    assert_no_key(stderr)


def test_cli_help_shows_every_option_with_its_default_and_what_it_does() -> None:
    from airflow_provider_smsonline.sandbox.__main__ import build_parser

    done = subprocess.run(
        [sys.executable, "-m", "airflow_provider_smsonline.sandbox", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # argparse wraps lines where it likes
    options = [a for a in build_parser()._actions if a.option_strings and a.dest != "help"]
    expected = {
        "--host": "127.0.0.1",
        "--port": "8765",
        "--api-key": "sandbox",
        "--balance": "1000",
        "--stock": "50",
        "--seed": "None",
        "--cancel-window": "1200",
        "--webhook-timeout": "2.0",
        "--allow-remote": "False",
        "--verbose": "False",
    }
    assert set(expected) <= {a.option_strings[-1] for a in options}
    for action in options:
        option = action.option_strings[-1]
        entry = re.search(
            rf"\s{re.escape(option)}\b(.*?)\(default: ([^)]*)\)", text[text.index("options:") :]
        )
        assert entry, f"{option} shows no default"
        assert len(entry.group(1).split()) >= 3, f"{option} does not say what it does"
        if option in expected:
            assert entry.group(2) == expected[option], option


def test_cli_refuses_a_non_loopback_host_without_allow_remote() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "airflow_provider_smsonline.sandbox", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "--allow-remote" in done.stderr
