# The account page's reading, cache and routes without a browser or an Airflow process: the reading
# against the sandbox on each reading of getRentList's page, the cache's bound on calls, and the
# routes' access rules through FastAPI's test client with Airflow's own user dependency.
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_provider_smsonline import account
from airflow_provider_smsonline.account import app as account_app
from airflow_provider_smsonline.account import reading
from airflow_provider_smsonline.account.airflow_side import ApiServerHook, _conn_type, _from_environment
from airflow_provider_smsonline.account.cache import PartCache
from airflow_provider_smsonline.account.reading import AccountSummary, RentalsView, SpendRow
from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.ledger import TaskRun
from airflow_provider_smsonline.sandbox import Sandbox
from tests.conftest import CANARY_FORMS, CANARY_KEY, assert_no_key, connection_env

PAID = TaskRun("smsonline_rent_weekly", "rent", -1, "manual__2026-01-01")
HIDDEN = TaskRun("secret_dag", "rent", 3, "scheduled__2026-01-02")


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    readings = getattr(request, "param", None)
    with Sandbox(host="127.0.0.1", port=0, api_key=CANARY_KEY, readings=readings) as running:
        yield running


@pytest.fixture
def hook(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmsOnlineHook]:
    """The hook the page reads with: its connection looked up as Airflow's API looks them up."""
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(sandbox.url, read_retries=0))
    with ApiServerHook("smsonline_default") as made:
        assert made.config.endpoint.startswith(sandbox.url)
        yield made


def requests_of(sandbox: Sandbox) -> dict[str, int]:
    return dict(sandbox.state()["requests"])


def rent(hook: SmsOnlineHook, count: int, hours: int = 4) -> list[int]:
    return [hook.get_rent_number("tg", 0, rent_time=hours).id for _ in range(count)]


def no_owner(item_id: int, activation: bool) -> TaskRun | None:
    return None


# ----------------------------------------------------------------------------- reading the account


def test_active_rentals_are_found_where_get_rent_list_answers_only_the_rental_asked_for(
    hook: SmsOnlineHook, sandbox: Sandbox
) -> None:
    first, second, finished = rent(hook, 3)
    hook.finish_rent(finished)
    before = requests_of(sandbox)

    view = reading.read_rentals(hook, lambda i, a: PAID if i == second else None, set())

    assert [row.id for row in view.rentals] == [second, first]
    row = view.rentals[0]
    assert (row.hours, row.price, row.paid_by) == (4, Decimal("0.50"), PAID)
    start = datetime.strptime(row.started or "", "%Y-%m-%d %H:%M:%S")
    assert datetime.strptime(row.ends or "", "%Y-%m-%d %H:%M:%S") - start == reading.timedelta(hours=4)
    assert view.rentals[1].paid_by is None
    asked = requests_of(sandbox)["getRentList"] - before.get("getRentList", 0)
    assert asked == 3  # each rental of the history, asked with its id


@pytest.mark.parametrize("sandbox", [{"rent_list": "id-all"}, {"rent_list": "no-id"}], indirect=True)
def test_a_server_that_answers_the_whole_list_is_asked_once(hook: SmsOnlineHook, sandbox: Sandbox) -> None:
    first, second, finished = rent(hook, 3)
    hook.finish_rent(finished)
    before = requests_of(sandbox)

    view = reading.read_rentals(hook, no_owner, set())

    assert [row.id for row in view.rentals] == [second, first]
    assert requests_of(sandbox)["getRentList"] - before.get("getRentList", 0) == 1


def test_a_rental_found_ended_is_not_asked_about_again(hook: SmsOnlineHook, sandbox: Sandbox) -> None:
    active, finished = rent(hook, 2)
    hook.finish_rent(finished)
    ended: set[int] = set()
    reading.read_rentals(hook, no_owner, ended)
    before = requests_of(sandbox)["getRentList"]

    view = reading.read_rentals(hook, no_owner, ended)

    assert [row.id for row in view.rentals] == [active]
    assert ended == {finished}
    assert requests_of(sandbox)["getRentList"] - before == 1


def test_at_most_max_checks_rentals_are_asked_about_in_one_reading(
    hook: SmsOnlineHook, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reading, "MAX_CHECKS", 2)
    ids = rent(hook, 3)
    before = requests_of(sandbox).get("getRentList", 0)

    view = reading.read_rentals(hook, no_owner, set())

    assert [row.id for row in view.rentals] == sorted(ids, reverse=True)[:2]
    assert view.unchecked == 1
    assert requests_of(sandbox)["getRentList"] - before == 2


def test_the_last_sms_is_the_newest_with_its_sender_and_date_as_the_server_wrote_it(
    hook: SmsOnlineHook, sandbox: Sandbox
) -> None:
    (rent_id,) = rent(hook, 1)
    sandbox.deliver_sms(rent_id, "first 111111")
    sandbox.deliver_sms(rent_id, "second 222222")

    (row,) = reading.read_rentals(hook, no_owner, set()).rentals

    assert row.last_sms is not None and row.last_sms.text == "second 222222"
    assert row.last_sms.date == hook.get_rent_status(rent_id)[0].date.strftime("%Y-%m-%d %H:%M:%S")


def test_spend_is_summed_per_server_day_and_per_dag_that_paid(hook: SmsOnlineHook, sandbox: Sandbox) -> None:
    paid_by_dag = rent(hook, 2)
    rent(hook, 1)  # by hand: no charge record

    view = reading.read_rentals(hook, lambda i, a: PAID if i in paid_by_dag else None, set())

    (day,) = {row.day for row in view.spend}
    assert {(row.dag_id, row.amount) for row in view.spend} == {
        (PAID.dag_id, Decimal("1.0")),
        (None, Decimal("0.5")),
    }
    assert view.days[-1] >= day and len(view.days) >= reading.SPEND_DAYS


def test_the_summary_is_the_balance_and_the_active_activations_with_who_paid(
    hook: SmsOnlineHook, sandbox: Sandbox
) -> None:
    bought = hook.get_number("tg", 0).id

    summary = reading.read_summary(hook, lambda i, activation: PAID if activation and i == bought else None)

    assert summary.balance == hook.get_balance()
    assert [(row.id, row.paid_by) for row in summary.activations] == [(bought, PAID)]


# ----------------------------------------------------------------------------- the cache


def test_viewers_at_once_share_one_reading_per_connection() -> None:
    started = threading.Event()
    release = threading.Event()

    def read(conn_id: str) -> str:
        started.set()
        release.wait(5)
        return f"read {conn_id}"

    cache: PartCache[str] = PartCache(read, ttl=60, describe=lambda c, e: str(e))
    results: list[str | None] = []
    viewers = [threading.Thread(target=lambda: results.append(cache.get("a").value)) for _ in range(20)]
    for viewer in viewers:
        viewer.start()
    started.wait(5)
    time.sleep(0.2)
    release.set()
    for viewer in viewers:
        viewer.join(5)
    assert results == ["read a"] * 20 and cache.readings == 1


def test_a_reading_is_served_until_its_ttl_then_read_again() -> None:
    now = [0.0]
    cache: PartCache[int] = PartCache(
        lambda c: int(now[0]), ttl=60, describe=lambda c, e: "", clock=lambda: now[0]
    )
    assert cache.get("a").value == 0
    now[0] = 59.9
    assert cache.get("a").value == 0 and cache.get("b").value == 59
    now[0] = 60.0
    assert cache.get("a").value == 60 and cache.readings == 3


def test_a_failed_reading_keeps_the_last_value_and_is_not_retried_before_the_ttl() -> None:
    now = [0.0]
    answers: list[Any] = [7, RuntimeError("down")]

    def read(conn_id: str) -> int:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return int(answer)

    cache: PartCache[int] = PartCache(
        read, ttl=60, describe=lambda c, e: f"failed: {e}", clock=lambda: now[0]
    )
    cache.get("a")
    now[0] = 61
    failed = cache.get("a")
    now[0] = 100
    assert (failed.value, failed.error) == (7, "failed: down")
    assert cache.get("a") is failed and cache.readings == 2


# ----------------------------------------------------------------------------- the routes


class AuthManager:
    """Airflow's auth manager as the routes ask it: which connections and DAGs the user may read."""

    def __init__(self, connections: set[str], dags: set[str]) -> None:
        self.connections, self.dags = connections, dags

    def is_authorized_connection(self, *, method: str, details: Any, user: Any) -> bool:
        return method == "GET" and details.conn_id in self.connections

    def is_authorized_dag(self, *, method: str, details: Any, user: Any, access_entity: Any = None) -> bool:
        return method == "GET" and details.id in self.dags


SUMMARY = AccountSummary(balance=Decimal("99.50"), activations=())
ROW = reading.RentalRow(
    1000, "79990001122", 4, Decimal("0.5"), "2026-01-01 10:00:00", "2026-01-01 14:00:00", None, PAID
)
VIEW = RentalsView(
    rentals=(ROW, reading.RentalRow(1001, "79990003344", 4, Decimal("0.5"), None, None, None, HIDDEN)),
    spend=(
        SpendRow("2026-01-01", PAID.dag_id, Decimal("0.5")),
        SpendRow("2026-01-01", HIDDEN.dag_id, Decimal("0.5")),
        SpendRow("2026-01-01", None, Decimal("1")),
    ),
    days=("2026-01-01",),
)


@pytest.fixture
def routes(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, Any]]:
    from airflow.api_fastapi.core_api.security import get_user

    monkeypatch.setattr(account_app, "smsonline_connection_ids", lambda: ["smsonline_default", "other"])
    manager = AuthManager({"smsonline_default"}, {PAID.dag_id})
    monkeypatch.setattr("airflow.api_fastapi.app.get_auth_manager", lambda: manager)
    app = account_app.create_app()
    app.state.summaries.read = lambda conn_id: SUMMARY
    app.state.rentals.read = lambda conn_id: VIEW
    client = TestClient(app)
    yield client, app
    app.dependency_overrides.pop(get_user, None)


def signed_in(app: Any) -> None:
    from airflow.api_fastapi.core_api.security import get_user

    app.dependency_overrides[get_user] = lambda: object()


@pytest.mark.parametrize(
    "path",
    [
        "/api/connections",
        "/api/connections/smsonline_default/summary",
        "/api/connections/smsonline_default/rentals",
    ],
)
def test_an_anonymous_request_for_the_pages_data_is_refused(
    routes: tuple[TestClient, Any], path: str
) -> None:
    client, app = routes
    answer = client.get(path)
    assert answer.status_code == 401
    assert app.state.summaries.readings == app.state.rentals.readings == 0


def test_only_connections_the_user_may_read_are_listed_or_read(routes: tuple[TestClient, Any]) -> None:
    client, app = routes
    signed_in(app)
    assert client.get("/api/connections").json()["connections"] == ["smsonline_default"]
    assert client.get("/api/connections/other/summary").status_code == 404
    assert client.get("/api/connections/other/rentals").status_code == 404
    assert client.get("/api/connections/not_smsonline/summary").status_code == 404
    assert app.state.summaries.readings == app.state.rentals.readings == 0


def test_the_dag_that_paid_shows_only_to_a_user_who_may_read_that_dag(routes: tuple[TestClient, Any]) -> None:
    client, app = routes
    signed_in(app)
    body = client.get("/api/connections/smsonline_default/rentals").json()
    assert [row["paid_by"] for row in body["rentals"]] == [
        {"dag_id": PAID.dag_id, "task_id": "rent", "map_index": -1, "run_id": PAID.run_id},
        {"hidden": True},
    ]
    assert HIDDEN.dag_id not in json.dumps(body)
    assert {(row["dag_id"], row["hidden"]) for row in body["spend"]} == {
        (PAID.dag_id, False),
        (None, False),
        (None, True),
    }


def test_the_summary_answers_the_balance_and_is_not_stored_by_caches(routes: tuple[TestClient, Any]) -> None:
    client, app = routes
    signed_in(app)
    answer = client.get("/api/connections/smsonline_default/summary")
    assert answer.json()["balance"] == "99.50" and answer.json()["error"] is None
    assert answer.headers["cache-control"] == "no-store"


def test_a_failed_reading_shows_its_error_without_the_key(
    routes: tuple[TestClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, app = routes
    signed_in(app)
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env())

    def fail(conn_id: str) -> AccountSummary:
        raise ValueError(f"a field holding {CANARY_FORMS[-1]} is wrong")

    app.state.summaries.read = fail
    body = client.get("/api/connections/smsonline_default/summary").text
    assert "is wrong" in body
    assert_no_key(body)


def test_the_pages_code_is_served_as_javascript_and_nothing_else_is(routes: tuple[TestClient, Any]) -> None:
    client, _ = routes
    code = client.get(f"/static/{account.BUNDLE}")
    assert code.status_code == 200 and code.headers["content-type"].startswith("text/javascript")
    assert 'globalThis["SMS.online"]' in code.text
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/app.py").status_code == 404


# ----------------------------------------------------------------------------- registration


def test_the_plugin_lists_the_page_under_browse_and_its_code_on_its_own_prefix() -> None:
    (page,) = account.plugin_react_apps()
    assert (page["name"], page["destination"], page["category"], page["url_route"]) == (
        "SMS.online",
        "nav",
        "browse",
        "smsonline",
    )
    assert page["bundle_url"] == f"{account.URL_PREFIX}/static/{account.BUNDLE}"


@pytest.mark.parametrize(
    ("base_url", "path"),
    [
        ("http://airflow.example.com/", ""),
        ("https://example.com/airflow/", "/airflow"),
        ("/team-a", "/team-a"),
    ],
)
def test_the_pages_code_is_under_the_path_of_airflows_base_url(
    monkeypatch: pytest.MonkeyPatch, base_url: str, path: str
) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", base_url)
    (page,) = account.plugin_react_apps()
    assert page["bundle_url"] == f"{path}/smsonline-account/static/{account.BUNDLE}"


def test_the_page_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__SMSONLINE__ACCOUNT_PAGE", "False")
    assert account.plugin_react_apps() == []


def test_connections_from_the_environment_are_found_by_their_type() -> None:
    environ = {
        "AIRFLOW_CONN_SMS_A": connection_env(),
        "AIRFLOW_CONN_SMS_B": "smsonline://:key@host",
        "AIRFLOW_CONN_HTTP": "http://example.com",
        "AIRFLOW_CONN_BROKEN": "{not json",
    }
    assert sorted(_from_environment(environ)) == ["sms_a", "sms_b"]
    assert _conn_type('{"conn_type": "smsonline"}') == "smsonline"
