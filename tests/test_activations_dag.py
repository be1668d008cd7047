# The one-time-code example DAG run for real by `airflow dags test` against the sandbox: the
# activation bought once, the code waited for in the triggerer, the activation completed; and a
# failing copy whose teardown cancels the activation for a refund.
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from airflow_provider_smsonline.sandbox import Sandbox
from airflow_provider_smsonline.sandbox.activations import EARLY_CANCEL_SECONDS
from airflow_provider_smsonline.testing import LocalAirflow
from tests.conftest import CANARY_KEY, assert_no_key

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parent.parent / "example_dags" / "smsonline_one_time_code.py"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(host="127.0.0.1", port=0, api_key=CANARY_KEY) as running:
        yield running


@pytest.fixture(scope="module")
def dags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dags")
    text = EXAMPLE.read_text()
    (folder / EXAMPLE.name).write_text(text)
    no_code = text.replace('dag_id="smsonline_one_time_code"', 'dag_id="smsonline_one_time_code_no_code"')
    old = "timeout=timedelta(minutes=15).total_seconds()"
    assert old in no_code
    (folder / "no_code_copy.py").write_text(no_code.replace(old, "timeout=6"))
    return folder


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, sandbox: Sandbox, dags: Path) -> LocalAirflow:
    local = LocalAirflow(home=tmp_path_factory.mktemp("airflow-home"), dags_folder=dags)
    local.use_sandbox(sandbox)
    local.migrate()
    return local


def _deliver_when_polled(sandbox: Sandbox, known: set[int], code: str | None, delivered: list[int]) -> None:
    """Once the wait has polled: move the sandbox clock past the early-cancel window (as a wait
    that long would), then deliver ``code`` unless it is ``None``."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not delivered:
        new = [a for a in sandbox.state()["activations"] if int(a["id"]) not in known]
        if new and new[0]["polls"] >= 1:
            sandbox.advance_clock(EARLY_CANCEL_SECONDS + 1)
            if code is not None:
                sandbox.books.deliver_code(new[0]["id"], code, f"Your code is {code}")
            delivered.append(int(new[0]["id"]))
        time.sleep(0.5)


def _run_with_code(
    airflow: LocalAirflow, sandbox: Sandbox, dag_id: str, code: str | None
) -> tuple[object, list[int]]:
    known = {int(a["id"]) for a in sandbox.state()["activations"]}
    delivered: list[int] = []
    helper = threading.Thread(
        target=_deliver_when_polled, args=(sandbox, known, code, delivered), daemon=True
    )
    helper.start()
    run = airflow.dags_test(dag_id)
    helper.join(timeout=5)
    return run, delivered


def test_one_time_code_dag_buys_once_waits_deferred_and_completes(
    airflow: LocalAirflow, sandbox: Sandbox
) -> None:
    before = Decimal(sandbox.state()["balance"])
    run, delivered = _run_with_code(airflow, sandbox, "smsonline_one_time_code", "482913")
    assert run.state == "success", run.output[-3000:]  # type: ignore[attr-defined]
    assert run.xcom("wait_for_code", "code") == "482913"  # type: ignore[attr-defined]
    activation_id = run.xcom("activate", "id")  # type: ignore[attr-defined]
    assert delivered == [activation_id]
    (record,) = [a for a in sandbox.state()["activations"] if a["id"] == activation_id]
    assert record["status"] == "completed"
    assert before - Decimal(sandbox.state()["balance"]) == Decimal(record["price"])


def test_a_wait_without_a_code_cancels_the_activation_for_a_refund(
    airflow: LocalAirflow, sandbox: Sandbox
) -> None:
    before = Decimal(sandbox.state()["balance"])
    run, delivered = _run_with_code(airflow, sandbox, "smsonline_one_time_code_no_code", None)
    assert run.state == "failed", run.output[-3000:]  # type: ignore[attr-defined]
    assert run.task("wait_for_code").state == "failed"  # type: ignore[attr-defined]
    assert run.task("release").state == "success", run.output[-3000:]  # type: ignore[attr-defined]
    activation_id = run.xcom("activate", "id")  # type: ignore[attr-defined]
    assert delivered == [activation_id]
    (record,) = [a for a in sandbox.state()["activations"] if a["id"] == activation_id]
    assert record["status"] == "cancelled" and record["refunded"]
    assert Decimal(sandbox.state()["balance"]) == before


def test_no_run_leaks_the_api_key(airflow: LocalAirflow) -> None:
    for log in airflow.home.rglob("*.log"):
        assert_no_key(log.read_bytes())
