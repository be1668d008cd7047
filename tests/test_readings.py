# Where SMS.online's pages contradict themselves (the rental webhook's parameter name, whether
# getRentList needs a rental id and what it then lists, the spelling of the resend state), the
# sandbox plays every reading and the provider works on each: renting, a lost answer's rental
# found and adopted (never paid twice), renewals, the budget guard's check after paying, the
# webhook, and the activation waits.
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import requests_mock as requests_mock_module

from airflow_provider_smsonline import protocol
from airflow_provider_smsonline._compat import AirflowFailException
from airflow_provider_smsonline.exceptions import RentalNotFoundError
from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook, history_windows
from airflow_provider_smsonline.ledger import ChargeLedger, Done, Listed, Pending, TaskRun, charge_once
from airflow_provider_smsonline.ledger.decide import Adopt, Ambiguous, decide
from airflow_provider_smsonline.ledger.records import HISTORY, LIST, Intent, Survey
from airflow_provider_smsonline.operators.activation import ActivateNumberOperator
from airflow_provider_smsonline.operators.rent import ContinueRentOperator, RentNumberOperator
from airflow_provider_smsonline.sandbox import Sandbox
from airflow_provider_smsonline.sandbox.readings import CHOICES, STRICTEST, Readings
from airflow_provider_smsonline.sensors.activation import ActivationCodeSensor
from tests.conftest import (
    CANARY_KEY,
    FakeTaskInstance,
    action_url,
    connection_env,
    sent_actions,
    task_context,
)

RENT_LISTS = CHOICES["rent_list"]
ID_READINGS = [reading for reading in RENT_LISTS if reading != "no-id"]
UTC = timezone.utc


def sandbox_with(monkeypatch: pytest.MonkeyPatch, **readings: str) -> Sandbox:
    """A started documented-only sandbox playing ``readings``, the default connection on it."""
    sandbox = Sandbox(port=0, api_key=CANARY_KEY, seed=3, readings=readings).start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(host=sandbox.url, read_retries=0, timeout=1)
    )
    return sandbox


@pytest.fixture
def on_reading(monkeypatch: pytest.MonkeyPatch, memory_variables: dict[str, object]) -> Iterator[Any]:
    """Builds sandboxes on the readings asked for (stopped after the test); Variables in memory."""
    started: list[Sandbox] = []

    def build(**readings: str) -> Sandbox:
        started.append(sandbox_with(monkeypatch, **readings))
        return started[-1]

    yield build
    for sandbox in started:
        sandbox.stop()


def charges(sandbox: Sandbox, action: str = "getRentNumber") -> list[dict[str, Any]]:
    return [c for c in sandbox.state()["charges"] if c["action"] == action]


def try_of(task_id: str = "rent") -> Any:
    return task_context(FakeTaskInstance(task_id=task_id))


def call(sandbox: Sandbox, **params: Any) -> tuple[int, bytes]:
    answer = requests.get(sandbox.url, params={"api_key": CANARY_KEY, **params}, timeout=5)
    return answer.status_code, answer.content


# ----------------------------------------------------------------------------- the sandbox plays each


def test_the_default_readings_are_the_strictest_documented_ones() -> None:
    assert STRICTEST == Readings() == Readings("uri", "id-one", "STATUS_WAIT_RESEND")
    with Sandbox(port=0) as sandbox:
        assert sandbox.state()["readings"] == {
            "webhook_param": "uri",
            "rent_list": "id-one",
            "resend_status": "STATUS_WAIT_RESEND",
        }


def test_an_unknown_reading_is_refused_naming_the_switch_and_the_choices() -> None:
    with pytest.raises(ValueError, match="rent_list must be one of id-one, id-all, no-id, got 'all'"):
        Sandbox(port=0, readings={"rent_list": "all"})
    with pytest.raises(ValueError, match="readings has no switch 'webhook'"):
        Sandbox(port=0, readings={"webhook": "uri"})


@pytest.mark.parametrize("reading", RENT_LISTS)
def test_the_sandbox_plays_each_reading_of_get_rent_list(reading: str) -> None:
    with Sandbox(port=0, api_key=CANARY_KEY, readings={"rent_list": reading}) as sandbox:
        first, second = (
            protocol.parse_rental(*call(sandbox, action="getRentNumber", service="tg", country=0))
            for _ in range(2)
        )
        without_id = call(sandbox, action="getRentList")
        with_id = call(sandbox, action="getRentList", id=first.id)
    if reading == "no-id":
        assert [e.id for e in protocol.parse_rent_list(*without_id)] == [first.id, second.id]
    else:  # "Rental ID not specified"
        assert json.loads(without_id[1]) == {"status": "error", "message": "NO_ID_RENT"}
        with pytest.raises(RentalNotFoundError):
            protocol.parse_rent_list(*without_id)
    listed = [e.id for e in protocol.parse_rent_list(*with_id)]
    assert listed == ([first.id] if reading == "id-one" else [first.id, second.id])


@pytest.mark.parametrize("reading", CHOICES["webhook_param"])
def test_the_sandbox_reads_the_webhook_url_under_its_readings_name_only(reading: str) -> None:
    other = "url" if reading == "uri" else "uri"
    with Sandbox(port=0, api_key=CANARY_KEY, readings={"webhook_param": reading}) as sandbox:
        for name in (reading, other):
            call(sandbox, action="getRentNumber", service="tg", country=0, **{name: "http://127.0.0.1:9/x"})
        urls = [rental["url"] for rental in sandbox.state()["rentals"]]
    assert urls == ["http://127.0.0.1:9/x", None]


@pytest.mark.parametrize("spelling", CHOICES["resend_status"])
def test_the_sandbox_spells_the_resend_state_as_its_reading_says(spelling: str) -> None:
    with Sandbox(port=0, api_key=CANARY_KEY, readings={"resend_status": spelling}) as sandbox:
        number = call(sandbox, action="getNumber", service="tg", country=0)[1].decode()
        activation = int(number.split(":")[1])
        sandbox.books.deliver_code(activation, "4321")
        call(sandbox, action="setStatus", id=activation, status=3)
        _, body = call(sandbox, action="getStatus", id=activation)
    assert body.decode() == f"{spelling}:4321"


# ----------------------------------------------------------------------------- the provider on each


@pytest.mark.parametrize("reading", CHOICES["webhook_param"])
def test_a_rental_webhook_reaches_its_url_on_either_readings_name(
    monkeypatch: pytest.MonkeyPatch, reading: str
) -> None:
    posts: list[bytes] = []
    arrived = threading.Event()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()
            arrived.set()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sandbox = sandbox_with(monkeypatch, webhook_param=reading)
    try:
        with SmsOnlineHook() as hook:
            url = f"http://127.0.0.1:{server.server_address[1]}/hook"
            rental = hook.get_rent_number("tg", 0, webhook_url=url)
        sandbox.deliver_sms(rental.id, text="Code 777")
        assert arrived.wait(5), "no webhook arrived"
    finally:
        sandbox.stop()
        server.shutdown()
        server.server_close()
    assert protocol.parse_webhook(posts[0]).rent_id == rental.id


@pytest.mark.parametrize("reading", RENT_LISTS)
def test_a_rental_is_rented_once_on_every_reading_of_get_rent_list(on_reading: Any, reading: str) -> None:
    sandbox = on_reading(rent_list=reading)
    result = RentNumberOperator(task_id="rent", service="tg", country=0, rent_time=4).execute(try_of())
    again = RentNumberOperator(task_id="rent", service="tg", country=0, rent_time=4).execute(try_of())
    assert again == result  # a retry finds the recorded rental active and reuses it
    assert [c["rental_id"] for c in charges(sandbox)] == [result["id"]]


@pytest.mark.parametrize("mode", ["reset_after_commit", "timeout_after_commit"])
@pytest.mark.parametrize("reading", RENT_LISTS)
def test_a_lost_rent_answers_rental_is_found_and_adopted_on_every_reading(
    on_reading: Any, reading: str, mode: str
) -> None:
    sandbox = on_reading(rent_list=reading)
    # Other rentals on the account, older than the call: never taken for the lost one's.
    with SmsOnlineHook() as hook:
        older = [hook.get_rent_number("wa", 0).id for _ in range(2)]
    sandbox.inject_fault("getRentNumber", mode, delay=3)
    result = RentNumberOperator(task_id="rent", service="tg", country=0, rent_time=4).execute(try_of())
    paid = [c["rental_id"] for c in charges(sandbox)]
    assert paid == [*older, result["id"]]  # adopted: charged once, nothing rented again
    held = next(r for r in sandbox.state()["rentals"] if r["id"] == result["id"])
    assert (held["service"], held["number"], held["status"]) == ("tg", result["number"], "active")


@pytest.mark.parametrize("reading", RENT_LISTS)
def test_a_lost_renewal_is_found_and_adopted_on_every_reading(on_reading: Any, reading: str) -> None:
    sandbox = on_reading(rent_list=reading)
    rented = RentNumberOperator(task_id="rent", service="tg", country=0, rent_time=4).execute(try_of())
    sandbox.inject_fault("continueRentNumber", "reset_after_commit")
    renewed = ContinueRentOperator(task_id="renew", rent_id=rented["id"], rent_time=8).execute(
        try_of("renew")
    )
    assert renewed["id"] == rented["id"]
    assert [c["hours"] for c in charges(sandbox, "continueRentNumber")] == [8]  # renewed once
    assert next(r for r in sandbox.state()["rentals"] if r["id"] == rented["id"])["hours"] == 12


@pytest.mark.parametrize("reading", RENT_LISTS)
def test_the_budget_guard_catches_a_price_that_rose_on_every_reading(
    on_reading: Any, reading: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = on_reading(rent_list=reading)
    stale = [protocol.RentPrice(0, "tg", Decimal("0.01"), 5)]
    monkeypatch.setattr(SmsOnlineHook, "get_rent_prices", lambda self, country, rent_time=None: stale)
    with pytest.raises(AirflowFailException, match=r"price rose after the look-up.*cancelled for a refund"):
        RentNumberOperator(task_id="rent", service="tg", country=0, max_price="0.05").execute(try_of())
    assert [r["status"] for r in sandbox.state()["rentals"]] == ["cancelled"]


def test_a_renewal_reissued_under_a_new_id_is_found_in_the_history_where_the_list_shows_one_rental(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker, memory_variables: dict[str, object]
) -> None:
    def rows(*entries: tuple[str, str, str]) -> dict[str, str]:
        values = [{"id": i, "phone": p, "price": "1", "hours": h} for i, p, h in entries]
        return {"text": json.dumps({"status": "success", "values": values})}

    empty = {"text": json.dumps({"status": "error", "message": "NO_NUMBERS"})}
    requests_mock.get(
        action_url("getRentList"),
        [rows(("1049", "79990001122", "4")), empty, rows(("2001", "79990001122", "12"))],
    )
    history = [
        {
            "id": 2001,
            "date": "2025-05-10 10:00:01",
            "phone": "79990001122",
            "sms": "[]",
            "cost": 1,
            "status": "4",
        },
        {
            "id": 1049,
            "date": "2025-05-10 09:00:00",
            "phone": "79990001122",
            "sms": "[]",
            "cost": 1,
            "status": "4",
        },
        {
            "id": 1500,
            "date": "2025-05-10 09:30:00",
            "phone": "79995550000",
            "sms": "[]",
            "cost": 1,
            "status": "4",
        },
    ]
    requests_mock.get(action_url("getRentHistory"), text=json.dumps(history))
    requests_mock.get(action_url("continueRentNumber"), exc=requests.exceptions.ReadTimeout)
    ledger = ChargeLedger.for_context(try_of("renew"))
    with SmsOnlineHook() as hook:
        rental, charged = charge_once(
            ledger, hook, lambda: hook.continue_rent(1049, 8), rent_time=8, existing_id=1049
        )
    assert (rental.id, rental.number, charged) == (2001, "79990001122", True)
    asked = [request.qs.get("id", [None])[0] for request in requests_mock.request_history]
    assert sent_actions(requests_mock) == [
        "getRentList",
        "continueRentNumber",
        "getRentList",
        "getRentHistory",
        "getRentList",
    ]
    assert asked == ["1049", "1049", "1049", None, "2001"]  # every getRentList names its rental
    assert isinstance(ledger.read(), Done)


# ----------------------------------------------------------------------------- getRentHistory snapshots


def _history_record(**more: Any) -> Pending:
    started = datetime(2025, 5, 10, 10, 0, tzinfo=UTC)
    return Pending(
        started=started,
        until=started + timedelta(seconds=10),
        snapshot=(Listed(1500, "79995550000"),),
        rent_time=4,
        **{"listing": HISTORY, **more},
    )


def test_a_history_snapshot_that_lacks_a_rental_never_proves_it_began_after_the_call() -> None:
    # A rival call made long after ours (a retry an hour later) read getRentHistory around its own
    # time: our rental, older than its window, is absent from its snapshot. That says nothing.
    record = _history_record()
    late_rival = Intent(
        owner="smsonline_charge__other",
        started=record.started + timedelta(hours=2),
        until=record.started + timedelta(hours=2, seconds=10),
        looked_at=record.started + timedelta(hours=2, seconds=11),
        snapshot=frozenset({1500}),
        listing=HISTORY,
    )
    listed = (Listed(1500, "79995550000"), Listed(2002, "79991112233", 4))
    decision = decide(
        record,
        listed,
        Survey(rivals=(late_rival,), claimed=frozenset()),
        now=record.started + timedelta(hours=3),
    )
    assert isinstance(decision, Adopt) and decision.rental.id == 2002


def test_a_history_snapshot_of_a_call_soon_after_ours_proves_a_rental_absent_from_it_is_not_ours() -> None:
    # A rival call a minute after ours (its window reaches an hour back: it covers our call) read
    # getRentHistory holding our rental 2002 but not 3003: 3003 began after it, so it is not ours.
    record = _history_record()
    rival = Intent(
        owner="smsonline_charge__other",
        started=record.started + timedelta(minutes=1),
        until=record.started + timedelta(minutes=1, seconds=10),
        snapshot=frozenset({1500, 2002}),
        listing=HISTORY,
    )
    listed = (Listed(1500, "79995550000"), Listed(2002, "79991112233", 4), Listed(3003, "79994445566", 4))
    decision = decide(
        record,
        listed,
        Survey(rivals=(rival,), claimed=frozenset()),
        now=record.started + timedelta(minutes=5),
    )
    assert isinstance(decision, Adopt) and decision.rental.id == 2002


@pytest.mark.parametrize(("ours", "rival_listing"), [(HISTORY, HISTORY), (HISTORY, LIST), (LIST, HISTORY)])
def test_a_rival_is_never_taken_as_used_up_by_a_rental_a_history_snapshot_holds(
    ours: str, rival_listing: str
) -> None:
    # Our call and a rival's overlap. Our snapshot holds an older rental (1500) that the rival's
    # lacks: it began before the rival's getRentHistory window, or had ended before the rival's
    # getRentList. The rival did not make it, so it may still have made 2002, which therefore
    # cannot be adopted as ours.
    record = _history_record(listing=ours)
    rival = Intent(
        owner="smsonline_charge__other",
        started=record.started + timedelta(seconds=1),
        until=record.started + timedelta(seconds=11),
        snapshot=frozenset(),
        listing=rival_listing,
    )
    listed = (Listed(1500, "79995550000"), Listed(2002, "79991112233", 4))
    decision = decide(
        record,
        listed,
        Survey(rivals=(rival,), claimed=frozenset()),
        now=record.started + timedelta(minutes=5),
    )
    assert isinstance(decision, Ambiguous) and decision.candidates == (2002,)


def test_a_pending_record_keeps_how_its_snapshot_was_read() -> None:
    store: dict[str, Any] = {}

    class Store:
        def get(self, key: str) -> dict[str, Any]:
            return json.loads(json.dumps(store.get(key, {})))

        def set(self, key: str, value: dict[str, Any]) -> None:
            store[key] = value

        def delete(self, key: str) -> None:
            store.pop(key, None)

        def keys(self, prefix: str) -> list[str]:
            return [k for k in store if k.startswith(prefix)]

    ledger = ChargeLedger(task=TaskRun("dag", "rent", -1, "run"), store=Store())
    ledger.write(_history_record())
    assert ledger.read() == _history_record()
    legacy = {k: v for k, v in store[ledger.key].items() if k != "listing"}
    store[ledger.key] = legacy  # a record of an earlier release read getRentList
    assert ledger.read().listing == LIST  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- the history methods


def test_history_windows_split_a_long_window_into_30_day_calls() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    windows = history_windows(start, start + timedelta(days=45))
    assert len(windows) == 2
    assert windows[0] == (int(start.timestamp()), int(start.timestamp()) + 30 * 24 * 3600)
    assert windows[1][0] == windows[0][1] + 1 and windows[1][1] == int(
        (start + timedelta(days=45)).timestamp()
    )
    with pytest.raises(ValueError, match="end must not be before start"):
        history_windows(start, start - timedelta(seconds=1))


def test_get_rent_history_reads_every_page_and_returns_typed_rows(on_reading: Any) -> None:
    sandbox = on_reading()
    sandbox.reset(balance=100000, stock=1000)
    with SmsOnlineHook() as hook:
        rented = [hook.get_rent_number("tg", 0).id for _ in range(230)]
        hook.finish_rent(rented[0])
        sandbox.deliver_sms(rented[-1], text="Code 5")
        rows = hook.get_rent_history(datetime.now(UTC) - timedelta(hours=1))
    assert sorted(row.id for row in rows) == sorted(rented)  # 3 pages of at most 100, each row once
    assert sandbox.state()["requests"]["getRentHistory"] == 3
    newest = next(row for row in rows if row.id == rented[-1])
    assert newest.sms == ("Code 5",) and newest.cost == Decimal("0.5") and newest.number.isdigit()
    assert newest.date is not None and newest.date.tzinfo is not None


def test_get_activation_history_lists_activations_with_an_active_ones_cost_zero(on_reading: Any) -> None:
    sandbox = on_reading()
    with SmsOnlineHook() as hook:
        bought = hook.get_number("tg", 0)
        sandbox.books.deliver_code(bought.id, "2468")
        hook.complete_activation(bought.id)
        waiting = hook.get_number("wa", 0)
        rows = {row.id: row for row in hook.get_activation_history(datetime.now(UTC) - timedelta(hours=1))}
    assert set(rows) == {bought.id, waiting.id}
    assert rows[waiting.id].cost == 0 and rows[bought.id].cost > 0
    assert rows[bought.id].sms == ("Your code is 2468",)


def test_history_pages_stop_at_a_short_page_and_a_long_window_is_split(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    page = [
        {"id": n, "date": "2025-01-01 00:00:00", "phone": "7", "sms": "[]", "cost": 1, "status": "1"}
        for n in range(100)
    ]
    requests_mock.get(
        action_url("getRentHistory"),
        [
            {"text": json.dumps(page)},
            {"text": json.dumps([*page[:1], {**page[0], "id": 100}])},
            {"text": "[]"},
        ],
    )
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with SmsOnlineHook() as hook:
        rows = hook.get_rent_history(start, start + timedelta(days=40))
    assert [row.id for row in rows] == list(range(101))  # a row seen again on the next page counts once
    sent = [request.qs for request in requests_mock.request_history]
    assert [(q["offset"], q["limit"]) for q in sent] == [
        (["0"], ["100"]),
        (["100"], ["100"]),
        (["0"], ["100"]),
    ]
    assert int(sent[2]["start"][0]) == int(sent[0]["end"][0]) + 1  # the second 30-day window


# ----------------------------------------------------------------------------- activations


@pytest.mark.parametrize("spelling", CHOICES["resend_status"])
def test_the_resend_state_is_waiting_and_ending_it_completes_with_6_on_either_spelling(
    on_reading: Any, spelling: str
) -> None:
    sandbox = on_reading(resend_status=spelling)
    with SmsOnlineHook() as hook:
        activation = hook.get_number("tg", 0)
        sandbox.books.deliver_code(activation.id, "1111")
        hook.request_another_code(activation.id)
        state = hook.get_status(activation.id)
        sensor = ActivationCodeSensor(task_id="wait", activation_id=activation.id)
        waiting = sensor.poke(try_of("wait"))
        outcome = hook.end_activation(activation.id)
    assert (state.status, state.code, state.received) == (protocol.STATUS_WAIT_RETRY, "1111", False)
    assert waiting is False
    assert outcome == "completed"  # setStatus 6: after a 3, 8 would be BAD_STATUS
    (record,) = sandbox.state()["activations"]
    assert record["status"] == "completed"


def test_get_prices_sends_both_service_and_country(
    smsonline_conn: str, requests_mock: requests_mock_module.Mocker
) -> None:
    requests_mock.get(action_url("getPrices"), text=json.dumps({"0": {"tg": {"cost": 1.5, "count": 3}}}))
    with SmsOnlineHook() as hook:
        (price,) = hook.get_prices(service="tg", country=0)
    assert (price.cost, price.count) == (Decimal("1.5"), 3)
    query = requests_mock.request_history[0].qs
    assert (query["service"], query["country"]) == (["tg"], ["0"])


def test_activate_number_sends_ref_and_activation_type_only_when_given(on_reading: Any) -> None:
    sandbox = on_reading()
    ActivateNumberOperator(
        task_id="activate", service="tg", country=0, ref="partner42", activation_type=2
    ).execute(try_of("activate"))
    ActivateNumberOperator(task_id="plain", service="tg", country=0).execute(try_of("plain"))
    records = sandbox.state()["activations"]
    assert [(a["ref"], a["activation_type"]) for a in records] == [("partner42", 2), (None, None)]


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("activation_type", 3, "must be 0 .SMS., 1 .by number., 2 .voice. or None"),
        ("ref", "a b", "must be a partner id .*without spaces"),
    ],
)
def test_a_bad_ref_or_activation_type_is_refused_at_parse_naming_it(
    field: str, value: Any, allowed: str
) -> None:
    with pytest.raises(ValueError, match=f"{field} {allowed}.*got {value!r}"):
        ActivateNumberOperator(task_id="activate", service="tg", country=0, **{field: value})


# ----------------------------------------------------------------------------- who paid


def test_owner_of_names_the_task_instance_and_run_that_paid_for_a_rental_or_an_activation(
    on_reading: Any, memory_variables: dict[str, object]
) -> None:
    from airflow_provider_smsonline.ledger import VariableStore, account_of
    from airflow_provider_smsonline.ledger.owner import owner_of

    on_reading()
    rented = RentNumberOperator(task_id="rent", service="tg", country=0).execute(try_of("rent"))
    bought = ActivateNumberOperator(task_id="activate", service="tg", country=0).execute(try_of("activate"))
    with SmsOnlineHook() as hook:
        account = account_of(hook)
        by_hand = hook.get_rent_number("wa", 0).id
    store = VariableStore()
    assert owner_of(store, account, rented["id"]) == TaskRun(
        "smsonline_dag", "rent", -1, "manual__2025-01-01"
    )
    assert owner_of(store, account, bought["id"], activation=True) == TaskRun(
        "smsonline_dag", "activate", -1, "manual__2025-01-01"
    )
    assert owner_of(store, account, by_hand) is None


# ----------------------------------------------------------------------------- a real DAG run


@pytest.mark.airflow
@pytest.mark.slow
@pytest.mark.parametrize("reading", ID_READINGS)
def test_a_dag_rents_once_through_a_lost_answer_where_get_rent_list_wants_an_id(
    tmp_path: Any, reading: str
) -> None:
    from pathlib import Path

    from airflow_provider_smsonline.testing import LocalAirflow

    examples = Path(__file__).resolve().parent.parent / "example_dags"
    with Sandbox(port=0, api_key=CANARY_KEY, readings={"rent_list": reading}) as sandbox:
        sandbox.inject_fault("getRentNumber", "reset_after_commit")  # charged, then the answer is lost
        airflow = LocalAirflow(home=tmp_path / "airflow", dags_folder=examples)
        airflow.use_sandbox(sandbox)
        run = airflow.dags_test("smsonline_rent_manual", conf={"service": "tg", "country": 0, "rent_time": 4})
        state = sandbox.state()
    assert run.state == "success", run.output[-3000:]
    rent = run.task("rent")
    assert [c["rental_id"] for c in state["charges"]] == [rent.xcoms["id"]]  # adopted, paid once
    assert rent.try_number == 1 and "Recovered rental" in run.output
    assert state["requests"]["getRentHistory"] >= 2  # the snapshot and the look read the history
