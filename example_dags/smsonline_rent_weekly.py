# Example: a scheduled rental, one new number every week for a week.
"""Rent a number for 168 hours every week; one run at a time, no backfill."""

from __future__ import annotations

from datetime import datetime, timedelta

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
    def publish(rental: dict) -> None:
        """Stand-in for the task that hands the week's number on."""
        print(f"This week's number: +{rental['number']} (rental {rental['id']}, until {rental['end_date']})")

    publish(rent.output)
