# Runs inside one compatibility-matrix venv (its python, the built wheel installed, no checkout
# on sys.path): every example DAG through `airflow dags test` against the sandbox, the
# connection stored in the metadata DB; then the deferrable wait again with the connection
# read from an environment variable and from a secrets backend; then the account page on a real
# api-server, rendered by headless chromium. Standard library + the wheel.
"""Run the example DAGs for real against the sandbox and report what happened as JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

#: '+', '/' and '=' change under URL encoding: a leak of the encoded form is caught too.
KEY = "mAtrix+key/with=PADDING=="
KEY_FORMS = tuple(dict.fromkeys((KEY, quote_plus(KEY), quote(KEY, safe=""))))
CONN_ID = "smsonline_default"
#: The code each delivered SMS carries; a wait sensor must push exactly it as XCom ``code``.
CODE = "482913"


class Deliverer(threading.Thread):
    """Sends the code once to each rental and activation that something has polled (a wait has
    started: only SMS after the sensor's start count)."""

    def __init__(self, sandbox: Any) -> None:
        super().__init__(daemon=True, name="sms-deliverer")
        self.sandbox = sandbox
        self.delivered: set[tuple[str, int]] = set()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.3):
            try:
                self.deliver(self.sandbox.state())
            except OSError:  # the sandbox is stopping
                return

    def deliver(self, state: dict[str, Any]) -> None:
        for rental in state.get("rentals", []):
            key = ("rental", int(rental["id"]))
            if key not in self.delivered and state.get("polls", {}).get(str(key[1]), 0) >= 1:
                self.sandbox.deliver_sms(
                    key[1], text=f"Your code is {CODE}. Do not share it.", phone_from="Telegram"
                )
                self.delivered.add(key)
        for activation in state.get("activations", []):
            key = ("activation", int(activation["id"]))
            if key not in self.delivered and activation.get("polls", 0) >= 1:
                request = urllib.request.Request(
                    f"{self.sandbox.base_url}/sandbox/activations/{key[1]}/code",
                    data=json.dumps({"code": CODE}).encode(),
                    headers={"Content-Type": "application/json"},
                    method="POST",
                )
                with urllib.request.urlopen(request, timeout=10):
                    self.delivered.add(key)


def dag_ids(folder: Path) -> list[str]:
    found: list[str] = []
    for path in sorted(folder.glob("*.py")):
        found += re.findall(r"""dag_id\s*=\s*["']([\w.-]+)["']""", path.read_text())
    return found


def leaked(path: Path) -> list[str]:
    """The log files under ``path`` that hold any form of the key."""
    hits = []
    for file in path.rglob("*.log"):
        data = file.read_bytes().decode("utf-8", "replace")
        if any(form in data for form in KEY_FORMS):
            hits.append(str(file))
    return hits


def dags_test(airflow: Any, dag_id: str, seconds: float) -> Any:
    """``airflow dags test``; a run that outlasts ``seconds`` is killed and reported as such."""
    from airflow_provider_smsonline.testing import RunResult

    try:
        return airflow.dags_test(dag_id, timeout=seconds)
    except subprocess.TimeoutExpired as expired:
        output = expired.output or ""
        text = output.decode(errors="replace") if isinstance(output, bytes) else output
        return RunResult(dag_id, None, f"timed out after {seconds:.0f} s", -1, text)


def check_run(run: Any, deliverer: Deliverer) -> tuple[list[str], bool]:
    """Problems with a finished run, and whether it waited for an SMS in the trigger."""
    problems = []
    if run.state != "success":
        failed = [f"{t.task_id}={t.state}" for t in run.tasks if t.state != "success"]
        problems.append(f"run ended {run.state!r} (exit {run.returncode}); tasks: {', '.join(failed)}")
    waited = False
    for task in run.tasks:
        if "code" in task.xcoms:
            waited = True
            if task.xcoms["code"] != CODE:
                problems.append(f"{task.task_id} pushed code {task.xcoms['code']!r}, expected {CODE!r}")
    if waited and "deferr" not in run.output.lower():
        problems.append("the wait did not defer to the trigger")
    if waited and not deliverer.delivered:
        problems.append("no SMS was delivered")
    if any(form in run.output for form in KEY_FORMS):
        problems.append("the API key appears in the command's output")
    return problems, waited


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    raise TimeoutError(f"{what} within {seconds:.0f} s")


def check_plugin(airflow: Any) -> list[str]:
    """The webhook receiver registers on this Airflow (the ``airflow.plugins`` entry point) and
    its app is mounted at ``/smsonline`` once ``[smsonline] webhook_secret`` is set."""
    env = airflow.environ()
    env["AIRFLOW__SMSONLINE__WEBHOOK_SECRET"] = "matrix-webhook-secret-0123456789"
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "plugins", "-o", "json"],
        env=env,
        cwd=airflow.home,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        return [f"airflow plugins failed: {done.stderr[-500:]}"]
    listed = json.loads(done.stdout[done.stdout.index("[") :]) if "[" in done.stdout else []
    ours = [p for p in listed if p.get("name") == "smsonline_webhook"]
    if not ours:
        return [f"the webhook plugin is not listed: {done.stdout[-500:]}"]
    if "/smsonline" not in json.dumps(ours[0]):
        return [f"the webhook plugin mounts no /smsonline app: {ours[0]}"]
    return []


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each process's group (the api-server's workers are in it), SIGKILL after 30 s."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _fetch(url: str, timeout: float = 120) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def _answers(url: str) -> bool:
    try:
        return _fetch(url, 5)[0] == 200
    except OSError:  # not listening yet
        return False


def check_account_page(airflow: Any) -> dict[str, Any]:
    """The account page mounts on this Airflow: an api-server (every user an admin) lists it in
    its plugins, serves its code, answers its data for the connection in the metadata DB, and
    headless chromium, opening the page's path in the UI, renders the account with its balance.
    Every answer and the rendered page are checked for the key."""
    port = free_port()
    env = airflow.environ()
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "True"
    base = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {"problems": []}
    problems: list[str] = result["problems"]
    started = time.monotonic()
    out = airflow.home / "account-page-api-server.out"
    with out.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=airflow.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: _answers(base + "/api/v2/monitor/health"), 180, "the API server did not answer")
        answers = []
        status, body = _fetch(base + "/api/v2/plugins")
        answers.append(body)
        apps = (
            [a for p in json.loads(body).get("plugins", []) for a in p.get("react_apps", [])]
            if status == 200
            else []
        )
        page = next((a for a in apps if a.get("name") == "SMS.online"), None)
        if page is None or page.get("url_route") != "smsonline":
            problems.append(f"the page is not among the UI's React apps: {status} {body[-300:]}")
        else:
            status, code = _fetch(urllib.parse.urljoin(base + "/", page["bundle_url"]))
            if status != 200 or 'globalThis["SMS.online"]' not in code:
                problems.append(f"the page's code is not served: {status}")
        data = {}
        for part in ("summary", "rentals"):
            status, body = _fetch(f"{base}/smsonline-account/api/connections/{CONN_ID}/{part}")
            answers.append(body)
            data[part] = json.loads(body) if status == 200 else {}
            if status != 200 or data[part].get("error"):
                problems.append(f"its {part} did not read: {status} {body[-300:]}")
        balance = data["summary"].get("balance")
        result["balance"] = balance
        result["rentals"] = len(data["rentals"].get("rentals", []))
        result["paid_by_dags"] = sorted(
            {r["paid_by"]["dag_id"] for r in data["rentals"].get("rentals", []) if r.get("paid_by")}
        )
        browser = shutil.which("chromium")
        if browser is None:
            note = "chromium not installed: the page was not rendered"
            (problems if os.environ.get("CI") else result.setdefault("notes", [])).append(note)
        else:
            dom = subprocess.run(
                [
                    browser,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--virtual-time-budget=30000",
                    "--dump-dom",
                    f"{base}/plugin/smsonline",
                ],
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            ).stdout
            answers.append(dom)
            result["rendered"] = f"SMS.online account of {CONN_ID}" in dom and f">{balance}<" in dom
            if not result["rendered"]:
                problems.append(f"chromium did not render the account with its balance {balance!r}")
        if any(form in text for text in answers for form in KEY_FORMS):
            problems.append("the API key appears in the page or its answers")
    except (TimeoutError, OSError, ValueError) as error:
        problems.append(str(error))
    finally:
        stop([server])
    result["seconds"] = round(time.monotonic() - started, 1)
    if problems:
        result["output_tail"] = out.read_text(errors="replace")[-3000:]
    return result


def run_with_triggerer(airflow: Any, dag_id: str, seconds: float = 420) -> dict[str, Any]:
    """Run ``dag_id`` as a deployment does: API server, scheduler, DAG processor and a real
    triggerer, whose trigger-runner subprocess talks to its supervisor over Airflow's socket
    channel (unlike ``airflow dags test``, which runs the trigger in line)."""
    port = free_port()
    env = airflow.environ()
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        }
    )
    components = {
        "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(port)],
        "scheduler": ["scheduler"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer"],
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    outputs = {name: airflow.home / f"{name}.out" for name in components}
    result: dict[str, Any] = {"dag": dag_id, "source": "db", "mode": "triggerer"}
    started = time.monotonic()
    try:
        for name, args in components.items():
            with outputs[name].open("wb") as out:
                processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", *args],
                    env=env,
                    cwd=airflow.home,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5):
                    return True
            except OSError:
                return False

        wait_for(healthy, 180, "the API server did not answer")

        def unpaused() -> bool:
            done = subprocess.run(
                [sys.executable, "-m", "airflow", "dags", "unpause", dag_id],
                env=env,
                cwd=airflow.home,
                capture_output=True,
                check=False,
            )
            return done.returncode == 0

        wait_for(unpaused, 180, f"{dag_id} was not parsed")
        subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "trigger", dag_id],
            env=env,
            cwd=airflow.home,
            capture_output=True,
            check=True,
        )

        def finished() -> dict[str, Any] | None:
            run = airflow.last_run(dag_id)
            return run if run["state"] in ("success", "failed") else None

        run = wait_for(finished, seconds, f"{dag_id} did not finish")
        result["state"] = run["state"]
        result["tasks"] = {t["task_id"]: t["state"] for t in run["tasks"]}
        result["code"] = next((t["xcoms"].get("code") for t in run["tasks"] if "code" in t["xcoms"]), None)
    except (TimeoutError, subprocess.CalledProcessError) as error:
        result["state"] = None
        result["error"] = str(error)
    finally:
        stop(list(processes.values()))
    result["seconds"] = round(time.monotonic() - started, 1)
    logs = outputs["triggerer"].read_text(errors="replace")
    logs += "".join(p.read_text(errors="replace") for p in (airflow.home / "logs").rglob("*.log"))
    result["trigger_ran_in_triggerer"] = "Waiting for an SMS on rental" in logs and "matched" in logs
    problems = []
    if result["state"] != "success":
        problems.append(f"run ended {result['state']!r}: {result.get('error') or result.get('tasks')}")
    if result.get("code") != CODE:
        problems.append(f"code {result.get('code')!r}, expected {CODE!r}")
    if not result["trigger_ran_in_triggerer"]:
        problems.append("the triggerer's log does not show the wait and its match")
    result["problems"] = problems
    if problems:
        result["output_tail"] = {
            name: path.read_text(errors="replace")[-3000:] for name, path in outputs.items()
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dags", required=True, type=Path, help="the example DAGs folder")
    parser.add_argument("--home", required=True, type=Path, help="AIRFLOW_HOME to create")
    parser.add_argument(
        "--sources",
        default="env,secrets",
        help="connection sources to run --wait-dag with before the metadata-DB runs (env, secrets)",
    )
    parser.add_argument(
        "--triggerer",
        action="store_true",
        help="also run --wait-dag through a real scheduler and triggerer (slow: about 2 minutes)",
    )
    parser.add_argument("--only", default="", help="comma-separated DAG ids to run (default: every one)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one `dags test` may take")
    parser.add_argument("--wait-dag", default="smsonline_verification_code", help="the DAG that waits")
    parser.add_argument("--out", type=Path, help="write the JSON report here too")
    args = parser.parse_args()

    import airflow_provider_smsonline
    from airflow_provider_smsonline.sandbox import Sandbox
    from airflow_provider_smsonline.testing import LocalAirflow

    report: dict[str, Any] = {"package": airflow_provider_smsonline.__file__, "runs": [], "problems": []}
    if "site-packages" not in report["package"]:
        report["problems"].append(f"the provider was imported from {report['package']}, not the wheel")

    def record(name: str, source: str, run: Any, started: float, deliverer: Deliverer) -> bool:
        problems, waited = check_run(run, deliverer)
        entry = {
            "dag": name,
            "source": source,
            "state": run.state,
            "seconds": round(time.monotonic() - started, 1),
            "deferred_wait": waited,
            "problems": problems,
        }
        if problems:
            entry["output_tail"] = run.output[-4000:]
            report["problems"] += [f"{name} ({source}): {p}" for p in problems]
        report["runs"].append(entry)
        print(f"  {name:32} {source:8} {run.state or '-':8} {entry['seconds']:6.1f} s", flush=True)
        return waited

    with Sandbox(host="127.0.0.1", port=0, api_key=KEY) as sandbox:
        conn = {"conn_type": "smsonline", "host": sandbox.url, "password": KEY, "extra": {"timeout": 20}}
        airflow = LocalAirflow(home=args.home, dags_folder=args.dags)
        started = time.monotonic()
        airflow.migrate()
        report["setup_seconds"] = round(time.monotonic() - started, 1)
        plugin_problems = check_plugin(airflow)
        report["problems"] += plugin_problems
        print(f"  webhook plugin: {plugin_problems if plugin_problems else 'OK'}", flush=True)
        deliverer = Deliverer(sandbox)
        deliverer.start()

        # First the other sources, while the metadata DB has no connection: a run that passes
        # read it from where it was put.
        for source in [s for s in args.sources.split(",") if s]:
            env = dict(airflow.extra_env)
            if source == "env":
                airflow.extra_env[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(conn)
            elif source == "secrets":
                path = args.home / "connections.json"
                path.write_text(json.dumps({CONN_ID: conn}))
                airflow.extra_env["AIRFLOW__SECRETS__BACKEND"] = (
                    "airflow.secrets.local_filesystem.LocalFilesystemBackend"
                )
                airflow.extra_env["AIRFLOW__SECRETS__BACKEND_KWARGS"] = json.dumps(
                    {"connections_file_path": str(path)}
                )
            else:
                raise SystemExit(f"unknown connection source {source!r} (env, secrets)")
            try:
                started = time.monotonic()
                if not record(
                    args.wait_dag, source, dags_test(airflow, args.wait_dag, args.timeout), started, deliverer
                ):
                    report["problems"].append(f"{args.wait_dag} ({source}) did not wait for an SMS")
            finally:
                airflow.extra_env.clear()
                airflow.extra_env.update(env)

        # Then every example DAG with the connection where most users keep it.
        started = time.monotonic()
        added = airflow.airflow("connections", "add", CONN_ID, "--conn-json", json.dumps(conn))
        if added.returncode != 0:
            raise SystemExit(f"airflow connections add failed:\n{added.stdout}\n{added.stderr}")
        report["setup_seconds"] += round(time.monotonic() - started, 1)
        waited = False
        only = {d for d in args.only.split(",") if d}
        for dag_id in [d for d in dag_ids(args.dags) if not only or d in only]:
            started = time.monotonic()
            waited |= record(dag_id, "db", dags_test(airflow, dag_id, args.timeout), started, deliverer)
        if not waited:
            report["problems"].append("no example DAG waited for an SMS in the trigger")
        page = check_account_page(airflow)
        report["account_page"] = page
        report["problems"] += [f"account page: {p}" for p in page["problems"]]
        print(
            f"  account page: {page['problems'] or 'OK'} (balance {page.get('balance')}, "
            f"{page.get('rentals')} rentals, paid by {page.get('paid_by_dags')}, {page['seconds']} s)",
            flush=True,
        )
        if args.triggerer:
            # A home of its own: `dags test` leaves its finished triggers in the DB, and a real
            # triggerer would resume them.
            deployed = LocalAirflow(home=args.home / "deployed", dags_folder=args.dags)
            deployed.migrate()
            added = deployed.airflow("connections", "add", CONN_ID, "--conn-json", json.dumps(conn))
            if added.returncode != 0:
                raise SystemExit(f"airflow connections add failed:\n{added.stdout}\n{added.stderr}")
            proof = run_with_triggerer(deployed, args.wait_dag)
            report["runs"].append(proof)
            report["problems"] += [f"{args.wait_dag} (real triggerer): {p}" for p in proof["problems"]]
            print(
                f"  {args.wait_dag:32} triggerer {proof['state'] or '-':8} {proof['seconds']:6.1f} s",
                flush=True,
            )
        deliverer.stopped.set()

    report["key_leaked_in"] = leaked(args.home)
    if report["key_leaked_in"]:
        report["problems"].append(f"the API key leaked into {report['key_leaked_in']}")
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text)
    for problem in report["problems"]:
        print(f"  PROBLEM: {problem}", flush=True)
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
