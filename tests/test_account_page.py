# Airflow for real, once for the module: an api-server with its login on (the simple auth manager,
# users admin and viewer), StatsD metrics sent to a listener on loopback, an SMS.online connection
# on the sandbox, a DAG run that rents a number (airflow dags test, same home), and a rental and an
# activation made by hand. Then: the StatsD packets of the DAG run, the page's data refused to
# anonymous callers, and a person in headless chromium going from Airflow's home page through its
# navigation to the page. The page's screenshot is docs/_static/account-page.png's source
# (test-artifacts/browser/account-page.png).
from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
from airflow_provider_smsonline.sandbox import Sandbox
from airflow_provider_smsonline.testing import RunResult
from tests.airflow_server import AirflowServer
from tests.conftest import CANARY_KEY, assert_no_key, connection_env
from tests.test_ui_browser import CHROMIUM_ARGS, SCREENSHOTS, chromium, screenshot, sync_playwright

pytestmark = [pytest.mark.airflow, pytest.mark.slow, pytest.mark.timeout(420)]

EXAMPLES = Path(__file__).resolve().parent.parent / "example_dags"
#: The DAG that rents (168 hours) and keeps its number.
RENTING_DAG = "smsonline_rent_weekly"
PASSWORDS = {"admin": "admin-password", "viewer": "viewer-password"}
#: The SMS delivered to the DAG's rental: the page shows it as its last SMS.
LAST_SMS = "Your Telegram code: 482913"
DATA_ROUTES = (
    "/smsonline-account/api/connections",
    "/smsonline-account/api/connections/smsonline_default/summary",
    "/smsonline-account/api/connections/smsonline_default/rentals",
)
__all__ = ["chromium"]  # the browser fixture, shared with test_ui_browser


class StatsdListener(threading.Thread):
    """A UDP socket on 127.0.0.1 collecting every StatsD line sent to it."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.lines += data.decode("utf-8", "replace").splitlines()

    def named(self, prefix: str) -> list[str]:
        return [line for line in self.lines if line.startswith(prefix)]


@dataclass
class Account:
    """What the module set up on the sandbox's account."""

    server: AirflowServer
    sandbox: Sandbox
    statsd: StatsdListener
    run: RunResult
    dag_rental: dict[str, Any]
    hand_rental: int
    activation: int
    numbers: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    root = tmp_path_factory.mktemp("account-page")
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(EXAMPLES / f"{RENTING_DAG}.py", dags)
    passwords = root / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    statsd = StatsdListener()
    statsd.start()
    with Sandbox(host="127.0.0.1", port=0, api_key=CANARY_KEY) as sandbox:
        conn = connection_env(sandbox.url)
        env = {
            "AIRFLOW_CONN_SMSONLINE_DEFAULT": conn,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(statsd.port),
        }
        server = AirflowServer(home=root / "home", dags_folder=dags, env=env)
        server.local.migrate()
        runs: list[RunResult] = []
        renting = threading.Thread(target=lambda: runs.append(server.local.dags_test(RENTING_DAG)))
        renting.start()  # while the api-server starts
        with server:
            renting.join()
            (run,) = runs
            assert run.state == "success", run.output[-3000:]
            with (
                mock.patch.dict(os.environ, {"AIRFLOW_CONN_SMSONLINE_DEFAULT": conn}),
                SmsOnlineHook() as hook,
            ):
                hand = hook.get_rent_number("wa", 0, rent_time=24)
                activation = hook.get_number("tg", 0)
            made = Account(server, sandbox, statsd, run, run.xcom("rent"), hand.id, activation.id)
            sandbox.deliver_sms(made.dag_rental["id"], LAST_SMS)
            made.numbers = [made.dag_rental["number"], hand.number]
            yield made
    statsd.stopped.set()


def get(server: AirflowServer, path: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(server.url + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def token_of(server: AirflowServer, user: str) -> str:
    body = json.dumps({"username": user, "password": PASSWORDS[user]}).encode()
    request = urllib.request.Request(
        server.url + "/auth/token", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return str(json.load(answer)["access_token"])


# ----------------------------------------------------------------------------- metrics


def test_a_dag_run_that_rents_sends_its_charge_and_spend_to_statsd(account: Account) -> None:
    charges = account.statsd.named(f"airflow.smsonline.charges.rental.{RENTING_DAG}:")
    spend = account.statsd.named(f"airflow.smsonline.spend.rental.{RENTING_DAG}:")
    charges_of_the_rental = [
        c for c in account.sandbox.state()["charges"] if int(c["rental_id"]) == account.dag_rental["id"]
    ]
    (price,) = [c["amount"] for c in charges_of_the_rental]
    assert charges == [f"airflow.smsonline.charges.rental.{RENTING_DAG}:1|c"]
    assert [float(line.split(":")[1].split("|")[0]) for line in spend] == [float(price)]
    assert account.statsd.named("airflow.smsonline.api.calls.getRentNumber:")
    every = "\n".join(account.statsd.lines)
    assert_no_key(every)
    assert not any(number in every for number in account.numbers)


# ----------------------------------------------------------------------------- access


def test_an_anonymous_request_for_the_pages_data_is_refused(account: Account) -> None:
    readings = account.sandbox.state()["requests"]
    for path in DATA_ROUTES:
        status, body = get(account.server, path)
        assert status == 401, (path, body)
        assert_no_key(body)
    assert account.sandbox.state()["requests"] == readings  # nothing was read for them


def test_a_user_who_may_not_read_connections_sees_no_account(account: Account) -> None:
    token = token_of(account.server, "viewer")
    status, body = get(account.server, DATA_ROUTES[0], token)
    assert (status, json.loads(body)["connections"]) == (200, [])
    for path in DATA_ROUTES[1:]:
        assert get(account.server, path, token)[0] == 404


# ----------------------------------------------------------------------------- the page


@pytest.mark.browser
def test_from_the_home_page_through_the_navigation_the_page_shows_balance_rentals_and_who_paid(
    account: Account, chromium: str
) -> None:
    conn = {"AIRFLOW_CONN_SMSONLINE_DEFAULT": connection_env(account.sandbox.url)}
    with mock.patch.dict(os.environ, conn), SmsOnlineHook() as hook:
        balance = hook.get_balance()
    answers: list[tuple[str, int, str]] = []
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=account.server.url)
        context.set_default_timeout(30_000)
        page = context.new_page()
        page.on("response", lambda r: answers.append((r.url, r.status, _text(r))))
        page.goto("/")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(PASSWORDS["admin"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(account.server.url + "/")
        page.get_by_role("button", name="Browse").click()
        page.get_by_role("menuitem", name="SMS.online").click()

        page.get_by_role("heading", name="SMS.online", exact=True).wait_for()
        card = page.get_by_role("article", name="SMS.online account of smsonline_default")
        rentals = card.get_by_role("table", name="Active rentals")
        rentals.wait_for()
        card.get_by_role("img", name="Spend per day and DAG").wait_for()
        page.wait_for_timeout(300)  # the chart's legend and the last row settle
        shot = SCREENSHOTS / "account-page.png"
        screenshot(page, "account-page")

        assert card.get_by_label("Balance").inner_text().endswith(str(balance))
        rows = {row.get_by_role("cell").nth(1).inner_text(): row for row in rentals.locator("tbody tr").all()}
        assert set(rows) == {str(account.dag_rental["id"]), str(account.hand_rental)}
        paid = rows[str(account.dag_rental["id"])]
        assert f"+{account.dag_rental['number']}" in paid.inner_text()
        assert RENTING_DAG in paid.inner_text() and account.run.run_id in paid.inner_text()
        assert LAST_SMS in paid.inner_text()
        assert "no charge record" in rows[str(account.hand_rental)].inner_text()
        assert str(account.activation) in card.get_by_role("table", name="Active activations").inner_text()
        assert card.get_by_role("list", name="Spend per DAG").get_by_text(RENTING_DAG).count() == 1

        assert_no_key(page.content())
        for url, _, body in answers:
            assert_no_key(url)
            assert_no_key(body)
        assert any(
            "/smsonline-account/api/connections/smsonline_default/rentals" in url for url, _, _ in answers
        )
        assert shot.exists()
    finally:
        browser.close()
        playwright.stop()
    # The api-server read the balance for the page: its gauge went to StatsD too.
    assert account.statsd.named(f"airflow.smsonline.balance.smsonline_default:{float(balance)}|g")


def _text(response: Any) -> str:
    try:
        return str(response.text())
    except Exception:  # a body the browser no longer holds (a redirect, an image)
        return ""
