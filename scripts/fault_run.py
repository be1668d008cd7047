# The fault-injection proof behind `make faults`: hundreds of real Airflow task instances rent numbers
# from the sandbox while it fails on purpose and workers are SIGKILLed; then every charge is accounted for.
"""Never pay twice, never lose a rental, never leak the key: measured under injected faults.

One command::

    python scripts/fault_run.py --tasks 200 --fault-rate 0.3 --kills 3 --seed 1

starts an SMS.online sandbox whose API key is the canary (``+ / =`` in it), a throwaway Airflow
(its own AIRFLOW_HOME, SQLite metadata DB and ``airflow api-server``), and runs the DAG
``tests/dags/smsonline_fault_run.py`` with ``airflow dags test --use-executor``: one mapped
``RentNumberOperator`` with ``--tasks`` task instances (``retries=3``, ``retry_delay=0``; the size
travels in the environment variable ``SMSONLINE_FAULT_TASKS``), then a mapped
``ContinueRentOperator`` that renews the rentals of the first ``--renewals`` slots (default a
quarter of them) by 4 hours. The exit status is 1 when a must-be-zero figure is not 0 or not
every task instance ran; ``--json PATH`` writes every figure.

The sandbox answers as SMS.online documents (``documented_only``: getRentList rows carry only
id, phone, price and hours, as strings) and writes its dates in UTC+3, so nothing the proof
relies on can come from an undocumented field or a date's zone.

Faults. The sandbox draws, seeded, a fault for ``--fault-rate`` of all getRentNumber calls, in a
mode drawn uniformly from every sandbox fault mode: ``http_500``, ``html_502``, ``garbage``
(nothing committed, the answer is unusable), ``slow`` (answered after ``--slow`` seconds, less than
the client's timeout), ``reset_after_commit`` (charged, then a TCP reset) and
``timeout_after_commit`` (charged, then no answer for ``--hold`` seconds while the client gives
up after its ``timeout`` extra, ``--timeout``). continueRentNumber calls are faulted at the same
rate and in the same modes: the sandbox's random plan covers one action, so after each of its
answers (and once at the start) the runner queues, seeded, a fault for the next one. Reads
(getRentList) are not faulted. A server that commits only after the client gave up and looked (a
"late commit") is not simulated.

Worker kills, and why this way. ``dags test`` without ``--use-executor`` runs every task inside
its own process (``_run_task`` → ``run_task_in_process``), so killing a task would kill the whole
run. With ``--use-executor`` and the LocalExecutor each task try runs in its own process
(LocalExecutor worker → task supervisor → task process); that needs an ``airflow api-server``
for the execution API (started here, SQLite is accepted) and a shared JWT secret. The sandbox's
``after_answer`` hook runs right after the bytes of a getRentNumber answer are written; for
``--kills`` answers chosen (seeded) among the clean ones, the runner finds the process owning the
client end of that TCP connection (``/proc/net/tcp`` inode, looked up among the descendants of the
``dags test`` process; psutil as a fallback), and sends it SIGKILL, typically 15-40 ms after the
answer left: the task dies between the API's answer and its XCom push (checked in its log: no
"Pushing xcom" in the killed try). Its supervisor reports the failure, the task instance is
retried, and the retry finds the rental through the charge ledger. Kill outcomes, from the logs:
``reconciled`` (recovered from getRentList), ``reused`` (the ledger had recorded it), ``too late``
(the task had finished), ``task failed`` (the retry could not tell whose it was: ambiguous).

Parallelism. ``--parallelism`` task processes at a time (default 4). A try costs about a CPU
second here, and each try's supervisor notices its task's end up to 1 s late, as ``dags test``
hands out work once a second: 4 hides those waits on 2 cores. Concurrent charging calls on one
account make some lost answers ambiguous (the ledger refuses to guess: the task fails, naming
the rentals); ``--parallelism 1`` avoids most of that but takes about twice as long.

Attribution. Each task instance rents with its own ``webhook_url`` (``.../slot/<map_index>``); the
sandbox keeps it on the rental, so every charge names the task instance whose request caused it.

Figures (the three marked must be 0):

* **task instances**: ``rent`` task instances succeeded / failed, and tries in all.
* **rentals charged**: getRentNumber charges the sandbox made; **cancelled**: those refunded
  because the provider cancelled them.
* **double rentals** [must be 0]: one per rental that is the XCom ``id`` of more than one
  successful task instance, plus one per task instance whose requests caused more than one
  charge that was not refunded.
* **unaccounted rentals** [must be 0]: charges not refunded whose rental is neither the XCom
  ``id`` of a successful task instance nor named (by id) in an error logged by the failed task
  instance that caused it (ChargeAmbiguousError / AirflowFailException text in its task log).
* **renewals**: ``renew`` task instances succeeded / failed / skipped (their slot's rental
  failed), continueRentNumber charges, those held (the renewed rental is the XCom ``id`` of the
  slot's successful ``renew`` task instance) and those named in its failure.
* **double renewals** [must be 0]: rentals renewed more than once (one task instance renews each).
* **unaccounted renewals** [must be 0]: renewal charges neither held nor named, as above.
* **phantom renewals** [must be 0]: successful ``renew`` task instances whose rental was never
  renewed (a reconciliation that took a renewal for done when it was not).
* **key leaks** [must be 0]: files under AIRFLOW_HOME (task logs, the API server's log, the
  SQLite DB and its journal, airflow.cfg) and the captured ``dags test`` output that hold any form
  of the key (as is, form-encoded, percent-encoded). The connection comes from ``AIRFLOW_CONN_*``.

Also printed: faults injected per mode, kills and their outcomes, rentals recovered by
reconciliation or reused from the ledger, failures by kind, and elapsed times.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from contextlib import closing, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.airflow_server starts the API server

from airflow_provider_smsonline.sandbox import FAULT_MODES, Answered, Sandbox  # noqa: E402
from airflow_provider_smsonline.sandbox.readings import CHOICES, STRICTEST  # noqa: E402

#: The canary API key, the same as tests/conftest.py's: '+', '/' and '=' change under URL encoding.
CANARY_KEY = "cAnAry+key/with=PADDING=="
CANARY_FORMS = tuple(dict.fromkeys((CANARY_KEY, quote_plus(CANARY_KEY), quote(CANARY_KEY, safe=""))))

DAG_ID = "smsonline_fault_run"
TASK_ID = "rent"
RENEW_TASK_ID = "renew"
#: The zone the sandbox writes its dates in, hours east of UTC: not UTC, as SMS.online's peers.
SANDBOX_UTC_OFFSET = 3
DAGS_FOLDER = ROOT / "tests" / "dags"
#: The per-task-instance webhook URL prefix the DAG uses (see tests/dags/smsonline_fault_run.py).
SLOT_URL = re.compile(r"/fault-run/slot/(\d+)$")
#: What the ledger logs when it finds a rental again, by kind.
RECOVERED = re.compile(r"Recovered rental (\d+)")
REUSED = re.compile(r"already paid for rental (\d+)")


@dataclass
class Options:
    """What to run: size, faults, kills and where."""

    tasks: int = 200
    fault_rate: float = 0.3
    kills: int = 3
    seed: int = 1
    parallelism: int = 4
    timeout: float = 1.5
    hold: float = 3.0
    slow: float = 0.5
    retries: int = 3
    renewals: int | None = None
    home: Path = ROOT / ".airflow_home" / "fault-run"
    json_path: Path | None = None
    #: The sandbox's reading of getRentList's page (``id-one``: the strictest, by default).
    rent_list: str = STRICTEST.rent_list
    #: The first ``burst`` getRentNumber calls all lose their answers after charging (an incident
    #: taking every call in flight), before the random faults.
    burst: int = 0
    #: Charging calls on the account take turns (``[smsonline] charge_lease``).
    lease: bool = True
    #: Every task instance must succeed (no ambiguity, no exhausted retries).
    require_success: bool = False
    #: Charging task instances in an Airflow pool of this many slots (0: none).
    pool: int = 0
    #: Seconds every getRentNumber answer takes, when there are no random faults (a realistic
    #: answer time for throughput figures).
    answer_time: float = 0.0


@dataclass
class Kill:
    """One SIGKILL sent to a task process right after its getRentNumber answer."""

    rental_id: int
    pid: int
    client_port: int
    latency_ms: float
    map_index: int | None = None
    outcome: str = "unknown"
    before_xcom_push: bool | None = None


@dataclass
class Report:
    """Every figure of a run (JSON-able through :func:`dataclasses.asdict`)."""

    tasks_requested: int
    fault_rate: float
    seed: int
    parallelism: int
    task_instances: int = 0
    succeeded: int = 0
    failed: int = 0
    other_states: dict[str, int] = field(default_factory=dict)
    tries_total: int = 0
    run_state: str | None = None
    rentals_charged: int = 0
    rentals_cancelled: int = 0
    rentals_held: int = 0
    rentals_named_in_failures: int = 0
    double_rentals: int = 0
    double_details: list[str] = field(default_factory=list)
    unaccounted_rentals: int = 0
    unaccounted_details: list[str] = field(default_factory=list)
    key_leaks: int = 0
    leak_details: list[str] = field(default_factory=list)
    faults_injected: dict[str, int] = field(default_factory=dict)
    kills_requested: int = 0
    kills_performed: int = 0
    kills_seen_by_airflow: int = 0
    kills_before_xcom_push: int = 0
    kills: list[dict[str, Any]] = field(default_factory=list)
    recovered_by_reconciliation: int = 0
    reused_from_ledger: int = 0
    renewals_requested: int = 0
    renew_task_instances: int = 0
    renew_succeeded: int = 0
    renew_failed: int = 0
    renew_skipped: int = 0
    renew_other_states: dict[str, int] = field(default_factory=dict)
    renewals_charged: int = 0
    renewals_held: int = 0
    renewals_named_in_failures: int = 0
    renewals_recovered: int = 0
    double_renewals: int = 0
    unaccounted_renewals: int = 0
    phantom_renewals: int = 0
    renewal_details: list[str] = field(default_factory=list)
    renewal_faults_injected: dict[str, int] = field(default_factory=dict)
    failure_kinds: dict[str, int] = field(default_factory=dict)
    elapsed_startup_s: float = 0.0
    elapsed_dags_test_s: float = 0.0
    elapsed_total_s: float = 0.0
    dags_test_returncode: int | None = None

    @property
    def must_be_zero(self) -> dict[str, int]:
        """The figures that prove the issue's three promises."""
        return {
            "double rentals": self.double_rentals,
            "unaccounted rentals": self.unaccounted_rentals,
            "double renewals": self.double_renewals,
            "unaccounted renewals": self.unaccounted_renewals,
            "phantom renewals": self.phantom_renewals,
            "key leaks": self.key_leaks,
        }

    @property
    def complete(self) -> bool:
        """Whether every task instance asked for ran to success or failure (or, for a renewal
        whose slot has no rental, was skipped)."""
        return (
            self.task_instances == self.tasks_requested
            and not self.other_states
            and self.renew_task_instances == self.renewals_requested
            and not self.renew_other_states
        )

    require_success: bool = False

    @property
    def ok(self) -> bool:
        """Whether the run proves what it must (with ``require_success``: no task instance failed)."""
        failed = self.failed + self.renew_failed if self.require_success else 0
        return self.complete and not any(self.must_be_zero.values()) and not failed


# ----------------------------------------------------------------------------- worker kills


class WorkerKiller:
    """A sandbox ``after_answer`` hook that SIGKILLs the task process that received chosen answers.

    The ``positions`` are 1-based counts of clean answers to ``action`` (getRentNumber: no
    fault, a rental in it; getNumber: no fault, status 200); the answer at each position is
    followed by a kill of the process owning the client end of its connection, if that process
    descends from one of :attr:`roots` (the ``dags test`` process, or the Celery workers):
    nothing else is ever signalled. ``on_clean_answer``, if
    set, is called with the count and the answer's owner after every clean answer.
    """

    def __init__(self, positions: Iterable[int], sandbox_port: int, action: str = "getRentNumber") -> None:
        self.positions = set(positions)
        self.action = action
        self.sandbox_port = sandbox_port
        self.roots: set[int] = set()
        self.answers = 0
        self.kills: list[Kill] = []
        self.misses: list[str] = []
        self.on_clean_answer: Callable[[int, int | None], None] | None = None
        self._lock = threading.Lock()
        self._descendants: list[int] = []
        self._watching = threading.Event()

    @property
    def root_pid(self) -> int | None:
        """One root (the ``dags test`` process); ``None`` once stopped."""
        return next(iter(self.roots), None)

    def watch(self, *root_pids: int) -> None:
        """Start (or add roots): keep a fresh list of the roots' descendants (every 50 ms), so that
        finding the process behind a connection reads a few processes' sockets, not every one's."""
        import psutil

        self.roots.update(root_pids)
        if self._watching.is_set():
            return
        self._watching.set()

        def refresh() -> None:
            while self._watching.is_set():
                found: list[int] = []
                for root in list(self.roots):
                    with suppress(psutil.Error):
                        found += [p.pid for p in psutil.Process(root).children(recursive=True)]
                self._descendants = found
                time.sleep(0.05)

        threading.Thread(target=refresh, name="fault-run-descendants", daemon=True).start()

    def unwatch(self, root_pid: int) -> None:
        """Forget a root (a worker that was killed)."""
        self.roots.discard(root_pid)

    def stop(self) -> None:
        """Stop: no more kills."""
        self._watching.clear()
        self.roots = set()

    def __call__(self, answered: Answered) -> None:
        if answered.action != self.action or answered.fault is not None or answered.status != 200:
            return
        if self.action == "getRentNumber" and answered.rental_id is None:
            return
        started = time.perf_counter()
        with self._lock:
            self.answers += 1
            count = self.answers
            if not self.roots:
                return
        if count not in self.positions:
            if self.on_clean_answer is not None:
                self.on_clean_answer(count, self._owner_of(answered.client[1]))
            return
        pid = self._owner_of(answered.client[1])
        if pid is None:
            self.misses.append(f"{answered.action} answer: no task process owns port {answered.client[1]}")
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            self.misses.append(f"{answered.action} answer: process {pid} had exited")
            return
        latency = (time.perf_counter() - started) * 1000
        self.kills.append(Kill(answered.rental_id or 0, pid, answered.client[1], round(latency, 1)))

    def _owner_of(self, client_port: int) -> int | None:
        """The pid of the roots' descendant holding the client end of the connection."""
        inode = _socket_inode(client_port, self.sandbox_port)
        if inode is not None:
            target = f"socket:[{inode}]"
            for pid in list(self._descendants):
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                except OSError:
                    continue
                if any(_readlink(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                    return pid if self._descends_from_root(pid) else None
        import psutil  # slower: every process's sockets

        for conn in psutil.net_connections(kind="tcp"):
            ends = (conn.laddr.port if conn.laddr else None, conn.raddr.port if conn.raddr else None)
            if conn.pid and ends == (client_port, self.sandbox_port):
                return conn.pid if self._descends_from_root(conn.pid) else None
        return None

    def root_of(self, pid: int) -> int | None:
        """Which root ``pid`` descends from."""
        import psutil

        try:
            parents = {parent.pid for parent in psutil.Process(pid).parents()}
        except psutil.Error:
            return None
        return next((root for root in self.roots if root in parents), None)

    def _descends_from_root(self, pid: int) -> bool:
        if pid == os.getpid() or pid in self.roots:
            return False
        return self.root_of(pid) is not None


def _socket_inode(local_port: int, remote_port: int) -> str | None:
    """The inode of the TCP socket from ``local_port`` to ``remote_port`` (Linux /proc/net/tcp*)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote = fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]
            if int(local, 16) == local_port and int(remote, 16) == remote_port:
                return fields[9]
    return None


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def kill_positions(options: Options) -> list[int]:
    """Which clean getRentNumber answers (1-based) are followed by a kill: seeded, spread over the run."""
    expected_clean = max(int(options.tasks * (1 - options.fault_rate) * 0.9), options.kills + 1)
    return sorted(random.Random(options.seed).sample(range(1, expected_clean + 1), options.kills))


class RenewalFaults:
    """Seeded faults on continueRentNumber, at ``rate``, in every fault mode.

    An ``after_answer`` hook: after each continueRentNumber answer (and once at :meth:`arm`'s
    first call) it decides, seeded, whether the next continueRentNumber call fails, and queues
    that fault in the sandbox. Modes come in seeded shuffled rounds of all of them, so that a
    few dozen renewals meet every mode. A fault that withholds the answer
    (``reset_after_commit``, ``timeout_after_commit``) calls no hook: the next call then goes
    through clean, and the draws resume after it.
    """

    action = "continueRentNumber"

    def __init__(self, sandbox: Sandbox, rate: float, seed: int, delays: dict[str, float]) -> None:
        self.sandbox = sandbox
        self.rate = rate
        self.delays = delays
        self.random = random.Random(seed * 7919 + 1)
        self._round: list[str] = []
        self._lock = threading.Lock()

    def arm(self) -> None:
        """Draw whether the next continueRentNumber call fails, and queue that fault."""
        with self._lock:
            if self.random.random() >= self.rate:
                return
            if not self._round:
                self._round = list(FAULT_MODES)
                self.random.shuffle(self._round)
            mode = self._round.pop()
        self.sandbox.inject_fault(self.action, mode, 1, self.delays.get(mode))

    def __call__(self, answered: Answered) -> None:
        if answered.action == self.action:
            self.arm()


# ----------------------------------------------------------------------------- the run


def fault_sandbox(
    options: Options, after_answer: Callable[[Answered], None], charges: int
) -> tuple[Sandbox, dict[str, float]]:
    """The sandbox of a fault run, not started: SMS.online's documented answers at its zone,
    money and stock for ``charges`` charging calls, getRentNumber faulted at the run's rate in
    every mode; and the delays of the slow modes."""
    sandbox = Sandbox(
        host="127.0.0.1",
        port=0,
        api_key=CANARY_KEY,
        balance=100 * charges + 1000,
        stock=4 * charges + 100,
        seed=options.seed,
        after_answer=after_answer,
        documented_only=True,
        utc_offset=SANDBOX_UTC_OFFSET,
        readings={"rent_list": options.rent_list},
    )
    delays = {"slow": options.slow, "timeout_after_commit": options.hold}
    sandbox.set_random_faults(
        "getRentNumber", rate=options.fault_rate, modes=FAULT_MODES, seed=options.seed, delays=delays
    )
    if options.answer_time and not options.fault_rate:
        sandbox.set_random_faults(
            "getRentNumber", rate=1.0, modes=["slow"], delays={"slow": options.answer_time}
        )
    if options.burst:  # queued faults apply before the random plan
        sandbox.inject_fault("getRentNumber", "timeout_after_commit", count=options.burst, delay=options.hold)
    return sandbox, delays


#: The pool of the account's charging task instances, with ``--pool N`` (N slots).
POOL = "smsonline_account"


def lease_env(options: Options) -> dict[str, str]:
    """The charging lease's setting for every Airflow process of the run."""
    return {"AIRFLOW__SMSONLINE__CHARGE_LEASE": str(options.lease)}


def run(options: Options) -> Report:
    """Start the sandbox and Airflow, run the DAG, and measure; see the module docstring."""
    from tests.airflow_server import AirflowServer

    report = Report(options.tasks, options.fault_rate, options.seed, options.parallelism)
    report.require_success = options.require_success
    report.kills_requested = options.kills
    began = time.monotonic()
    home = options.home.resolve()
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    killer = WorkerKiller(kill_positions(options), sandbox_port=0)
    renewal_faults: list[RenewalFaults] = []

    def after_answer(answered: Answered) -> None:
        killer(answered)
        for hook in renewal_faults:
            hook(answered)

    sandbox, delays = fault_sandbox(options, after_answer, options.tasks)
    renewal_faults.append(RenewalFaults(sandbox, options.fault_rate, options.seed, delays))
    renewal_faults[0].arm()
    report.renewals_requested = _renewals(options)
    env = {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(options.parallelism),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        # The supervisor otherwise notices its task's end up to 5 s late.
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        "SMSONLINE_FAULT_TASKS": str(options.tasks),
        "SMSONLINE_FAULT_RETRIES": str(options.retries),
        "SMSONLINE_FAULT_RENEWALS": str(_renewals(options)),
        "SMSONLINE_FAULT_POOL": POOL if options.pool else "",
        **lease_env(options),
    }
    output = ""
    with sandbox:
        killer.sandbox_port = sandbox.port
        server = AirflowServer(home=home, dags_folder=DAGS_FOLDER, env=env)
        server.local.use_sandbox(sandbox, timeout=options.timeout, read_retries=2, retry_backoff=0)
        with server:
            server.local.extra_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = server.url + "/execution/"
            if options.pool:
                done = server.local.airflow("pools", "set", POOL, str(options.pool), "one SMS.online account")
                if done.returncode != 0:
                    raise RuntimeError(f"airflow pools set failed: {done.stderr[-2000:]}")
            report.elapsed_startup_s = round(time.monotonic() - began, 1)
            started = time.monotonic()
            command = [
                sys.executable,
                "-m",
                "airflow",
                "dags",
                "test",
                DAG_ID,
                "--use-executor",
            ]
            out_path = home / "dags-test.out"
            with out_path.open("wb") as out:
                process = subprocess.Popen(
                    command,
                    env=server.local.environ(),
                    cwd=home,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # its own group: its executor's workers end with it
                )
                killer.watch(process.pid)
                try:
                    report.dags_test_returncode = process.wait(timeout=max(600, options.tasks * 10))
                except subprocess.TimeoutExpired:
                    pass
                finally:
                    killer.stop()
                    _end_group(process)
                    if report.dags_test_returncode is None:
                        report.dags_test_returncode = process.returncode
            report.elapsed_dags_test_s = round(time.monotonic() - started, 1)
            output = out_path.read_text(errors="replace")
        state = sandbox.state()
    analyse(report, home, output, state, killer)
    report.elapsed_total_s = round(time.monotonic() - began, 1)
    return report


def _renewals(options: Options) -> int:
    """How many slots' rentals are renewed (the DAG's ``SMSONLINE_FAULT_RENEWALS``)."""
    return min(options.tasks, options.tasks // 4 if options.renewals is None else options.renewals)


def _end_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """End ``process`` and whatever is left of its process group: SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            process.poll()  # reap the leader: a zombie still counts as a member of its group
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
    process.poll()


# ----------------------------------------------------------------------------- reading it back


@dataclass
class TaskInstance:
    """One ``rent`` task instance as the metadata DB and its logs show it."""

    map_index: int
    state: str | None
    try_number: int
    xcom_id: int | None
    log: str = ""
    errors: str = ""
    attempts: list[str] = field(default_factory=list)


#: Runs a query on the metadata DB (``?`` placeholders) and returns its rows.
Query = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


def sqlite_query(home: Path) -> Query:
    """Queries on the SQLite metadata DB of ``home``."""

    def query(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(home / "airflow.db")) as db:
            return list(db.execute(sql, params))

    return query


def read_task_instances(
    home: Path, task_id: str = TASK_ID, query: Query | None = None
) -> tuple[str | None, dict[int, TaskInstance]]:
    """The run's state and the task instances of ``task_id``, straight from the metadata DB
    (``query``; default the SQLite DB of ``home``) and the logs under ``home``."""
    query = query or sqlite_query(home)
    rows = query("SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (DAG_ID,))
    if not rows:
        return None, {}
    run_id, run_state = rows[0]
    ids: dict[int, int] = {}
    for map_index, value in query(
        "SELECT map_index, value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = 'id'",
        (DAG_ID, run_id, task_id),
    ):
        ids[map_index] = int(json.loads(value) if isinstance(value, (str, bytes)) else value)
    tis = {
        map_index: TaskInstance(map_index, state, try_number, ids.get(map_index))
        for map_index, state, try_number in query(
            "SELECT map_index, state, try_number FROM task_instance "
            "WHERE dag_id = ? AND run_id = ? AND task_id = ?",
            (DAG_ID, run_id, task_id),
        )
    }
    logs = home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}"
    for ti in tis.values():
        lines: list[str] = []
        errors: list[str] = []
        for attempt in sorted(
            (logs / f"map_index={ti.map_index}").glob("attempt=*.log"),
            key=lambda path: (len(path.name), path.name),
        ):
            text = attempt.read_text(errors="replace")
            ti.attempts.append(text)
            for line in text.splitlines():
                lines.append(line)
                if '"level":"error"' in line or '"level":"critical"' in line:
                    errors.append(line)
        ti.log, ti.errors = "\n".join(lines), "\n".join(errors)
    return run_state, tis


def scan_for_key(home: Path, output: str, more: Iterable[Path] = ()) -> list[str]:
    """Every file under ``home`` (and the folders ``more``) and the captured output that holds a
    form of the canary key."""
    forms = [form.encode() for form in CANARY_FORMS]
    leaks = [name for name, text in (("dags test output", output.encode()),) if any(f in text for f in forms)]
    for folder in (home, *more):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and any(form in path.read_bytes() for form in forms):
                leaks.append(str(path.relative_to(home) if folder == home else path))
    return leaks


def analyse(
    report: Report,
    home: Path,
    output: str,
    state: dict[str, Any],
    killer: WorkerKiller,
    query: Query | None = None,
    scanned: Iterable[Path] = (),
) -> None:
    """Fill ``report`` from the sandbox's books, the metadata DB (``query``; default the SQLite DB
    of ``home``), the task logs and the output; ``scanned``: more folders to search for the key."""
    report.run_state, tis = read_task_instances(home, query=query)
    states = Counter(ti.state for ti in tis.values())
    report.task_instances = len(tis)
    report.succeeded = states.pop("success", 0)
    report.failed = states.pop("failed", 0)
    report.other_states = {str(name): count for name, count in states.items()}
    report.tries_total = sum(ti.try_number for ti in tis.values())

    slot_of = {}
    for rental in state["rentals"]:
        match = SLOT_URL.search(rental.get("url") or "")
        slot_of[int(rental["id"])] = int(match.group(1)) if match else None
    charges = [c for c in state["charges"] if c["action"] == "getRentNumber"]
    report.rentals_charged = len(charges)
    report.rentals_cancelled = sum(1 for c in charges if c["refunded"])

    holders: dict[int, list[int]] = defaultdict(list)
    for ti in tis.values():
        if ti.state == "success" and ti.xcom_id is not None:
            holders[ti.xcom_id].append(ti.map_index)
    report.rentals_held = len(holders)

    doubles: list[str] = []
    for rental_id, held_by in sorted(holders.items()):
        if len(held_by) > 1:
            doubles.append(f"rental {rental_id} is the XCom id of task instances {sorted(held_by)}")
    kept_by_cause: dict[int | None, list[int]] = defaultdict(list)
    for charge in charges:
        if not charge["refunded"]:
            kept_by_cause[slot_of.get(int(charge["rental_id"]))].append(int(charge["rental_id"]))
    for slot, rentals in sorted(kept_by_cause.items(), key=lambda item: (item[0] is None, item[0] or 0)):
        if slot is not None and len(rentals) > 1:
            doubles.append(f"task instance {slot} caused {len(rentals)} charges kept: {sorted(rentals)}")
    report.double_details = doubles
    report.double_rentals = len(doubles)

    unaccounted: list[str] = []
    named = 0
    for charge in charges:
        rental_id = int(charge["rental_id"])
        if charge["refunded"] or rental_id in holders:
            continue
        slot = slot_of.get(rental_id)
        cause = tis.get(slot) if slot is not None else None
        if cause is not None and cause.state == "failed" and rental_id in _named_ids(cause.errors):
            named += 1
            continue
        who = f"task instance {cause.map_index} ({cause.state})" if cause else "no known task instance"
        unaccounted.append(f"rental {rental_id}: charged, not refunded, not held, caused by {who}")
    report.rentals_named_in_failures = named
    report.unaccounted_details = unaccounted
    report.unaccounted_rentals = len(unaccounted)

    report.leak_details = scan_for_key(home, output, scanned)
    report.key_leaks = len(report.leak_details)

    injected = state.get("faults_injected", {}).get("getRentNumber", {})
    report.faults_injected = {mode: int(injected.get(mode, 0)) for mode in FAULT_MODES}

    all_logs = "\n".join(ti.log for ti in tis.values())
    report.recovered_by_reconciliation = len(set(RECOVERED.findall(all_logs)))
    report.reused_from_ledger = len(set(REUSED.findall(all_logs)))
    report.kills_seen_by_airflow = all_logs.count('"signal_name":"SIGKILL"')
    kinds: Counter[str] = Counter()
    for ti in tis.values():
        if ti.state == "failed":
            kinds[_failure_kind(ti.errors)] += 1
    report.failure_kinds = dict(kinds)

    for kill in killer.kills:
        kill.map_index = slot_of.get(kill.rental_id)
        ti = tis.get(kill.map_index) if kill.map_index is not None else None
        kill.outcome = _kill_outcome(kill, ti)
        killed = [text for text in (ti.attempts if ti else []) if '"signal_name":"SIGKILL"' in text]
        if killed:
            kill.before_xcom_push = all("Pushing xcom" not in text for text in killed)
    report.kills_performed = len(killer.kills)
    report.kills_before_xcom_push = sum(1 for kill in killer.kills if kill.before_xcom_push)
    report.kills = [asdict(kill) for kill in killer.kills] + [{"missed": miss} for miss in killer.misses]
    analyse_renewals(report, home, state, slot_of, query)


def analyse_renewals(
    report: Report,
    home: Path,
    state: dict[str, Any],
    slot_of: dict[int, int | None],
    query: Query | None = None,
) -> None:
    """The renewal figures: each continueRentNumber charge against the ``renew`` task instance
    of its rental's slot (the one that renews it)."""
    _, renews = read_task_instances(home, RENEW_TASK_ID, query)
    states = Counter(ti.state for ti in renews.values())
    report.renew_task_instances = len(renews)
    report.renew_succeeded = states.pop("success", 0)
    report.renew_failed = states.pop("failed", 0)
    report.renew_skipped = states.pop("skipped", 0)
    report.renew_other_states = {str(name): count for name, count in states.items()}
    charges = Counter(int(c["rental_id"]) for c in state["charges"] if c["action"] == "continueRentNumber")
    report.renewals_charged = sum(charges.values())
    details: list[str] = []
    for rental_id, times in sorted(charges.items()):
        if times > 1:
            report.double_renewals += 1
            details.append(f"rental {rental_id} was renewed {times} times")
        slot = slot_of.get(rental_id)
        ti = renews.get(slot) if slot is not None else None
        if ti is not None and ti.state == "success" and ti.xcom_id == rental_id:
            report.renewals_held += 1
        elif ti is not None and ti.state == "failed" and rental_id in _named_ids(ti.errors):
            report.renewals_named_in_failures += 1
        else:
            report.unaccounted_renewals += 1
            who = f"renew task instance {slot} ({ti.state})" if ti else "no renew task instance"
            details.append(f"rental {rental_id}: renewed, neither held nor named by {who}")
    for ti in sorted(renews.values(), key=lambda ti: ti.map_index):
        if ti.state == "success" and ti.xcom_id not in charges:
            report.phantom_renewals += 1
            details.append(
                f"renew task instance {ti.map_index} succeeded, but rental {ti.xcom_id} was not renewed"
            )
    report.renewal_details = details
    report.renewals_recovered = len(set(RECOVERED.findall("\n".join(ti.log for ti in renews.values()))))
    injected = state.get("faults_injected", {}).get("continueRentNumber", {})
    report.renewal_faults_injected = {mode: int(injected.get(mode, 0)) for mode in FAULT_MODES}


def _named_ids(errors: str) -> set[int]:
    """The numbers in the messages of the exceptions a task instance logged (not in tracebacks)."""
    messages = re.findall(r'"exc_value":"((?:[^"\\]|\\.)*)"', errors)
    return {int(number) for message in messages for number in re.findall(r"\b\d+\b", message)}


def _failure_kind(errors: str) -> str:
    """What a failed task instance's last exception was: ``ambiguous`` (an AirflowFailException's
    code), ``OutcomeUnknownError`` (its class) …"""
    failures = [line for line in errors.splitlines() if "Task failed with exception" in line]
    match = re.search(r'"exc_type":"(\w+)","exc_value":"(\w*)', failures[-1] if failures else "")
    if match is None:
        return "other"
    exc_type, code = match.groups()
    return code if exc_type == "AirflowFailException" and code else exc_type


def _kill_outcome(kill: Kill, ti: TaskInstance | None) -> str:
    if ti is None:
        return "task instance not found"
    killed = rf"\b{kill.rental_id}\b"
    if re.search(rf"Recovered rental {killed}", ti.log):
        return "reconciled"
    if re.search(rf"already paid for rental {killed}", ti.log):
        return "reused"
    if ti.xcom_id == kill.rental_id and re.search(rf"Rental {killed}: number ", ti.log):
        return "too late"
    return "lost" if ti.state == "success" else f"task {ti.state}"


# ----------------------------------------------------------------------------- output


def print_table(report: Report, options: Options) -> None:
    """The figures as a table, the must-be-zero ones marked."""
    rows: list[tuple[str, str]] = [
        ("task instances (rent)", f"{report.task_instances} of {report.tasks_requested} asked"),
        ("  succeeded / failed", f"{report.succeeded} / {report.failed}"),
        ("  other final states", json.dumps(report.other_states) if report.other_states else "none"),
        ("  tries in all", str(report.tries_total)),
        ("  failures by kind", json.dumps(report.failure_kinds) if report.failure_kinds else "none"),
        ("dag run", str(report.run_state)),
        ("charging turns (the lease)", "on" if options.lease else "off"),
        ("getRentNumber answers lost together first", str(options.burst)),
        ("rentals charged", str(report.rentals_charged)),
        ("rentals cancelled (refunded)", str(report.rentals_cancelled)),
        ("rentals held by a successful XCom", str(report.rentals_held)),
        ("rentals named in a failure", str(report.rentals_named_in_failures)),
        ("double rentals          [must be 0]", str(report.double_rentals)),
        ("unaccounted rentals     [must be 0]", str(report.unaccounted_rentals)),
        ("key leaks               [must be 0]", str(report.key_leaks)),
        (
            "faults injected (getRentNumber)",
            ", ".join(f"{mode} {count}" for mode, count in report.faults_injected.items())
            + f" = {sum(report.faults_injected.values())}",
        ),
        ("worker kills (SIGKILL)", f"{report.kills_performed} of {report.kills_requested} asked"),
        ("  seen by Airflow (SIGKILL in the task log)", str(report.kills_seen_by_airflow)),
        ("  landed before the XCom push", str(report.kills_before_xcom_push)),
        (
            "  latency after the answer",
            " / ".join(f"{k['latency_ms']} ms" for k in report.kills if "latency_ms" in k) or "none",
        ),
        (
            "  outcomes",
            ", ".join(
                f"{k} {v}" for k, v in Counter(k.get("outcome", "missed") for k in report.kills).items()
            )
            or "none",
        ),
        ("rentals recovered by reconciliation", str(report.recovered_by_reconciliation)),
        ("rentals reused from the ledger", str(report.reused_from_ledger)),
        ("renew task instances", f"{report.renew_task_instances} of {report.renewals_requested} asked"),
        (
            "  succeeded / failed / skipped",
            f"{report.renew_succeeded} / {report.renew_failed} / {report.renew_skipped}",
        ),
        (
            "  other final states",
            json.dumps(report.renew_other_states) if report.renew_other_states else "none",
        ),
        ("renewals charged", str(report.renewals_charged)),
        (
            "renewals held / named in a failure",
            f"{report.renewals_held} / {report.renewals_named_in_failures}",
        ),
        ("renewals recovered by reconciliation", str(report.renewals_recovered)),
        ("double renewals        [must be 0]", str(report.double_renewals)),
        ("unaccounted renewals   [must be 0]", str(report.unaccounted_renewals)),
        ("phantom renewals       [must be 0]", str(report.phantom_renewals)),
        (
            "faults injected (continueRentNumber)",
            ", ".join(f"{mode} {count}" for mode, count in report.renewal_faults_injected.items())
            + f" = {sum(report.renewal_faults_injected.values())}",
        ),
        (
            "elapsed",
            f"startup {report.elapsed_startup_s} s, dags test {report.elapsed_dags_test_s} s, "
            f"total {report.elapsed_total_s} s",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    print(
        f"\nFault run: {options.tasks} task instances, fault rate {options.fault_rate}, "
        f"{options.kills} kills, seed {options.seed}, parallelism {options.parallelism}, "
        f"client timeout {options.timeout} s"
    )
    print("-" * (width + 40))
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print("-" * (width + 40))
    for detail in report.double_details + report.unaccounted_details + report.renewal_details:
        print(f"  ! {detail}")
    for leak in report.leak_details:
        print(f"  ! key found in {leak}")
    for kill in report.kills:
        if "missed" in kill:
            print(f"  (kill missed: {kill['missed']})")
    if not report.complete:
        print("  ! not every task instance asked for ran to success or failure")
    print("RESULT:", "OK" if report.ok else "FAILED")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both fault runs (this one and the Celery one) take beyond their shapes."""
    parser.add_argument(
        "--rent-list",
        choices=CHOICES["rent_list"],
        default=STRICTEST.rent_list,
        help="the sandbox's reading of getRentList's page (default: the strictest, id-one)",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=0,
        help="the first N getRentNumber calls all lose their answers after charging (an incident)",
    )
    parser.add_argument(
        "--no-lease",
        dest="lease",
        action="store_false",
        help="charge without turns ([smsonline] charge_lease = False)",
    )
    parser.add_argument(
        "--require-success", action="store_true", help="fail the run if any task instance failed"
    )
    parser.add_argument("--pool", type=int, default=0, help="charging tasks pool slots (0: none)")


def parse_args(argv: list[str] | None) -> Options:
    """Options from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=200, help="task instances to run (default 200)")
    parser.add_argument("--fault-rate", type=float, default=0.3, help="share of getRentNumber calls faulted")
    parser.add_argument("--kills", type=int, default=3, help="task processes to SIGKILL after an answer")
    parser.add_argument("--seed", type=int, default=1, help="seeds faults, kills and phone numbers")
    parser.add_argument("--parallelism", type=int, default=4, help="task processes at a time (default 4)")
    parser.add_argument("--timeout", type=float, default=1.5, help="the connection's timeout extra, seconds")
    parser.add_argument(
        "--hold", type=float, default=3.0, help="seconds timeout_after_commit holds the answer"
    )
    parser.add_argument("--slow", type=float, default=0.5, help="seconds a slow answer takes (< --timeout)")
    parser.add_argument("--retries", type=int, default=3, help="the task's retries")
    parser.add_argument(
        "--renewals", type=int, default=None, help="slots whose rental is renewed (default: a quarter)"
    )
    parser.add_argument("--home", type=Path, default=Options.home, help="AIRFLOW_HOME (wiped first)")
    parser.add_argument("--json", dest="json_path", type=Path, default=None, help="write the figures here")
    parser.add_argument(
        "--answer-time", type=float, default=0.0, help="seconds each getRentNumber answer takes (no faults)"
    )
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.renewals is not None and not 0 <= args.renewals <= args.tasks:
        parser.error("--renewals must be from 0 to --tasks")
    if args.tasks < 1 or not 0 <= args.fault_rate <= 1 or args.kills < 0 or args.parallelism < 1:
        parser.error("--tasks and --parallelism must be at least 1, --fault-rate in 0..1, --kills 0 or more")
    if args.kills >= args.tasks * (1 - args.fault_rate) * 0.9:
        parser.error("--kills must stay well below the number of clean answers expected")
    return Options(**vars(args))


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, write the JSON; 1 if a must-be-zero figure is not 0."""
    options = parse_args(argv)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # so that the Airflow processes and the sandbox are stopped

    signal.signal(signal.SIGTERM, stop)
    try:
        report = run(options)
    except KeyboardInterrupt:
        print("fault run interrupted; Airflow and the sandbox were stopped", file=sys.stderr)
        return 130
    print_table(report, options)
    if options.json_path is not None:
        figures = {**asdict(report), "must_be_zero": report.must_be_zero, "ok": report.ok}
        options.json_path.write_text(json.dumps(figures, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
