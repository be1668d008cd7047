#!/usr/bin/env python
# The one entry point of the benchmarks (`make bench`): sets up what it needs, runs each benchmark,
# prints the machine and one table, and exits 1 when a target is missed.
"""Run the benchmarks: ``python benchmarks/run.py [--quick] [--only NAME ...] [--output FILE]``.

``--parse-against REF`` also measures the DAG-parse cost of the package at git ``REF``, paired.

Benchmarks, in order: ``parse`` (DAG parse cost), ``calls`` (call overhead), ``polls`` (CPU per
poll of a waiting trigger beside bare httpx and aiohttp GETs), ``waits`` (10,000 waiting rentals
in one event loop), ``throughput`` (rentals per second), ``activation_waits``, ``activation_scale``
(200 and 2,000 activation waits on one account: API calls a second, code-to-event delay by poll
and by push), ``push`` (webhook hints vs polling: SMS-to-event delay, calls per SMS, triggerer
CPU and DB reads), ``lease`` (rentals per second on one account through real Airflow tasks with
charging turns, without them, and with a pool of one slot) and ``history`` (getRentHistory as
the safety net of 10,000 kept rentals).
providers-http (and httpx, should Airflow not have brought it) are installed for the comparisons
when missing, into a directory of their own outside the venv (``benchmarks/common.py``: ``DEPS``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the benchmarks package importable
    sys.path.insert(0, str(ROOT))
# Airflow writes airflow.cfg into AIRFLOW_HOME on import: keep it out of the user's ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="smsonline-bench-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from benchmarks import (  # noqa: E402
    activation_scale,
    activation_wait,
    call_overhead,
    history_scan,
    lease,
    parse_cost,
    poll_cost,
    push,
    throughput,
    waits,
)
from benchmarks.common import Row, ensure_comparison_packages, machine, table  # noqa: E402

BENCHMARKS = {
    "parse": parse_cost.run,
    "calls": call_overhead.run,
    "polls": poll_cost.run,
    "waits": waits.run,
    "throughput": throughput.run,
    "activation_waits": activation_wait.run,
    "activation_scale": activation_scale.run,
    "push": push.run,
    "lease": lease.run,
    "history": history_scan.run,
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; 0 if every target was met, 1 if one was missed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds and a smaller N (about 3 minutes)")
    parser.add_argument(
        "--only", action="append", choices=list(BENCHMARKS), help="run only this benchmark (repeatable)"
    )
    parser.add_argument("--output", type=Path, help="also write the report (Markdown) to this file")
    parser.add_argument(
        "--parse-against",
        metavar="REF",
        help="also measure the DAG-parse cost of the package at this git ref, in the same rounds",
    )
    args = parser.parse_args(argv)

    ensure_comparison_packages()
    started = time.monotonic()
    about = machine()
    rows: list[Row] = []
    shared: dict[str, object] = {"parse_against": args.parse_against}
    for name in args.only or list(BENCHMARKS):
        print(f"[bench] {name} …", file=sys.stderr, flush=True)
        begun = time.monotonic()
        rows.extend(BENCHMARKS[name](args.quick, shared))
        print(f"[bench] {name} took {time.monotonic() - begun:.0f} s", file=sys.stderr, flush=True)

    lines = [f"- {key}: {value}" for key, value in about.items()]
    lines.append(
        f"- mode: {'--quick' if args.quick else 'full'}; total run time {time.monotonic() - started:.0f} s"
    )
    report = "\n".join(lines) + "\n\n" + table(rows) + "\n"
    print(report)
    if args.output:
        args.output.write_text(report)
    missed = [row.what.strip() for row in rows if row.ok is False]
    for what in missed:
        print(f"MISSED: {what}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
