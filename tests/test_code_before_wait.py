# The everyday flow, run for real by `airflow dags test` against the sandbox: rent, the site sends
# the code at once (before the wait's first look), wait. The code counts in every sensor mode; on a
# kept number, a code from before the run never does, and a timeout says so.
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.sandbox import Sandbox
from airflow_provider_smsonline.testing import LocalAirflow

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

DAGS = Path(__file__).resolve().parent / "dags"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(host="127.0.0.1", port=0) as running:  # dates written in UTC+3, as by default
        yield running


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, sandbox: Sandbox) -> LocalAirflow:
    local = LocalAirflow(home=tmp_path_factory.mktemp("airflow-home"), dags_folder=DAGS)
    local.use_sandbox(sandbox)  # the connection names the sandbox's zone, as docs/sandbox.rst shows
    local.migrate()
    return local


def _rental(sandbox: Sandbox, rent_id: int) -> dict:
    return next(r for r in sandbox.state()["rentals"] if int(r["id"]) == rent_id)


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_a_code_that_lands_before_the_wait_starts_is_found(
    airflow: LocalAirflow, sandbox: Sandbox, mode: str
) -> None:
    run = airflow.dags_test(f"smsonline_code_before_wait_{mode}")

    assert run.state == "success", run.output[-4000:]
    assert run.xcom("wait_for_code", "code") == "482913"
    rent_id = run.xcom("rent", "id")
    assert len(_rental(sandbox, rent_id)["sms"]) == 1  # the one the site sent before the wait
    assert _rental(sandbox, rent_id)["status"] == "finished"
    assert "was rented in this DAG run: every SMS on it counts" in run.output


def test_a_kept_numbers_code_from_before_the_run_never_counts_and_a_timeout_says_so(
    airflow: LocalAirflow, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", airflow.extra_env["AIRFLOW_CONN_SMSONLINE_DEFAULT"])
    with SmsOnlineHook() as hook:
        kept = hook.get_rent_number(service="tg", country=0, rent_time=24)
    sandbox.deliver_sms(kept.id, text="Your code is 111111", phone_from="Telegram")
    time.sleep(1.1)  # the SMS is stamped to the second: the run starts in a later one

    run = airflow.dags_test(
        "smsonline_kept_number_code", conf={"rent_id": kept.id, "send": "Your code is 222222"}
    )
    assert run.state == "success", run.output[-4000:]
    assert run.xcom("wait_for_code", "code") == "222222"

    time.sleep(1.1)
    again = airflow.dags_test("smsonline_kept_number_code", conf={"rent_id": kept.id, "send": ""})
    assert again.state == "failed"
    assert again.task("wait_for_code").state == "failed"
    assert "2 SMS matching the pattern were passed over as older than this DAG run" in again.output
    assert "to count SMS from before the run, pass since" in again.output
