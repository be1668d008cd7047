# Example: keep one number for months: renew it before it ends, rent a new one if it is gone.
"""Keep one SMS.online number alive, renewing it weekly.

The rental in use is kept in the Airflow Variable ``smsonline_kept_rental`` (JSON: id, number,
end_date). Each run checks it: still active → renew it for another week; expired, finished, or
never rented → rent a new one. The Variable is updated either way (``smsonline_inbox`` reads it
to watch the kept number's SMS).

``release_if_not_kept`` is a teardown: a new rental that ``remember`` failed to store would be
paid for and never used, so it is cancelled for a refund (or finished once the refund window has
closed). A renewal is never released: the Variable still names that rental. (``rent_new`` cannot
be its setup: ``remember`` follows either branch, and Airflow wants a setup's other downstream
tasks to run on ``all_success``.)
"""

# [START howto_smsonline_keep_number]
from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Variable, task

from airflow_provider_smsonline.operators.rent import ContinueRentOperator, RentNumberOperator

KEPT = "smsonline_kept_rental"

with DAG(
    dag_id="smsonline_keep_number",
    schedule="@weekly",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["smsonline", "example"],
) as dag:

    @task.branch
    def choose() -> str:
        """Renew the kept rental if SMS.online still lists it as active, else rent a new one."""
        from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

        kept = Variable.get(KEPT, default=None, deserialize_json=True)
        if not kept:
            print("No number kept yet: renting one")
            return "rent_new"
        with SmsOnlineHook() as hook:
            # With its id: getRentList answers on every reading of its page (see the guarantees).
            active = {rental.id for rental in hook.get_rent_list(int(kept["id"]))}
        if int(kept["id"]) in active:
            print(f"Renewing rental {kept['id']} (+{kept['number']}, ends {kept['end_date']})")
            return "renew"
        print(f"Rental {kept['id']} has ended: renting a new number")
        return "rent_new"

    renew = ContinueRentOperator(
        task_id="renew",
        rent_id="{{ var.json.smsonline_kept_rental.id }}",
        rent_time=168,
    )
    rent_new = RentNumberOperator(task_id="rent_new", service="tg", country=0, rent_time=168)

    @task(trigger_rule="none_failed_min_one_success")
    def remember(ti=None) -> dict:
        """Store the rental in use (from whichever branch ran) for the next run."""
        kept = ti.xcom_pull(task_ids="renew") or ti.xcom_pull(task_ids="rent_new")
        Variable.set(KEPT, kept, serialize_json=True)
        print(f"Keeping rental {kept['id']}: +{kept['number']} until {kept['end_date']}")
        return kept

    @task
    def release_if_not_kept(ti: Any = None) -> str:
        """Teardown: runs even when ``remember`` failed; releases a new rental it did not store."""
        from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

        rented = ti.xcom_pull(task_ids="rent_new")
        if not rented:
            return "nothing rented"
        kept = Variable.get(KEPT, default=None, deserialize_json=True)
        if kept and int(kept["id"]) == int(rented["id"]):
            return "kept"
        with SmsOnlineHook() as hook:
            released = hook.release_rent(rented["id"])  # cancelled for a refund, or finished
        print(f"Rental {rented['id']} was rented but not kept: {released}")
        return released

    kept_now = remember()
    choose() >> [renew, rent_new] >> kept_now >> release_if_not_kept().as_teardown()
# [END howto_smsonline_keep_number]
