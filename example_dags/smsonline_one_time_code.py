# Example: buy a one-time number (an activation), wait for its code without holding a worker, use
# it, complete the activation; a teardown ends it whatever happened, refunding it when no code came.
"""Activate → wait for the code (deferred to the triggerer) → use it → complete.

An activation is the number for one verification code: cheaper than a rental and over within
about 20 minutes. ``max_price`` is the budget guard: above it nothing is bought and the task
fails without retry. In the sandbox, deliver the code with
``POST /sandbox/activations/<id>/code`` (``{"code": "482913"}``); with SMS.online, the service you
signed up to sends it.

``release`` is the teardown of ``activate``: it runs whatever happens after the number was
bought. When no code came (the wait timed out, a task failed) it cancels the activation for a
refund, waiting out the first ~2 minutes in which SMS.online refuses a cancel; when a code came
it completes it (a no-op after ``complete``).
"""

# [START howto_smsonline_one_time_code]
from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, task

from airflow_provider_smsonline.operators.activation import (
    ActivateNumberOperator,
    CancelActivationOperator,
    CompleteActivationOperator,
)
from airflow_provider_smsonline.sensors.activation import ActivationCodeSensor

with DAG(
    dag_id="smsonline_one_time_code",
    schedule=None,
    catchup=False,
    tags=["smsonline", "example"],
) as dag:
    activate = ActivateNumberOperator(task_id="activate", service="tg", country=0, max_price=1)

    wait = ActivationCodeSensor(
        task_id="wait_for_code",
        activation_id=activate.output["id"],
        pattern=r"(\d{4,8})",
        deferrable=True,
        poll_interval=2,
        timeout=timedelta(minutes=15).total_seconds(),
    )

    @task
    def use_code(code: str, number: str) -> None:
        """Stand-in for the task that completes the sign-up with the code."""
        print(f"Number +{number} received code {code}")

    complete = CompleteActivationOperator(task_id="complete", activation_id=activate.output["id"])
    release = CancelActivationOperator(task_id="release", activation_id=activate.output["id"])

    (
        use_code(wait.output["code"], activate.output["number"])
        >> complete
        >> release.as_teardown(setups=activate)
    )
# [END howto_smsonline_one_time_code]
