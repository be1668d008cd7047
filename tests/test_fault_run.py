# The fault-injection proof as a test: the CI-size fault run (real Airflow, sandbox faults, SIGKILLed
# workers) must end with no double rental, no unaccounted rental and no leaked key; plus the charge
# ledger rules that run exposed, pinned down as unit tests.
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests_mock as requests_mock_module

from airflow_provider_smsonline.exceptions import OutcomeUnknownError
from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.ledger import ChargeAmbiguousError, ChargeLedger, charge_once
from airflow_provider_smsonline.protocol import Rental
from airflow_provider_smsonline.sandbox import FAULT_MODES
from tests.conftest import CANARY_FORMS, CANARY_KEY, action_url, sent_actions

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
    assert figures["key_leaks"] == 0, table
    assert done.returncode == 0, table
    assert figures["task_instances"] == 200 and figures["other_states"] == {}, table
    assert all(figures["faults_injected"][mode] >= 1 for mode in FAULT_MODES), table
    assert figures["kills_performed"] >= 1 and figures["kills_seen_by_airflow"] >= 1, table
    assert figures["kills_before_xcom_push"] >= 1, table
    assert figures["recovered_by_reconciliation"] >= 1, table
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


def test_cli_refuses_more_kills_than_clean_answers() -> None:
    fault_run = _fault_run_module()
    with pytest.raises(SystemExit):
        fault_run.parse_args(["--tasks", "4", "--kills", "4"])


# ----------------------------------------------------------------------------- ledger rules the run exposed

UTC = timezone.utc
RENTAL = {"status": "success", "phone": {"id": 1049, "endDate": "2025-05-10T12:34:56", "number": "7999"}}
HTML_502 = "<html><body>502 Bad Gateway</body></html>"


class ListableStore:
    """The ledger's store in a dict that can also list and delete keys, like Airflow 3.2+ Variables.

    ``on_list`` runs before each listing: a stand-in for what other task instances do meanwhile.
    """

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.listings = 0
        self.on_list: Any = None

    def get(self, key: str) -> dict[str, Any]:
        return json.loads(self.values.get(key, "{}"))

    def set(self, key: str, value: dict[str, Any]) -> None:
        self.values[key] = json.dumps(value)

    def delete(self, key: str) -> None:
        self.values.pop(key, None)

    def keys(self, prefix: str) -> list[str]:
        self.listings += 1
        if self.on_list is not None:
            self.on_list(self)
        return [key for key in self.values if key.startswith(prefix)]


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


def _ledger(store: ListableStore, map_index: int) -> ChargeLedger:
    return ChargeLedger(key=f"smsonline_charge__dag__rent__{map_index}", run_id="manual__1", store=store)


def _rent_list(*ids: int) -> dict[str, Any]:
    values = [{"id": str(i), "phone": f"7{i}", "hours": "4"} for i in ids]
    return {"text": json.dumps({"status": "success", "values": values})}


def _rent(hook: SmsOnlineHook, ledger: ChargeLedger) -> tuple[Rental, bool]:
    return charge_once(ledger, hook, lambda: hook.get_rent_number("tg", 0, rent_time=4), rent_time=4)


def _intent(ledger: ChargeLedger, started: str, until: str, looked_at: str | None = None) -> None:
    ledger.store.set(
        ledger.intent_key("smsonline_default"),
        {
            "owner": ledger.key,
            "run_id": ledger.run_id,
            "started": started,
            "until": until,
            "looked_at": looked_at,
        },
    )


@pytest.fixture
def hook(smsonline_conn: str) -> SmsOnlineHook:
    return SmsOnlineHook()


def test_a_retry_skips_rentals_that_other_task_instances_claimed(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    store = ListableStore()
    _ledger(store, 2).claim("smsonline_default", 900)
    mine = _ledger(store, 1)
    mine.write({"state": "pending", "snapshot": [5], "started": _ago(60), "until": _ago(50)})
    requests_mock.get(action_url("getRentList"), [_rent_list(5, 900, 901)])
    charge = requests_mock.get(action_url("getRentNumber"), text=json.dumps(RENTAL))

    rental, charged = _rent(hook, mine)

    assert (rental.id, charged, charge.called) == (901, False, False)
    assert store.get("smsonline_rental__smsonline_default__901")["owner"] == mine.key


def test_a_retry_after_a_look_leaves_a_new_rental_to_a_killed_task_instance_and_rents_anew(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    store = ListableStore()
    killed = _ledger(store, 2)
    _intent(killed, started=_ago(20), until=_ago(15))  # killed after its answer, before recording it
    mine = _ledger(store, 1)
    mine.write(
        {"state": "pending", "snapshot": [], "started": _ago(60), "until": _ago(50), "looked_at": _ago(59)}
    )
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
    killed.write({"state": "pending", "snapshot": [], "started": _ago(20), "until": _ago(15)})
    requests_mock.get(action_url("getRentList"), [_rent_list(777)])
    charge = requests_mock.get(action_url("getRentNumber"), text=json.dumps(RENTAL))

    rental, charged = _rent(hook, killed)

    assert (rental.id, charged, charge.called) == (777, False, False)


def test_a_lost_answer_waits_for_a_call_in_flight_to_record_its_rental_then_adopts_its_own(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    store = ListableStore()
    other = _ledger(store, 2)
    _intent(other, started=_ago(0.5), until=(datetime.now(UTC) + timedelta(seconds=30)).isoformat())

    def other_records_its_answer(store: ListableStore) -> None:
        if store.listings == 2:
            other.claim("smsonline_default", 779)
            store.delete(other.intent_key("smsonline_default"))

    store.on_list = other_records_its_answer
    mine = _ledger(store, 1)
    requests_mock.get(action_url("getRentList"), [_rent_list(5), _rent_list(5, 778, 779)])
    requests_mock.get(action_url("getRentNumber"), status_code=502, text=HTML_502)

    rental, charged = _rent(hook, mine)

    assert (rental.id, charged) == (778, True)
    assert sent_actions(requests_mock) == ["getRentList", "getRentNumber", "getRentList"]
    assert store.listings >= 2


def test_ambiguity_names_its_rentals_so_that_a_later_look_skips_them(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    store = ListableStore()
    _intent(_ledger(store, 3), started=_ago(115), until=_ago(105))  # unresolved, overlapping
    first = _ledger(store, 1)
    first.write({"state": "pending", "snapshot": [], "started": _ago(120), "until": _ago(110)})
    requests_mock.get(action_url("getRentList"), [_rent_list(777)])
    with pytest.raises(ChargeAmbiguousError) as raised:
        _rent(hook, first)
    assert raised.value.candidates == [777]
    assert store.get("smsonline_rental__smsonline_default__named__777")["named"] is True

    later = _ledger(store, 2)
    later.write(
        {
            "state": "pending",
            "snapshot": [],
            "started": _ago(200),
            "until": _ago(190),
            "looked_at": datetime.now(UTC).isoformat(),
        }
    )
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
    intent = mine.intent_key("smsonline_default")
    assert store.get(intent)["looked_at"]  # announced, and marked as looked for

    requests_mock.get(action_url("getRentNumber"), text=json.dumps(RENTAL))
    rental, _ = _rent(hook, mine)
    assert intent not in store.values
    assert store.get(f"smsonline_rental__smsonline_default__{rental.id}")["owner"] == mine.key

    mine.write(None)  # e.g. cancelled after the task failed
    assert f"smsonline_rental__smsonline_default__{rental.id}" not in store.values


def test_a_task_killed_after_its_answer_was_noted_adopts_exactly_that_rental(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    store = ListableStore()
    killed = _ledger(store, 1)
    record = {"state": "pending", "snapshot": [], "started": _ago(20), "until": _ago(15)}
    record["intent"] = killed.intent_key("smsonline_default")
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
    _intent(other, started=_ago(1), until=(datetime.now(UTC) + timedelta(seconds=30)).isoformat())
    store.set(
        other.intent_key("smsonline_default"),
        {**store.get(other.intent_key("smsonline_default")), "answered": 779},
    )
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
