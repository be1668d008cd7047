# The charge ledger as a specification: one task instance pays for at most one rental (or one
# extension) per run, across lost answers, task retries and killed workers.
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests_mock as requests_mock_module

from airflow_provider_smsonline import ledger as ledger_module
from airflow_provider_smsonline.exceptions import NoNumbersError, OutcomeUnknownError
from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.ledger import RUNS_KEPT, ChargeAmbiguousError, ChargeLedger, charge_once
from airflow_provider_smsonline.protocol import Rental
from tests.conftest import FakeTaskInstance, action_url, sent_actions, task_context

UTC = timezone.utc
STARTED = "2025-05-10T10:00:00+00:00"
RENTAL = {
    "status": "success",
    "phone": {"id": 1049, "endDate": "2025-05-10T12:34:56", "number": "79999876543"},
}
HTML_502 = "<html><body>502 Bad Gateway</body></html>"


class MemoryStore:
    """The ledger's store in a dict, JSON round-tripped like Airflow Variables."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str) -> dict[str, Any]:
        return json.loads(self.values.get(key, "{}"))

    def set(self, key: str, value: dict[str, Any]) -> None:
        self.values[key] = json.dumps(value)


@pytest.fixture
def ledger() -> ChargeLedger:
    return ChargeLedger(key="smsonline_charge__dag__rent__-1", run_id="manual__1", store=MemoryStore())


@pytest.fixture
def hook(smsonline_conn: str) -> SmsOnlineHook:
    return SmsOnlineHook()


def rent_list(*entries: dict[str, Any]) -> str:
    return json.dumps({"status": "success", "values": list(entries)})


def answer(mocker: requests_mock_module.Mocker, action: str, *responses: dict[str, Any]) -> Any:
    return mocker.get(action_url(action), list(responses))


def pending(snapshot: list[int], **more: Any) -> dict[str, Any]:
    return {"state": "pending", "snapshot": snapshot, "started": STARTED, **more}


def rent_number(
    hook: SmsOnlineHook, ledger: ChargeLedger, rent_time: int | None = None
) -> tuple[Rental, bool]:
    return charge_once(
        ledger, hook, lambda: hook.get_rent_number("tg", 0, rent_time=rent_time), rent_time=rent_time
    )


def continue_rent(hook: SmsOnlineHook, ledger: ChargeLedger) -> tuple[Rental, bool]:
    return charge_once(ledger, hook, lambda: hook.continue_rent(1049, 24), rent_time=24, existing_id=1049)


# ----------------------------------------------------------------------------- renting


def test_first_try_rents_and_records_the_rental(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", {"text": rent_list({"id": "5", "phone": "1"})})
    answer(requests_mock, "getRentNumber", {"text": json.dumps(RENTAL)})
    rental, charged = rent_number(hook, ledger)
    assert (rental.id, charged) == (1049, True)
    assert sent_actions(requests_mock) == ["getRentList", "getRentNumber"]
    record = ledger.read()
    assert record is not None and record["state"] == "done" and record["rental"]["id"] == 1049


def test_retry_after_a_recorded_rental_returns_it_without_charging(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(
        action_url("getRentList"),
        [{"text": rent_list()}, {"text": rent_list({"id": "1049", "phone": "79999876543", "hours": "4"})}],
    )
    answer(requests_mock, "getRentNumber", {"text": json.dumps(RENTAL)})
    first, _ = rent_number(hook, ledger)
    again, charged = rent_number(hook, ledger)
    assert charged is False
    assert (again.id, again.number, again.end_date) == (first.id, first.number, first.end_date)
    assert sent_actions(requests_mock) == ["getRentList", "getRentNumber", "getRentList"]


def test_pending_marker_and_one_new_rental_adopts_it_without_charging(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    ledger.write(pending([5]))
    new = {"id": "777", "phone": "79990007777", "hours": "4", "endDate": "2025-05-10 14:00:00"}
    answer(requests_mock, "getRentList", {"text": rent_list({"id": "5", "phone": "1"}, new)})
    charge = answer(requests_mock, "getRentNumber", {"text": json.dumps(RENTAL)})
    rental, charged = rent_number(hook, ledger, rent_time=4)
    assert (rental.id, rental.number, charged) == (777, "79990007777", False)
    assert rental.end_date == datetime(2025, 5, 10, 14, 0, tzinfo=UTC)
    assert not charge.called
    assert ledger.read()["state"] == "done"  # type: ignore[index]


def test_adopted_rental_without_an_end_date_in_the_list_ends_its_hours_after_the_attempt(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    ledger.write(pending([]))
    answer(requests_mock, "getRentList", {"text": rent_list({"id": "777", "phone": "7", "hours": "24"})})
    rental, _ = rent_number(hook, ledger)
    assert rental.end_date == datetime.fromisoformat(STARTED) + timedelta(hours=24)


def test_pending_marker_and_no_new_rental_charges_now(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    ledger.write(pending([5]))
    answer(requests_mock, "getRentList", {"text": rent_list({"id": "5", "phone": "1"})})
    charge = answer(requests_mock, "getRentNumber", {"text": json.dumps(RENTAL)})
    rental, charged = rent_number(hook, ledger)
    assert (rental.id, charged) == (1049, True)
    assert charge.call_count == 1


def test_pending_marker_ignores_new_rentals_of_another_period(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    ledger.write(pending([]))
    answer(requests_mock, "getRentList", {"text": rent_list({"id": "900", "phone": "9", "hours": "720"})})
    charge = answer(requests_mock, "getRentNumber", {"text": json.dumps(RENTAL)})
    rental, _ = rent_number(hook, ledger, rent_time=4)
    assert rental.id == 1049
    assert charge.call_count == 1


def test_pending_marker_and_several_new_rentals_raises_ambiguous_naming_them(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    ledger.write(pending([5]))
    entries = [{"id": "5", "phone": "1"}, {"id": "902", "phone": "2"}, {"id": "901", "phone": "3"}]
    answer(requests_mock, "getRentList", {"text": rent_list(*entries)})
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
    answer(
        requests_mock,
        "getRentList",
        {"text": rent_list({"id": "5", "phone": "1"})},
        {"text": rent_list({"id": "5", "phone": "1"}, {"id": "778", "phone": "79990007778"})},
    )
    answer(requests_mock, "getRentNumber", {"status_code": 502, "text": HTML_502})
    rental, charged = rent_number(hook, ledger)
    assert (rental.id, rental.number, charged) == (778, "79990007778", True)
    assert sent_actions(requests_mock) == ["getRentList", "getRentNumber", "getRentList"]
    assert ledger.read()["state"] == "done"  # type: ignore[index]


def test_lost_answer_with_nothing_new_yet_raises_outcome_unknown_and_keeps_the_marker(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", {"text": rent_list({"id": "5", "phone": "1"})})
    answer(requests_mock, "getRentNumber", {"status_code": 504, "text": ""})
    with pytest.raises(OutcomeUnknownError):
        rent_number(hook, ledger)
    record = ledger.read()
    assert record is not None and record["state"] == "pending" and record["snapshot"] == [5]


def test_lost_answer_then_a_retry_that_finds_the_rental_does_not_charge_again(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", {"text": rent_list()})
    charge = answer(requests_mock, "getRentNumber", {"status_code": 504, "text": ""})
    with pytest.raises(OutcomeUnknownError):
        rent_number(hook, ledger)
    answer(requests_mock, "getRentList", {"text": rent_list({"id": "779", "phone": "7"})})  # it appears later
    rental, charged = rent_number(hook, ledger)
    assert (rental.id, charged) == (779, False)
    assert charge.call_count == 1


def test_api_error_code_clears_the_marker(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", {"text": rent_list()})
    answer(requests_mock, "getRentNumber", {"text": "NO_NUMBERS"})
    with pytest.raises(NoNumbersError):
        rent_number(hook, ledger)
    assert ledger.read() is None


def test_retry_after_an_api_error_code_charges_again(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", {"text": rent_list()})
    charge = answer(requests_mock, "getRentNumber", {"text": "NO_NUMBERS"}, {"text": json.dumps(RENTAL)})
    with pytest.raises(NoNumbersError):
        rent_number(hook, ledger)
    rental, charged = rent_number(hook, ledger)
    assert (rental.id, charged) == (1049, True)
    assert charge.call_count == 2


# ----------------------------------------------------------------------------- extending

EXTENDED = {
    "status": "success",
    "phone": {"id": 1049, "endDate": "2025-05-11T12:34:56", "number": "79999876543"},
}


def listed(end: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": "1049", "phone": "79999876543", "hours": "24"}
    if end is not None:
        entry["endDate"] = end
    return {"text": rent_list(entry)}


def test_extension_records_the_end_date_it_started_from(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", listed("2025-05-10 12:34:56"))
    answer(requests_mock, "continueRentNumber", {"status_code": 502, "text": HTML_502})
    with pytest.raises(OutcomeUnknownError):
        continue_rent(hook, ledger)
    assert ledger.read()["end"] == "2025-05-10T12:34:56+00:00"  # type: ignore[index]


def test_pending_extension_whose_end_date_moved_is_recovered_without_charging(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    ledger.write(pending([1049], end="2025-05-10T12:34:56+00:00"))
    answer(requests_mock, "getRentList", listed("2025-05-11 12:34:56"))
    extend = answer(requests_mock, "continueRentNumber", {"text": json.dumps(EXTENDED)})
    rental, charged = continue_rent(hook, ledger)
    assert (rental.id, charged) == (1049, False)
    assert rental.end_date == datetime(2025, 5, 11, 12, 34, 56, tzinfo=UTC)
    assert not extend.called


def test_pending_extension_whose_end_date_did_not_move_extends_now(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    ledger.write(pending([1049], end="2025-05-10T12:34:56+00:00"))
    answer(requests_mock, "getRentList", listed("2025-05-10 12:34:56"))
    extend = answer(requests_mock, "continueRentNumber", {"text": json.dumps(EXTENDED)})
    rental, charged = continue_rent(hook, ledger)
    assert (rental.end_date.day, charged) == (11, True)
    assert extend.call_count == 1


def test_extension_with_a_lost_answer_and_a_moved_end_date_is_recovered_in_the_same_try(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", listed("2025-05-10 12:34:56"), listed("2025-05-11 12:34:56"))
    answer(requests_mock, "continueRentNumber", {"status_code": 502, "text": HTML_502})
    rental, charged = continue_rent(hook, ledger)
    assert (rental.end_date.day, charged) == (11, True)
    assert ledger.read()["state"] == "done"  # type: ignore[index]


def test_extension_with_a_lost_answer_and_no_end_date_in_the_list_is_ambiguous(
    hook: SmsOnlineHook, ledger: ChargeLedger, requests_mock: requests_mock_module.Mocker
) -> None:
    answer(requests_mock, "getRentList", listed(None))
    extend = answer(
        requests_mock, "continueRentNumber", {"exc": __import__("requests").exceptions.ReadTimeout}
    )
    with pytest.raises(ChargeAmbiguousError) as raised:
        continue_rent(hook, ledger)
    assert raised.value.candidates == [1049]
    assert extend.call_count == 1


# ----------------------------------------------------------------------------- the marker itself


def test_ledger_keeps_only_the_newest_runs(ledger: ChargeLedger) -> None:
    for run in range(RUNS_KEPT + 5):
        ChargeLedger(key=ledger.key, run_id=f"run_{run:03d}", store=ledger.store).write({"state": "pending"})
    runs = ledger.store.get(ledger.key)
    assert len(runs) == RUNS_KEPT
    assert "run_024" in runs and "run_000" not in runs


def test_ledger_key_names_the_task_instance_and_fits_a_variable_key() -> None:
    ti = FakeTaskInstance(task_id="rent", map_index=3)
    assert ChargeLedger.for_context(task_context(ti)).key == "smsonline_charge__smsonline_dag__rent__3"
    long_ti = FakeTaskInstance(task_id="t" * 240)
    long_key = ChargeLedger.for_context(task_context(long_ti)).key
    assert len(long_key) <= 250
    other = ChargeLedger.for_context(task_context(FakeTaskInstance(task_id="t" * 239 + "u"))).key
    assert other != long_key


def test_ledger_separates_runs_of_the_same_task(ledger: ChargeLedger) -> None:
    ledger.write({"state": "done", "rental": {"id": 1, "number": "1", "end_date": STARTED}})
    assert ChargeLedger(key=ledger.key, run_id="another_run", store=ledger.store).read() is None


@pytest.mark.parametrize("stored", [None, "", "not json", "[1, 2]"])
def test_variable_store_reads_a_missing_or_damaged_variable_as_empty(
    monkeypatch: pytest.MonkeyPatch, stored: str | None
) -> None:
    import airflow.sdk

    monkeypatch.setattr(airflow.sdk.Variable, "get", staticmethod(lambda key, default=None: stored))
    assert ledger_module.VariableStore().get("smsonline_charge__x") == {}
