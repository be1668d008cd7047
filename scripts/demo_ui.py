# `make demo-ui`: the SMS.online sandbox and `airflow standalone` wired together, for clicking
# around. Every part is watched: one that does not start, or stops, ends the demo with its name
# and the last lines it wrote, instead of a UI that never answers.
"""Start the SMS.online sandbox and ``airflow standalone`` (UI, REST API, scheduler, DAG processor,
triggerer) on 127.0.0.1, with connection ``smsonline_default`` pointing at the sandbox and the
example DAGs loaded; print the URL and ready commands to trigger an example DAG."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The bin directory of the environment this script runs in: standalone starts its parts as a bare
#: ``airflow``, so this directory goes first on their PATH.
BIN = Path(sys.executable).parent
#: The parts `airflow standalone` starts besides the API server, as `airflow <part>`, and their
#: names in the health endpoint's answer.
PARTS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
PART_TITLE = re.compile(r"airflow\S* (api[-_]server|scheduler|dag[-_]processor|triggerer)\b")
#: The example DAG the printed commands trigger, and the conf they give it.
EXAMPLE_DAG = "smsonline_rent_manual"
EXAMPLE_CONF = {"service": "tg", "country": 0, "rent_time": 4}


class DemoFailed(Exception):
    """A part of the demo did not start or stopped; the message says which and why."""


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def get_json(url: str, token: str | None = None, method: str = "GET", body: Any = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def tail(path: Path, lines: int = 25, part: str | None = None) -> str:
    """The last lines of standalone's log (of one part's, when named)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no output)"
    if part is not None:
        text = [line for line in text if line.startswith(part)] or text
    return "\n".join(text[-lines:])


class Standalone:
    """``airflow standalone`` in its own process group, its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.seen: set[str] = set()
        self.parts_started_at: float | None = None

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(BIN / "airflow"), "standalone"],
                env=self.env,
                cwd=self.env["AIRFLOW_HOME"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def running_parts(self) -> set[str]:
        """The parts (``airflow scheduler`` …) running as standalone's children now."""
        import psutil

        assert self.process is not None
        parts: set[str] = set()
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return parts
        for child in children:
            try:
                command = child.cmdline()
            except psutil.Error:
                continue
            # A part may retitle itself ("airflow api_server -- host:..."): read its name.
            found = re.search(
                r"airflow\S* (api[-_]server|scheduler|dag[-_]processor|triggerer)\b", " ".join(command)
            )
            if found:
                parts.add(found.group(1).replace("_", "-"))
        return parts

    def check(self) -> None:
        """Raise :class:`DemoFailed` when standalone or one of its parts has stopped."""
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            raise DemoFailed(f"airflow standalone exited with code {code}:\n{tail(self.log)}")
        text = self.log.read_text(errors="replace")
        if "Exception in thread" in text:
            raise DemoFailed(
                "a part of airflow standalone could not be started (its thread raised):\n" + tail(self.log)
            )
        running = self.running_parts()
        gone = self.seen - running
        self.seen |= running
        if gone:
            part = sorted(gone)[0]
            raise DemoFailed(f"airflow {part} stopped:\n{tail(self.log, part=part)}")
        # Standalone starts its four parts together: one missing well after the others ended early.
        if running and self.parts_started_at is None:
            self.parts_started_at = time.monotonic()
        never = {"api-server", *PARTS} - self.seen
        if never and self.parts_started_at is not None and time.monotonic() - self.parts_started_at > 20:
            part = sorted(never)[0]
            raise DemoFailed(f"airflow {part} did not start:\n{tail(self.log, part=part)}")

    def stop(self) -> None:
        """End standalone and every process of its group (the API server's workers too)."""
        if self.process is None:
            return
        group = self.process.pid
        with _suppress_lookup():
            os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _group_alive(group):
            self.process.poll()
            time.sleep(0.5)
        with _suppress_lookup():
            os.killpg(group, signal.SIGKILL)
        self.process.wait(timeout=10)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, ProcessLookupError)


def wait_until_ready(standalone: Standalone, url: str, deadline: float) -> str:
    """Wait until every part is healthy and the example DAGs are parsed; return an API token."""
    health: dict[str, Any] = {}
    waiting_for = "the API server"
    expected = {path.stem for path in (ROOT / "example_dags").glob("smsonline_*.py")}
    while time.monotonic() < deadline:
        standalone.check()
        try:
            health = get_json(url + "/api/v2/monitor/health")
        except (urllib.error.URLError, OSError, ValueError):
            time.sleep(1)
            continue
        unhealthy = [
            name
            for name in ("metadatabase", *PARTS.values())
            if (health.get(name) or {}).get("status") != "healthy"
        ]
        if unhealthy:
            waiting_for = ", ".join(unhealthy)
            time.sleep(1)
            continue
        token = get_json(url + "/auth/token")["access_token"]
        dags = get_json(url + "/api/v2/dags?limit=100&tags=smsonline", token)["dags"]
        missing = expected - {dag["dag_id"] for dag in dags}
        if not missing:
            return str(token)
        waiting_for = "the DAG processor to parse " + ", ".join(sorted(missing))
        time.sleep(1)
    raise DemoFailed(
        f"not ready in time: still waiting for {waiting_for}.\nHealth: {json.dumps(health)}\n"
        f"Last lines of airflow standalone:\n{tail(standalone.log)}"
    )


def commands(url: str, env: dict[str, str]) -> tuple[str, str]:
    """The CLI and REST commands that trigger the example DAG, ready to paste."""
    conf = json.dumps(EXAMPLE_CONF)
    cli = (
        f"AIRFLOW_HOME={shlex.quote(env['AIRFLOW_HOME'])} "
        f"AIRFLOW__CORE__DAGS_FOLDER={shlex.quote(env['AIRFLOW__CORE__DAGS_FOLDER'])} "
        f"{shlex.quote(str(BIN / 'airflow'))} dags trigger {EXAMPLE_DAG} --conf {shlex.quote(conf)}"
    )
    body = json.dumps({"logical_date": None, "conf": EXAMPLE_CONF})
    rest = (
        # No-login mode: GET /auth/token hands out an admin token (POST wants a username).
        f"TOKEN=$(curl -s {url}/auth/token | {shlex.quote(sys.executable)} -c "
        "'import json,sys; print(json.load(sys.stdin)[\"access_token\"])') && "
        f"curl -s -X POST {url}/api/v2/dags/{EXAMPLE_DAG}/dagRuns "
        '-H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" '
        f"-d {shlex.quote(body)}"
    )
    return cli, rest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", default=str(ROOT / ".airflow_home" / "ui"), help="AIRFLOW_HOME to use")
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("DEMO_UI_TIMEOUT", "300")),
        help="seconds every part may take to start (env DEMO_UI_TIMEOUT)",
    )
    args = parser.parse_args()
    airflow_port = int(os.environ.get("AIRFLOW_PORT", "8080"))
    sandbox_port = int(os.environ.get("SANDBOX_PORT", "8765"))
    for name, port in (("AIRFLOW_PORT", airflow_port), ("SANDBOX_PORT", sandbox_port)):
        if not port_is_free(port):
            print(f"[demo-ui] port {port} on 127.0.0.1 is in use: set {name} to a free one", file=sys.stderr)
            return 1

    home = Path(args.home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(airflow_port),
            "AIRFLOW__API__WORKERS": "1",
            # Task processes report to the Execution API at this URL (by default port 8080's).
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{airflow_port}/execution/",
        }
    )
    url = f"http://127.0.0.1:{airflow_port}"

    from airflow_provider_smsonline.sandbox import Sandbox

    standalone = Standalone(env, home / "standalone.log")

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    started = time.monotonic()
    try:
        with Sandbox(host="127.0.0.1", port=sandbox_port, api_key="sandbox") as sandbox:
            print(f"[demo-ui] SMS.online sandbox listening on {sandbox.url}", flush=True)
            print(f"[demo-ui] Airflow home {home}: creating the metadata DB (about 10 s)", flush=True)
            airflow = [str(BIN / "airflow")]
            done = subprocess.run([*airflow, "db", "migrate"], env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise DemoFailed(f"airflow db migrate failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
            subprocess.run(
                [*airflow, "connections", "delete", "smsonline_default"], env=env, capture_output=True
            )
            # The port is stored: Airflow 3.3.2's Test button refuses a connection without one.
            done = subprocess.run(
                [
                    *airflow,
                    "connections",
                    "add",
                    "smsonline_default",
                    "--conn-type",
                    "smsonline",
                    "--conn-host",
                    sandbox.url,
                    "--conn-port",
                    str(sandbox_port),
                    "--conn-password",
                    "sandbox",
                    "--conn-extra",
                    json.dumps(sandbox.connection()["extra"]),
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise DemoFailed(f"adding connection smsonline_default failed:\n{done.stderr[-3000:]}")
            print(
                f"[demo-ui] Starting airflow standalone (API server, scheduler, DAG processor, triggerer; "
                f"about 30 to 90 s, at most {args.timeout:.0f} s). Its log: {standalone.log}",
                flush=True,
            )
            standalone.start()
            token = wait_until_ready(standalone, url, time.monotonic() + args.timeout)
            get_json(f"{url}/api/v2/dags/{EXAMPLE_DAG}", token, method="PATCH", body={"is_paused": False})
            cli, rest = commands(url, env)
            print(
                f"""
[demo-ui] Ready in {time.monotonic() - started:.0f} s.
  Airflow UI:  {url}  (no login; every user is an admin)
  Connection:  smsonline_default -> the sandbox at {sandbox.url} (API key "sandbox"); the
               Test button works on it (Admin -> Connections)
  Example DAGs: {", ".join(sorted(p.stem for p in (ROOT / "example_dags").glob("smsonline_*.py")))}
               ({EXAMPLE_DAG} is unpaused; the others start paused)

  Trigger {EXAMPLE_DAG} from a shell:
    {cli}
  or through the REST API:
    {rest}

  Ctrl-C stops everything.""",
                flush=True,
            )
            while True:
                standalone.check()
                time.sleep(2)
    except DemoFailed as failure:
        print(f"\n[demo-ui] FAILED: {failure}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\n[demo-ui] Stopping.", flush=True)
        return 0
    finally:
        standalone.stop()


if __name__ == "__main__":
    sys.exit(main())
