# What the charging lease costs: rentals per second on one account through real Airflow tasks
# (the CeleryExecutor, two workers of two slots, on PostgreSQL and Redis: a real scheduler, which
# enforces pools), with the lease, without it, and with the pool of one slot it replaces, against
# the sandbox answering getRentNumber in a realistic time.
"""Rentals per second on one account: charging turns (the lease), none, and a pool of one slot.

Each configuration is the Celery fault run's DAG (``scripts/faults_celery.py``: a mapped
RentNumberOperator) with no faults, no task kills, no worker crash and no renewals, against the
sandbox (its strictest readings: the ledger reads getRentHistory) answering every getRentNumber
after :data:`ANSWER_SECONDS`. The rate is the task instances divided by the run's time (trigger
to the DAG run's end). Configurations take turns over the rounds. Target: the lease keeps at least
half the rate without it. PostgreSQL and Redis come from Debian's packages
(``scripts/ensure_services.sh``, which ``make bench`` runs first).
"""

from __future__ import annotations

import sys
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
    import faults_celery

    report, _ = faults_celery.run(
        faults_celery.CeleryOptions(
            tasks=tasks,
            fault_rate=0.0,
            kills=0,
            seed=seed,
            renewals=0,
            answer_time=ANSWER_SECONDS,
            crash=False,
            parallelism=4,
            **options,
        )
    )
    if report.succeeded != tasks or report.double_rentals or report.unaccounted_rentals:
        raise RuntimeError(f"the run did not rent {tasks} numbers once each: {report}")
    return tasks / report.elapsed_dags_test_s


def run(quick: bool, shared: dict[str, Any]) -> list[Row]:
    """Measure; one row per configuration."""
    rounds, tasks = (1, 24) if quick else (1, 40)
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
                f"charging turns: rentals/s on one account, {name} ({tasks} task instances, CeleryExecutor "
                f"2 workers x 2 slots, answers in {ANSWER_SECONDS:g} s; {rounds} round(s))",
                f"{measured.show('/s', 2)}; {share:.2f}x the rate without the lease",
                f">= {TARGET_SHARE:g}x without it" if is_lease else "reported",
                share >= TARGET_SHARE if is_lease else None,
                "the lease takes turns for the calls only; the pool runs whole tasks one at a time",
            )
        )
    return rows
