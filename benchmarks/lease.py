# What the charging lease costs: rentals per second on one account through real Airflow tasks
# (LocalExecutor, 4 task processes at a time), with the lease, without it, and with the pool of one
# slot it replaces, against the sandbox answering getRentNumber in a realistic time.
"""Rentals per second on one account: charging turns (the lease), none, and a pool of one slot.

Each configuration is the fault run's DAG (``scripts/fault_run.py``: a mapped RentNumberOperator)
with no faults, no kills and no renewals, run by ``airflow dags test --use-executor`` with the
LocalExecutor, four task processes at a time, against the sandbox (its strictest readings: the
ledger reads getRentHistory) answering every getRentNumber after :data:`ANSWER_SECONDS`. The rate
is the task instances divided by the run's time (trigger to end). Configurations take turns over
the rounds. Target: the lease keeps at least half the rate without it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import Row, Spread

ROOT = Path(__file__).resolve().parent.parent
#: Seconds the sandbox takes to answer getRentNumber (a vendor's rental call, typically).
ANSWER_SECONDS = 0.5
#: The lease's rate must be at least this share of the rate without it.
TARGET_SHARE = 0.5
CONFIGURATIONS = {
    "without the lease": {"lease": False},
    "with the lease": {"lease": True},
    "pool of one slot, no lease": {"lease": False, "pool": 1},
}


def _rate(options: dict[str, Any], tasks: int, seed: int) -> float:
    sys.path.insert(0, str(ROOT / "scripts"))
    import fault_run

    with tempfile.TemporaryDirectory(prefix="smsonline-bench-lease-") as home:
        report = fault_run.run(
            fault_run.Options(
                tasks=tasks,
                fault_rate=0.0,
                kills=0,
                seed=seed,
                parallelism=4,
                renewals=0,
                answer_time=ANSWER_SECONDS,
                home=Path(home) / "airflow",
                **options,
            )
        )
    if report.succeeded != tasks or report.double_rentals or report.unaccounted_rentals:
        raise RuntimeError(f"the run did not rent {tasks} numbers once each: {report}")
    return tasks / report.elapsed_dags_test_s


def run(quick: bool, shared: dict[str, Any]) -> list[Row]:
    """Measure; one row per configuration."""
    rounds, tasks = (1, 24) if quick else (2, 40)
    rates: dict[str, list[float]] = {name: [] for name in CONFIGURATIONS}
    names = list(CONFIGURATIONS)
    for index in range(rounds):
        for name in names[index:] + names[:index]:
            rates[name].append(_rate(CONFIGURATIONS[name], tasks, seed=index + 1))
    spread = {name: Spread.of(values) for name, values in rates.items()}
    free = spread["without the lease"].median
    rows = []
    for name, measured in spread.items():
        share = measured.median / free
        is_lease = name == "with the lease"
        rows.append(
            Row(
                f"charging turns: rentals/s on one account, {name} ({tasks} task instances, LocalExecutor, "
                f"4 at a time, answers in {ANSWER_SECONDS:g} s; {rounds} round(s))",
                f"{measured.show('/s', 2)}; {share:.2f}x the rate without the lease",
                f">= {TARGET_SHARE:g}x without it" if is_lease else "reported",
                share >= TARGET_SHARE if is_lease else None,
                "the lease removes ambiguity after answers lost together; the pool removes it by "
                "running whole tasks one at a time",
            )
        )
    return rows
