# The charge ledger as a specification: one task instance pays for at most one rental (or one
# renewal) per run, across lost answers, task retries, killed workers, concurrent runs, and
# connections that share an account. The pure decision has its own file (test_ledger_decide.py).
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
import requests
import requests_mock as requests_mock_module

from airflow_provider_smsonline.exceptions import NoNumbersError, OutcomeUnknownError
from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.ledger import (
    RUNS_KEPT,
    ChargeAmbiguousError,
    ChargeLedger,
    Done,
    Listed,
    Pending,
    TaskRun,
    VariableStore,
    account_id,
    charge_once,
)
from airflow_provider_smsonline.ledger.keys import MAX_KEY_LENGTH, claim_key
from airflow_provider_smsonline.protocol import Rental, RentListEntry
from tests.conftest import (
    CANARY_KEY,
    MOCK_ENDPOINT,
    FakeTaskInstance,
    action_url,
    connection_env,
    sent_actions,
    task_context,
)

UTC = timezone.utc
STARTED = datetime(2025, 5, 10, 10, 0, tzinfo=UTC)
RENTAL = {
    "status": "success",
    "phone": {"id": 1049, "endDate": "2025-05-10T12:34:56", "number": "79999876543"},
}
EXTENDED = {
    "status": "success",
    "phone": {"id": 1049, "endDate": "2025-05-11T12:34:56", "number": "79999876543"},
}
HTML_502 = "<html><body>502 Bad Gateway</body></html>"
ACCOUNT = account_id(MOCK_ENDPOINT, CANARY_KEY)


class MemoryStore:
    """The ledger's store in a dict, JSON round-tripped like Airflow Variables.

    ``listable=False`` acts like Airflow before 3.3 (no ``Variable.keys``); ``slow`` seconds pass
    between reading a value and returning it, as with a slow metadata DB.
    """

    def __init__(self, *, listable: bool = True, slow: float = 0.0) -> None:
        self.values: dict[str, str] = {}
        self.listable = listable
        self.slow = slow

    def get(self, key: str) -> dict[str, Any]:
        value = json.loads(self.values.get(key, "{}"))
        time.sleep(self.slow)
        return value  # type: ignore[no-any-return]

    def set(self, key: str, value: dict[str, Any]) -> None:
        self.values[key] = json.dumps(value)

    def delete(self, key: str) -> None:
        self.values.pop(key, None)

    def keys(self, prefix: str) -> list[str] | None:
        return [key for key in list(self.values) if key.startswith(prefix)] if self.listable else None


def ledger_of(
    store: MemoryStore, dag_id: str = "dag", task_id: str = "rent", run_id: str = "manual__1"
) -> ChargeLedger:
    return ChargeLedger(task=TaskRun(dag_id, task_id, -1, run_id), store=store)


@pytest.fixture
def ledger() -> ChargeLedger:
    return ledger_of(MemoryStore())


@pytest.fixture
def hook(smsonline_conn: str) -> SmsOnlineHook:
    return SmsOnlineHook()


def rent_list(*entries: dict[str, Any]) -> dict[str, str]:
    return {"text": json.dumps({"status": "success", "values": list(entries)})}


def answer(mocker: requests_mock_module.Mocker, action: str, *responses: dict[str, Any]) -> Any:
    return mocker.get(action_url(action), list(responses))


def pending(*snapshot: Listed, **more: Any) -> Pending:
    fields = {"started": STARTED, "until": STARTED + timedelta(seconds=10), "rent_time": None, **more}
    return Pending(snapshot=snapshot, **fields)


def rent_number(hook: Any, ledger: ChargeLedger, rent_time: int | None = None) -> tuple[Rental, bool]:
    return charge_once(
        ledger, hook, lambda: hook.get_rent_number("tg", 0, rent_time=rent_time), rent_time=rent_time
    )


def continue_rent(hook: SmsOnlineHook, ledger: ChargeLedger) -> tuple[Rental, bool]:
    return charge_once(ledger, hook, lambda: hook.continue_rent(1049, 24), rent_time=24, existing_id=1049)


# ----------------------------------------------------------------------------- renting


def test_first_try_rents_and_records_the_rental(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", rent_list({"id": "5", "phone": "1", "price": "9", "hours": "4"}))
    answer(requests_mock, "getRentNumber", {"text": json.dumps(RENTAL)})
    rental, charged = rent_number(hook, ledger)
    assert (rental.id, charged) == (1049, True)
    assert sent_actions(requests_mock) == ["getRentList", "getRentNumber"]
    record = ledger.read()
    assert isinstance(record, Done) and record.rental.id == 1049
    assert ledger.store.get(claim_key(ACCOUNT, 1049))["owner"] == ledger.key


def test_retry_after_a_recorded_rental_returns_it_without_charging(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    listed = {"id": "1049", "phone": "79999876543", "price": "9", "hours": "4"}
    answer(requests_mock, "getRentList", rent_list(), rent_list(listed))
    answer(requests_mock, "getRentNumber", {"text": json.dumps(RENTAL)})
    first, _ = rent_number(hook, ledger)
    again, charged = rent_number(hook, ledger)
    assert charged is False
    assert (again.id, again.number, again.end_date) == (first.id, first.number, first.end_date)
    assert sent_actions(requests_mock) == ["getRentList", "getRentNumber", "getRentList"]


def test_pending_record_and_one_new_rental_adopts_it_ignoring_undocumented_fields(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    ledger.write(pending(Listed(5, "1", 4), rent_time=4))
    new = {"id": "777", "phone": "79990007777", "price": "9", "hours": "4", "endDate": "2099-01-01 00:00:00"}
    answer(requests_mock, "getRentList", rent_list({"id": "5", "phone": "1", "hours": "4"}, new))
    charge = answer(requests_mock, "getRentNumber", {"text": json.dumps(RENTAL)})
    rental, charged = rent_number(hook, ledger, rent_time=4)
    assert (rental.id, rental.number, charged) == (777, "79990007777", False)
    assert rental.end_date == STARTED + timedelta(hours=4)  # not the list's endDate
    assert not charge.called
    assert isinstance(ledger.read(), Done)


def test_pending_record_and_no_new_rental_charges_now(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    ledger.write(pending(Listed(5, "1", 4)))
    answer(requests_mock, "getRentList", rent_list({"id": "5", "phone": "1", "hours": "4"}))
    charge = answer(requests_mock, "getRentNumber", {"text": json.dumps(RENTAL)})
    rental, charged = rent_number(hook, ledger)
    assert (rental.id, charged) == (1049, True)
    assert charge.call_count == 1


def test_pending_record_and_several_new_rentals_raises_ambiguous_naming_them(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    ledger.write(pending(Listed(5, "1", 4)))
    rows = [{"id": "5", "phone": "1"}, {"id": "902", "phone": "2"}, {"id": "901", "phone": "3"}]
    answer(requests_mock, "getRentList", rent_list(*rows))
    charge = answer(requests_mock, "getRentNumber", {"text": json.dumps(RENTAL)})
    with pytest.raises(ChargeAmbiguousError) as raised:
        rent_number(hook, ledger)
    assert raised.value.candidates == [901, 902]
    assert "901" in str(raised.value) and "902" in str(raised.value)
    assert ledger.key in str(raised.value)
    assert not raised.value.retryable
    assert not charge.called


def test_lost_answer_then_a_new_rental_in_the_list_is_recovered_in_the_same_try(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    before = {"id": "5", "phone": "1", "hours": "4"}
    after = {"id": "778", "phone": "79990007778", "hours": "4"}
    answer(requests_mock, "getRentList", rent_list(before), rent_list(before, after))
    answer(requests_mock, "getRentNumber", {"status_code": 502, "text": HTML_502})
    rental, charged = rent_number(hook, ledger)
    assert (rental.id, rental.number, charged) == (778, "79990007778", True)
    assert sent_actions(requests_mock) == ["getRentList", "getRentNumber", "getRentList"]
    assert isinstance(ledger.read(), Done)


def test_lost_answer_with_nothing_new_yet_raises_outcome_unknown_and_keeps_the_record(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", rent_list({"id": "5", "phone": "1", "hours": "4"}))
    answer(requests_mock, "getRentNumber", {"status_code": 504, "text": ""})
    with pytest.raises(OutcomeUnknownError):
        rent_number(hook, ledger)
    record = ledger.read()
    assert isinstance(record, Pending) and [row.id for row in record.snapshot] == [5]
    assert record.looked_at is not None


def test_lost_answer_then_a_retry_that_finds_the_rental_does_not_charge_again(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", rent_list())
    charge = answer(requests_mock, "getRentNumber", {"status_code": 504, "text": ""})
    with pytest.raises(OutcomeUnknownError):
        rent_number(hook, ledger)
    answer(requests_mock, "getRentList", rent_list({"id": "779", "phone": "7", "hours": "4"}))
    rental, charged = rent_number(hook, ledger)
    assert (rental.id, charged) == (779, False)
    assert charge.call_count == 1


def test_api_error_code_clears_the_record_and_a_retry_charges_again(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", rent_list())
    charge = answer(requests_mock, "getRentNumber", {"text": "NO_NUMBERS"}, {"text": json.dumps(RENTAL)})
    with pytest.raises(NoNumbersError):
        rent_number(hook, ledger)
    assert ledger.read() is None and ledger.key not in ledger.store.values
    rental, charged = rent_number(hook, ledger)
    assert (rental.id, charged, charge.call_count) == (1049, True, 2)


# ----------------------------------------------------------------------------- renewing


def listed_1049(hours: str, **extra: str) -> dict[str, str]:
    return rent_list({"id": "1049", "phone": "79999876543", "price": "9", "hours": hours, **extra})


def test_lost_renewal_whose_hours_grew_by_rent_time_is_recovered_in_the_same_try(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", listed_1049("4"), listed_1049("28"))
    extend = answer(requests_mock, "continueRentNumber", {"status_code": 502, "text": HTML_502})
    rental, charged = continue_rent(hook, ledger)
    assert (rental.id, charged, extend.call_count) == (1049, True, 1)
    assert rental.end_date == ledger.read().rental.end_date  # type: ignore[union-attr]


def test_pending_renewal_with_unchanged_hours_renews_now_whatever_endDate_says(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    ledger.write(pending(Listed(1049, "79999876543", 4), rent_time=24, renewing=1049))
    answer(requests_mock, "getRentList", listed_1049("4", endDate="2099-01-01 00:00:00"))
    extend = answer(requests_mock, "continueRentNumber", {"text": json.dumps(EXTENDED)})
    rental, charged = continue_rent(hook, ledger)
    assert (rental.end_date.day, charged, extend.call_count) == (11, True, 1)


def test_lost_renewal_answered_under_a_new_id_is_found_by_its_number_and_claimed(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    renewed = rent_list({"id": "2001", "phone": "79999876543", "price": "9", "hours": "28"})
    answer(requests_mock, "getRentList", listed_1049("4"), renewed)
    answer(requests_mock, "continueRentNumber", {"exc": requests.exceptions.ReadTimeout})
    rental, charged = continue_rent(hook, ledger)
    assert (rental.id, rental.number, charged) == (2001, "79999876543", True)
    assert ledger.store.get(claim_key(ACCOUNT, 2001))["owner"] == ledger.key


def test_renewal_answered_with_a_new_id_claims_it(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", listed_1049("4"))
    moved = {"status": "success", "phone": {**EXTENDED["phone"], "id": 2001}}  # type: ignore[dict-item]
    answer(requests_mock, "continueRentNumber", {"text": json.dumps(moved)})
    rental, _ = continue_rent(hook, ledger)
    assert rental.id == 2001 and ledger.store.get(claim_key(ACCOUNT, 2001))["owner"] == ledger.key


def test_lost_renewal_without_hours_in_the_list_fails_without_retry_naming_the_rental(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", rent_list({"id": "1049", "phone": "79999876543"}))
    extend = answer(requests_mock, "continueRentNumber", {"exc": requests.exceptions.ReadTimeout})
    with pytest.raises(ChargeAmbiguousError) as raised:
        continue_rent(hook, ledger)
    assert raised.value.candidates == [1049] and "1049" in str(raised.value)
    assert not raised.value.retryable and extend.call_count == 1


# ----------------------------------------------------------------------------- Variable names


def test_record_names_of_tasks_whose_ids_join_alike_do_not_collide(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    store = MemoryStore()
    first = ledger_of(store, dag_id="a__b", task_id="c")
    second = ledger_of(store, dag_id="a", task_id="b__c")
    assert first.key != second.key
    assert not second.key.startswith(first.task.task_prefix)
    assert not first.key.startswith(second.task.task_prefix)
    answer(requests_mock, "getRentList", rent_list(), rent_list({"id": "1049", "phone": "7", "hours": "4"}))
    moved = {"status": "success", "phone": {**RENTAL["phone"], "id": 1050}}  # type: ignore[dict-item]
    answer(requests_mock, "getRentNumber", {"text": json.dumps(RENTAL)}, {"text": json.dumps(moved)})
    assert rent_number(hook, first)[0].id == 1049
    rental, charged = rent_number(hook, second)  # the same run id, a task whose ids join alike
    assert (rental.id, charged) == (1050, True)  # its own rental, not the other task's


def test_record_names_separate_runs_and_map_indexes_and_fit_a_variable_key() -> None:
    names = {
        TaskRun("d", "t", -1, "r1").record_key,
        TaskRun("d", "t", -1, "r2").record_key,
        TaskRun("d", "t", 0, "r1").record_key,
        TaskRun("d", "t", 1, "r1").record_key,
    }
    assert len(names) == 4
    longest = TaskRun("d" * 250, "t" * 250, 99999, "r" * 250)
    assert len(longest.record_key) <= MAX_KEY_LENGTH and len(longest.index_key) <= MAX_KEY_LENGTH
    # The DAG's and the task's ids as written: searching Variables for "my_otp" finds the record.
    assert TaskRun("my_otp", "rent_code", 3, "r").record_key.startswith(
        "smsonline_charge__my_otp.rent_code.3__"
    )
    assert TaskRun("a b/c", "t", -1, "r").record_key.startswith("smsonline_charge__a-b-c.t__")


def test_a_task_instance_without_a_map_index_is_named_as_unmapped() -> None:
    unmapped = ChargeLedger.for_context(task_context(FakeTaskInstance(map_index=None)))  # type: ignore[arg-type]
    assert unmapped.key == ChargeLedger.for_context(task_context(FakeTaskInstance())).key


def test_account_id_is_shared_by_one_key_on_one_endpoint_and_does_not_show_the_key() -> None:
    same = account_id("HTTPS://API.SMS.ONLINE:443/stubs/handler_api.php", CANARY_KEY)
    assert same == account_id("https://api.sms.online/stubs/handler_api.php", CANARY_KEY)
    assert same != account_id("https://api.sms.online/stubs/handler_api.php", CANARY_KEY + "x")
    assert same != account_id("http://127.0.0.1:8765/stubs/handler_api.php", CANARY_KEY)
    assert CANARY_KEY not in same and len(same) == 20


# ----------------------------------------------------------------------------- one account, two connections


def test_a_retry_on_one_connection_never_adopts_a_rental_claimed_through_another_with_the_same_key(
    monkeypatch: pytest.MonkeyPatch, requests_mock: requests_mock_module.Mocker
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_A", connection_env(read_retries=0))
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_B", connection_env(read_retries=0))
    store = MemoryStore()
    on_a, on_b = ledger_of(store, task_id="rent_a"), ledger_of(store, task_id="rent_b")
    on_b.write(pending(rent_time=4))  # b's earlier try lost its answer; nothing was made
    answer(requests_mock, "getRentList", rent_list(), rent_list({"id": "1049", "phone": "7", "hours": "4"}))
    moved = {"status": "success", "phone": {**RENTAL["phone"], "id": 1050}}  # type: ignore[dict-item]
    answer(requests_mock, "getRentNumber", {"text": json.dumps(RENTAL)}, {"text": json.dumps(moved)})

    assert rent_number(SmsOnlineHook("smsonline_a"), on_a, rent_time=4)[0].id == 1049
    rental, charged = rent_number(SmsOnlineHook("smsonline_b"), on_b, rent_time=4)

    assert (rental.id, charged) == (1050, True)


# ----------------------------------------------------------------------------- concurrent runs


class FakeAccount:
    """An SMS.online account in memory behind a hook-shaped object; thread-safe."""

    def __init__(self) -> None:
        self.rentals: list[RentListEntry] = []
        self.charges = 0
        self.lock = threading.Lock()
        self.config = SimpleNamespace(
            endpoint=MOCK_ENDPOINT, api_key=CANARY_KEY, timeout=1.0, connect_timeout=0.5, read_retries=0
        )

    def get_rent_list(self, rent_id: int | None = None) -> list[RentListEntry]:
        with self.lock:  # the prose's reading: every active rental, an id or not
            return list(self.rentals)

    def get_rent_number(self, service: str, country: int, rent_time: int | None = None) -> Rental:
        with self.lock:
            self.charges += 1
            rental_id = 2000 + self.charges
            self.rentals.append(RentListEntry(id=rental_id, number=f"7{rental_id}", hours=rent_time or 4))
        return Rental(id=rental_id, number=f"7{rental_id}", end_date=STARTED)


def test_concurrent_runs_of_one_task_with_slow_variables_lose_no_record_and_reruns_pay_nothing() -> None:
    account, store = FakeAccount(), MemoryStore(slow=0.05)
    runs = [ledger_of(store, run_id=f"scheduled__{day}") for day in (1, 2)]
    together = threading.Barrier(len(runs))
    results: dict[str, int] = {}

    def first_try(ledger: ChargeLedger) -> None:
        together.wait()
        results[ledger.task.run_id] = rent_number(account, ledger, rent_time=4)[0].id

    threads = [threading.Thread(target=first_try, args=(ledger,)) for ledger in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [isinstance(ledger.read(), Done) for ledger in runs] == [True, True]
    for ledger in runs:  # each run's task cleared and run again
        rental, charged = rent_number(account, ledger, rent_time=4)
        assert (rental.id, charged) == (results[ledger.task.run_id], False)
    assert account.charges == 2


# ----------------------------------------------------------------------------- bounds


@pytest.mark.parametrize("listable", [True, False], ids=["listing", "index"])
def test_records_beyond_the_newest_runs_go_with_their_claims(listable: bool) -> None:
    account, store = FakeAccount(), MemoryStore(listable=listable)
    ledgers = [ledger_of(store, run_id=f"run_{run:03d}") for run in range(RUNS_KEPT + 5)]
    for ledger in ledgers:
        rent_number(account, ledger, rent_time=4)
    kept = [ledger for ledger in ledgers if ledger.key in store.values]
    assert kept == ledgers[-RUNS_KEPT:]
    claims = [key for key in store.values if key.startswith("smsonline_rental__")]
    assert len(claims) == RUNS_KEPT
    assert all(json.loads(store.values[key])["owner"] in {k.key for k in kept} for key in claims)


def test_records_of_other_task_instances_are_never_pruned() -> None:
    account, store = FakeAccount(), MemoryStore()
    other = ledger_of(store, task_id="rent_other")
    rent_number(account, other, rent_time=4)
    for run in range(RUNS_KEPT + 2):
        rent_number(account, ledger_of(store, run_id=f"run_{run:03d}"), rent_time=4)
    assert isinstance(other.read(), Done)


# ----------------------------------------------------------------------------- the store


def test_a_damaged_record_fails_naming_its_variable(ledger: ChargeLedger) -> None:
    ledger.store.set(ledger.key, {"state": "pending", "snapshot": "?"})
    with pytest.raises(ValueError, match=ledger.key):
        ledger.read()


@pytest.mark.parametrize("stored", [None, "", "not json", "[1, 2]"])
def test_variable_store_reads_a_missing_or_damaged_variable_as_empty(
    monkeypatch: pytest.MonkeyPatch, stored: str | None
) -> None:
    import airflow.sdk

    monkeypatch.setattr(airflow.sdk.Variable, "get", staticmethod(lambda key, default=None: stored))
    assert VariableStore().get("smsonline_charge__x") == {}


def test_variable_store_keeps_only_true_prefixes_of_a_like_match(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.sdk

    matched = ["smsonline_rental__abc__1", "smsonlineXrental__abc__2"]  # "_" is a LIKE wildcard
    monkeypatch.setattr(airflow.sdk.Variable, "keys", classmethod(lambda cls, prefix=None: matched))
    assert VariableStore().keys("smsonline_rental__abc__") == ["smsonline_rental__abc__1"]
