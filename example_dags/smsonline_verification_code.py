# Example: rent a number, wait for a verification code without holding a worker, use it, release.
"""Rent → wait for the code (deferred to the triggerer) → use it → finish the rental.

The sensor defers: while it waits, no worker slot is held. In the sandbox, deliver the SMS with
``POST /sandbox/rentals/<id>/sms``; with SMS.online, the service you signed up to sends it.

``finish`` is the teardown of ``rent``: it runs whatever happens after the rental was paid for
(the code never came, using it failed), so no number is left rented.
"""

# [START howto_smsonline_verification_code]
from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, task

from airflow_provider_smsonline.operators.rent import FinishRentOperator, RentNumberOperator
from airflow_provider_smsonline.sensors.rent import RentSmsSensor

with DAG(
    dag_id="smsonline_verification_code",
    schedule=None,
    catchup=False,
    tags=["smsonline", "example"],
) as dag:
    rent = RentNumberOperator(task_id="rent", service="tg", country=0, rent_time=4)

    wait = RentSmsSensor(
        task_id="wait_for_code",
        rent_id=rent.output["id"],
        pattern=r"\b(\d{4,8})\b",
        deferrable=True,
        poll_interval=2,
        timeout=timedelta(minutes=15).total_seconds(),
    )

    @task
    def use_code(code: str, number: str) -> None:
        """Stand-in for the task that completes the sign-up with the code."""
        print(f"Number +{number} received code {code}")

    finish = FinishRentOperator(task_id="finish", rent_id=rent.output["id"])

    use_code(wait.output["code"], rent.output["number"]) >> finish.as_teardown(setups=rent)
# [END howto_smsonline_verification_code]
