# `make demo-ui` as a new user meets it: from a fresh copy of the source, with nothing of the venv
# on PATH, it starts the sandbox and `airflow standalone`, the UI answers with the example DAGs and
# the connection, the commands it prints trigger a DAG that succeeds, and a part that stops ends
# the demo with that part's name instead of a UI that never answers.
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_server import free_port
from tests.test_packaging import NOT_SOURCE, ROOT

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

EXAMPLE_DAGS = {path.stem for path in (ROOT / "example_dags").glob("smsonline_*.py")}


@dataclass
class DemoUi:
    """A running `make demo-ui` in a fresh copy of the source."""

    process: subprocess.Popen[bytes]
    log: Path
    url: str
    sandbox_port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output())
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(1)
        raise AssertionError(f"no {pattern!r} in the output of make demo-ui:\n{self.output()[-5000:]}")

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + "/auth/token", timeout=10) as response:
            token = json.loads(response.read())["access_token"]
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def fresh_copy(tmp: Path) -> Path:
    """The source tree as a clone has it, with this environment as its venv (make's venv step,
    which `make -o` marks done, is the same `pip install` this environment was built with)."""
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    (source / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    return source


def start(source: Path, timeout: float = 420, airflow_port: int | None = None) -> DemoUi:
    import airflow

    airflow_port, sandbox_port = airflow_port or free_port(), free_port()
    while sandbox_port == airflow_port:
        sandbox_port = free_port()
    # A user's shell: the venv's bin directory is not on PATH (standalone's parts need it).
    env = {
        "HOME": os.environ.get("HOME", "/root"),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "AIRFLOW_PORT": str(airflow_port),
        "SANDBOX_PORT": str(sandbox_port),
        "DEMO_UI_TIMEOUT": str(timeout),
    }
    log = source / "demo-ui.out"
    version = airflow.__version__
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["make", "-o", f".venv/.installed-{version}", f"AIRFLOW_VERSION={version}", "demo-ui"],
            cwd=source,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return DemoUi(process, log, f"http://127.0.0.1:{airflow_port}", sandbox_port)


def descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def command_line(pid: int) -> str:
    import psutil

    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:  # gone, or a zombie
        return ""


def stop(demo: DemoUi) -> None:
    """End the demo (as Ctrl-C would) and whatever it left."""
    import psutil

    left = descendants(demo.process.pid)
    if demo.process.poll() is None:
        os.killpg(demo.process.pid, 2)  # SIGINT to make and the script, as a terminal's Ctrl-C
        try:
            demo.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.process.pid, 9)
            demo.process.wait(timeout=10)
    for pid in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoUi]:
    demo = start(fresh_copy(tmp_path_factory.mktemp("demo-ui")))
    try:
        demo.wait_for(r"\[demo-ui\] Ready in \d+ s", timeout=480)
        yield demo
    finally:
        stop(demo)


def test_the_ui_answers_on_its_port_with_the_example_dags(demo: DemoUi) -> None:
    assert demo.url in demo.output()
    with urllib.request.urlopen(demo.url + "/", timeout=10) as response:
        assert response.status == 200
        assert "<html" in response.read().decode().lower()
    dags = demo.api("/api/v2/dags?limit=100")["dags"]
    assert {dag["dag_id"] for dag in dags} >= EXAMPLE_DAGS
    health = demo.api("/api/v2/monitor/health")
    for part in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[part]["status"] == "healthy", part


def test_the_connection_points_at_the_sandbox_with_its_port_stored(demo: DemoUi) -> None:
    connection = demo.api("/api/v2/connections/smsonline_default")
    assert connection["conn_type"] == "smsonline"
    assert connection["host"] == f"http://127.0.0.1:{demo.sandbox_port}/stubs/handler_api.php"
    assert connection["port"] == demo.sandbox_port  # 3.3.2's Test button needs a stored port


def test_the_printed_cli_and_rest_commands_trigger_a_run_that_succeeds(demo: DemoUi) -> None:
    output = demo.output()
    cli = output.split("from a shell:\n", 1)[1].splitlines()[0].strip()
    rest = output.split("through the REST API:\n", 1)[1].splitlines()[0].strip()
    assert " dags trigger smsonline_rent_manual " in cli
    assert "/auth/token" in rest and "/dagRuns" in rest
    shell = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    before = {run["dag_run_id"] for run in demo.api("/api/v2/dags/smsonline_rent_manual/dagRuns")["dag_runs"]}
    runs = [
        subprocess.run(["bash", "-c", c], env=shell, capture_output=True, text=True, timeout=120)
        for c in (cli, rest)
    ]
    for done in runs:
        assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(runs[1].stdout)
    shown = runs[1].stdout + runs[1].stderr
    assert answer.get("state") == "queued" and answer["conf"]["service"] == "tg", shown

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        runs = demo.api("/api/v2/dags/smsonline_rent_manual/dagRuns")["dag_runs"]
        new = {run["dag_run_id"]: run["state"] for run in runs if run["dag_run_id"] not in before}
        if len(new) == 2 and set(new.values()) <= {"success", "failed"}:
            break
        time.sleep(3)
    assert list(new.values()) == ["success"] * 2, new


def test_a_part_that_stops_ends_the_demo_naming_it(demo: DemoUi) -> None:
    import psutil

    # Runs after the other tests of the shared demo (pytest keeps file order): it ends the demo.
    started = descendants(demo.process.pid)
    triggerers = [pid for pid in started if "triggerer" in command_line(pid)]
    # The part standalone started (the triggerer runs its triggers in a child process of its own).
    (triggerer,) = [pid for pid in triggerers if psutil.Process(pid).ppid() not in triggerers]
    psutil.Process(triggerer).kill()
    demo.process.wait(timeout=90)
    assert demo.process.returncode != 0
    assert "[demo-ui] FAILED: airflow triggerer stopped" in demo.output()
    assert [
        pid for pid in started if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
    ] == []


def test_a_demo_that_cannot_start_in_time_says_what_it_waited_for(tmp_path: Path) -> None:
    demo = start(fresh_copy(tmp_path), timeout=3)  # a deadline no Airflow start can meet
    try:
        demo.process.wait(timeout=180)
        assert demo.process.returncode != 0
        failure = demo.output().split("[demo-ui] FAILED: ", 1)[1]
        assert failure.startswith("not ready in time: still waiting for ")
        assert "Last lines of airflow standalone:" in failure
    finally:
        stop(demo)


def test_a_port_in_use_is_named_before_anything_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = start(fresh_copy(tmp_path), airflow_port=port)
        try:
            demo.process.wait(timeout=120)
        finally:
            stop(demo)
    assert demo.process.returncode != 0
    assert f"[demo-ui] port {port} on 127.0.0.1 is in use: set AIRFLOW_PORT to a free one" in demo.output()
    assert "airflow standalone" not in demo.output()
