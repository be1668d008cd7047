# The push path for real: a scheduler, a dag-processor, a triggerer and an api-server (with the
# webhook plugin mounted) on loopback, the sandbox posting SMS.online's webhooks to the api-server.
# An asset watch polling every 600 s fires within seconds of each SMS, exactly once, and its DAG
# runs succeed; a deferrable ActivationCodeSensor polling every 600 s wakes within seconds of the
# account's activation webhook, and forged activation posts (with the token) never complete it; a
# forged token and an oversized body are refused; with webhooks dropped, a watch that polls every
# 2 s still delivers. The token shows in no log.
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from airflow_provider_smsonline.sandbox import Sandbox
from airflow_provider_smsonline.webhook import webhook_token
from tests.airflow_server import AIRFLOW
from tests.conftest import CANARY_KEY, assert_no_key
from tests.test_events import Component, asset_event_payloads, query, wait_for

SECRET = "webhook-test-secret-" + "0123456789abcdef"
ACTIVATION_POST = {
    "service": "tg",
    "text": "Your code is 999999",
    "country": 0,
    "receivedAt": "2025-01-01 12:00:00",
}

DAG_FILE = """
from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_smsonline.sensors.activation import ActivationCodeSensor
from airflow_provider_smsonline.triggers.events import SmsReceivedTrigger

pushed = Asset("sms_pushed", watchers=[AssetWatcher(
    name="pushed", trigger=SmsReceivedTrigger(rent_id=PUSHED, pattern=r"(\\d{6})", poll_interval=600))])
polled = Asset("sms_polled", watchers=[AssetWatcher(
    name="polled", trigger=SmsReceivedTrigger(rent_id=POLLED, poll_interval=2))])

def inbox(dag_id, asset):
    with DAG(dag_id=dag_id, schedule=[asset], start_date=datetime(2025, 1, 1), catchup=False):

        @task
        def handle(triggering_asset_events=None):
            return [e.extra["payload"]["sms_id"] for e in triggering_asset_events[asset]]

        handle()


inbox("sms_pushed_inbox", pushed)
inbox("sms_polled_inbox", polled)

with DAG(dag_id="activation_pushed", schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
    ActivationCodeSensor(
        task_id="wait_for_code", activation_id=ACTIVATION, deferrable=True, poll_interval=600, timeout=300
    )
"""


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def rent(sandbox: Sandbox, url: str | None = None) -> int:
    params: dict[str, Any] = {
        "api_key": sandbox.api_key,
        "action": "getRentNumber",
        "service": "tg",
        "country": 0,
    }
    if url:
        params[sandbox.readings.webhook_param] = url
    with urllib.request.urlopen(f"{sandbox.url}?{urlencode(params)}", timeout=10) as answer:
        return int(json.loads(answer.read())["phone"]["id"])


def activate(sandbox: Sandbox) -> int:
    params = {"api_key": sandbox.api_key, "action": "getNumber", "service": "tg", "country": 0}
    with urllib.request.urlopen(f"{sandbox.url}?{urlencode(params)}", timeout=10) as answer:
        return int(answer.read().decode().split(":")[1])


def sensor_state(home: Path) -> str | None:
    rows = query(home, "SELECT state FROM task_instance WHERE dag_id = 'activation_pushed'")
    return rows[0][0] if rows else None


def events_for(home: Path, rent_id: int) -> list[dict[str, Any]]:
    return [p for p in asset_event_payloads(home) if p["rent_id"] == rent_id]


@pytest.mark.airflow
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_webhooks_through_the_api_server_fire_the_watch_at_once_and_the_poll_catches_lost_ones(
    tmp_path: Path,
) -> None:
    from tests.airflow_server import AirflowServer

    token = webhook_token(SECRET)
    timings: dict[str, float] = {}
    latencies: list[float] = []
    started = time.monotonic()
    dags = tmp_path / "dags"
    dags.mkdir()
    env = {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__API_AUTH__JWT_SECRET": "webhook-test-" + os.urandom(8).hex(),
        "AIRFLOW__SMSONLINE__WEBHOOK_SECRET": SECRET,
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
    }
    server = AirflowServer(home=tmp_path / "home", dags_folder=dags, env=env)
    components: list[Component] = []
    # A patient sender: on a loaded machine the SQLite-backed api-server can stall for seconds.
    with Sandbox(port=0, api_key=CANARY_KEY, utc_offset=3, webhook_timeout=15) as sandbox:
        server.local.use_sandbox(sandbox, timeout=5)
        try:
            server.start()
            timings["api-server"] = time.monotonic() - started
            hook_url = f"{server.url}/smsonline/webhook/{token}"
            sandbox.activation_webhook = hook_url  # the account's profile: one URL for activations
            pushed, polled = rent(sandbox, hook_url), rent(sandbox, hook_url)
            activation = activate(sandbox)
            sandbox.deliver_sms(pushed, text="old code 000000", phone_from="Telegram")
            (dags / "sms_inboxes.py").write_text(
                DAG_FILE.replace("PUSHED", str(pushed))
                .replace("POLLED", str(polled))
                .replace("ACTIVATION", str(activation))
            )
            home = server.home
            run_env = server.environ()
            run_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"{server.url}/execution/"
            scheduler = Component("scheduler", home, run_env, "--skip-serve-logs")
            processor = Component("dag-processor", home, run_env)
            triggerer = Component("triggerer", home, run_env, "--skip-serve-logs")
            components += [scheduler, processor, triggerer]
            for component in components:
                component.start()
            requests = lambda action: sandbox.state()["requests"].get(action, 0)  # noqa: E731
            wait_for(
                "the activation DAG",
                lambda: query(home, "SELECT 1 FROM dag WHERE dag_id = 'activation_pushed'"),
                150,
                processor,
            )
            trigger_run = subprocess.run(
                [*AIRFLOW, "dags", "trigger", "activation_pushed"],
                env=run_env,
                cwd=home,
                capture_output=True,
                timeout=120,
            )
            assert trigger_run.returncode == 0, trigger_run.stderr[-2000:]

            def runs_done(*dag_ids: str) -> list[tuple[Any, ...]]:
                """The runs of the inboxes once each of ``dag_ids`` has one and all have finished."""
                runs = query(home, "SELECT dag_id, state FROM dag_run WHERE dag_id LIKE 'sms_%_inbox'")
                ran = {dag_id for dag_id, _ in runs}
                finished = all(state in ("success", "failed") for _, state in runs)
                return runs if ran >= set(dag_ids) and finished else []

            polls = lambda rent_id: sandbox.state()["polls"].get(str(rent_id), 0)  # noqa: E731
            wait_for(
                "the watches to start", lambda: polls(pushed) >= 1 and polls(polled) >= 2, 150, triggerer
            )
            # The sensor's task run comes first: it stalls this SQLite, one-worker api-server for
            # seconds (all of its routes: Airflow's own cold start), before any webhook is timed.
            wait_for(
                "the sensor to defer", lambda: sensor_state(home) == "deferred", 150, scheduler, triggerer
            )
            wait_for("its first look", lambda: requests("getActiveActivations") >= 1, 60, triggerer)
            time.sleep(2)  # the baseline recorded, the watch asleep for its 600 s
            timings["watching"] = time.monotonic() - started

            # Bad posts first: refused, nothing recorded.
            body = json.dumps(
                {"rentId": pushed, "sms": {"phoneFrom": 7, "text": "x", "date": "2025-01-01 12:00:00"}}
            )
            forged = f"{server.url}/smsonline/webhook/{'A' * len(token)}"
            assert post(forged, body.encode()) == 404
            assert post(hook_url, b'{"rentId": 1, "sms": {"text": "' + b"x" * 100_000 + b'"}}') == 413
            assert post(hook_url, b"{not json") == 400

            # Pushed: each SMS fires within seconds, though the watch polls every 600 s.
            calls_before = polls(pushed)
            for n, text in enumerate(["Your code: 111111", "Lunch at noon?", "code 222222"], start=1):
                if n == 2:
                    # The first task run stalls this SQLite, one-worker api-server for seconds (all
                    # of its routes: Airflow's own cold start); measure the webhooks after it.
                    wait_for("the first run", lambda: runs_done("sms_pushed_inbox"), 120, scheduler)
                timings[f"sms {n}"] = time.monotonic() - started
                sent = time.monotonic()
                sandbox.deliver_sms(pushed, text=text, phone_from="Telegram")
                wait_for(
                    f"pushed event {n}",
                    lambda n=n: len(events_for(home, pushed)) >= n,
                    30,
                    triggerer,
                )
                latencies.append(time.monotonic() - sent)
                time.sleep(1)
            time.sleep(6)  # past any re-check: nothing fires twice
            calls_pushed = polls(pushed) - calls_before
            webhooks = sandbox.state()["webhooks"]

            # The activation sensor, deferred, polling every 600 s: forged posts with the token do
            # not complete it (the code comes from the API); SMS.online's post wakes it at once.
            forged_code = dict(ACTIVATION_POST, activationId=activation, code="999999")
            assert post(hook_url, json.dumps(forged_code).encode()) == 200
            assert post(hook_url, urlencode(forged_code).encode()) == 200
            time.sleep(7)  # past the forged posts' looks
            forged_state, statuses_forged = sensor_state(home), requests("getStatus")
            sent = time.monotonic()
            sandbox.deliver_code(activation, "246810", "Your code is 246810")  # posted to the hook
            wait_for("the sensor's wake-up", lambda: sensor_state(home) != "deferred", 60, triggerer)
            woken_after = time.monotonic() - sent
            wait_for("the sensor's success", lambda: sensor_state(home) == "success", 120, scheduler)
            code_xcom = query(
                home, "SELECT value FROM xcom WHERE dag_id = 'activation_pushed' AND key = 'return_value'"
            )
            timings["activation woken"] = time.monotonic() - started
            sandbox_webhooks = sandbox.state()["webhooks"]

            # Lost webhooks: the 2 s poll delivers.
            sandbox.drop_webhooks = True
            sandbox.deliver_sms(polled, text="dropped webhook, polled SMS", phone_from="Bank")
            wait_for("the polled event", lambda: len(events_for(home, polled)) >= 1, 30, triggerer)
            timings["polled event"] = time.monotonic() - started

            runs = wait_for(
                "the inbox runs", lambda: runs_done("sms_pushed_inbox", "sms_polled_inbox"), 120, scheduler
            )
            timings["runs done"] = time.monotonic() - started
            handled = [
                item
                for (value,) in query(
                    home, "SELECT value FROM xcom WHERE task_id = 'handle' AND key = 'return_value'"
                )
                for item in json.loads(value)
            ]
            pushed_events, polled_events = events_for(home, pushed), events_for(home, polled)
            hints = query(home, "SELECT val FROM variable WHERE key = 'smsonline_webhook_hints'")
            logs = b"".join(p.read_bytes() for p in home.rglob("*.log"))
        finally:
            for component in components:
                component.stop()
            server.stop()

    print(f"timings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
    print(
        f"webhook -> asset event (s): {[round(x, 2) for x in latencies]}; getRentStatus: {calls_pushed}; "
        f"activation webhook -> sensor woken: {woken_after:.2f} s"
    )
    assert [p["sms"]["text"] for p in pushed_events] == ["Your code: 111111", "Lunch at noon?", "code 222222"]
    assert [p["code"] for p in pushed_events] == ["111111", None, "222222"]
    assert max(latencies) < 5.0, latencies  # the poll would take 600 s
    # The code: posted, hinted, looked at, and the trigger's event stored by the triggerer in this
    # SQLite home (the sensor's state leaves "deferred"); its poll would take 600 s.
    assert woken_after < 10.0, woken_after
    assert forged_state == "deferred" and statuses_forged == 0  # forged posts: no code, no getStatus
    assert json.loads(code_xcom[0][0]) == {"code": "246810", "text": None}
    assert calls_pushed <= 2 * 3  # at most two getRentStatus per SMS
    assert webhooks["sent"] == 4 and webhooks["failed"] == 0  # 200 each time (the old SMS too)
    assert sandbox_webhooks["sent"] == 5 and sandbox_webhooks["failed"] == 0  # and the activation's
    assert [p["sms"]["text"] for p in polled_events] == ["dropped webhook, polled SMS"]
    assert runs and all(state == "success" for _, state in runs)
    assert sorted(handled) == sorted(p["sms_id"] for p in pushed_events + polled_events)
    assert hints and "111111" not in hints[0][0]  # ids only, no SMS text
    assert token.encode() not in logs and SECRET.encode() not in logs
    # The access log printed the path, masked (Airflow 3.1's uvicorn log URL-quotes it).
    assert b"/smsonline/webhook/***" in logs or b"/smsonline/webhook/%2A%2A%2A" in logs
    assert_no_key(logs)
