# The DAGs tests/test_code_before_wait.py runs: a site that answers at once, so that the code lands
# on the rental before the wait's first look, in each of the sensor's modes; and a kept number.
"""``smsonline_code_before_wait_<mode>`` and ``smsonline_kept_number_code``.

``smsonline_code_before_wait_poke`` (``_reschedule``, ``_deferrable``): rent a number, have the
"site" send the code (the sandbox delivers an SMS to the rental), then wait for it with
``RentSmsSensor`` in that mode, and finish the rental.

``smsonline_kept_number_code``: wait for a code on the rental ``params.rent_id`` rented before the
run; ``params.send`` (when not empty) is the SMS the "site" sends first, during the run.
"""

from __future__ import annotations

import json
import urllib.request

from airflow.sdk import DAG, task

from airflow_provider_smsonline.operators.rent import FinishRentOperator, RentNumberOperator
from airflow_provider_smsonline.sensors.rent import RentSmsSensor

CODE = r"\b(\d{4,8})\b"


@task
def send_code(rent_id: int, text: str) -> None:
    """The site that sends the code, at once: the sandbox delivers ``text`` to the rental."""
    from airflow.sdk import BaseHook

    if not text:
        return
    endpoint = str(BaseHook.get_connection("smsonline_default").host)
    request = urllib.request.Request(
        endpoint.split("/stubs/")[0] + f"/sandbox/rentals/{int(rent_id)}/sms",
        data=json.dumps({"text": text, "phone_from": "Telegram"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


for mode in ("poke", "reschedule", "deferrable"):
    with DAG(dag_id=f"smsonline_code_before_wait_{mode}", schedule=None, catchup=False):
        rent = RentNumberOperator(task_id="rent", service="tg", country=0, rent_time=4)
        wait = RentSmsSensor(
            task_id="wait_for_code",
            rent_id=rent.output["id"],
            pattern=CODE,
            mode="reschedule" if mode == "reschedule" else "poke",
            deferrable=mode == "deferrable",
            poll_interval=1,
            timeout=30,
        )
        finish = FinishRentOperator(task_id="finish", rent_id=rent.output["id"])
        send_code(rent.output["id"], "Your code is 482913") >> wait >> finish.as_teardown(setups=rent)

with DAG(
    dag_id="smsonline_kept_number_code",
    schedule=None,
    catchup=False,
    params={"rent_id": 0, "send": ""},
):
    kept_wait = RentSmsSensor(
        task_id="wait_for_code",
        rent_id="{{ params.rent_id }}",
        pattern=CODE,
        deferrable=True,
        poll_interval=1,
        timeout=8,
    )
    send_code("{{ params.rent_id }}", "{{ params.send }}") >> kept_wait
