# The DAG scripts/fault_run.py runs: many RentNumberOperator task instances at once, so that
# injected faults, retries and killed workers can be counted against the sandbox's books.
"""``smsonline_fault_run``: one mapped RentNumberOperator with as many task instances as asked.

The size comes from the environment variable ``SMSONLINE_FAULT_TASKS`` (default 10), read when
the file is parsed, so the mapped task instances exist as soon as the run starts (no upstream
task to wait for); ``SMSONLINE_FAULT_RETRIES`` sets the task's retries (default 3). Each task
instance rents with its own ``webhook_url`` (``.../fault-run/slot/<map_index>``): the sandbox
keeps it on the rental, so every charge names the task instance whose request caused it. No SMS
is delivered in a fault run, so nothing is ever posted there (port 9, discard, on loopback).
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG

from airflow_provider_smsonline.operators.rent import RentNumberOperator

#: The per-task-instance webhook URL prefix; the slot number is the map index.
SLOT_URL = "http://127.0.0.1:9/fault-run/slot/"
TASKS = int(os.environ.get("SMSONLINE_FAULT_TASKS", "10"))
RETRIES = int(os.environ.get("SMSONLINE_FAULT_RETRIES", "3"))

with DAG(
    dag_id="smsonline_fault_run",
    schedule=None,
    catchup=False,
    tags=["smsonline", "fault-run"],
) as dag:
    RentNumberOperator.partial(
        task_id="rent",
        service="tg",
        country=0,
        rent_time=4,
        retries=RETRIES,
        retry_delay=timedelta(0),
    ).expand(webhook_url=[f"{SLOT_URL}{slot}" for slot in range(TASKS)])
