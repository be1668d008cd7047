# rented_in_run: the charge ledger's answer to "was this rental rented in this DAG run?", read
# from what charge_once really writes (against the sandbox), for new rentals and renewals.
from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.ledger import ChargeLedger, Done, TaskRun, account_of, charge_once
from airflow_provider_smsonline.ledger.owner import rented_in_run
from airflow_provider_smsonline.protocol import Rental
from airflow_provider_smsonline.sandbox import Sandbox
from tests.conftest import connection_env
from tests.test_ledger import MemoryStore


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmsOnlineHook]:
    with Sandbox(port=0) as sandbox:
        conn = json.loads(connection_env(host=sandbox.url, password=sandbox.api_key))
        monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", json.dumps(conn))
        with SmsOnlineHook() as running:
            yield running


def ledger_of(store: MemoryStore, task_id: str = "rent", run_id: str = "manual__1") -> ChargeLedger:
    return ChargeLedger(task=TaskRun("my_otp", task_id, -1, run_id), store=store)


def test_a_rental_rented_in_the_run_is_known_as_such_and_only_in_that_run(hook: SmsOnlineHook) -> None:
    store = MemoryStore()
    rental, _ = charge_once(
        ledger_of(store), hook, lambda: hook.get_rent_number("tg", 0, rent_time=4), rent_time=4
    )
    account = account_of(hook)

    assert rented_in_run(store, account, rental.id, "my_otp", "manual__1")
    assert not rented_in_run(store, account, rental.id, "my_otp", "manual__2")
    assert not rented_in_run(store, account, rental.id, "other_dag", "manual__1")
    assert not rented_in_run(store, "another-account", rental.id, "my_otp", "manual__1")
    assert not rented_in_run(store, account, rental.id + 1, "my_otp", "manual__1")


def test_a_renewal_in_the_run_does_not_make_the_rental_new(hook: SmsOnlineHook) -> None:
    store = MemoryStore()
    rental, _ = charge_once(
        ledger_of(store, run_id="manual__1"), hook, lambda: hook.get_rent_number("tg", 0), rent_time=None
    )
    renewal = ledger_of(store, task_id="renew", run_id="manual__2")
    charge_once(renewal, hook, lambda: hook.continue_rent(rental.id, 4), rent_time=4, existing_id=rental.id)
    account = account_of(hook)
    assert not rented_in_run(store, account, rental.id, "my_otp", "manual__2")

    # A renewal that came back under a new id is claimed by the renewal's record: still not new.
    renewed_as = rental.id + 1000
    renewal.write(Done(rental=Rental(renewed_as, rental.number, rental.end_date), renewing=rental.id))
    renewal.claim(account, renewed_as)
    assert not rented_in_run(store, account, renewed_as, "my_otp", "manual__2")


def test_a_rental_the_ledger_never_saw_or_a_damaged_record_is_not_known(hook: SmsOnlineHook) -> None:
    store = MemoryStore()
    account = account_of(hook)
    assert not rented_in_run(store, account, 1000, "my_otp", "manual__1")
    store.set(f"smsonline_rental__{account}__1000", {"owner": "smsonline_charge__gone"})
    assert not rented_in_run(store, account, 1000, "my_otp", "manual__1")
    store.set("smsonline_charge__gone", {"task": ["my_otp", "rent", -1, "manual__1"], "state": "??"})
    assert not rented_in_run(store, account, 1000, "my_otp", "manual__1")
