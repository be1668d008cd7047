# Example: the hook inside TaskFlow (@task) functions: rent a number, read it, release it.
"""TaskFlow with :class:`~airflow_provider_smsonline.hooks.smsonline.SmsOnlineHook`.

``rent_number`` checks the balance and rents; ``read_number`` reads the rental's SMS so far and
hands the number on; ``finish_rental`` releases it. ``finish_rental`` is the teardown of
``rent_number``: it runs even when ``read_number`` failed, so no number is left rented.

Paying from a ``@task`` has no charge ledger: the hook never re-sends a charging call, but a
task *retry* runs the whole function again and would rent a second number. So the renting task
runs with ``retries=0``. ``RentNumberOperator`` records each charge and reconciles after a lost
answer, so it can retry safely: prefer it for renting, and use the hook for everything else.
"""

# [START howto_smsonline_taskflow]
from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task


@dag(dag_id="smsonline_taskflow", schedule=None, catchup=False, tags=["smsonline", "example"])
def smsonline_taskflow() -> None:
    """Rent → read the number → finish, all through the hook."""

    # multiple_outputs pushes id, number and end_date under their own XCom keys, as the
    # operators do, so that rental["id"] below reads one of them.
    @task(retries=0, multiple_outputs=True)
    def rent_number() -> dict[str, Any]:
        from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

        with SmsOnlineHook(smsonline_conn_id="smsonline_default") as hook:
            print(f"Balance before renting: {hook.get_balance()}")
            rental = hook.get_rent_number(service="tg", country=0, rent_time=4)
        return rental.to_xcom()

    @task
    def read_number(rent_id: int, number: str) -> str:
        """Stand-in for the task that gives the number to whatever needs it."""
        from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

        with SmsOnlineHook() as hook:
            received = hook.get_rent_status(rent_id)
        print(f"Rental {rent_id}: +{number}, {len(received)} SMS so far")
        return number

    @task
    def finish_rental(rent_id: int) -> None:
        from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

        with SmsOnlineHook() as hook:
            hook.finish_rent(rent_id)  # finishing twice is not an error
        print(f"Rental {rent_id} finished")

    rental = rent_number()
    read_number(rental["id"], rental["number"]) >> finish_rental(rental["id"]).as_teardown(setups=rental)


smsonline_taskflow()
# [END howto_smsonline_taskflow]
