# Example: rent a number on demand, with the service, country and period chosen when triggering.
"""Rent an SMS.online number when triggered; the next task reads the rental from XCom.

Trigger it from the UI ("Trigger DAG w/ config") or ``airflow dags test smsonline_rent_manual``.
If handing the number on fails, the teardown ``release_if_unused`` cancels the rental for a
refund (or finishes it once the refund window has closed): nothing paid for is left unused.
"""

# [START howto_smsonline_rent_manual]
from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_smsonline.operators.rent import RentNumberOperator

with DAG(
    dag_id="smsonline_rent_manual",
    schedule=None,
    catchup=False,
    tags=["smsonline", "example"],
    params={
        "service": Param("tg", type="string", minLength=1, description="Service code, e.g. tg"),
        "country": Param(0, type="integer", minimum=0, description="Country id"),
        "rent_time": Param(
            4, type="integer", enum=[4, 8, 12, 24, 72, 168, 360, 720, 2160], description="Hours"
        ),
    },
    render_template_as_native_obj=True,
) as dag:
    rent = RentNumberOperator(
        task_id="rent",
        service="{{ params.service }}",
        country="{{ params.country }}",
        rent_time="{{ params.rent_time }}",
    )

    @task
    def use_number(rent_id: int, number: str, end_date: str) -> str:
        """Stand-in for the task that gives the number to whatever needs it."""
        print(f"Rental {rent_id}: +{number}, until {end_date}")
        return number

    @task
    def release_if_unused(rent_id: int, ti: Any = None) -> str:
        """Teardown of ``rent``: runs even when a task after it failed. Keeps the number once
        ``use_number`` has handed it on; otherwise cancels it for a refund (finishes it once the refund
        window has closed)."""
        from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

        if ti.xcom_pull(task_ids="use_number") is not None:
            print(f"Rental {rent_id} is in use: keeping it")
            return "kept"
        with SmsOnlineHook() as hook:
            released = hook.release_rent(rent_id)  # cancelled for a refund, or finished
        print(f"Rental {rent_id} was not handed on: {released}")
        return released

    used = use_number(rent.output["id"], rent.output["number"], rent.output["end_date"])
    used >> release_if_unused(rent.output["id"]).as_teardown(setups=rent)
# [END howto_smsonline_rent_manual]
