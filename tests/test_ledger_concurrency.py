# The charge ledger under many writers on one account, as the CeleryExecutor runs it: two tries of one
# task instance alive at once, one lost worker leaving two unanswered calls, workers' clocks that
# differ. Each test pins down a race the ledger used to lose (and fails when its fix is reverted).
from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests_mock as requests_mock_module

from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.ledger import Done, Listed, Pending
from airflow_provider_smsonline.ledger.decide import CLOCK_SKEW, Adopt, Ambiguous, Pay, decide
from airflow_provider_smsonline.ledger.keys import claim_key
from airflow_provider_smsonline.ledger.records import Intent, Survey
from airflow_provider_smsonline.protocol import Rental
from tests.conftest import action_url
from tests.test_fault_run import ACCOUNT, RENTAL, UTC, ListableStore, _ledger, _rent, _rent_list


def _at(seconds_ago: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds_ago)


def _pending(*snapshot: int, started: float, until: float, ledger: Any = None) -> Pending:
    """A record of a getRentNumber for 4 hours (announced on the account when ``ledger`` is given)."""
    return Pending(
        started=_at(started),
        until=_at(until),
        snapshot=tuple(Listed(i, f"7{i}", 4) for i in snapshot),
        rent_time=4,
        intent=ledger.intent_key(ACCOUNT) if ledger is not None else None,
    )


def _rows(*ids: int) -> list[Listed]:
    return [Listed(i, f"7{i}", 4) for i in ids]


def _answered_later(
    ledger: Any, record: Pending, requests_mock: requests_mock_module.Mocker, after: float
) -> tuple[Any, threading.Thread]:
    """Try 1's getRentNumber, recorded in ``record``, is answered ``after`` seconds from now:
    rental 1049 is then listed, noted as its answer, claimed and recorded as done. Returns the
    mocked getRentNumber (which a retry must not call) and the running answering thread."""
    rental = Rental(id=1049, number="7999", end_date=datetime.now(UTC) + timedelta(hours=4))
    served = threading.Event()

    def try_one_answered() -> None:
        time.sleep(after)
        served.set()
        ledger.answered(record, 1049)
        ledger.claim(ACCOUNT, 1049)
        ledger.write(Done(rental, claim=claim_key(ACCOUNT, 1049)))

    def rent_list(request: object, context: object) -> str:
        return str(_rent_list(*([1049] if served.is_set() else []))["text"])

    requests_mock.get(action_url("getRentList"), text=rent_list)
    charge = requests_mock.get(action_url("getRentNumber"), text=json.dumps(RENTAL))
    answering = threading.Thread(target=try_one_answered)
    answering.start()
    return charge, answering


@pytest.fixture
def hook(smsonline_conn: str) -> SmsOnlineHook:
    return SmsOnlineHook()


# ----------------------------------------------------------------------------- a lost worker, two slots


def _lost_worker(store: ListableStore) -> tuple[Any, Any]:
    """Slots A and B of one worker both charged and were killed before noting their answers.
    B's call came a moment after A's was served, so B's snapshot holds A's rental 501; B's own
    call made 502. Both records and intents are left, unresolved, long after their windows."""
    a, b = _ledger(store, 1), _ledger(store, 2)
    a.write(_pending(started=60, until=50, ledger=a))
    b.write(_pending(501, started=59, until=49, ledger=b))
    return a, b


def test_a_lost_worker_s_two_slots_each_recover_their_rental_whichever_retries_first() -> None:
    for first in ("a", "b"):
        store = ListableStore()
        a, b = _lost_worker(store)
        listed = _rows(501, 502)
        order = [(a, 501), (b, 502)] if first == "a" else [(b, 502), (a, 501)]
        for ledger, expected in order:
            record = ledger.read()
            wanted = {row.id for row in listed} - {row.id for row in record.snapshot}
            decision = decide(record, listed, ledger.survey(ACCOUNT, wanted), now=datetime.now(UTC))
            assert isinstance(decision, Adopt), (first, ledger.task.map_index, decision)
            assert decision.rental.id == expected
            ledger.answered(record, expected)
            ledger.claim(ACCOUNT, expected)
            ledger.write(Done(decision.rental, claim=claim_key(ACCOUNT, expected)))


def test_a_rental_either_slot_can_have_made_stays_ambiguous() -> None:
    # B's call came before A's was served (its snapshot is empty too): 501 can be either's.
    store = ListableStore()
    a, b = _ledger(store, 1), _ledger(store, 2)
    a.write(_pending(started=60, until=50, ledger=a))
    b.write(_pending(started=59, until=49, ledger=b))
    record = a.read()
    decision = decide(record, _rows(501), a.survey(ACCOUNT, {501}), now=datetime.now(UTC))
    assert isinstance(decision, Ambiguous) and decision.candidates == (501,)


def test_a_retry_of_the_lost_worker_recovers_through_charge_once(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    store = ListableStore()
    a, _ = _lost_worker(store)
    requests_mock.get(action_url("getRentList"), [_rent_list(501, 502)])
    charge = requests_mock.get(action_url("getRentNumber"), text=json.dumps(RENTAL))

    rental, charged = _rent(hook, a)

    assert (rental.id, charged, charge.called) == (501, False, False)
    assert store.get(claim_key(ACCOUNT, 501))["owner"] == a.key


# ----------------------------------------------------------------------------- a later call's rental


def test_a_rental_that_appeared_after_our_window_closed_is_not_adopted() -> None:
    # Our call (its window closed 50 s ago) made nothing. Another task instance's call, made
    # since, was just served, its answer not noted yet: its snapshot lacks that rental.
    record = _pending(started=60, until=50)
    later = Intent(owner="smsonline_charge__later", started=_at(2), until=_at(-3), snapshot=frozenset())
    decision = decide(record, _rows(777), Survey(rivals=(later,), claimed=frozenset()), now=datetime.now(UTC))
    assert isinstance(decision, Pay), decision


# ----------------------------------------------------------------------------- clocks


def test_a_rival_window_that_ends_just_before_ours_on_its_clock_still_overlaps() -> None:
    # The rival's worker clock runs 3 s behind ours: its window, as it wrote it, ended 3 s
    # before our call started, though the two calls were in flight together.
    record = _pending(started=60, until=50)
    rival = Intent(owner="smsonline_charge__other", started=_at(73), until=_at(63))
    decision = decide(record, _rows(777), Survey(rivals=(rival,)), now=datetime.now(UTC))
    assert isinstance(decision, Ambiguous), decision


# ----------------------------------------------------------------------------- two tries alive at once


def test_a_retry_waits_for_the_earlier_try_still_alive_and_reuses_its_rental(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker of try 1 was thought lost; try 1 is alive and its call is answered 0.3 s after
    # try 2 starts. Try 2 must not take the empty list for "nothing was charged".
    from airflow_provider_smsonline.ledger import charge as charge_module

    monkeypatch.setattr(charge_module, "CLOCK_SKEW", timedelta(0))
    monkeypatch.setattr(charge_module, "WINDOW_POLL_SECONDS", 0.05)
    store = ListableStore()
    ledger = _ledger(store, 1)
    record = _pending(started=0.5, until=-1.0, ledger=ledger)  # its window closes in a second
    ledger.write(record)
    charge, answering = _answered_later(ledger, record, requests_mock, after=0.3)

    found, charged = _rent(hook, ledger)

    answering.join()
    assert (found.id, charged, charge.called) == (1049, False, False)


def test_a_retry_waits_past_the_earlier_windows_end_by_the_clock_skew_allowance(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    # A retry waits out an earlier try's charging call until the end of that call's window PLUS the
    # clock-skew allowance: the earlier try ran on another worker, whose clock may be behind ours,
    # so its window may not have closed yet in its own time. Stopping at the bare window's end
    # would take "nothing listed yet" for "nothing charged" and pay a second time. Here try 1's
    # window ended 1 s ago on our clock and its call is answered 2 s into this retry.
    assert timedelta(seconds=4) <= CLOCK_SKEW  # the allowance this scenario fits in
    store = ListableStore()
    ledger = _ledger(store, 1)
    record = _pending(started=20, until=1, ledger=ledger)
    ledger.write(record)
    charge, answering = _answered_later(ledger, record, requests_mock, after=2.0)
    started = time.monotonic()

    found, charged = _rent(hook, ledger)

    answering.join()
    assert (found.id, charged, charge.called) == (1049, False, False)  # try 1's rental, paid once
    assert time.monotonic() - started < CLOCK_SKEW.total_seconds() + 2  # and no longer than that


# ----------------------------------------------------------------------------- naming a rental


class RacingStore(ListableStore):
    """Two namers read the shared named-rental Variable before either writes it; the first to
    write is the second to read, so the last write is the other's (a lost update)."""

    def __init__(self) -> None:
        super().__init__()
        self.barrier = threading.Barrier(2)
        self.last_writer = ""

    def get(self, key: str) -> dict[str, Any]:
        value = super().get(key)
        if key.endswith("__named__501"):
            self.barrier.wait(timeout=5)
        return value

    def set(self, key: str, value: dict[str, Any]) -> None:
        if key.endswith("__named__501") and value.get("owner") == self.last_writer:
            time.sleep(0.3)
        super().set(key, value)


def test_two_failures_naming_one_rental_at_once_both_keep_it_named() -> None:
    store = RacingStore()
    first, second = _ledger(store, 1), _ledger(store, 2)
    for ledger in (first, second):
        ledger.write(_pending(started=60, until=50, ledger=ledger))
    after, by = _at(60), _at(40)
    store.last_writer = first.key
    marks: dict[int, list[str]] = {}

    def name(ledger: Any) -> None:
        marks[ledger.task.map_index] = ledger.name(ACCOUNT, [501], after, by)

    threads = [threading.Thread(target=name, args=(ledger,)) for ledger in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.barrier = threading.Barrier(1)
    for ledger in (first, second):
        record = ledger.read()
        ledger.write(replace(record, named=tuple(marks[ledger.task.map_index])))
    first.write(None)  # the person sorted out the first failure and deleted its Variable

    survey = _ledger(store, 3).survey(ACCOUNT, {501})

    assert survey.named.get(501) is not None and survey.named[501].owner == second.key
