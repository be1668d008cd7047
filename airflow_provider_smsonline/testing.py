# Run DAGs through a real, throwaway Airflow (its own AIRFLOW_HOME and SQLite DB) and read
# back what they did: used by the demo, the test suite and users testing their own DAGs.
"""Helpers to run DAGs for real in a throwaway Airflow, typically against the sandbox.

Example::

    from airflow_provider_smsonline.sandbox import Sandbox
    from airflow_provider_smsonline.testing import LocalAirflow

    with Sandbox(port=0) as sandbox:
        airflow = LocalAirflow(home=tmp_path / "airflow", dags_folder="example_dags")
        airflow.use_sandbox(sandbox)
        run = airflow.dags_test("smsonline_rent_manual")
        assert run.state == "success"
        print(run.xcom("rent", "number"))
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TaskResult:
    """One task instance of a finished run: its state, tries and XComs (key → value)."""

    task_id: str
    map_index: int
    state: str | None
    try_number: int
    xcoms: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    """A DAG run as the metadata DB holds it after ``airflow dags test``.

    :ivar output: everything the command printed (stdout and stderr).
    """

    dag_id: str
    run_id: str | None
    state: str | None
    returncode: int
    output: str
    tasks: tuple[TaskResult, ...] = ()

    def task(self, task_id: str, map_index: int = -1) -> TaskResult:
        """The task instance ``task_id`` (``map_index`` for mapped tasks)."""
        for result in self.tasks:
            if result.task_id == task_id and result.map_index == map_index:
                return result
        raise KeyError(f"no task instance {task_id!r} (map index {map_index}) in run {self.run_id}")

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The XCom ``key`` that ``task_id`` pushed."""
        return self.task(task_id, map_index).xcoms[key]


class LocalAirflow:
    """A throwaway Airflow: ``home`` holds its config, SQLite DB and logs.

    :param home: the AIRFLOW_HOME to use (created if missing).
    :param dags_folder: the folder ``airflow dags test`` loads DAGs from.
    :param env: extra environment for every command (connections, config).
    """

    def __init__(self, home: str | Path, dags_folder: str | Path, env: dict[str, str] | None = None) -> None:
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.extra_env = dict(env or {})
        self.home.mkdir(parents=True, exist_ok=True)
        self._migrated = False

    def environ(self) -> dict[str, str]:
        """The environment Airflow commands run with."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AIRFLOW__") and not k.startswith("AIRFLOW_CONN_") and k != "AIRFLOW_HOME"
        }
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def use_sandbox(self, sandbox: Any, conn_id: str = "smsonline_default", **extra: Any) -> None:
        """Point the connection ``conn_id`` at a running sandbox (through ``AIRFLOW_CONN_*``): its
        :meth:`~airflow_provider_smsonline.sandbox.Sandbox.connection`, whose ``server_timezone``
        is the zone the sandbox writes its dates in, with ``extra`` added (or overriding)."""
        conn = sandbox.connection()
        conn["extra"] = {**conn.get("extra", {}), **extra}
        if not conn["extra"]:
            del conn["extra"]
        self.extra_env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)

    def airflow(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run ``airflow ARGS`` in this home; output captured as text."""
        command = [sys.executable, "-m", "airflow", *args]
        return subprocess.run(
            command,
            env=self.environ(),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.home,
            check=False,
        )

    def migrate(self) -> None:
        """Create the metadata DB (once)."""
        if self._migrated:
            return
        done = self.airflow("db", "migrate")
        if done.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{done.stdout}\n{done.stderr}")
        self._migrated = True

    def dags_test(self, dag_id: str, conf: dict[str, Any] | None = None, timeout: float = 600) -> RunResult:
        """``airflow dags test DAG_ID`` and the run it made, read back from the metadata DB."""
        self.migrate()
        args = ["dags", "test", dag_id]
        if conf is not None:
            args += ["--conf", json.dumps(conf)]
        done = self.airflow(*args, timeout=timeout)
        output = done.stdout + done.stderr
        summary = self.last_run(dag_id)
        return RunResult(
            dag_id=dag_id,
            run_id=summary.get("run_id"),
            state=summary.get("state"),
            returncode=done.returncode,
            output=output,
            tasks=tuple(TaskResult(**t) for t in summary.get("tasks", [])),
        )

    def last_run(self, dag_id: str) -> dict[str, Any]:
        """The newest run of ``dag_id`` as a JSON-able dict (run id, state, tasks with XComs).

        Read straight from the SQLite metadata DB: no Airflow import, no extra process.
        """

        with closing(sqlite3.connect(self.home / "airflow.db")) as db:
            run = db.execute(
                "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
            if run is None:
                return {"run_id": None, "state": None, "tasks": []}
            run_id, state = run
            values: dict[tuple[str, int], dict[str, Any]] = {}
            for task_id, map_index, key, value in db.execute(
                "SELECT task_id, map_index, key, value FROM xcom WHERE dag_id = ? AND run_id = ?",
                (dag_id, run_id),
            ):
                values.setdefault((task_id, map_index), {})[key] = (
                    json.loads(value) if isinstance(value, (str, bytes)) else value
                )
            tasks = [
                {
                    "task_id": task_id,
                    "map_index": map_index,
                    "state": ti_state,
                    "try_number": try_number,
                    "xcoms": values.get((task_id, map_index), {}),
                }
                for task_id, map_index, ti_state, try_number in db.execute(
                    "SELECT task_id, map_index, state, try_number FROM task_instance "
                    "WHERE dag_id = ? AND run_id = ?",
                    (dag_id, run_id),
                )
            ]
        return {"run_id": run_id, "state": state, "tasks": tasks}
