# A real `airflow api-server` (UI and REST API) in a throwaway AIRFLOW_HOME, for tests that
# drive the UI in a browser or call the REST API, and then run DAGs in that same home.
"""Start and stop a throwaway Airflow API server for tests.

Example::

    with AirflowServer(home=tmp_path / "airflow", dags_folder=tmp_path / "dags") as server:
        page.goto(server.url + "/connections")  # the UI, no login
        run = server.local.dags_test("my_dag")  # same home, same metadata DB
        assert run.state == "success"
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from airflow_provider_smsonline.testing import LocalAirflow

#: How to run the ``airflow`` command of this interpreter's environment.
AIRFLOW = (sys.executable, "-m", "airflow")

#: Seconds allowed for the API server to answer its health check (about 15 s here).
DEFAULT_START_TIMEOUT = 180.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class AirflowServer:
    """``airflow api-server`` on ``127.0.0.1:<free port>`` in its own AIRFLOW_HOME.

    The home gets a fresh SQLite metadata DB (``airflow db migrate``), no example DAGs, every
    user an admin (simple auth manager, no login page) and the Test Connection button turned on.
    The server's output goes to ``<home>/api-server.log``; :meth:`stop` ends the server and the
    workers it forked (they share its process group). :attr:`local` runs ``airflow`` commands
    (``dags test`` …) in the same home, so they see what the UI stored.

    :param home: the AIRFLOW_HOME (created if missing).
    :param dags_folder: ``[core] dags_folder`` for the server and for :attr:`local`'s commands.
    :param env: extra environment for the server and every command.
    """

    def __init__(self, home: str | Path, dags_folder: str | Path, env: dict[str, str] | None = None) -> None:
        self.local = LocalAirflow(home=home, dags_folder=dags_folder, env=env)
        self.home = self.local.home
        self.dags_folder = self.local.dags_folder
        self.host = "127.0.0.1"
        self.port = 0
        self.log_path = self.home / "api-server.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's base URL, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    def environ(self) -> dict[str, str]:
        """The server's environment: :attr:`local`'s (which drops the caller's ``AIRFLOW__*``,
        ``AIRFLOW_CONN_*`` and ``AIRFLOW_HOME``) plus no login and the Test Connection button."""
        env = self.local.environ()
        env.update(
            {
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            }
        )
        env.update(self.local.extra_env)
        return env

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> AirflowServer:
        """Migrate the DB, start the server and wait until ``/api/v2/monitor/health`` answers."""
        if self._process is not None:
            return self
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        self.local.migrate()
        deadline = time.monotonic() + timeout
        self.port = free_port(self.host)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [*AIRFLOW, "api-server", "--host", self.host, "--port", str(self.port), "--workers", "1"],
                env=self.environ(),
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() ends the workers too
            )
        try:
            self._wait_healthy(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, deadline: float) -> None:
        assert self._process is not None
        health = self.url + "/api/v2/monitor/health"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"airflow api-server exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(health, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"airflow api-server did not answer {health} in time:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log, for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 15.0) -> None:
        """End the server and its workers: SIGTERM to its process group, SIGKILL after ``grace``."""
        process, self._process = self._process, None
        if process is None:
            return
        group = process.pid  # start_new_session made the server the leader of its own group
        _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + grace
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
        # Workers the server forked share its group and may outlive it for a moment.
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(group):
            _signal_group(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)

    def __enter__(self) -> AirflowServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, sig)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
