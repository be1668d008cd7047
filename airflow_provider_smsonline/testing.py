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
import subprocess
import sys
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
        """Point the connection ``conn_id`` at a running sandbox (through ``AIRFLOW_CONN_*``)."""
        conn: dict[str, Any] = {"conn_type": "smsonline", "host": sandbox.url, "password": sandbox.api_key}
        if extra:
            conn["extra"] = extra
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
        """The newest run of ``dag_id`` as a JSON-able dict (run id, state, tasks with XComs)."""
        done = subprocess.run(
            [sys.executable, "-m", "airflow_provider_smsonline.testing", "last-run", dag_id],
            env=self.environ(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"reading the run of {dag_id} failed:\n{done.stdout}\n{done.stderr}")
        return json.loads(lines[-1])


def _last_run(dag_id: str) -> dict[str, Any]:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
        if run is None:
            return {"run_id": None, "state": None, "tasks": []}
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id
        )
        xcoms = session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.run_id == run.run_id)
        values: dict[tuple[str, int], dict[str, Any]] = {}
        for row in xcoms:
            values.setdefault((row.task_id, row.map_index), {})[row.key] = row.value  # JSON column: decoded
        tasks = [
            {
                "task_id": ti.task_id,
                "map_index": ti.map_index,
                "state": str(ti.state.value if hasattr(ti.state, "value") else ti.state)
                if ti.state
                else None,
                "try_number": ti.try_number,
                "xcoms": values.get((ti.task_id, ti.map_index), {}),
            }
            for ti in tis
        ]
        state = run.state.value if hasattr(run.state, "value") else run.state
        return {"run_id": run.run_id, "state": state, "tasks": tasks}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "last-run":
        print(json.dumps(_last_run(sys.argv[2]), default=str))
    else:
        sys.exit("usage: python -m airflow_provider_smsonline.testing last-run DAG_ID")
