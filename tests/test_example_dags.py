# Every example DAG, run for real by `airflow dags test` against the sandbox, read back from
# Airflow's metadata DB and checked against the sandbox's own books.
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_smsonline.sandbox import Sandbox
from airflow_provider_smsonline.testing import LocalAirflow
from tests.conftest import CANARY_KEY, assert_no_key

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parent.parent / "example_dags"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(host="127.0.0.1", port=0, api_key=CANARY_KEY) as running:
        yield running


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, sandbox: Sandbox) -> LocalAirflow:
    local = LocalAirflow(home=tmp_path_factory.mktemp("airflow-home"), dags_folder=EXAMPLES)
    local.use_sandbox(sandbox)
    local.migrate()
    return local


def _charges_of(sandbox: Sandbox, rent_id: int) -> list[dict]:
    return [c for c in sandbox.state()["charges"] if int(c["rental_id"]) == rent_id]


def _rental(sandbox: Sandbox, rent_id: int) -> dict:
    return next(r for r in sandbox.state()["rentals"] if int(r["id"]) == rent_id)


def test_manual_rental_pushes_id_number_and_end_date_to_xcom(airflow: LocalAirflow, sandbox: Sandbox) -> None:
    run = airflow.dags_test("smsonline_rent_manual", conf={"service": "tg", "country": 0, "rent_time": 24})

    assert run.state == "success", run.output[-3000:]
    rent = run.task("rent")
    rental = _rental(sandbox, rent.xcoms["id"])
    assert rent.xcoms["number"] == rental["number"]
    assert rent.xcoms["return_value"] == {k: rent.xcoms[k] for k in ("id", "number", "end_date")}
    assert rental["rent_time"] == 24 and rental["service"] == "tg"
    assert len(_charges_of(sandbox, rent.xcoms["id"])) == 1
    assert run.xcom("use_number") == rent.xcoms["number"]
    assert run.xcom("release_if_unused") == "kept" and rental["status"] == "active"  # the teardown kept it


def test_weekly_rental_rents_for_168_hours_once(airflow: LocalAirflow, sandbox: Sandbox) -> None:
    run = airflow.dags_test("smsonline_rent_weekly")

    assert run.state == "success", run.output[-3000:]
    rent_id = run.xcom("rent", "id")
    assert _rental(sandbox, rent_id)["rent_time"] == 168
    assert len(_charges_of(sandbox, rent_id)) == 1
    assert run.xcom("release_if_unused") == "kept" and _rental(sandbox, rent_id)["status"] == "active"


def test_rent_many_rents_one_number_per_service_once(airflow: LocalAirflow, sandbox: Sandbox) -> None:
    run = airflow.dags_test(
        "smsonline_rent_many", conf={"services": ["tg", "wa"], "country": 0, "rent_time": 4}
    )

    assert run.state == "success", run.output[-3000:]
    rentals = [run.xcom("rent", map_index=index) for index in (0, 1)]
    assert [_rental(sandbox, r["id"])["service"] for r in rentals] == ["tg", "wa"]
    assert all(_rental(sandbox, r["id"])["rent_time"] == 4 for r in rentals)
    assert all(len(_charges_of(sandbox, r["id"])) == 1 for r in rentals)
    assert run.xcom("hand_out") == {r["number"]: r["end_date"] for r in rentals}
    assert run.xcom("release_if_unused") == ["kept", "kept"]
    assert all(_rental(sandbox, r["id"])["status"] == "active" for r in rentals)


def test_a_bad_mapped_value_fails_its_instance_without_retry_and_the_others_are_released(
    airflow: LocalAirflow, sandbox: Sandbox, tmp_path: Path
) -> None:
    # A copy whose second service is empty, with retries to spend: that instance fails on its first
    # try when Airflow unmaps it; the first rents once, and the teardown releases it for a refund.
    text = (EXAMPLES / "smsonline_rent_many.py").read_text()
    replacements = {
        'dag_id="smsonline_rent_many"': 'dag_id="smsonline_rent_many_bad_value"',
        "expand(service=services())": 'expand(service=["tg", ""])',
        "max_active_tis_per_dagrun=1,": "max_active_tis_per_dagrun=1, retries=2, retry_delay=0,",
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    (tmp_path / "bad_value.py").write_text(text)
    examples, airflow.dags_folder = airflow.dags_folder, tmp_path
    try:
        run = airflow.dags_test("smsonline_rent_many_bad_value")
    finally:
        airflow.dags_folder = examples

    assert run.state == "failed", run.output[-3000:]
    bad = run.task("rent", map_index=1)
    assert (bad.state, bad.try_number) == ("failed", 1)
    assert (
        "service must be a non-empty string" in run.output
        and "(checked as the mapped task instance started)" in run.output
    )
    rented = run.xcom("rent", map_index=0)
    assert len(_charges_of(sandbox, rented["id"])) == 1
    assert run.xcom("release_if_unused") == ["cancelled"]
    assert _rental(sandbox, rented["id"])["status"] == "cancelled"


def test_verification_code_dag_defers_until_the_sms_and_finishes_the_rental(
    airflow: LocalAirflow, sandbox: Sandbox
) -> None:
    known = {int(r["id"]) for r in sandbox.state()["rentals"]}
    delivered: list[int] = []

    def deliver_when_rented() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not delivered:
            state = sandbox.state()
            new = [int(r["id"]) for r in state["rentals"] if int(r["id"]) not in known]
            # Deliver once the wait has polled: a code that arrives while the sensor waits.
            if new and state["polls"].get(str(new[0]), 0) >= 1:
                sandbox.deliver_sms(
                    new[0], text="Your code is 482913. Do not share it.", phone_from="Telegram"
                )
                delivered.append(new[0])
            time.sleep(0.5)

    helper = threading.Thread(target=deliver_when_rented, daemon=True)
    helper.start()
    run = airflow.dags_test("smsonline_verification_code")
    helper.join(timeout=5)

    assert run.state == "success", run.output[-3000:]
    assert run.xcom("wait_for_code", "code") == "482913"
    assert run.output.count("Deferring") + run.output.count("deferr") >= 1  # it waited in the triggerer
    rent_id = run.xcom("rent", "id")
    assert delivered == [rent_id]
    assert _rental(sandbox, rent_id)["status"] == "finished"
    assert len(_charges_of(sandbox, rent_id)) == 1


def test_keep_number_rents_then_renews_then_replaces_an_ended_rental(
    airflow: LocalAirflow, sandbox: Sandbox
) -> None:
    first = airflow.dags_test("smsonline_keep_number")
    assert first.state == "success", first.output[-3000:]
    assert first.task("renew").state == "skipped"
    assert first.xcom("release_if_not_kept") == "kept"  # the teardown
    kept = first.xcom("remember")

    second = airflow.dags_test("smsonline_keep_number")
    assert second.state == "success", second.output[-3000:]
    assert second.task("rent_new").state == "skipped"
    assert second.xcom("release_if_not_kept") == "nothing rented"  # a renewal is never released
    renewed = second.xcom("remember")
    assert renewed["id"] == kept["id"]
    assert renewed["end_date"] > kept["end_date"]
    actions = [c["action"] for c in _charges_of(sandbox, kept["id"])]
    assert actions == ["getRentNumber", "continueRentNumber"]

    sandbox.advance_clock(2 * 168 * 3600 + 60)  # past the renewed end date: the rental has expired
    third = airflow.dags_test("smsonline_keep_number")
    assert third.state == "success", third.output[-3000:]
    assert third.task("renew").state == "skipped"
    replaced = third.xcom("remember")
    assert replaced["id"] != kept["id"]
    assert len(_charges_of(sandbox, kept["id"])) == 2  # the expired rental was not charged again


def test_taskflow_example_rents_reads_and_finishes_through_the_hook(
    airflow: LocalAirflow, sandbox: Sandbox
) -> None:
    run = airflow.dags_test("smsonline_taskflow")

    assert run.state == "success", run.output[-3000:]
    rented = run.task("rent_number").xcoms
    rent_id = rented["id"]
    assert rented["return_value"] == {k: rented[k] for k in ("id", "number", "end_date")}
    assert run.xcom("read_number") == rented["number"] == _rental(sandbox, rent_id)["number"]
    assert _rental(sandbox, rent_id)["status"] == "finished"
    assert len(_charges_of(sandbox, rent_id)) == 1


def test_taskflow_example_reads_its_connection_from_a_secrets_backend(
    airflow: LocalAirflow, sandbox: Sandbox, tmp_path: Path
) -> None:
    # The README's secrets-backend shape (conn_type, password = key, host, extra), served by
    # Airflow's own file backend; no AIRFLOW_CONN_* variable is left to fall back on.
    connections = tmp_path / "connections.json"
    connections.write_text(
        json.dumps(
            {
                "smsonline_default": {
                    "conn_type": "smsonline",
                    "password": sandbox.api_key,
                    "host": sandbox.url,
                    "extra": {"timeout": 20, "read_retries": 1},
                }
            }
        )
    )
    saved = dict(airflow.extra_env)
    airflow.extra_env.pop("AIRFLOW_CONN_SMSONLINE_DEFAULT")
    airflow.extra_env["AIRFLOW__SECRETS__BACKEND"] = "airflow.secrets.local_filesystem.LocalFilesystemBackend"
    airflow.extra_env["AIRFLOW__SECRETS__BACKEND_KWARGS"] = json.dumps(
        {"connections_file_path": str(connections)}
    )
    try:
        run = airflow.dags_test("smsonline_taskflow")
    finally:
        airflow.extra_env.clear()
        airflow.extra_env.update(saved)

    assert run.state == "success", run.output[-3000:]
    rent_id = run.xcom("rent_number", "id")
    assert _rental(sandbox, rent_id)["status"] == "finished"
    assert len(_charges_of(sandbox, rent_id)) == 1


# Each paying example with one of its tasks made to fail (a copy under another dag_id): its
# teardown releases the rental: cancelled for a refund, or finished.
FAILING = {
    "smsonline_rent_manual": (
        {'print(f"Rental {rent_id}: +{number}, until {end_date}")': 'raise RuntimeError("not handed on")'},
        "use_number",
        "release_if_unused",
        "cancelled",
    ),
    "smsonline_taskflow": (
        {'print(f"Rental {rent_id}: +{number}, {len(received)} SMS so far")': "raise RuntimeError()"},
        "read_number",
        "finish_rental",
        "finished",
    ),
    "smsonline_rent_many": (
        {'print(f"+{number}, until {end_date}")': 'raise RuntimeError("not handed on")'},
        "hand_out",
        "release_if_unused",
        "cancelled",
    ),
    "smsonline_verification_code": (
        {"timeout=timedelta(minutes=15).total_seconds()": "timeout=3"},  # no SMS comes: the wait fails
        "wait_for_code",
        "finish",
        "finished",
    ),
    "smsonline_keep_number": (
        {
            'KEPT = "smsonline_kept_rental"': 'KEPT = "smsonline_kept_rental_of_the_failing_copy"',
            "Variable.set(KEPT, kept, serialize_json=True)": 'raise RuntimeError("could not store it")',
        },
        "remember",
        "release_if_not_kept",
        "cancelled",
    ),
}


@pytest.fixture(scope="module")
def failing_copies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("failing-dags")
    for dag_id, (replacements, *_) in FAILING.items():
        path = next(p for p in EXAMPLES.glob("*.py") if f'dag_id="{dag_id}"' in p.read_text())
        text = path.read_text().replace(f'dag_id="{dag_id}"', f'dag_id="{dag_id}_failing"')
        for old, new in replacements.items():
            assert old in text, f"{path.name} no longer contains {old!r}"
            text = text.replace(old, new)
        (folder / path.name).write_text(text)
    return folder


@pytest.mark.parametrize("dag_id", list(FAILING))
def test_a_paying_example_whose_task_fails_releases_its_rental_in_a_teardown(
    airflow: LocalAirflow, sandbox: Sandbox, failing_copies: Path, dag_id: str
) -> None:
    _, failing_task, teardown, released = FAILING[dag_id]
    examples, airflow.dags_folder = airflow.dags_folder, failing_copies
    try:
        run = airflow.dags_test(f"{dag_id}_failing")
    finally:
        airflow.dags_folder = examples

    assert run.state == "failed", run.output[-3000:]
    assert run.task(failing_task).state == "failed"
    assert run.task(teardown).state == "success", run.output[-3000:]
    rent_ids = [t.xcoms["id"] for t in run.tasks if "id" in t.xcoms and t.task_id != teardown]
    assert rent_ids
    for rent_id in rent_ids:  # every rental of the run (one per map index for a mapped task)
        assert _rental(sandbox, rent_id)["status"] == released
        assert len(_charges_of(sandbox, rent_id)) == 1


def test_no_example_run_leaks_the_api_key(airflow: LocalAirflow) -> None:
    for log in airflow.home.rglob("*.log"):
        assert_no_key(log.read_bytes())
    assert_no_key((airflow.home / "airflow.db").read_bytes())
