# Example: rent one number per service with dynamic task mapping, one charging call at a time.
"""Rent a number for each service in the run's config: one mapped ``rent`` task instance each.

Trigger it from the UI ("Trigger DAG w/ config") or ``airflow dags test smsonline_rent_many``.
Each mapped instance pays at most once (the charge ledger keeps one record per map index), and
a bad value fails its own instance only, without retry. ``max_active_tis_per_dagrun=1`` keeps
one charging call of the run in flight, so that a lost answer has one candidate; a one-slot pool
does the same across DAGs. If handing the numbers on fails, the teardown ``release_if_unused``
releases every rental of the run: cancelled for a refund, or finished once the refund window has
closed.
"""

# [START howto_smsonline_rent_many]
from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_smsonline.operators.rent import RentNumberOperator

with DAG(
    dag_id="smsonline_rent_many",
    schedule=None,
    catchup=False,
    tags=["smsonline", "example"],
    params={
        "services": Param(
            ["tg", "wa", "vk"],
            type="array",
            items={"type": "string", "minLength": 1},
            minItems=1,
            description="Service codes: one rental each",
        ),
        "country": Param(0, type="integer", minimum=0, description="Country id"),
        "rent_time": Param(
            24, type="integer", enum=[4, 8, 12, 24, 72, 168, 360, 720, 2160], description="Hours"
        ),
    },
    render_template_as_native_obj=True,
) as dag:

    @task
    def services(params: dict[str, Any] | None = None) -> list[str]:
        """The services of this run: ``rent`` maps over them."""
        return list((params or {})["services"])

    # One task instance per service; country and rent_time are shared (and templated).
    rent = RentNumberOperator.partial(
        task_id="rent",
        country="{{ params.country }}",
        rent_time="{{ params.rent_time }}",
        max_active_tis_per_dagrun=1,
    ).expand(service=services())

    @task
    def hand_out(rentals: list[dict[str, Any]]) -> dict[str, str]:
        """Stand-in for the task that gives the numbers to whatever needs them."""
        numbers = {rental["number"]: rental["end_date"] for rental in rentals}
        for number, end_date in numbers.items():
            print(f"+{number}, until {end_date}")
        return numbers

    @task
    def release_if_unused(rentals: list[dict[str, Any]], ti: Any = None) -> list[str]:
        """Teardown of ``rent``: keeps the numbers once ``hand_out`` has handed them on;
        otherwise releases each rental the run made (cancelled for a refund, or finished)."""
        from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

        if ti.xcom_pull(task_ids="hand_out") is not None:
            print(f"{len(rentals)} rentals are in use: keeping them")
            return ["kept"] * len(rentals)
        with SmsOnlineHook() as hook:
            released = [hook.release_rent(rental["id"]) for rental in rentals]
        print(f"The rentals were not handed on: {released}")
        return released

    handed = hand_out(rent.output)
    handed >> release_if_unused(rent.output).as_teardown(setups=rent)
# [END howto_smsonline_rent_many]
