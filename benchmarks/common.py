# What every benchmark shares: the sandbox in its own process, the child processes' environment,
# spreads of repeated measurements (median, min, max), the table's rows and the machine's description.
"""Shared plumbing of the benchmarks: sandbox process, child environment, statistics, table rows."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The repository's root (benchmarks run with it as the working directory).
ROOT = Path(__file__).resolve().parent.parent
#: The key every benchmark's sandbox accepts (5+ characters, so Airflow's masker takes it).
API_KEY = "bench-key-0123456789"
#: Where child processes keep their bytecode: as an installed wheel would, without writing into the repo.
PYCACHE = Path(tempfile.gettempdir()) / "airflow-provider-smsonline-bench-pycache"
#: The providers-http release the comparisons run against, with what it needs beyond Airflow's
#: own dependencies (aiohttp, requests and asgiref come with Airflow and the provider).
HTTP_PROVIDER_DEPS = ("apache-airflow-providers-http==6.3.0", "requests-toolbelt>=1.0.0")
#: The bare httpx client compared with, should the environment lack it (Airflow normally brings it).
HTTPX = "httpx>=0.27,<1"
#: Where packages installed only for the comparisons live: outside the venv, appended to the path.
DEPS = Path(tempfile.gettempdir()) / "airflow-provider-smsonline-bench-deps"


@dataclass(frozen=True)
class Spread:
    """Repeated measurements of one quantity: their median, smallest and largest."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        """The spread of ``values`` (at least one)."""
        data = sorted(values)
        if not data:
            raise ValueError("no measurements")
        return cls(statistics.median(data), data[0], data[-1], len(data))

    def show(self, unit: str = "", digits: int = 1) -> str:
        """``median unit (min–max)``."""
        return f"{self.median:.{digits}f}{unit} ({self.low:.{digits}f}–{self.high:.{digits}f})"


@dataclass(frozen=True)
class Row:
    """One line of the results table.

    :ivar what: the quantity measured.
    :ivar measured: the result, as printed.
    :ivar target: the target, as printed (``"reported"`` when there is none).
    :ivar ok: whether the target was met; ``None`` when there is no target.
    :ivar comparison: the same quantity for the thing compared with, or context.
    """

    what: str
    measured: str
    target: str
    ok: bool | None
    comparison: str

    @property
    def verdict(self) -> str:
        """``met``, ``MISSED`` or ``-``."""
        return "-" if self.ok is None else ("met" if self.ok else "MISSED")


def p95(values: list[float]) -> float:
    """The 95th percentile of sorted ``values`` (nearest rank); infinity when there are none."""
    return values[min(len(values) - 1, round(0.95 * (len(values) - 1)))] if values else float("inf")


def table(rows: Iterable[Row]) -> str:
    """The rows as a Markdown table (also readable as plain text)."""
    lines = [
        "| what | measured | target | result | comparison |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        cells = (row.what, row.measured, row.target, row.verdict, row.comparison)
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: bytecode cached (as in an installed package), no examples."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    # Not PYTHONPATH, which would put it before the venv's site-packages: a child appends it.
    env["SMSONLINE_BENCH_DEPS"] = str(DEPS)
    env.update(extra)
    return env


def connection_json(url: str, **extra: object) -> str:
    """An SMS.online connection on the sandbox at ``url``, for an ``AIRFLOW_CONN_*`` variable."""
    conn: dict[str, object] = {"conn_type": "smsonline", "host": url, "password": API_KEY}
    if extra:
        conn["extra"] = extra
    return json.dumps(conn)


def use_comparison_packages() -> None:
    """Append :data:`DEPS` to this process's import path, after the venv's site-packages.

    Call before anything imports ``airflow``: its ``__path__`` is extended from ``sys.path`` then,
    which is how ``airflow.providers.http`` is found in :data:`DEPS`. Child processes call it too
    (``import_probe.py``, standard library only, reads ``SMSONLINE_BENCH_DEPS`` instead).
    """
    if str(DEPS) not in sys.path:
        sys.path.append(str(DEPS))
    importlib.invalidate_caches()


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def ensure_comparison_packages() -> None:
    """Make providers-http (and httpx) importable, installing what is missing into :data:`DEPS`.

    Only for the comparisons: the provider depends on neither. They go into a directory of their
    own, appended to the import path, so that the venv itself is left as it is (``airflow
    providers list`` and the test suite see no new provider). httpx normally comes with Airflow.
    """
    use_comparison_packages()
    # providers-http without its dependencies (Airflow's own, already here, bar requests-toolbelt);
    # httpx with its own (httpcore, h11, anyio …), which the venv's copies win over if present.
    for dist, specs, flags in (
        ("apache-airflow-providers-http", HTTP_PROVIDER_DEPS, ["--no-deps"]),
        ("httpx", (HTTPX,), []),
    ):
        if _installed(dist):
            continue
        print(f"installing {', '.join(specs)} into {DEPS} for the comparisons …", file=sys.stderr, flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", *flags, "--target", str(DEPS), *specs],
            check=True,
            timeout=600,
        )
        importlib.invalidate_caches()


# ----------------------------------------------------------------------------- the sandbox


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SandboxProcess:
    """The sandbox served by ``python -m airflow_provider_smsonline.sandbox`` in its own process,
    so that neither its memory nor its threads count against the process being measured.

    :param stock: numbers per service and country (rentals the benchmark may make).
    """

    def __init__(self, stock: int = 1_000_000) -> None:
        self.stock = stock
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> SandboxProcess:
        """Start the server and wait until it answers."""
        command = [
            sys.executable,
            "-m",
            "airflow_provider_smsonline.sandbox",
            "--port",
            "0",
            "--api-key",
            API_KEY,
            "--balance",
            "1000000000",
            "--stock",
            str(self.stock),
            "--seed",
            "1",
        ]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=child_env(), cwd=ROOT)
        self._process = process
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        line = process.stdout.readline().strip() if ready else ""
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the sandbox did not start (printed {line!r})")
        self.url = line
        return self

    @property
    def pid(self) -> int:
        """The server process's id."""
        assert self._process is not None
        return self._process.pid

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``."""
        return self.url.split("/stubs/", 1)[0]

    def state(self) -> dict[str, Any]:
        """``GET /sandbox/state``."""
        with _NO_PROXY.open(self.base_url + "/sandbox/state", timeout=60) as response:
            data: dict[str, Any] = json.load(response)
        return data

    def post(self, path: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST JSON to the control API, e.g. ``/sandbox/reset``."""
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(dict(payload or {})).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with _NO_PROXY.open(request, timeout=60) as response:
            data: dict[str, Any] = json.load(response)
        return data

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s). Safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rent_numbers(url: str, count: int, threads: int = 4) -> list[int]:
    """Rent ``count`` numbers (service tg, country 0) on the sandbox at ``url``; their ids, in order.

    Setup, not measured: stdlib ``http.client`` on kept-alive connections from a few threads (the
    fastest way to make 10,000 rentals here), each answer read by the provider's parser.
    """
    from airflow_provider_smsonline import protocol

    return buy_numbers(url, count, threads, protocol.get_rent_number_params("tg", 0), protocol.parse_rental)


def activate_numbers(url: str, count: int, threads: int = 4) -> list[int]:
    """Buy ``count`` activations (service tg, country 0) on the sandbox at ``url``; their ids, in
    order (setup, as :func:`rent_numbers`)."""
    from airflow_provider_smsonline import protocol

    return buy_numbers(url, count, threads, protocol.get_number_params("tg", 0), protocol.parse_number)


def buy_numbers(url: str, count: int, threads: int, params: Mapping[str, str], parse: Any) -> list[int]:
    """Make ``count`` charging calls with ``params`` on the sandbox at ``url`` from ``threads``
    threads on kept-alive connections; the ids ``parse`` reads from the answers, in order."""
    import http.client
    import threading
    from urllib.parse import urlencode, urlsplit

    where = urlsplit(url)
    target = f"{where.path}?" + urlencode({**params, "api_key": API_KEY})
    ids: list[int] = [0] * count
    failures: list[BaseException] = []

    def work(start: int) -> None:
        connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=60)
        try:
            for index in range(start, count, threads):
                connection.request("GET", target)
                response = connection.getresponse()
                ids[index] = parse(response.status, response.read()).id
        except BaseException as exc:  # reported by the caller
            failures.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise RuntimeError(f"buying {count} numbers on the sandbox failed: {failures[0]!r}")
    return ids


@contextlib.contextmanager
def environment(**variables: str) -> Iterator[None]:
    """Set environment variables for the block, then restore them."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# ----------------------------------------------------------------------------- the machine


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    """What the numbers were measured on: CPU, cores, RAM, load, versions, date."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            name, _, value = line.partition(":")
            if not line.strip():
                break  # the first processor is enough
            fields.setdefault(name.strip(), value.strip())
    cpu = fields.get("model name", "unknown")
    if "cpu family" in fields:
        cpu += f" (family {fields['cpu family']} model {fields.get('model', '?')}"
        cpu += f", {float(fields['cpu MHz']):.0f} MHz)" if "cpu MHz" in fields else ")"
    ram = "unknown"
    with contextlib.suppress(OSError, StopIteration, ValueError), open("/proc/meminfo") as meminfo:
        kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
        ram = f"{kb / 1024 / 1024:.1f} GiB"
    load = "unknown"
    with contextlib.suppress(OSError):
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "ram": ram,
        "load average (1, 5, 15 min) at start": load,
        "os": platform.platform(),
        "python": platform.python_version(),
        "apache-airflow": _version("apache-airflow"),
        "apache-airflow-task-sdk": _version("apache-airflow-task-sdk"),
        "apache-airflow-providers-http": _version("apache-airflow-providers-http"),
        "requests": _version("requests"),
        "httpx": _version("httpx"),
        "aiohttp": _version("aiohttp"),
        "airflow-provider-smsonline": _version("airflow-provider-smsonline"),
    }
