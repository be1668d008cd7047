# The setup docs/sandbox.rst shows, done as a user does it: the sandbox started from the command
# line, the connection exported as printed or as written in the docs, and the dates read right.
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.sandbox import Sandbox
from airflow_provider_smsonline.testing import LocalAirflow
from tests.airflow_server import free_port

DOCS = Path(__file__).resolve().parent.parent / "docs"
SANDBOX = (sys.executable, "-m", "airflow_provider_smsonline.sandbox")
EXPORT = re.compile(r"^\s*export AIRFLOW_CONN_SMSONLINE_DEFAULT='(\{.*\})'$", re.MULTILINE)


def documented_connection(page: str = "sandbox.rst") -> dict[str, object]:
    """The first ``export AIRFLOW_CONN_SMSONLINE_DEFAULT='{...}'`` of a docs page, as JSON."""
    found = EXPORT.search((DOCS / page).read_text())
    assert found, f"docs/{page} shows no export of the connection"
    return dict(json.loads(found.group(1)))


@contextmanager
def sandbox_cli(*args: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``python -m airflow_provider_smsonline.sandbox ARGS`` as a user starts it: the URL it
    printed, and the connection of the ``export`` line it printed next."""
    process = subprocess.Popen(
        [*SANDBOX, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        export = EXPORT.match(process.stdout.readline())
        assert export, "the sandbox printed no export of its connection"
        yield url, json.loads(export.group(1))
    finally:
        process.kill()
        process.communicate(timeout=10)


def hours_until_end_of_a_4_hour_rental(monkeypatch: pytest.MonkeyPatch, conn: dict[str, object]) -> float:
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", json.dumps(conn))
    rental = SmsOnlineHook().get_rent_number(service="tg", country=0, rent_time=4)
    return (rental.end_date - datetime.now(timezone.utc)).total_seconds() / 3600


def test_the_documented_sandbox_connection_reads_a_4_hour_rental_as_4_hours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    with sandbox_cli("--port", str(port), "--api-key", "sandbox") as (url, _):
        conn = documented_connection()
        conn["host"] = str(conn["host"]).replace(":8765/", f":{port}/")
        assert conn["host"] == url

        assert 3.98 < hours_until_end_of_a_4_hour_rental(monkeypatch, conn) <= 4.0


@pytest.mark.parametrize("offset", ["3", "-5", "0"])
def test_the_sandbox_prints_the_connection_that_reads_its_dates(
    offset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sandbox_cli("--port", "0", "--utc-offset", offset) as (url, conn):
        assert conn["host"] == url and conn["password"] == "sandbox"

        assert 3.98 < hours_until_end_of_a_4_hour_rental(monkeypatch, conn) <= 4.0


def test_local_airflow_points_at_the_sandbox_in_its_zone(tmp_path: Path) -> None:
    with Sandbox(port=0, utc_offset=-5) as sandbox:
        local = LocalAirflow(home=tmp_path, dags_folder=tmp_path)
        local.use_sandbox(sandbox, timeout=5)
        conn = json.loads(local.extra_env["AIRFLOW_CONN_SMSONLINE_DEFAULT"])

    assert conn == {
        "conn_type": "smsonline",
        "host": sandbox.url,
        "password": sandbox.api_key,
        "extra": {"server_timezone": "Etc/GMT+5", "timeout": 5},
    }


def test_the_sandbox_names_no_zone_for_an_offset_of_minutes() -> None:
    sandbox = Sandbox(port=0, utc_offset=5.5)
    assert sandbox.server_timezone is None and "extra" not in sandbox.connection()
    assert Sandbox(port=0).server_timezone == "Etc/GMT-3"
    assert datetime.now(ZoneInfo("Etc/GMT-3")).utcoffset() == timedelta(hours=3)


def test_latest_names_the_newest_open_rental_or_activation_and_404_when_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import requests

    with Sandbox(port=0) as sandbox:
        monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", json.dumps(sandbox.connection()))
        hook, control = SmsOnlineHook(), sandbox.base_url + "/sandbox"
        none = requests.post(f"{control}/rentals/latest/sms", json={"text": "code 1"}, timeout=5)
        assert none.status_code == 404 and none.json()["error"] == "no rental is open: nothing is latest"
        first = hook.get_rent_number("tg", 0)
        second = hook.get_rent_number("wa", 0)
        hook.finish_rent(second.id)
        sent = requests.post(f"{control}/rentals/latest/sms", json={"text": "code 2"}, timeout=5).json()
        assert sent["rental_id"] == first.id  # the newest one still active

        no_code = requests.post(f"{control}/activations/latest/code", json={"code": "1"}, timeout=5)
        assert no_code.status_code == 404
        bought = hook.get_number("tg", 0)
        coded = requests.post(f"{control}/activations/latest/code", json={"code": "4321"}, timeout=5)
        assert coded.json()["id"] == bought.id
