# Example: a DAG run for the SMS that reach the kept number, scheduled on an asset that the
# triggerer watches (Airflow 3 event-driven scheduling), beside smsonline_keep_number.
"""Handle every SMS that reaches the number ``smsonline_keep_number`` keeps.

The asset ``smsonline_kept_number`` is watched by an :class:`SmsReceivedTrigger` on the rental in
the Airflow Variable ``smsonline_kept_rental`` (which ``smsonline_keep_number`` writes). Each SMS
that reaches that rental becomes one asset event, and the scheduler starts this DAG for the new
events: SMS that arrive close together can share one run, so ``handle_sms`` loops over them.

When ``smsonline_keep_number`` replaces a rental that has ended, the Variable names the new
rental and the next parse of this file watches it instead (the old watch stops). Until a number
is kept, the asset has no watcher and the DAG waits.

The watch starts when the DAG is unpaused: SMS already on the rental then never fire. With
SMS.online the senders you gave the number to send the SMS; in the sandbox, deliver one with
``POST /sandbox/rentals/<id>/sms``.
"""

# [START howto_smsonline_inbox]
from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, Variable, task

from airflow_provider_smsonline.triggers.events import SmsReceivedTrigger

KEPT = "smsonline_kept_rental"


def _kept_rental() -> Any:
    """The kept rental, read at every parse of this file so that the watch follows it."""
    try:
        return Variable.get(KEPT, default=None, deserialize_json=True)
    except ImportError:
        # Airflow 3.1 parsing outside the DAG processor (`airflow dags test`): the Task SDK has no
        # channel to the metadata DB there, so read the stored Variable directly.
        from airflow.models import Variable as StoredVariable

        return StoredVariable.get(KEPT, default_var=None, deserialize_json=True)


kept = _kept_rental()

kept_number = Asset(
    "smsonline_kept_number",
    watchers=[
        AssetWatcher(
            name=f"smsonline_rental_{kept['id']}",
            trigger=SmsReceivedTrigger(
                rent_id=int(kept["id"]),
                pattern=r"\b(\d{4,8})\b",  # code: the first 4 to 8 digit number, if any
                poll_interval=30,
            ),
        )
    ]
    if kept
    else [],
)

with DAG(
    dag_id="smsonline_inbox",
    schedule=[kept_number],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["smsonline", "example"],
) as dag:

    @task
    def handle_sms(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Stand-in for what your inbox does with each SMS: here, print it and return its id."""
        handled = []
        # A run started by hand has no events (Airflow 3.1's Asset cannot key a plain dict).
        events = triggering_asset_events[kept_number] if triggering_asset_events else []
        for event in events:
            payload = event.extra.get("payload") or {}
            sms = payload.get("sms")
            if not sms:
                continue  # an asset event from elsewhere (e.g. one made by hand in the UI)
            sender, code = sms["phone_from"], payload["code"]
            print(f"Rental {payload['rent_id']}: SMS from {sender} at {sms['date']}, code {code}")
            handled.append({"sms_id": payload["sms_id"], "phone_from": sender, "code": code})
        if not handled:
            print("No SMS in this run (triggered by hand?)")
        return handled

    handle_sms()
# [END howto_smsonline_inbox]
