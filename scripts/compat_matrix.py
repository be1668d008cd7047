# The compatibility matrix behind `make test-matrix`: what a user of each supported Airflow minor
# gets. For each minor's first release, on the oldest and the newest supported Python: a fresh
# venv, `pip install apache-airflow==X` with the dependency versions of its release date, the
# project's wheel installed the way users install it, and every example DAG run for real.
"""Install each supported Airflow as its users did, add the built wheel, run the example DAGs.

A cell is (Airflow release, Python). Its venv gets ``apache-airflow==X`` and then the wheel, both
with ``pip --uploaded-prior-to <release date + 1 day>``: the dependency versions of the release
day, as Airflow's constraints files would give them (those files cannot be fetched here). pip
asks only the package index (the machine's pip config, find-links, extra indexes and
constraints are set aside: local wheel folders carry no upload dates). Then
``scripts/matrix_driver.py`` runs every example DAG through ``airflow dags test`` against the
sandbox, the connection stored in the metadata DB, and the deferrable wait again with the
connection from an environment variable and from a secrets backend.

Prints a table of what pip resolved and how each cell fared; writes it (Markdown and JSON) and
every step's log under ``--work``. Exit status 1 when any cell failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: Each supported minor's first release and its release date (PyPI upload day).
RELEASES = {"3.1.0": "2025-09-25", "3.2.0": "2026-04-07", "3.3.0": "2026-07-06"}
#: The oldest and the newest Python the provider supports.
PYTHONS = ("3.10", "3.13")
#: The packages whose resolved versions the table shows (besides Airflow's own).
SHOWN = (
    "apache-airflow",
    "apache-airflow-task-sdk",
    "apache-airflow-providers-common-compat",
    "requests",
    "urllib3",
    "aiohttp",
    "httpx",
    "asgiref",
    "structlog",
)
#: pip 26.3 brought --uploaded-prior-to.
PIP = "pip>=26.3"


@dataclass
class Cell:
    airflow: str
    python: str
    interpreter: str = ""
    status: str = "not run"
    versions: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    ran: str = ""

    @property
    def name(self) -> str:
        return f"airflow-{self.airflow}-py{self.python}"

    @property
    def cutoff(self) -> str:
        day = dt.date.fromisoformat(RELEASES[self.airflow]) + dt.timedelta(days=1)
        return f"{day.isoformat()}T00:00:00Z"


def pip_env(cold: bool = False) -> dict[str, str]:
    """The environment pip runs with: only the package index, no local wheels or constraints."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("PIP_") or k.startswith("AIRFLOW")) or k in ("PIP_CERT", "PIP_DEFAULT_TIMEOUT")
    }
    env["PIP_CONFIG_FILE"] = os.devnull  # pip then reads no config file at all
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.pop("PYTHONPATH", None)
    if cold:  # every download from the index, as on a machine that never installed these
        env["PIP_NO_CACHE_DIR"] = "1"
    return env


def find_python(version: str) -> str | None:
    """A working interpreter of ``version`` (a pyenv shim that points elsewhere is skipped)."""
    candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python")))
    candidates += [f"python{version}", f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for candidate in candidates:
        try:
            done = subprocess.run(
                [candidate, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip() == version:
            return candidate
    return None


def run(command: list[str], log: Path, timeout: float, **kwargs: Any) -> float:
    """Run ``command``, appending its output to ``log``; raise on failure. Returns its seconds."""
    started = time.monotonic()
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False, **kwargs
        )
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command[:6])} ...` exited {done.returncode} (see {log})")
    return round(time.monotonic() - started, 1)


def build_wheel(work: Path, python: str, ref: str | None = None) -> Path:
    """Build the project's wheel once, from a copy of the tree (or of git ``ref``)."""
    source = work / "source"
    shutil.rmtree(source, ignore_errors=True)
    if ref:
        source.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    else:
        # A copy, so that the build leaves no build/ or egg-info behind in the checkout.
        shutil.copytree(
            ROOT,
            source,
            ignore=shutil.ignore_patterns(
                ".git",
                ".venv*",
                ".matrix*",
                "build",
                "dist",
                "*.egg-info",
                "__pycache__",
                ".*_cache",
                ".airflow_home",
                "test-artifacts",
            ),
        )
    dist = work / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    run(
        [python, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist), str(source)],
        work / "build.log",
        timeout=600,
        env=pip_env(),
    )
    (wheel,) = dist.glob("*.whl")
    return wheel


def run_cell(cell: Cell, work: Path, wheel: Path, dags: Path, driver_args: list[str], cold: bool) -> Cell:
    home = work / cell.name
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    log = home / "steps.log"
    venv = home / "venv"
    py = str(venv / "bin" / "python")
    env = pip_env(cold)
    started = time.monotonic()
    try:
        cell.seconds["venv"] = run([cell.interpreter, "-m", "venv", str(venv)], log, 120)
        cell.seconds["venv"] += run([py, "-m", "pip", "install", "-q", "--upgrade", PIP], log, 300, env=env)
        dated = ["--uploaded-prior-to", cell.cutoff]
        cell.seconds["airflow"] = run(
            [py, "-m", "pip", "install", "-q", f"apache-airflow=={cell.airflow}", *dated], log, 900, env=env
        )
        # As a user installs it: the wheel alone, pip adding only what it requires.
        cell.seconds["wheel"] = run([py, "-m", "pip", "install", "-q", str(wheel), *dated], log, 300, env=env)
        freeze = subprocess.run(
            [py, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, env=env, check=True
        )
        cell.versions = {p["name"].lower(): p["version"] for p in json.loads(freeze.stdout)}
        report = home / "report.json"
        # -I: the checkout is not importable; the DAGs import the provider from the wheel.
        cell.seconds["dags"] = run(
            [
                py,
                "-I",
                str(ROOT / "scripts" / "matrix_driver.py"),
                "--dags",
                str(dags),
                "--home",
                str(home / "airflow"),
                "--out",
                str(report),
                *driver_args,
            ],
            log,
            900,
            cwd=home,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
        cell.status = "passed"
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
        cell.status = "FAILED"
        cell.problems.append(str(error))
    report = home / "report.json"
    if report.exists():
        runs = json.loads(report.read_text())
        cell.problems += runs["problems"]
        db = sorted({r["dag"] for r in runs["runs"] if r["source"] == "db" and r.get("mode") != "triggerer"})
        others = sorted({r["source"] for r in runs["runs"] if r["source"] != "db"})
        real = [r for r in runs["runs"] if r.get("mode") == "triggerer"]
        cell.ran = f"{len(db)} DAGs" + (f"; wait with {', '.join(others)}" if others else "")
        cell.ran += "; real triggerer" if real else ""
        page = runs.get("account_page") or {}
        cell.ran += (
            "; page rendered" if page.get("rendered") else ("; page mounted" if "balance" in page else "")
        )
    cell.seconds["total"] = round(time.monotonic() - started, 1)
    print(f"[{cell.name}] {cell.status} in {cell.seconds['total']:.0f} s", flush=True)
    return cell


def _matches(cell: Cell, patterns: str) -> bool:
    return patterns == "all" or any(p and p in cell.name for p in patterns.split(","))


def table(cells: list[Cell]) -> str:
    """Markdown: one row per cell, the versions pip resolved and how the example DAGs fared."""
    shown = [name for name in SHOWN[1:] if any(name in c.versions for c in cells)]
    short = {
        "apache-airflow-task-sdk": "task-sdk",
        "apache-airflow-providers-common-compat": "common-compat",
    }
    head = [
        "Airflow",
        "Python",
        *(short.get(n, n) for n in shown),
        "ran (connection in the DB)",
        "result",
        "s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in cells:
        row = [
            cell.airflow,
            cell.python,
            *(cell.versions.get(n, "—") for n in shown),
            cell.ran,
            cell.status,
            f"{cell.seconds.get('total', 0):.0f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--airflow", nargs="*", default=list(RELEASES), choices=list(RELEASES))
    parser.add_argument("--python", nargs="*", default=list(PYTHONS), choices=list(PYTHONS))
    parser.add_argument("--jobs", type=int, default=2, help="cells run at once (default 2)")
    parser.add_argument("--work", type=Path, default=ROOT / ".matrix", help="venvs, logs and reports")
    parser.add_argument(
        "--sources",
        default="env,secrets",
        help="connection sources the deferrable wait also runs with, besides the metadata DB "
        "(comma-separated: env, secrets; empty for none)",
    )
    parser.add_argument(
        "--sources-on",
        default="py" + PYTHONS[-1],
        help="the cells that run --sources: comma-separated parts of cell names such as "
        "'airflow-3.1.0-py3.10' or 'py3.13' (default %(default)s: once per Airflow, the lookup does "
        "not depend on Python), 'all', or '' for none",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated DAG ids the cells run (default: every DAG in --dags)",
    )
    parser.add_argument(
        "--full-on",
        default="",
        help="cells that run every DAG despite --only (same form as --sources-on)",
    )
    parser.add_argument(
        "--triggerer",
        action="store_true",
        help="in the --sources-on cells, also run the waiting DAG through a real scheduler and triggerer",
    )
    parser.add_argument("--cold", action="store_true", help="use no pip cache (to time a first run)")
    parser.add_argument("--dags", type=Path, default=ROOT / "example_dags", help="the DAGs to run")
    parser.add_argument("--ref", help="build the wheel from this git ref instead of the work tree")
    args = parser.parse_args()

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cells = [Cell(a, p) for a in args.airflow for p in args.python]
    for cell in cells:
        found = find_python(cell.python)
        if found is None:
            print(
                f"no working Python {cell.python} found (pyenv or python{cell.python} on PATH)",
                file=sys.stderr,
            )
            return 2
        cell.interpreter = found

    dags = args.dags.resolve()
    started = time.monotonic()
    wheel = build_wheel(work, cells[-1].interpreter, args.ref)
    print(f"built {wheel.name} in {time.monotonic() - started:.0f} s", flush=True)

    def driver_args(cell: Cell) -> list[str]:
        sources = _matches(cell, args.sources_on)
        only = "" if _matches(cell, args.full_on) else args.only
        return [
            "--sources",
            args.sources if sources else "",
            "--only",
            only,
            *(["--triggerer"] if args.triggerer and sources else []),
        ]

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        done = list(pool.map(lambda c: run_cell(c, work, wheel, dags, driver_args(c), args.cold), cells))
    elapsed = time.monotonic() - started

    text = table(done)
    print("\n" + text)
    print(f"\n{len(done)} cells, {args.jobs} at a time: {elapsed:.0f} s wall")
    for cell in done:
        for problem in cell.problems:
            print(f"[{cell.name}] {problem}")
    (work / "matrix.md").write_text(text + "\n")
    (work / "matrix.json").write_text(
        json.dumps({"wall_seconds": round(elapsed, 1), "cells": [c.__dict__ for c in done]}, indent=2)
    )
    passed = sum(c.status == "passed" for c in done)
    print(f"matrix: {passed} passed, {len(done) - passed} failed")
    return 0 if passed == len(done) else 1


if __name__ == "__main__":
    sys.exit(main())
