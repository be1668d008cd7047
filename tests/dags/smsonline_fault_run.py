# The DAG scripts/fault_run.py runs: many RentNumberOperator task instances at once, then renewals
# of some of their rentals, so that injected faults, retries and killed workers can be counted
# against the sandbox's books.
"""``smsonline_fault_run``: a mapped RentNumberOperator, then a mapped ContinueRentOperator.

The size comes from the environment variable ``SMSONLINE_FAULT_TASKS`` (default 10), read when
the file is parsed, so the mapped task instances exist as soon as the run starts (no upstream
task to wait for); ``SMSONLINE_FAULT_RETRIES`` sets the tasks' retries (default 3). Each ``rent``
task instance rents with its own ``webhook_url`` (``.../fault-run/slot/<map_index>``): the
sandbox keeps it on the rental, so every charge names the task instance whose request caused it.
No SMS is delivered in a fault run, so nothing is ever posted there (port 9, discard, on loopback).

Once every ``rent`` task instance has ended, ``renew`` task instance ``i`` (for the first
``SMSONLINE_FAULT_RENEWALS`` slots, default a quarter) renews the rental of ``rent`` task
instance ``i``, or is skipped when that one has none.

``SMSONLINE_FAULT_POOL``, when set, puts every charging task instance in that Airflow pool
(one pool per account: with one slot, one charging call at a time on the account).

``SMSONLINE_FAULT_ACTIVATIONS`` (default 0) adds that many ``activate`` task instances: a
mapped ActivateNumberOperator buying activations on the same account, beside the rentals.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_smsonline.operators.activation import ActivateNumberOperator
from airflow_provider_smsonline.operators.rent import ContinueRentOperator, RentNumberOperator

#: The per-task-instance webhook URL prefix; the slot number is the map index.
SLOT_URL = "http://127.0.0.1:9/fault-run/slot/"
TASKS = int(os.environ.get("SMSONLINE_FAULT_TASKS", "10"))
RETRIES = int(os.environ.get("SMSONLINE_FAULT_RETRIES", "3"))
ACTIVATIONS = int(os.environ.get("SMSONLINE_FAULT_ACTIVATIONS", "0"))
#: The pool of the account's charging task instances; Airflow's default pool when unset.
POOL = os.environ.get("SMSONLINE_FAULT_POOL") or "default_pool"
RENEWALS = min(TASKS, int(os.environ.get("SMSONLINE_FAULT_RENEWALS", str(TASKS // 4))))


class RenewIfRented(ContinueRentOperator):
    """Renew the rental of the ``rent`` task instance of this slot; skipped if it has none."""

    def execute(self, context: Any) -> dict[str, Any]:
        if str(self.rent_id) in ("", "None"):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException("the rent task instance of this slot holds no rental")
        return super().execute(context)


with DAG(
    dag_id="smsonline_fault_run",
    schedule=None,
    catchup=False,
    tags=["smsonline", "fault-run"],
) as dag:
    rent = RentNumberOperator.partial(
        task_id="rent",
        service="tg",
        country=0,
        rent_time=4,
        retries=RETRIES,
        retry_delay=timedelta(0),
        pool=POOL,
    ).expand(webhook_url=[f"{SLOT_URL}{slot}" for slot in range(TASKS)])
    if RENEWALS:
        renew = RenewIfRented.partial(
            task_id="renew",
            rent_time=4,
            retries=RETRIES,
            retry_delay=timedelta(0),
            trigger_rule="all_done",
            pool=POOL,
        ).expand(
            rent_id=[
                f"{{{{ ti.xcom_pull(task_ids='rent', map_indexes={slot}, key='id') }}}}"
                for slot in range(RENEWALS)
            ]
        )
        rent >> renew
    if ACTIVATIONS:
        ActivateNumberOperator.partial(
            task_id="activate",
            service="tg",
            retries=RETRIES,
            retry_delay=timedelta(0),
            cancel_on_failure=False,
            pool=POOL,
        ).expand(country=[slot % 2 for slot in range(ACTIVATIONS)])
