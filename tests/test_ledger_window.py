# A retry waits out an earlier try's charging call until the end of that call's window PLUS the
# clock-skew allowance: the earlier try ran on another worker, whose clock may be behind ours, so
# its window may not have closed yet in its own time. Stopping at the bare window's end would
# take "nothing listed yet" for "nothing charged" and pay a second time.
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta

import pytest
import requests_mock as requests_mock_module

from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.ledger import Done, Pending
from airflow_provider_smsonline.ledger.decide import CLOCK_SKEW
from airflow_provider_smsonline.ledger.keys import claim_key
from airflow_provider_smsonline.protocol import Rental
from tests.conftest import action_url
from tests.test_fault_run import ACCOUNT, RENTAL, UTC, ListableStore, _ledger, _rent, _rent_list


@pytest.fixture
def hook(smsonline_conn: str) -> SmsOnlineHook:
    return SmsOnlineHook()


def test_a_retry_waits_past_the_earlier_windows_end_by_the_clock_skew_allowance(
    hook: SmsOnlineHook, requests_mock: requests_mock_module.Mocker
) -> None:
    # Try 1's call window ended 1 s ago on our clock; its worker's clock runs behind ours, and its
    # call is answered 2 s into this retry: past the window's end, within the clock-skew allowance.
    assert timedelta(seconds=4) <= CLOCK_SKEW  # the allowance this scenario fits in
    store = ListableStore()
    ledger = _ledger(store, 1)
    now = datetime.now(UTC)
    record = Pending(
        started=now - timedelta(seconds=20),
        until=now - timedelta(seconds=1),
        snapshot=(),
        rent_time=4,
        intent=ledger.intent_key(ACCOUNT),
    )
    ledger.write(record)
    rental = Rental(id=1049, number="7999", end_date=now + timedelta(hours=4))
    served = threading.Event()

    def try_one_answered() -> None:
        time.sleep(2.0)
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
    started = time.monotonic()

    found, charged = _rent(hook, ledger)

    answering.join()
    assert (found.id, charged, charge.called) == (1049, False, False)  # try 1's rental, paid once
    assert time.monotonic() - started < CLOCK_SKEW.total_seconds() + 2  # and no longer than that
