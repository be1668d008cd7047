# The fault-injection proof of `make faults` on a production-shaped Airflow: PostgreSQL as the metadata
# DB, Redis as the broker, the CeleryExecutor with two workers, and every Airflow component in its own
# process; one whole worker is killed mid-run as a crash kills it, and restarted.
"""Never pay twice, never lose a rental, never leak the key: on PostgreSQL and the CeleryExecutor.

One command::

    python scripts/faults_celery.py --tasks 100 --fault-rate 0.3 --kills 3 --seed 7

does what ``scripts/fault_run.py`` does (the same sandbox, DAG, faults, task kills and figures;
read its docstring), on this Airflow instead of ``airflow dags test``:

* PostgreSQL (Debian's binaries, ``scripts/ensure_services.sh`` installs them when missing):
  ``initdb`` in a temporary directory (as the ``postgres`` user when run as root, since initdb
  refuses root), a free loopback port, its unix socket in that directory, ``fsync`` off;
* Redis: ``redis-server`` in the same directory, a free loopback port, nothing saved;
* ``airflow api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` and ``--workers`` (2)
  ``airflow celery worker`` processes of ``--slots`` (2) slots each, every one in its own
  process group, with the CeleryExecutor on that PostgreSQL and Redis. The DAG is unpaused and
  triggered; the run ends when its DAG run is final.

After ``--worker-kill-at`` clean getRentNumber answers (default a third of the task instances),
the worker that holds that answer's task is killed as a crash kills it: its process group and
every process descending from it are stopped (SIGSTOP, so none can react), then SIGKILLed; the
worker is started again ``--restart-after`` seconds later. Its task instances are found dead by
the scheduler (``[scheduler] task_instance_heartbeat_timeout``, set to 30 s here) and retried
on the other worker; a message it had taken but not acknowledged comes back after the broker's
visibility timeout (60 s) or, at the latest, the queued timeout (120 s).

``--activations N`` adds N ``ActivateNumberOperator`` task instances (getNumber faulted at the
same rate, in every mode): every activation bought must be held by one successful task
instance, refunded, or named in a failure.

Everything started is stopped at the end (only the processes started here, by their groups) and
the temporary directory is removed. The exit status is 1 when a must-be-zero figure is not 0 or
not every task instance ran.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import fault_run  # noqa: E402
from fault_run import (  # noqa: E402
    DAG_ID,
    DAGS_FOLDER,
    Options,
    RenewalFaults,
    Report,
    WorkerKiller,
    analyse,
    kill_positions,
    print_table,
)

from airflow_provider_smsonline.sandbox import FAULT_MODES, Answered  # noqa: E402

ACTIVATE_TASK_ID = "activate"
POOL = fault_run.POOL
#: What the ledger logs when a failure is ambiguous (the reason follows "lost and").
AMBIGUOUS = re.compile(r"ChargeAmbiguousError|AirflowFailException")


@dataclass
class CeleryOptions(Options):
    """The fault run's options, plus the Celery shape."""

    workers: int = 2
    slots: int = 2
    worker_kill_at: int | None = None
    restart_after: float = 5.0
    activations: int = 0
    activation_kills: int = 2
    heartbeat_timeout: int = 30
    keep: bool = False
    #: Crash a worker mid-run (off for throughput figures).
    crash: bool = True


@dataclass
class Extra:
    """Figures only this run has."""

    worker_killed: dict[str, Any] = field(default_factory=dict)
    worker_restarted: bool = False
    lost_by_heartbeat: int = 0
    requeued_from_queued: int = 0
    ambiguous: list[dict[str, Any]] = field(default_factory=list)
    ambiguous_share: float = 0.0
    activation_task_instances: int = 0
    activation_succeeded: int = 0
    activation_failed: int = 0
    activations_bought: int = 0
    activations_refunded: int = 0
    activations_held: int = 0
    activations_named: int = 0
    double_activations: int = 0
    unaccounted_activations: int = 0
    activation_details: list[str] = field(default_factory=list)
    activation_faults_injected: dict[str, int] = field(default_factory=dict)
    activation_kills: int = 0
    activation_kills_seen: int = 0
    activations_recovered: int = 0
    activations_reused: int = 0
    elapsed_run_s: float = 0.0


# ----------------------------------------------------------------------------- services


def free_port() -> int:
    from tests.airflow_server import free_port as pick

    return pick()


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise SystemExit("PostgreSQL is not installed: run scripts/ensure_services.sh")
    return found[-1].parent


class Services:
    """PostgreSQL and Redis in one temporary directory, and every process started, by group."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.pg_data = base / "pg"
        self.pg_socket = base / "pg-socket"
        self.redis_dir = base / "redis"
        self.pg_port = 0
        self.redis_port = 0
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._pg_started = False
        self._as_user: list[str] = []

    # PostgreSQL refuses to run as root: then it runs as Debian's ``postgres`` user.
    def _owner(self) -> None:
        if os.getuid() != 0:
            return
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
            user = pwd.getpwnam("postgres")
        for path in (self.base, self.pg_data, self.pg_socket):
            os.chown(path, user.pw_uid, user.pw_gid)
        self._as_user = ["runuser", "-u", "postgres", "--"]

    def start_postgres(self) -> str:
        """initdb and start; returns the SQLAlchemy URL of the ``airflow`` database."""
        bin_dir = _pg_bin()
        self.pg_data.mkdir()
        self.pg_socket.mkdir()
        self._owner()
        subprocess.run(
            [
                *self._as_user,
                str(bin_dir / "initdb"),
                "-D",
                str(self.pg_data),
                "-U",
                "airflow",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
        self.pg_port = free_port()
        options = (
            f"-p {self.pg_port} -k {self.pg_socket} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        subprocess.run(
            [
                *self._as_user,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(self.pg_data),
                "-o",
                options,
                "-l",
                str(self.base / "postgres.log"),
                "-w",
                "-t",
                "120",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        self._pg_started = True
        subprocess.run(
            [
                str(bin_dir / "createdb"),
                "-h",
                str(self.pg_socket),
                "-p",
                str(self.pg_port),
                "-U",
                "airflow",
                "airflow",
            ],
            check=True,
            capture_output=True,
        )
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.pg_port}/airflow"

    def start_redis(self) -> str:
        """Start redis-server; returns its URL."""
        self.redis_dir.mkdir()
        self.redis_port = free_port()
        self.spawn(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.redis_dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ],
            env=dict(os.environ),
            log=self.base / "redis.log",
        )
        deadline = time.monotonic() + 60
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.redis_port)
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def spawn(self, name: str, command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        """Start ``command`` in its own process group, output to ``log``."""
        with log.open("ab") as out:
            process = subprocess.Popen(
                command,
                env=env,
                cwd=self.base,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def redis_dump(self) -> None:
        """Write Redis's data to its directory (so the key scan reads the broker's messages too)."""
        import redis

        with contextlib.suppress(redis.RedisError):
            redis.Redis(host="127.0.0.1", port=self.redis_port).save()

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            fault_run._end_group(process, grace=15.0)  # type: ignore[arg-type]

    def close(self) -> None:
        """Stop everything started here (Airflow first, then Redis and PostgreSQL)."""
        for name in [n for n in self.processes if n != "redis"]:
            self.stop(name)
        self.stop("redis")
        if self._pg_started:
            subprocess.run(
                [
                    *self._as_user,
                    str(_pg_bin() / "pg_ctl"),
                    "-D",
                    str(self.pg_data),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                capture_output=True,
                check=False,
            )
            self._pg_started = False

    def query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """A query on the metadata DB (``?`` placeholders, as fault_run's)."""
        import psycopg2

        db = psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="airflow", dbname="airflow")
        try:
            with db.cursor() as cursor:
                cursor.execute(sql.replace("?", "%s"), params)
                return list(cursor.fetchall())
        finally:
            db.close()


# ----------------------------------------------------------------------------- killing a worker


def crash(root: int) -> list[int]:
    """Kill a worker as a crash does: its process group and every descendant (task processes
    have their own groups), stopped first so that none reacts, then SIGKILLed."""
    import psutil

    try:
        tree = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.Error:
        tree = []
    groups = {root}
    for proc in tree:
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(proc.pid))
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for group in groups:
            with contextlib.suppress(OSError):
                os.killpg(group, sig)
        for proc in tree:
            with contextlib.suppress(OSError):
                os.kill(proc.pid, sig)
    return sorted(p.pid for p in tree)


# ----------------------------------------------------------------------------- the run


def airflow_env(options: CeleryOptions, db_url: str, broker: str, home: Path) -> dict[str, str]:
    """The configuration every Airflow process shares."""
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__CORE__EXECUTOR": "airflow.providers.celery.executors.celery_executor.CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(options.workers * options.slots * 2),
        "AIRFLOW__CELERY__BROKER_URL": broker,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(options.slots),
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
        # A message a lost worker took comes back to the queue after this (Airflow's default: 24 h).
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "60",
        # A lost worker's running task instances are found dead after this (default 300 s) ...
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(options.heartbeat_timeout),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        # ... and queued ones whose message never ran are queued again after this (default 600 s).
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "SMSONLINE_FAULT_TASKS": str(options.tasks),
        "SMSONLINE_FAULT_RETRIES": str(options.retries),
        "SMSONLINE_FAULT_RENEWALS": str(fault_run._renewals(options)),
        "SMSONLINE_FAULT_ACTIVATIONS": str(options.activations),
        "SMSONLINE_FAULT_POOL": POOL if options.pool else "",
        **fault_run.lease_env(options),
    }


class ActivationFaults(RenewalFaults):
    """Seeded faults on getNumber, at the run's rate, in every mode (see RenewalFaults)."""

    action = "getNumber"


def run(options: CeleryOptions) -> tuple[Report, Extra]:
    """Start everything, run the DAG, kill and restart a worker, measure; see the docstring."""
    from tests.airflow_server import AirflowServer

    report = Report(options.tasks, options.fault_rate, options.seed, options.workers * options.slots)
    report.require_success = options.require_success
    report.kills_requested = options.kills
    extra = Extra()
    began = time.monotonic()
    killer = WorkerKiller(kill_positions(options), sandbox_port=0)
    positions = random.Random(options.seed + 2).sample(
        range(1, max(2, int(options.activations * 0.6))),
        min(options.activation_kills, options.activations // 4),
    )
    activation_killer = WorkerKiller(positions, sandbox_port=0, action="getNumber")
    hooks: list[Any] = [activation_killer]

    def after_answer(answered: Answered) -> None:
        killer(answered)
        for hook in hooks:
            hook(answered)

    sandbox, delays = fault_run.fault_sandbox(options, after_answer, options.tasks + options.activations)
    hooks.append(RenewalFaults(sandbox, options.fault_rate, options.seed, delays))
    if options.activations:
        hooks.append(ActivationFaults(sandbox, options.fault_rate, options.seed + 1, delays))
    for hook in hooks:
        if isinstance(hook, RenewalFaults):
            hook.arm()
    report.renewals_requested = fault_run._renewals(options)
    workers: dict[str, int] = {}
    kill_at = options.worker_kill_at or max(2, options.tasks // 3)
    state: dict[str, Any] = {}
    base = Path(tempfile.mkdtemp(prefix="smsonline-celery-"))
    home = base / "airflow"
    home.mkdir()
    services = Services(base)
    try:
        with sandbox:
            killer.sandbox_port = activation_killer.sandbox_port = sandbox.port
            db_url = services.start_postgres()
            broker = services.start_redis()
            env = airflow_env(options, db_url, broker, home)
            server = AirflowServer(home=home, dags_folder=DAGS_FOLDER, env=env)
            server.local.use_sandbox(sandbox, timeout=options.timeout, read_retries=2, retry_backoff=0)
            with server:
                server.local.extra_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = server.url + "/execution/"
                environ = server.local.environ()
                airflow = [sys.executable, "-m", "airflow"]
                # Logs are read from the shared AIRFLOW_HOME: no log servers (fixed ports, all interfaces).
                for name, args in (
                    ("scheduler", []),
                    ("dag-processor", []),
                    ("triggerer", ["--skip-serve-logs"]),
                ):
                    services.spawn(name, [*airflow, name, *args], environ, home / f"{name}.log")

                def start_worker(index: int) -> None:
                    name = f"worker-{index}"
                    process = services.spawn(
                        name,
                        [
                            *airflow,
                            "celery",
                            "worker",
                            "--concurrency",
                            str(options.slots),
                            "--celery-hostname",
                            f"{name}@%h",
                            "--without-mingle",
                            "--skip-serve-logs",
                            "--without-gossip",
                        ],
                        environ,
                        home / f"{name}.log",
                    )
                    workers[name] = process.pid
                    killer.watch(process.pid)
                    activation_killer.watch(process.pid)

                for index in range(options.workers):
                    start_worker(index)

                crashed = threading.Event()

                def on_clean_answer(count: int, owner: int | None) -> None:
                    if not options.crash or count < kill_at or crashed.is_set() or owner is None:
                        return
                    root = killer.root_of(owner)
                    name = next((n for n, pid in workers.items() if pid == root), None)
                    if name is None:
                        return
                    crashed.set()
                    killer.unwatch(root)  # type: ignore[arg-type]
                    activation_killer.unwatch(root)  # type: ignore[arg-type]
                    pids = crash(root)  # type: ignore[arg-type]
                    services.processes.pop(name, None)
                    extra.worker_killed = {
                        "worker": name,
                        "after_clean_answers": count,
                        "processes": len(pids),
                        "at_s": round(time.monotonic() - began, 1),
                    }

                    def restart() -> None:
                        time.sleep(options.restart_after)
                        start_worker(int(name.split("-")[1]))
                        extra.worker_restarted = True

                    threading.Thread(target=restart, daemon=True).start()

                killer.on_clean_answer = on_clean_answer
                _wait_for_dag(services, home)
                report.elapsed_startup_s = round(time.monotonic() - began, 1)
                started = time.monotonic()
                commands = [("dags", "unpause", DAG_ID), ("dags", "trigger", DAG_ID)]
                if options.pool:
                    commands.insert(0, ("pools", "set", POOL, str(options.pool), "one SMS.online account"))
                for args in commands:
                    done = server.local.airflow(*args, timeout=300)
                    if done.returncode != 0:
                        raise RuntimeError(f"airflow {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
                deadline = time.monotonic() + max(900, options.tasks * 12)
                while time.monotonic() < deadline:
                    rows = services.query(
                        "SELECT state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (DAG_ID,)
                    )
                    if rows and rows[0][0] in ("success", "failed"):
                        break
                    time.sleep(3)
                report.elapsed_dags_test_s = round(time.monotonic() - started, 1)
                extra.elapsed_run_s = report.elapsed_dags_test_s
                killer.stop()
                activation_killer.stop()
                extra.activation_kills = len(activation_killer.kills)
                for name in [n for n in services.processes if n.startswith("worker-")]:
                    services.stop(name)
            state = sandbox.state()
        services.redis_dump()
        scheduler_log = (home / "scheduler.log").read_text(errors="replace")
        extra.lost_by_heartbeat = scheduler_log.count("Detected a task instance without a heartbeat")
        extra.requeued_from_queued = scheduler_log.count("Task stuck in queued; will try to requeue")
        output = "\n".join(path.read_text(errors="replace") for path in sorted(home.glob("*.log")))
        analyse(
            report, home, output, state, killer, query=services.query, scanned=[base / "pg", base / "redis"]
        )
        analyse_ambiguous(report, extra, home, services)
        if options.activations:
            analyse_activations(extra, home, state, services)
    finally:
        killer.stop()
        activation_killer.stop()
        services.close()
        if options.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    report.elapsed_total_s = round(time.monotonic() - began, 1)
    return report, extra


def _wait_for_dag(services: Services, home: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if services.query("SELECT 1 FROM serialized_dag WHERE dag_id = ?", (DAG_ID,)):
                return
        except Exception:
            pass
        time.sleep(1)
    raise TimeoutError(f"the dag-processor did not parse {DAG_ID} in time; see {home}/dag-processor.log")


def analyse_ambiguous(report: Report, extra: Extra, home: Path, services: Services) -> None:
    """The task instances that failed as ambiguous, and why (the reason the ledger gave)."""
    for task_id in (fault_run.TASK_ID, fault_run.RENEW_TASK_ID, ACTIVATE_TASK_ID):
        _, tis = fault_run.read_task_instances(home, task_id, services.query)
        for ti in sorted(tis.values(), key=lambda t: t.map_index):
            if ti.state != "failed" or fault_run._failure_kind(ti.errors) != "ambiguous":
                continue
            messages = re.findall(r'"exc_value":"((?:[^"\\]|\\.)*)"', ti.errors)
            reason = next((m for m in reversed(messages) if "lost" in m), messages[-1] if messages else "")
            why = re.search(r"lost(?: its answer \([^)]*\))? and (.*?)(?:[:;] |\.? Keep|\.? Check|$)", reason)
            extra.ambiguous.append(
                {"task": task_id, "map_index": ti.map_index, "why": (why.group(1) if why else reason)[:200]}
            )
    total = report.task_instances + report.renew_task_instances + extra.activation_task_instances
    extra.ambiguous_share = round(len(extra.ambiguous) / total, 4) if total else 0.0


def analyse_activations(extra: Extra, home: Path, state: dict[str, Any], services: Services) -> None:
    """Every activation bought: held by one successful task instance, refunded, or named."""
    _, tis = fault_run.read_task_instances(home, ACTIVATE_TASK_ID, services.query)
    extra.activation_task_instances = len(tis)
    states = Counter(ti.state for ti in tis.values())
    extra.activation_succeeded = states.get("success", 0)
    extra.activation_failed = states.get("failed", 0)
    holders: dict[int, list[int]] = {}
    for ti in tis.values():
        if ti.state == "success" and ti.xcom_id is not None:
            holders.setdefault(ti.xcom_id, []).append(ti.map_index)
    named = set()
    for ti in tis.values():
        if ti.state == "failed":
            named |= fault_run._named_ids(ti.errors)
    bought = state.get("activations", [])
    extra.activations_bought = len(bought)
    for activation in bought:
        activation_id = int(activation["id"])
        if activation.get("refunded"):
            extra.activations_refunded += 1
        elif activation_id in holders:
            extra.activations_held += 1
        elif activation_id in named:
            extra.activations_named += 1
        else:
            extra.unaccounted_activations += 1
            extra.activation_details.append(
                f"activation {activation_id}: bought, not refunded, held or named"
            )
    for activation_id, held_by in holders.items():
        if len(held_by) > 1:
            extra.double_activations += 1
            extra.activation_details.append(f"activation {activation_id} is held by {sorted(held_by)}")
    logs = "\n".join(ti.log for ti in tis.values())
    extra.activation_kills_seen = logs.count('"signal_name":"SIGKILL"')
    extra.activations_recovered = len(set(re.findall(r"Recovered activation (\d+)", logs)))
    extra.activations_reused = len(set(re.findall(r"already bought activation (\d+)", logs)))
    injected = state.get("faults_injected", {}).get("getNumber", {})
    extra.activation_faults_injected = {mode: int(injected.get(mode, 0)) for mode in FAULT_MODES}


def print_extra(report: Report, extra: Extra, options: CeleryOptions) -> bool:
    """This run's own figures; returns whether they are as they must be."""
    rows = [
        ("executor", f"CeleryExecutor, {options.workers} workers x {options.slots} slots, PostgreSQL, Redis"),
        ("pool of the charging tasks", f"{POOL}, {options.pool} slot(s)" if options.pool else "none"),
        ("run (trigger to final state)", f"{extra.elapsed_run_s} s"),
        ("worker crashed (process group SIGKILLed)", json.dumps(extra.worker_killed) or "none"),
        ("  restarted", str(extra.worker_restarted)),
        ("  task instances found dead (no heartbeat)", str(extra.lost_by_heartbeat)),
        ("  task instances queued again (stuck in queued)", str(extra.requeued_from_queued)),
        ("failed as ambiguous", f"{len(extra.ambiguous)} ({extra.ambiguous_share:.1%} of task instances)"),
    ]
    if options.activations:
        rows += [
            ("activate task instances", f"{extra.activation_task_instances} of {options.activations} asked"),
            ("  succeeded / failed", f"{extra.activation_succeeded} / {extra.activation_failed}"),
            ("activations bought", str(extra.activations_bought)),
            (
                "  held / refunded / named in a failure",
                f"{extra.activations_held} / {extra.activations_refunded} / {extra.activations_named}",
            ),
            (
                "task kills after a getNumber answer",
                f"{extra.activation_kills} (seen by Airflow {extra.activation_kills_seen})",
            ),
            (
                "activations recovered / reused",
                f"{extra.activations_recovered} / {extra.activations_reused}",
            ),
            ("double activations     [must be 0]", str(extra.double_activations)),
            ("unaccounted activations [must be 0]", str(extra.unaccounted_activations)),
            (
                "faults injected (getNumber)",
                ", ".join(f"{m} {c}" for m, c in extra.activation_faults_injected.items())
                + f" = {sum(extra.activation_faults_injected.values())}",
            ),
        ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    for item in extra.ambiguous:
        print(f"  ambiguous: {item['task']}[{item['map_index']}]: {item['why']}")
    for detail in extra.activation_details:
        print(f"  ! {detail}")
    ok = (
        ((bool(extra.worker_killed) and extra.worker_restarted) or not options.crash)
        and not extra.double_activations
        and not extra.unaccounted_activations
        and extra.activation_task_instances == options.activations
        and extra.activation_succeeded + extra.activation_failed == options.activations
        and not (options.require_success and extra.activation_failed)
    )
    if not extra.worker_killed and options.crash:
        print("  ! no worker was crashed")
    # The run must have met what it claims to: every fault mode, a task kill, a recovery.
    random = options.fault_rate > 0  # a run of --burst alone faults no other way
    met = {
        "every fault mode injected into getRentNumber": all(
            report.faults_injected.get(m) for m in FAULT_MODES
        )
        or not random,
        "the burst's answers lost": report.faults_injected.get("timeout_after_commit", 0) >= options.burst,
        "a task process SIGKILLed after an answer": report.kills_performed >= 1,
        "a rental recovered by reconciliation": report.recovered_by_reconciliation >= 1,
        "renewals faulted": sum(report.renewal_faults_injected.values()) >= 1
        or not report.renewals_requested
        or not random,
        "getNumber faulted": sum(extra.activation_faults_injected.values()) >= 1
        or not options.activations
        or not random,
        "a task process SIGKILLed after a getNumber answer": extra.activation_kills >= 1
        or options.activations < 4
        or not options.activation_kills,
    }
    for what, done in met.items():
        if not done:
            print(f"  ! not met: {what}")
    return ok and all(met.values())


def parse_args(argv: list[str] | None) -> CeleryOptions:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--kills", type=int, default=3, help="task processes SIGKILLed after an answer")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=1.5)
    parser.add_argument("--hold", type=float, default=3.0)
    parser.add_argument("--slow", type=float, default=0.5)
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--renewals", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2, help="airflow celery worker processes")
    parser.add_argument("--slots", type=int, default=2, help="each worker's concurrency")
    parser.add_argument("--worker-kill-at", type=int, default=None, help="clean answers before the crash")
    parser.add_argument("--restart-after", type=float, default=5.0)
    parser.add_argument("--activations", type=int, default=0, help="ActivateNumberOperator task instances")
    parser.add_argument("--activation-kills", type=int, default=2, help="kills after a getNumber answer")
    parser.add_argument("--heartbeat-timeout", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--no-crash", dest="crash", action="store_false", help="crash no worker")
    parser.add_argument("--json", dest="json_path", type=Path, default=None)
    fault_run.add_common_arguments(parser)
    args = parser.parse_args(argv)
    return CeleryOptions(**vars(args), parallelism=args.workers * args.slots)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        report, extra = run(options)
    except KeyboardInterrupt:
        print("fault run interrupted; everything it started was stopped", file=sys.stderr)
        return 130
    print_table(report, options)
    extra_ok = print_extra(report, extra, options)
    ok = report.ok and extra_ok
    print("RESULT (Celery):", "OK" if ok else "FAILED")
    if options.json_path is not None:
        figures = {**asdict(report), **asdict(extra), "must_be_zero": report.must_be_zero, "ok": ok}
        options.json_path.write_text(json.dumps(figures, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
