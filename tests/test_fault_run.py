# The fault-injection proof as a test: the CI-size fault run (real Airflow, sandbox faults, SIGKILLed
# workers) must end with no double rental, no unaccounted rental and no leaked key; plus the charge
# ledger rules that run exposed, pinned down as unit tests.
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests_mock as requests_mock_module

from airflow_provider_smsonline.exceptions import OutcomeUnknownError
from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.ledger import (
    CLAIM_PREFIX,
    ChargeAmbiguousError,
    ChargeLedger,
    Listed,
    Pending,
    TaskRun,
    account_id,
    charge_once,
)
from airflow_provider_smsonline.ledger.keys import claim_key, named_key
from airflow_provider_smsonline.protocol import Rental
from airflow_provider_smsonline.sandbox import FAULT_MODES
from tests.conftest import CANARY_FORMS, CANARY_KEY, MOCK_ENDPOINT, action_url, sent_actions

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "fault_run.py"

#: The CI size: the issue's floor of 200 task instances, about 3 minutes on a 2-core machine.
CI_RUN = ["--tasks", "200", "--fault-rate", "0.3", "--kills", "3", "--seed", "7", "--parallelism", "4"]


def _fault_run_module() -> Any:
    spec = importlib.util.spec_from_file_location("fault_run", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fault_run", module)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- the run


@pytest.mark.airflow
@pytest.mark.slow
@pytest.mark.fault_run
def test_ci_fault_run_never_pays_twice_never_loses_a_rental_and_never_leaks_the_key(tmp_path: Path) -> None:
    figures_path = tmp_path / "figures.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *CI_RUN,
            "--home",
            str(tmp_path / "airflow"),
            "--json",
            str(figures_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    table = done.stdout + done.stderr[-3000:]
    assert figures_path.exists(), table
    figures = json.loads(figures_path.read_text())

    assert figures["double_rentals"] == 0, table
    assert figures["unaccounted_rentals"] == 0, table
    assert figures["double_renewals"] == 0, table
    assert figures["unaccounted_renewals"] == 0, table
    assert figures["phantom_renewals"] == 0, table
    assert figures["key_leaks"] == 0, table
    assert done.returncode == 0, table
    assert figures["task_instances"] == 200 and figures["other_states"] == {}, table
    assert all(figures["faults_injected"][mode] >= 1 for mode in FAULT_MODES), table
    assert figures["kills_performed"] >= 1 and figures["kills_seen_by_airflow"] >= 1, table
    assert figures["kills_before_xcom_push"] >= 1, table
    assert figures["recovered_by_reconciliation"] >= 1, table
    assert figures["renew_task_instances"] == 50 and figures["renew_other_states"] == {}, table
    assert all(figures["renewal_faults_injected"][mode] >= 1 for mode in FAULT_MODES), table
    assert figures["renewals_recovered"] >= 1, table
    assert figures["renewals_charged"] == figures["renewals_held"] + figures["renewals_named_in_failures"], (
        table
    )
    # Every charge is somewhere: held by one successful task instance, refunded, or named.
    assert figures["rentals_charged"] == (
        figures["rentals_held"] + figures["rentals_cancelled"] + figures["rentals_named_in_failures"]
    ), table
    for form in CANARY_FORMS:
        assert form not in done.stdout and form not in done.stderr


def test_the_runner_uses_the_canary_key_of_the_test_suite() -> None:
    fault_run = _fault_run_module()
    assert fault_run.CANARY_KEY == CANARY_KEY
    assert fault_run.CANARY_FORMS == CANARY_FORMS


def test_kill_positions_are_seeded_distinct_and_within_the_clean_answers() -> None:
    fault_run = _fault_run_module()
    options = fault_run.Options(tasks=200, fault_rate=0.3, kills=3, seed=7)
    positions = fault_run.kill_positions(options)
    assert positions == fault_run.kill_positions(options)
    assert len(set(positions)) == 3 and all(1 <= p <= 126 for p in positions)


def test_failure_kind_reads_the_code_of_an_airflow_fail_exception() -> None:
    fault_run = _fault_run_module()
    failed = '{"event":"Task failed with exception","error_detail":[{"exc_type":"AirflowFailException",'
    line = (
        failed
        + '"exc_value":"ambiguous: ..."},{"exc_type":"OutcomeUnknownError","exc_value":"transport: x"}]}'
    )
    assert fault_run._failure_kind(line) == "ambiguous"
    unknown = failed.replace("AirflowFailException", "OutcomeUnknownError") + '"exc_value":"transport: x"}]}'
    assert fault_run._failure_kind(unknown) == "OutcomeUnknownError"
    assert fault_run._failure_kind('{"event":"Process terminated by signal."}') == "other"


def test_renewal_figures_catch_a_double_an_unaccounted_and_a_phantom_renewal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fault_run = _fault_run_module()
    renews = {
        0: fault_run.TaskInstance(0, "success", 1, 1000),  # held
        1: fault_run.TaskInstance(1, "success", 1, 1001),  # renewed twice
        2: fault_run.TaskInstance(2, "failed", 2, None, errors='"exc_value":"rental 1002 ..."'),  # named
        3: fault_run.TaskInstance(3, "failed", 2, None, errors='"exc_value":"no id"'),  # unaccounted
        4: fault_run.TaskInstance(4, "success", 1, 1004),  # never renewed: a phantom
    }
    monkeypatch.setattr(
        fault_run, "read_task_instances", lambda home, task_id, query=None: ("failed", renews)
    )
    charged = [1000, 1001, 1001, 1002, 1003]
    state = {"charges": [{"rental_id": r, "action": "continueRentNumber"} for r in charged]}
    report = fault_run.Report(5, 0.3, 7, 2)
    fault_run.analyse_renewals(report, Path("."), state, {1000 + slot: slot for slot in range(5)})
    assert (report.renewals_charged, report.renewals_held, report.renewals_named_in_failures) == (5, 2, 1)
    assert (report.double_renewals, report.unaccounted_renewals, report.phantom_renewals) == (1, 1, 1)


def test_renewal_faults_are_seeded_and_queued_for_the_next_renewal() -> None:
    fault_run = _fault_run_module()

    class Recorder:
        def __init__(self) -> None:
            self.queued: list[tuple[str, str, int, float | None]] = []

        def inject_fault(self, action: str, mode: str, count: int, delay: float | None) -> None:
            self.queued.append((action, mode, count, delay))

    def draws(seed: int) -> list[tuple[str, str, int, float | None]]:
        sandbox = Recorder()
        faults = fault_run.RenewalFaults(sandbox, 0.5, seed, {"slow": 0.5, "timeout_after_commit": 3.0})
        for _ in range(200):
            faults(fault_run.Answered("continueRentNumber", ("127.0.0.1", 1), 200, 1, None))
            faults(fault_run.Answered("getRentNumber", ("127.0.0.1", 1), 200, 1, None))
        return sandbox.queued

    assert draws(7) == draws(7) and 70 <= len(draws(7)) <= 130
    assert all(action == "continueRentNumber" and count == 1 for action, _, count, _ in draws(7))
    assert {mode for _, mode, _, _ in draws(7)} == set(FAULT_MODES)


def test_cli_refuses_more_kills_than_clean_answers() -> None:
    fault_run = _fault_run_module()
    with pytest.raises(SystemExit):
        fault_run.parse_args(["--tasks", "4", "--kills", "4"])


# ----------------------------------------------------------------------------- ledger rules the run exposed

UTC = timezone.utc
RENTAL = {"status": "success", "phone": {"id": 1049, "endDate": "2025-05-10T12:34:56", "number": "7999"}}
HTML_502 = "<html><body>502 Bad Gateway</body></html>"
#: The account of the ``smsonline_default`` connection the tests use.
ACCOUNT = account_id(MOCK_ENDPOINT, CANARY_KEY)


class ListableStore:
    """The ledger's store in a dict that can also list and delete keys, like Airflow 3.3 Variables.

    ``on_list`` runs before each listing of the account's claims and intents (counted in
    ``listings``): a stand-in for what other task instances do meanwhile.
    """

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.listings = 0
        self.on_list: Any = None

    def get(self, key: str) -> dict[str, Any]:
        return json.loads(self.values.get(key, "{}"))  # type: ignore[no-any-return]

    def set(self, key: str, value: dict[str, Any]) -> None:
        self.values[key] = json.dumps(value)

    def delete(self, key: str) -> None:
        self.values.pop(key, None)

    def keys(self, prefix: str) -> list[str]:
        if prefix.startswith(CLAIM_PREFIX):
            self.listings += 1
            if self.on_list is not None:
                self.on_list(self)
        return [key for key in self.values if key.startswith(prefix)]


def _ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def _ledger(store: ListableStore, map_index: int) -> ChargeLedger:
    return ChargeLedger(task=TaskRun("dag", "rent", map_index, "manual__1"), store=store)


def _pending(*snapshot: int, started: float, until: float, looked_at: float | None = None) -> Pending:
    return Pending(
        started=_ago(started),
        until=_ago(until),
        snapshot=tuple(Listed(i, f"7{i}", 4) for i in snapshot),
        rent_time=4,
        looked_at=_ago(looked_at) if looked_at is not None else None,
    )


def _rent_list(*ids: int) -> dict[str, Any]:
    values = [{"id": str(i), "phone": f"7{i}", "price": "9", "hours": "4"} for i in ids]
    return {"text": json.dumps({"status": "success", "values": values})}


def _rent(hook: SmsOnlineHook, ledger: ChargeLedger) -> tuple[Rental, bool]:
    return charge_once(ledger, hook, lambda: hook.get_rent_number("tg", 0, rent_time=4), rent_time=4)


def _intent(
    ledger: ChargeLedger, started: datetime, until: datetime, looked_at: datetime | None = None
) -> None:
    """Another task instance's unresolved call, as it announces it."""
    ledger.store.set(
        ledger.intent_key(ACCOUNT),
        {
            "owner": ledger.key,
            "started": started.isoformat(),
            "until": until.isoformat(),
            "looked_at": looked_at.isoformat() if looked_at else None,
        },
    )


@pytest.fixture
def hook(smsonline_conn: str) -> SmsOnlineHook:
    return SmsOnlineHook()


def test_a_retry_skips_rentals_that_other_task_instances_claimed(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    store = ListableStore()
    _ledger(store, 2).claim(ACCOUNT, 900)
    mine = _ledger(store, 1)
    mine.write(_pending(5, started=60, until=50))
    requests_mock.get(action_url("getRentList"), [_rent_list(5, 900, 901)])
    charge = requests_mock.get(action_url("getRentNumber"), text=json.dumps(RENTAL))

    rental, charged = _rent(hook, mine)

    assert (rental.id, charged, charge.called) == (901, False, False)
    assert store.get(claim_key(ACCOUNT, 901))["owner"] == mine.key


def test_a_retry_after_a_look_leaves_a_new_rental_to_a_killed_task_instance_and_rents_anew(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    store = ListableStore()
    killed = _ledger(store, 2)
    _intent(killed, started=_ago(20), until=_ago(15))  # killed after its answer, before recording it
    mine = _ledger(store, 1)
    mine.write(_pending(started=60, until=50, looked_at=59))
    requests_mock.get(action_url("getRentList"), [_rent_list(777), _rent_list(777)])
    charge = requests_mock.get(action_url("getRentNumber"), text=json.dumps(RENTAL))

    rental, charged = _rent(hook, mine)

    assert (rental.id, charged, charge.call_count) == (1049, True, 1)


def test_a_killed_task_instance_adopts_its_own_rental_despite_a_looked_for_rival(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    store = ListableStore()
    _intent(_ledger(store, 2), started=_ago(30), until=_ago(20), looked_at=_ago(29))
    killed = _ledger(store, 1)
    killed.write(_pending(started=20, until=15))
    requests_mock.get(action_url("getRentList"), [_rent_list(777)])
    charge = requests_mock.get(action_url("getRentNumber"), text=json.dumps(RENTAL))

    rental, charged = _rent(hook, killed)

    assert (rental.id, charged, charge.called) == (777, False, False)


def test_a_lost_answer_waits_for_a_call_in_flight_to_record_its_rental_then_adopts_its_own(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    store = ListableStore()
    other = _ledger(store, 2)
    _intent(other, started=_ago(0.5), until=datetime.now(UTC) + timedelta(seconds=30))

    def other_records_its_answer(store: ListableStore) -> None:
        if store.listings == 2:
            other.claim(ACCOUNT, 779)
            store.delete(other.intent_key(ACCOUNT))

    store.on_list = other_records_its_answer
    mine = _ledger(store, 1)
    requests_mock.get(action_url("getRentList"), [_rent_list(5), _rent_list(5, 778, 779)])
    requests_mock.get(action_url("getRentNumber"), status_code=502, text=HTML_502)

    rental, charged = _rent(hook, mine)

    assert (rental.id, charged) == (778, True)
    assert sent_actions(requests_mock) == ["getRentList", "getRentNumber", "getRentList"]
    assert store.listings >= 3  # it looked again after the first survey


def test_ambiguity_names_its_rentals_so_that_a_later_look_skips_them(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    store = ListableStore()
    _intent(_ledger(store, 3), started=_ago(115), until=_ago(105))  # unresolved, overlapping
    first = _ledger(store, 1)
    first.write(_pending(started=120, until=110))
    requests_mock.get(action_url("getRentList"), [_rent_list(777)])
    with pytest.raises(ChargeAmbiguousError) as raised:
        _rent(hook, first)
    assert raised.value.candidates == [777]
    assert store.get(named_key(ACCOUNT, 777))["named"] is True

    later = _ledger(store, 2)
    later.write(_pending(started=200, until=190, looked_at=0))
    charge = requests_mock.get(action_url("getRentNumber"), text=json.dumps(RENTAL))
    rental, charged = _rent(hook, later)
    assert (rental.id, charged, charge.call_count) == (1049, True, 1)


def test_intents_and_claims_go_with_their_record(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    store = ListableStore()
    mine = _ledger(store, 1)
    requests_mock.get(action_url("getRentList"), [_rent_list(5)])
    requests_mock.get(action_url("getRentNumber"), status_code=502, text=HTML_502)
    with pytest.raises(OutcomeUnknownError):
        _rent(hook, mine)
    intent = mine.intent_key(ACCOUNT)
    assert store.get(intent)["looked_at"]  # announced, and marked as looked for

    requests_mock.get(action_url("getRentNumber"), text=json.dumps(RENTAL))
    rental, _ = _rent(hook, mine)
    assert intent not in store.values
    assert store.get(claim_key(ACCOUNT, rental.id))["owner"] == mine.key

    mine.write(None)  # e.g. cancelled after the task failed
    assert claim_key(ACCOUNT, rental.id) not in store.values
    assert [key for key in store.values if key.startswith(CLAIM_PREFIX)] == []


def test_a_task_killed_after_its_answer_was_noted_adopts_exactly_that_rental(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    store = ListableStore()
    killed = _ledger(store, 1)
    record = replace(_pending(started=20, until=15), intent=killed.intent_key(ACCOUNT))
    killed.write(record)
    killed.answered(record, 778)  # then SIGKILL: no claim, no done record
    requests_mock.get(action_url("getRentList"), [_rent_list(777, 778)])
    charge = requests_mock.get(action_url("getRentNumber"), text=json.dumps(RENTAL))

    rental, charged = _rent(hook, killed)

    assert (rental.id, charged, charge.called) == (778, False, False)


def test_another_task_instances_answered_call_is_neither_a_candidate_nor_a_rival(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    store = ListableStore()
    other = _ledger(store, 2)
    _intent(other, started=_ago(1), until=datetime.now(UTC) + timedelta(seconds=30))
    store.set(other.intent_key(ACCOUNT), {**store.get(other.intent_key(ACCOUNT)), "answered": 779})
    mine = _ledger(store, 1)
    requests_mock.get(action_url("getRentList"), [_rent_list(5), _rent_list(5, 778, 779)])
    requests_mock.get(action_url("getRentNumber"), status_code=502, text=HTML_502)

    rental, charged = _rent(hook, mine)

    assert (rental.id, charged) == (778, True)
    assert store.listings == 2  # no waiting: one survey, listed twice


def test_rentals_count_as_named_only_in_exception_messages_not_in_tracebacks() -> None:
    fault_run = _fault_run_module()
    line = (
        '{"event":"Task failed with exception","error_detail":[{"exc_type":"AirflowFailException",'
        '"exc_value":"ambiguous: ... appeared since: [1052, 1053]. Keep \\"them\\"","frames":'
        '[{"filename":"task_runner.py","lineno":1579,"name":"run"}]}]}'
    )
    assert fault_run._named_ids(line) >= {1052, 1053}
    assert 1579 not in fault_run._named_ids(line)
