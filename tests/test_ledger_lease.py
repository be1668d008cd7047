# The charging lease: at most one unresolved charging call per account, so that answers lost
# together never leave task instances as ambiguous; and the charge ledger alone still never pays
# twice when two workers hold the lease at once.
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.ledger import ChargeAmbiguousError, ChargeLedger, TaskRun, charge_once
from airflow_provider_smsonline.ledger import lease as lease_module
from airflow_provider_smsonline.ledger.activation import buy_once
from airflow_provider_smsonline.ledger.lease import (
    Lease,
    LeaseTimeoutError,
    lease_key,
    lease_settings,
    take,
)
from airflow_provider_smsonline.sandbox import Sandbox
from tests.conftest import CANARY_KEY, connection_env

UTC = timezone.utc


class Store:
    """The ledger's Variables in a dict (JSON round-tripped), safe across threads."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.writes: list[str] = []
        self.lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any]:
        with self.lock:
            return json.loads(self.values.get(key, "{}"))  # type: ignore[no-any-return]

    def set(self, key: str, value: dict[str, Any]) -> None:
        with self.lock:
            self.values[key] = json.dumps(value)
            self.writes.append(key)

    def delete(self, key: str) -> None:
        with self.lock:
            self.values.pop(key, None)
            self.writes.append(f"deleted {key}")

    def keys(self, prefix: str) -> list[str]:
        with self.lock:
            return [key for key in self.values if key.startswith(prefix)]


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shorter settle time than in production (the mechanism is the same)."""
    monkeypatch.setattr(lease_module, "SETTLE_SECONDS", 0.05)
    monkeypatch.setattr(lease_module, "POLL_SECONDS", 0.01)


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """A sandbox (the strictest readings), the default connection on it with a 1 s timeout."""
    with Sandbox(port=0, api_key=CANARY_KEY, seed=11) as running:
        monkeypatch.setenv(
            "AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(host=running.url, read_retries=0, timeout=1)
        )
        yield running


def ledger_of(store: Store, task_id: str) -> ChargeLedger:
    return ChargeLedger(task=TaskRun("dag", task_id, -1, "manual__1"), store=store)


def rent_at_once(store: Store, count: int) -> dict[str, Any]:
    """``count`` task instances (threads, each its own hook) rent on one account at the same moment:
    each one's rental, or the error it ended with."""
    outcomes: dict[str, Any] = {}
    together = threading.Barrier(count)

    def one(task_id: str) -> None:
        with SmsOnlineHook() as hook:
            assert hook.config.timeout == 1  # the connection read before the start line
            together.wait()
            try:
                rental, _ = charge_once(
                    ledger_of(store, task_id), hook, lambda: hook.get_rent_number("tg", 0), rent_time=None
                )
                outcomes[task_id] = rental.id
            except Exception as error:
                outcomes[task_id] = error

    threads = [threading.Thread(target=one, args=(f"rent_{n}",)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def paid(sandbox: Sandbox) -> list[int]:
    return [c["rental_id"] for c in sandbox.state()["charges"] if c["action"] == "getRentNumber"]


# ----------------------------------------------------------------------------- taking turns


def test_answers_lost_together_leave_every_task_instance_its_own_rental(sandbox: Sandbox) -> None:
    # A gateway incident: every charging call in flight loses its answer, after the charge.
    sandbox.inject_fault("getRentNumber", "timeout_after_commit", count=3, delay=2)
    outcomes = rent_at_once(Store(), 3)
    assert all(isinstance(rental, int) for rental in outcomes.values()), outcomes
    assert sorted(outcomes.values()) == sorted(paid(sandbox))  # each adopted its own, paid once


def test_without_the_lease_answers_lost_together_are_ambiguous(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the lease takes away: the same incident with charging calls in flight together.
    monkeypatch.setenv("AIRFLOW__SMSONLINE__CHARGE_LEASE", "False")
    sandbox.inject_fault("getRentNumber", "timeout_after_commit", count=3, delay=2)
    outcomes = rent_at_once(Store(), 3)
    assert any(isinstance(error, ChargeAmbiguousError) for error in outcomes.values()), outcomes


def test_the_ledger_alone_never_pays_twice_when_two_workers_hold_the_lease_at_once(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two holders at once (a write slower than the settle time): the lease is only a courtesy.
    monkeypatch.setattr(Lease, "mine", lambda self: True)
    monkeypatch.setattr(lease_module, "_until", lambda value: None)  # every lease reads as free
    store = Store()
    sandbox.inject_fault("getRentNumber", "timeout_after_commit", count=2, delay=2)
    first = rent_at_once(store, 2)
    again = rent_at_once(store, 2)  # every task instance's retry, later
    assert len(paid(sandbox)) == 2  # two calls, two rentals: no retry paid again
    adopted = {task: {o for o in (first[task], again[task]) if isinstance(o, int)} for task in first}
    assert all(len(rentals) <= 1 for rentals in adopted.values())  # one rental per task instance
    owners = [rental for rentals in adopted.values() for rental in rentals]
    assert len(owners) == len(set(owners))  # and no rental is two task instances'
    assert all(isinstance(o, (int, ChargeAmbiguousError)) for o in [*first.values(), *again.values()])


def test_a_lost_answer_that_nothing_explains_yet_keeps_the_lease_until_its_window_closes(
    sandbox: Sandbox,
) -> None:
    store = Store()
    sandbox.inject_fault("getRentNumber", "http_500")  # nothing charged, the answer unusable
    ledger = ledger_of(store, "rent")
    with SmsOnlineHook() as hook, pytest.raises(Exception) as lost:
        charge_once(ledger, hook, lambda: hook.get_rent_number("tg", 0), rent_time=None)
    assert type(lost.value).__name__ == "OutcomeUnknownError"
    with SmsOnlineHook() as hook:
        window = hook.config.connect_timeout + hook.config.timeout
        held = store.get(lease_key(_account(hook)))
    until = datetime.fromisoformat(held["until"])
    assert held["holder"] == ledger.key
    assert until - datetime.now(UTC) > timedelta(seconds=window)  # the window and the clocks' skew


def test_the_lease_is_given_back_as_soon_as_the_answer_comes(sandbox: Sandbox) -> None:
    store = Store()
    with SmsOnlineHook() as hook:
        charge_once(ledger_of(store, "rent"), hook, lambda: hook.get_rent_number("tg", 0), rent_time=None)
        key = lease_key(_account(hook))
    assert key in store.writes  # it was taken
    assert store.get(key) == {"listing": "getRentHistory"}  # and given back: no ticket is left


def test_the_lease_tells_the_next_taker_how_the_account_is_read(sandbox: Sandbox) -> None:
    # Here getRentList wants an id (the sandbox's strictest reading): the first turn finds out
    # (one refused getRentList), the lease carries it, and later turns read getRentHistory at once.
    store = Store()
    with SmsOnlineHook() as hook:
        for task in ("rent_1", "rent_2", "rent_3"):
            charge_once(ledger_of(store, task), hook, lambda: hook.get_rent_number("tg", 0), rent_time=None)
    requests = sandbox.state()["requests"]
    assert (requests["getRentList"], requests["getRentHistory"], requests["getRentNumber"]) == (1, 3, 3)


def test_the_turn_ends_only_after_the_answer_is_noted(sandbox: Sandbox) -> None:
    # A try killed between its answer and the note keeps the turn until its call's window closes:
    # no later call overlaps it, so its retry tells its rental from later ones by time alone.
    store = Store()
    ledger = ledger_of(store, "rent")
    with SmsOnlineHook() as hook:
        charge_once(ledger, hook, lambda: hook.get_rent_number("tg", 0), rent_time=None)
        lease, intent = lease_key(_account(hook)), ledger.intent_key(_account(hook))
    announced, noted = (i for i, key in enumerate(store.writes) if key == intent)  # pending, answered
    given_back = max(i for i, key in enumerate(store.writes) if key == lease)
    assert announced < noted < given_back


def test_an_activation_takes_the_same_turn(sandbox: Sandbox) -> None:
    store = Store()
    with SmsOnlineHook() as hook:
        key = lease_key(_account(hook))
        take(store, _account(hook), "someone else", wait=5, hold=0.5)
        started = time.monotonic()
        buy_once(
            ledger_of(store, "activate"), hook, lambda: hook.get_number("tg", 0), service="tg", country=0
        )
        waited = time.monotonic() - started
    assert waited >= 0.4 and "ticket" not in store.get(
        key
    )  # it waited for the other's turn, then gave it back


def test_a_task_that_cannot_take_the_lease_in_time_fails_charging_nothing(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__SMSONLINE__CHARGE_LEASE_WAIT", "0.3")
    store = Store()
    with SmsOnlineHook() as hook:
        take(store, _account(hook), "smsonline_charge__other.rent__x__y", wait=5)
        with pytest.raises(LeaseTimeoutError) as timed_out:
            charge_once(ledger_of(store, "rent"), hook, lambda: hook.get_rent_number("tg", 0), rent_time=None)
    message = str(timed_out.value)
    assert "within 0.3 s" in message and "smsonline_charge__other.rent__x__y" in message
    assert "nothing was charged" in message and timed_out.value.retryable
    assert paid(sandbox) == []


def test_turning_the_lease_off_writes_no_lease(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__SMSONLINE__CHARGE_LEASE", "False")
    store = Store()
    with SmsOnlineHook() as hook:
        charge_once(ledger_of(store, "rent"), hook, lambda: hook.get_rent_number("tg", 0), rent_time=None)
    assert not any(key.startswith("smsonline_lease__") for key in store.writes)


# ----------------------------------------------------------------------------- the mutual exclusion


class SlowWrites(Store):
    """Each write lands 10 ms after it is sent (the settle time is 50 ms here)."""

    def set(self, key: str, value: dict[str, Any]) -> None:
        time.sleep(0.01)
        super().set(key, value)


def test_many_takers_never_hold_the_lease_at_once() -> None:
    store, inside, most = SlowWrites(), [0], [0]
    lock = threading.Lock()

    def worker(n: int) -> None:
        for _ in range(5):
            lease = take(store, "account", f"holder_{n}", wait=30)
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.002)
            with lock:
                inside[0] -= 1
            lease.release()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1


def test_an_expired_lease_is_free_and_a_released_one_too() -> None:
    store = Store()
    store.set(lease_key("a"), {"holder": "dead", "ticket": "t", "until": "2000-01-01T00:00:00+00:00"})
    first = take(store, "a", "me", wait=1)
    assert first.mine() and store.get(lease_key("a"))["holder"] == "me"
    first.release()
    assert take(store, "a", "you", wait=1).mine()


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"charge_lease": "maybe"}, "charge_lease must be True or False, got 'maybe'"),
        ({"charge_lease_wait": "-1"}, "charge_lease_wait must be a number of seconds from 0 to 86400"),
        ({"charge_lease_wait": "soon"}, "got 'soon'"),
    ],
)
def test_bad_lease_settings_are_refused_naming_the_option(settings: dict[str, str], problem: str) -> None:
    class Config:
        def get(self, section: str, key: str, fallback: str) -> str:
            return settings.get(key, fallback)

    with pytest.raises(ValueError, match=problem):
        lease_settings(Config())


def _account(hook: SmsOnlineHook) -> str:
    from airflow_provider_smsonline.ledger import account_of

    return account_of(hook)


# ----------------------------------------------------------------------------- activations' rivals


def test_an_activation_another_unresolved_getnumber_can_have_bought_is_never_adopted(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No turns (or two holders at once): task A's getNumber and B's are unresolved together. A's
    # activation appears after B's snapshot; B's own call failed before the server bought. B must
    # not take A's activation for its own, whose number getHistory would show.
    from airflow_provider_smsonline.exceptions import OutcomeUnknownError
    from airflow_provider_smsonline.ledger.activation import intent_key

    monkeypatch.setenv("AIRFLOW__SMSONLINE__CHARGE_LEASE", "False")
    store = Store()
    first, second = ledger_of(store, "activate_a"), ledger_of(store, "activate_b")
    with SmsOnlineHook() as hook:
        account = _account(hook)
        now = datetime.now(UTC)
        store.set(  # A's call, in flight: announced, its record pending
            intent_key(account, first.key),
            {
                "owner": first.key,
                "started": now.isoformat(),
                "until": (now + timedelta(seconds=30)).isoformat(),
            },
        )
        store.set(
            first.key,
            {
                "kind": "activation",
                "state": "pending",
                "started": now.isoformat(),
                "until": (now + timedelta(seconds=30)).isoformat(),
                "snapshot": [],
                "service": "tg",
                "country": 0,
            },
        )
        bought: list[int] = []

        def lost_after_a_bought() -> Any:
            bought.append(hook.get_number("tg", 0).id)  # A's, bought meanwhile
            raise OutcomeUnknownError("transport: lost", code="transport", action="getNumber")

        with pytest.raises(OutcomeUnknownError):  # a look now sees A's in flight: not B's to take
            buy_once(second, hook, lost_after_a_bought, service="tg", country=0)
        with pytest.raises(ChargeAmbiguousError) as later:  # B's retry, A still unresolved
            buy_once(second, hook, lambda: hook.get_number("tg", 0), service="tg", country=0)
    assert later.value.candidates == bought
    assert len(sandbox.state()["activations"]) == 1  # nothing bought again


def _pending_activation(
    store: Store, ledger: ChargeLedger, account: str, *, ago: float, snapshot: list[int], announced: bool
) -> None:
    """The record of a getNumber whose window closed ``ago`` seconds ago (1 s long), as buy_once
    writes it while the try waits for its turn, and its intent if the call was ``announced``."""
    from airflow_provider_smsonline.ledger.activation import intent_key

    now = datetime.now(UTC)
    started, until = (
        (now - timedelta(seconds=ago + 1)).isoformat(),
        (now - timedelta(seconds=ago)).isoformat(),
    )
    intent = intent_key(account, ledger.key)
    store.set(
        ledger.key,
        {
            "kind": "activation",
            "state": "pending",
            "started": started,
            "until": until,
            "snapshot": snapshot,
            "service": "tg",
            "country": 0,
            "intent": intent,
        },
    )
    if announced:
        store.set(intent, {"owner": ledger.key, "started": started, "until": until})


def test_a_try_stopped_before_its_turn_bought_nothing_and_its_retry_adopts_no_strangers(
    sandbox: Sandbox,
) -> None:
    # Try 1 wrote its record while it waited for the turn and was lost there (its worker died): it
    # never announced a call, so it made none. An activation bought meanwhile that nobody in
    # Airflow claims (by hand, or by a task instance killed after its answer) is not its own.
    store = Store()
    first = ledger_of(store, "activate_a")
    with SmsOnlineHook() as hook:
        _pending_activation(store, first, _account(hook), ago=1, snapshot=[], announced=False)
        stranger = hook.get_number("tg", 0).id
        activation, bought = buy_once(first, hook, lambda: hook.get_number("tg", 0), service="tg", country=0)
    assert bought and activation.id != stranger
    assert len(sandbox.state()["activations"]) == 2


def test_an_activation_missing_from_a_later_calls_snapshot_is_not_an_earlier_lost_answers(
    sandbox: Sandbox,
) -> None:
    # A's getNumber was answered and the answer lost with its worker; after A's window closed, B
    # took the turn (its snapshot lists A's activation), bought, and was killed before noting its
    # answer. A's retry must adopt A's activation, not fail as ambiguous over B's; B's retry then
    # adopts B's.
    store = Store()
    first, second = ledger_of(store, "activate_a"), ledger_of(store, "activate_b")
    with SmsOnlineHook() as hook:
        account = _account(hook)
        _pending_activation(store, first, account, ago=20, snapshot=[], announced=True)
        theirs_a = hook.get_number("tg", 0).id
        _pending_activation(store, second, account, ago=1, snapshot=[theirs_a], announced=True)
        theirs_b = hook.get_number("tg", 0).id

        def never() -> Any:
            raise AssertionError("nothing is bought again")

        found_a, bought_a = buy_once(first, hook, never, service="tg", country=0)
        found_b, bought_b = buy_once(second, hook, never, service="tg", country=0)
    assert (found_a.id, bought_a, found_b.id, bought_b) == (theirs_a, False, theirs_b, False)
    assert found_a.number.isdigit() and found_b.number.isdigit()  # read back from getHistory


def test_a_rental_try_stopped_before_its_turn_charged_nothing_and_its_retry_adopts_no_strangers(
    sandbox: Sandbox,
) -> None:
    # The rental family's record, written while the try waited for the turn, announced nothing: a
    # rental that appeared since (by hand, say, or another's whose answer was lost) is not its own.
    from airflow_provider_smsonline.ledger import Pending

    store = Store()
    first = ledger_of(store, "rent_a")
    with SmsOnlineHook() as hook:
        now = datetime.now(UTC)
        record = Pending(
            started=now - timedelta(seconds=2),
            until=now - timedelta(seconds=1),
            snapshot=(),
            rent_time=4,
            intent=first.intent_key(_account(hook)),
        )
        first.write(record, announce=False)
        stranger = hook.get_rent_number("tg", 0).id
        rental, charged = charge_once(first, hook, lambda: hook.get_rent_number("tg", 0), rent_time=4)
    assert charged and rental.id != stranger
    assert len(paid(sandbox)) == 2


class TogetherAtFirst(Store):
    """Every taker reads the free lease at the same moment (its first read waits for the others'),
    so that all write their tickets and prepare, and all but one lose the turn."""

    def __init__(self, takers: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(takers)
        self.first = threading.local()

    def get(self, key: str) -> dict[str, Any]:
        value = super().get(key)
        if key.startswith("smsonline_lease__") and not getattr(self.first, "done", False):
            self.first.done = True
            self.barrier.wait()
        return value


def test_a_try_that_loses_the_turn_announces_no_call(sandbox: Sandbox) -> None:
    # Takers that lost the race have read the account and written their records, but make no call
    # until their turn: announced, they would look like calls in flight to the winner's look
    # after its lost answer, which could then not adopt its own rental.
    sandbox.inject_fault("getRentNumber", "timeout_after_commit", count=3, delay=2)
    outcomes = rent_at_once(TogetherAtFirst(3), 3)
    assert all(isinstance(rental, int) for rental in outcomes.values()), outcomes
    assert sorted(outcomes.values()) == sorted(paid(sandbox))
