# What a new user needs to pick a service and a country: a refusal that repeats the value sent and
# says where the valid ones come from, and the listing of what can be rented and bought (prices,
# stock) from Python and from `python -m airflow_provider_smsonline`, against the sandbox.
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_smsonline.cli import build_parser, main
from airflow_provider_smsonline.exceptions import InvalidRequestError
from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.sandbox import Sandbox
from airflow_provider_smsonline.sandbox.catalogue import COUNTRIES, SERVICES
from tests.conftest import CANARY_KEY, assert_no_key, connection_env

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(port=0, api_key=CANARY_KEY, stock=7) as running:
        yield running


@pytest.fixture
def conn(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(host=sandbox.url, read_retries=0))
    return "smsonline_default"


# ----------------------------------------------------------------------------- refusals


def test_an_unknown_service_is_refused_naming_the_value_sent_and_where_codes_come_from(conn: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        SmsOnlineHook().get_rent_number(service="telegram", country=0)

    message = str(refused.value)
    assert message.startswith("BAD_SERVICE: the service is not known (sent service='telegram'); ")
    assert "python -m airflow_provider_smsonline rent-prices --country ID" in message
    assert "SmsOnlineHook.get_rent_prices" in message and "get_prices" in message


def test_an_unknown_country_is_refused_naming_the_value_sent_and_where_ids_come_from(conn: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        SmsOnlineHook().get_rent_prices(country=99)

    assert "(sent country='99'); country ids are listed in SMS.online's API documentation" in str(
        refused.value
    )


def test_the_failed_task_says_which_value_was_refused(conn: str, memory_variables: dict[str, object]) -> None:
    from airflow_provider_smsonline._compat import AirflowFailException
    from airflow_provider_smsonline.operators.rent import RentNumberOperator
    from tests.conftest import FakeTaskInstance, task_context

    rent = RentNumberOperator(task_id="rent", service="telegram", country=0, rent_time=4)
    with pytest.raises(AirflowFailException, match=r"sent service='telegram'\); the service codes"):
        rent.execute(task_context(FakeTaskInstance()))


def test_a_refused_value_that_is_the_key_is_not_repeated(conn: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        SmsOnlineHook().get_rent_number(service=CANARY_KEY, country=0)

    assert "(sent service='***')" in str(refused.value)
    assert_no_key(f"{refused.value} {refused.value.args} {refused.value.__dict__}")


# ----------------------------------------------------------------------------- the listing


def test_rent_prices_lists_every_service_of_a_country_with_price_and_stock(conn: str) -> None:
    prices = SmsOnlineHook().get_rent_prices(0, 24)

    assert {p.service for p in prices} == set(SERVICES)
    assert all(p.country == 0 and p.count == 7 and p.cost > 0 for p in prices)


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stderr
    sys.stderr = err
    try:
        status = main(list(args), out=out)
    finally:
        sys.stderr = saved
    return status, out.getvalue(), err.getvalue()


def test_the_command_line_prints_rental_prices_as_a_table(conn: str) -> None:
    status, out, _ = run_cli("rent-prices", "--country", "0", "1", "--hours", "24")

    lines = out.splitlines()
    assert status == 0 and re.split(r"\s{2,}", lines[0]) == ["country", "service", "cost", "in stock"]
    expected = sorted(
        (p.country, p.service, str(p.cost), p.count)
        for country in (0, 1)
        for p in SmsOnlineHook().get_rent_prices(country, 24)
    )
    rows = [line.split() for line in lines[1:]]
    assert [(int(c), s, cost, int(n)) for c, s, cost, n in rows] == expected
    assert len(rows) == 2 * len(SERVICES)


def test_the_command_line_prints_activation_prices_as_json(conn: str) -> None:
    status, out, _ = run_cli("activation-prices", "--service", "tg", "wa", "--country", "0", "--json")

    listed = json.loads(out)
    assert status == 0 and [(r["country"], r["service"]) for r in listed] == [(0, "tg"), (0, "wa")]
    assert all(r["count"] == 7 and float(r["cost"]) > 0 for r in listed)


def test_the_command_line_says_why_sms_online_refused_and_exits_1(conn: str) -> None:
    status, out, err = run_cli("rent-prices", "--country", "99")

    assert (status, out) == (1, "")
    assert err.startswith("error: BAD_COUNTRY: the country is not known (sent country='99')")


def test_the_command_line_refuses_a_bad_argument_as_the_operators_do(conn: str) -> None:
    with pytest.raises(SystemExit) as exited:
        run_cli("rent-prices", "--country", "0", "--hours", "5")
    assert exited.value.code == 2


def test_the_command_line_names_a_missing_connection(conn: str) -> None:
    status, _, err = run_cli("rent-prices", "--country", "0", "--conn-id", "smsonline_nowhere")

    assert status == 1
    assert "no connection 'smsonline_nowhere': set AIRFLOW_CONN_SMSONLINE_NOWHERE" in err


def test_the_command_line_never_prints_the_key(sandbox: Sandbox) -> None:
    # A listing, a refused key and a refused value holding the key: no output holds it, in any form.
    env = {
        **os.environ,
        "AIRFLOW_CONN_SMSONLINE_DEFAULT": connection_env(host=sandbox.url, read_retries=0),
        "AIRFLOW_CONN_SMSONLINE_WRONG": connection_env(host=sandbox.url, password=CANARY_KEY + "x"),
    }
    runs = {
        "BAD_KEY": ["rent-prices", "--country", "0", "--conn-id", "smsonline_wrong"],
        "BAD_SERVICE": ["activation-prices", "--service", CANARY_KEY, "--country", "0"],
        "in stock": ["rent-prices", "--country", "0"],
    }
    for expected, args in runs.items():
        done = subprocess.run(
            [sys.executable, "-m", "airflow_provider_smsonline", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert expected in done.stdout + done.stderr, done.stderr[-2000:]
        assert done.returncode == (0 if expected == "in stock" else 1)
        assert_no_key(done.stdout + done.stderr)


# ----------------------------------------------------------------------------- the docs


def test_every_command_line_the_docs_show_is_one_the_parser_takes() -> None:
    shown = []
    for page in DOCS.rglob("*.rst"):
        shown += re.findall(r"python -m airflow_provider_smsonline ([a-z-]+[^\n`#]*)", page.read_text())
    assert len(shown) >= 3, shown
    parser = build_parser()
    for line in shown:
        parser.parse_args(line.replace("ID", "0").replace("CODE", "tg").split())


def test_rent_prices_answer_for_every_country_of_the_sandboxs_catalogue(conn: str) -> None:
    assert {p.country for c in COUNTRIES for p in SmsOnlineHook().get_rent_prices(c)} == set(COUNTRIES)
