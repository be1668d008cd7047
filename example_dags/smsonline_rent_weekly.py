# Example: a scheduled rental, one new number every week for a week.
"""Rent a number for 168 hours every week; one run at a time, no backfill.

If publishing the number fails (after its retries), the teardown ``release_if_unused`` cancels
the rental for a refund (or finishes it once the refund window has closed).
"""

# [START howto_smsonline_rent_weekly]
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_smsonline.operators.rent import RentNumberOperator

with DAG(
    dag_id="smsonline_rent_weekly",
    schedule="@weekly",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["smsonline", "example"],
) as dag:
    rent = RentNumberOperator(task_id="rent", service="tg", country=0, rent_time=168)

    @task
    def publish(rental: dict) -> str:
        """Stand-in for the task that hands the week's number on."""
        print(f"This week's number: +{rental['number']} (rental {rental['id']}, until {rental['end_date']})")
        return rental["number"]

    @task
    def release_if_unused(rent_id: int, ti: Any = None) -> str:
        """Teardown of ``rent``: runs even when a task after it failed. Keeps the number once
        ``publish`` has handed it on; otherwise cancels it for a refund (finishes it once the refund
        window has closed)."""
        from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

        if ti.xcom_pull(task_ids="publish") is not None:
            print(f"Rental {rent_id} is in use: keeping it")
            return "kept"
        with SmsOnlineHook() as hook:
            released = hook.release_rent(rent_id)  # cancelled for a refund, or finished
        print(f"Rental {rent_id} was not handed on: {released}")
        return released

    publish(rent.output) >> release_if_unused(rent.output["id"]).as_teardown(setups=rent)
# [END howto_smsonline_rent_weekly]
