# The Airflow Variables the provider writes: findable by the DAG's and the task's ids as written,
# no phone number in any of them (a digest matches as well), and a record written by the release
# before is still read by a retry (an upgrade between two tries never pays twice).
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_smsonline.ledger import ChargeLedger, TaskRun
from airflow_provider_smsonline.operators.activation import ActivateNumberOperator
from airflow_provider_smsonline.operators.rent import ContinueRentOperator, RentNumberOperator
from airflow_provider_smsonline.sandbox import Sandbox
from tests.conftest import CANARY_KEY, FakeTaskInstance, connection_env, task_context


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch, memory_variables: dict[str, object]) -> Iterator[Sandbox]:
    with Sandbox(port=0, api_key=CANARY_KEY, seed=21) as running:
        monkeypatch.setenv(
            "AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(host=running.url, read_retries=0, timeout=1)
        )
        yield running


def try_of(task_id: str, dag_id: str = "my_otp") -> Any:
    ti = FakeTaskInstance(task_id=task_id)
    ti.dag_id = dag_id
    return task_context(ti)


def test_no_variable_holds_a_phone_number(sandbox: Sandbox, memory_variables: dict[str, object]) -> None:
    rented = RentNumberOperator(task_id="rent", service="tg", country=0, rent_time=4).execute(try_of("rent"))
    sandbox.inject_fault("getRentNumber", "reset_after_commit")  # a lost answer: adopted by a look
    adopted = RentNumberOperator(task_id="rent_2", service="wa", country=0).execute(try_of("rent_2"))
    ContinueRentOperator(task_id="renew", rent_id=rented["id"], rent_time=4).execute(try_of("renew"))
    bought = ActivateNumberOperator(task_id="activate", service="tg", country=0).execute(try_of("activate"))
    numbers = [rented["number"], adopted["number"], bought["number"]]
    assert all(len(number) >= 10 and number.isdigit() for number in numbers)
    written = json.dumps(memory_variables)
    assert [number for number in numbers if number in written] == []
    assert len(memory_variables) >= 4  # records and claims were written


def test_a_retry_gets_the_number_back_though_no_variable_keeps_it(sandbox: Sandbox) -> None:
    first = RentNumberOperator(task_id="rent", service="tg", country=0).execute(try_of("rent"))
    again = RentNumberOperator(task_id="rent", service="tg", country=0).execute(try_of("rent"))
    assert again == first  # from getRentList with the rental's id
    bought = ActivateNumberOperator(task_id="activate", service="tg", country=0).execute(try_of("activate"))
    rebought = ActivateNumberOperator(task_id="activate", service="tg", country=0).execute(try_of("activate"))
    assert rebought == bought  # from getHistory
    assert [c["action"] for c in sandbox.state()["charges"]] == ["getRentNumber"]
    assert len(sandbox.state()["activations"]) == 1


def test_records_are_named_after_the_dag_and_task_ids_as_written(
    sandbox: Sandbox, memory_variables: dict[str, object]
) -> None:
    RentNumberOperator(task_id="rent_code", service="tg", country=0).execute(try_of("rent_code"))
    record = ChargeLedger.for_context(try_of("rent_code")).key
    records = [key for key in memory_variables if key.startswith("smsonline_charge__")]
    assert record in records and record.startswith("smsonline_charge__my_otp.rent_code__")
    assert all(key.startswith("smsonline_charge__my_otp.rent_code__") for key in records)  # its index too


def test_a_record_of_the_release_before_is_read_by_a_retry_and_nothing_is_charged_again(
    sandbox: Sandbox, memory_variables: dict[str, object]
) -> None:
    # The earlier try ran on the release before: its record's name wrote "_" as "-", and it kept
    # the number itself.
    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

    with SmsOnlineHook() as hook:
        rental = hook.get_rent_number("tg", 0, rent_time=4)
    task = TaskRun("my_otp", "rent_code", -1, "manual__2025-01-01")
    old_key = task.legacy_record_key
    assert old_key != task.record_key and "my-otp.rent-code" in old_key
    memory_variables[old_key] = {
        "state": "done",
        "task": task.to_json(),
        "at": datetime.now(timezone.utc).isoformat(),
        "renewing": None,
        "asked": None,
        "claim": None,
        "rental": {
            "id": rental.id,
            "number": rental.number,
            "end_date": (datetime.now(timezone.utc) + timedelta(hours=4)).isoformat(),
        },
    }
    again = RentNumberOperator(task_id="rent_code", service="tg", country=0, rent_time=4).execute(
        try_of("rent_code")
    )
    assert (again["id"], again["number"]) == (rental.id, rental.number)
    assert len(sandbox.state()["charges"]) == 1  # nothing charged again
    assert task.record_key not in memory_variables  # the run goes on in its earlier record


def test_the_readme_lists_every_variable_the_provider_writes() -> None:
    from pathlib import Path

    from airflow_provider_smsonline.ledger.activation import ACTIVATION_CLAIM_PREFIX
    from airflow_provider_smsonline.ledger.keys import CLAIM_PREFIX, PREFIX
    from airflow_provider_smsonline.ledger.lease import LEASE_PREFIX
    from airflow_provider_smsonline.triggers.records import RECORD_PREFIX
    from airflow_provider_smsonline.webhook.hints import HINTS_KEY

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## What the provider keeps in Airflow Variables") :]
    section = section[: section.index("\n## ")]
    written = [PREFIX, CLAIM_PREFIX, ACTIVATION_CLAIM_PREFIX, LEASE_PREFIX, RECORD_PREFIX, HINTS_KEY]
    assert [name for name in written if f"`{name}" not in section] == []
