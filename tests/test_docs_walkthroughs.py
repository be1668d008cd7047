# The commands the docs give a new user, run as written against a real Airflow and the sandbox:
# `airflow connections add` and `airflow connections test` (docs/connection.rst), the "develop
# against the sandbox" walkthrough (docs/sandbox.rst) and the check that the webhook receiver is
# mounted (docs/push.rst).
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_smsonline.testing import LocalAirflow, RunResult
from tests.airflow_server import free_port
from tests.test_sandbox_setup import sandbox_cli as started_sandbox

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def code_blocks(page: str) -> list[str]:
    """The ``.. code:: bash`` blocks of a docs page, dedented, continuation lines joined."""
    text = (DOCS / page).read_text()
    blocks = re.findall(r"\.\. code:: bash\n\n((?:(?:   .*)?\n)+)", text)
    return [re.sub(r"\\\n\s*", "", "\n".join(line[3:] for line in block.splitlines())) for block in blocks]


def commands(page: str, start: str) -> list[str]:
    """Every command line of a docs page's bash blocks that starts with ``start``."""
    return [line for block in code_blocks(page) for line in block.splitlines() if line.startswith(start)]


def on_port(command: str, port: int) -> str:
    return command.replace("127.0.0.1:8765", f"127.0.0.1:{port}").replace('"port": 8765', f'"port": {port}')


@pytest.fixture
def sandbox_cli() -> Iterator[tuple[int, dict[str, str]]]:
    """The sandbox as docs/sandbox.rst starts it (on a free port): its port, and the connection
    it printed, as the environment variable to export."""
    port = free_port()
    with started_sandbox("--port", str(port)) as (_, conn):
        yield port, {"AIRFLOW_CONN_SMSONLINE_DEFAULT": json.dumps(conn)}


def airflow_command(local: LocalAirflow, line: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A documented ``airflow ...`` (or ``VAR=value airflow ...``) line, in ``local``'s home."""
    words = shlex.split(line)
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[0] == "airflow", line
    saved = dict(local.extra_env)
    local.extra_env.update(env)
    try:
        return local.airflow(*words[1:], timeout=300)
    finally:
        local.extra_env.clear()
        local.extra_env.update(saved)


# ----------------------------------------------------------------------------- connections


def test_the_documented_connections_add_and_test_work_and_the_test_needs_its_setting(
    tmp_path: Path, sandbox_cli: tuple[int, dict[str, str]]
) -> None:
    port, _ = sandbox_cli
    local = LocalAirflow(home=tmp_path / "home", dags_folder=tmp_path)
    local.migrate()
    added = [c for c in commands("connection.rst", "airflow connections add") if "127.0.0.1:8765" in c]
    assert len(added) == 1, "docs/connection.rst shows no connections add for the sandbox"
    done = airflow_command(local, on_port(added[0], port))
    assert done.returncode == 0, done.stderr[-3000:]

    tests = commands("connection.rst", "AIRFLOW__CORE__TEST_CONNECTION=Enabled airflow connections test")
    assert tests == ["AIRFLOW__CORE__TEST_CONNECTION=Enabled airflow connections test smsonline_default"]
    without = airflow_command(local, tests[0].partition(" ")[2])
    assert without.returncode == 1
    assert "Testing connections is disabled in Airflow configuration" in without.stdout + without.stderr
    tested = airflow_command(local, tests[0])
    assert tested.returncode == 0 and "Connection success!" in tested.stdout, tested.stdout + tested.stderr

    # The price list reads the same stored connection, as a task would.
    listed = subprocess.run(
        [sys.executable, "-m", "airflow_provider_smsonline", "rent-prices", "--country", "0", "--json"],
        env=local.environ(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert {row["service"] for row in json.loads(listed.stdout.splitlines()[-1])} >= {"tg", "wa"}


# ----------------------------------------------------------------------------- the walkthrough


def run_in_background(local: LocalAirflow, dag_id: str) -> tuple[threading.Thread, list[RunResult]]:
    results: list[RunResult] = []
    thread = threading.Thread(target=lambda: results.append(local.dags_test(dag_id)), daemon=True)
    thread.start()
    return thread, results


def wait_for(what: Callable[[], Any], seconds: float = 180) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError("timed out")


def shell(line: str) -> dict[str, Any]:
    done = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=60, check=True)
    return dict(json.loads(done.stdout))


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walkthrough's commands use curl")
def test_the_sandbox_walkthrough_runs_a_dag_and_sends_its_code_from_the_other_shell(
    tmp_path: Path, sandbox_cli: tuple[int, dict[str, str]]
) -> None:
    port, printed = sandbox_cli
    dags = tmp_path / "dags"
    dags.mkdir()
    for example in ("smsonline_verification_code.py", "smsonline_one_time_code.py"):
        shutil.copy(ROOT / "example_dags" / example, dags / example)
    local = LocalAirflow(home=tmp_path / "home", dags_folder=dags, env=printed)  # the export, as printed
    local.migrate()
    sends = [on_port(line, port) for line in commands("sandbox.rst", "curl -s -X POST")]
    send_sms = next(line for line in sends if "/rentals/latest/sms" in line)
    send_code = next(line for line in sends if "/activations/latest/code" in line)
    [list_state] = [on_port(line, port) for line in commands("sandbox.rst", "curl -s http")]

    thread, results = run_in_background(local, "smsonline_verification_code")
    rental = wait_for(lambda: [r for r in shell(list_state)["rentals"] if r["status"] == "active"])[0]
    delivered = shell(send_sms)  # the rental the run has just rented: no id needed
    thread.join(timeout=300)
    run = results[0]
    assert run.state == "success", run.output[-4000:]
    assert run.xcom("wait_for_code", "code") == "482913" and run.xcom("rent", "id") == rental["id"]
    assert f"Rental {rental['id']} was rented in this DAG run: every SMS on it counts" in run.output
    assert (delivered["rental_id"], delivered["sms"]["text"]) == (rental["id"], "Your code is 482913")

    thread, results = run_in_background(local, "smsonline_one_time_code")
    bought = wait_for(lambda: [a for a in shell(list_state)["activations"] if a["status"] == "waiting"])[0]
    answered = shell(send_code)
    thread.join(timeout=300)
    run = results[0]
    assert run.state == "success", run.output[-4000:]
    assert run.xcom("wait_for_code", "code") == "482913"
    assert answered["id"] == bought["id"] == run.xcom("activate", "id")


# ----------------------------------------------------------------------------- push


@pytest.mark.skipif(shutil.which("curl") is None, reason="the check uses curl")
def test_the_documented_check_tells_a_mounted_receiver_a_wrong_secret_and_none(tmp_path: Path) -> None:
    from tests.airflow_server import AirflowServer

    [check] = commands("push.rst", "curl -s -X POST")
    secret = "first-day-" + os.urandom(12).hex()

    def answer(server: AirflowServer, client_secret: str) -> str:
        env = {  # a shell with the workers' configuration, the venv's python first on its PATH
            **server.local.environ(),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "AIRFLOW__SMSONLINE__WEBHOOK_SECRET": client_secret,
            "AIRFLOW__API__BASE_URL": server.url,
        }
        done = subprocess.run(check, shell=True, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    mounted = AirflowServer(
        tmp_path / "mounted", tmp_path / "dags", env={"AIRFLOW__SMSONLINE__WEBHOOK_SECRET": secret}
    )
    with mounted:
        assert answer(mounted, secret).startswith('{"error": "body must be one of SMS.online\'s webhooks, ')
        assert answer(mounted, secret[::-1]) == '{"error": "not found"}'
    with AirflowServer(tmp_path / "unmounted", tmp_path / "dags") as unmounted:
        assert answer(unmounted, secret) == '{"detail":"Method Not Allowed"}'
