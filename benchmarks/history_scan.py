# Could getRentHistory (100 rentals a call) replace the safety-net poll of many kept rentals
# (one getRentStatus per rental per round)? Measured against the sandbox on what the page
# documents: a call lists the rentals that BEGAN in a window of at most 30 days.
"""getRentHistory as the safety net of many kept rentals: calls a round, and the rentals it sees.

The sandbox (in this process) holds ``N`` kept rentals of 90 days: half rented 40 days ago, half
today (the sandbox's clock moved 40 days between them), each of 100 of them then given an SMS.
One round of the safety net reads:

* **the last 30 days** (one getRentHistory window, what a round can read without knowing when
  each rental began): its calls, and how many of the kept rentals it lists at all;
* **back to the oldest rental** (every 30-day window since): its calls and coverage, reading
  every rental begun in those windows, ended ones included.

Beside them, the rentals whose ``sms`` field changed (the sandbox writes every text as a JSON
list; SMS.online's page writes "the SMS, as a string", so a second SMS with the same text may
not change it), and the poll it would replace: one getRentStatus per rental.
"""

from __future__ import annotations

import random
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

from benchmarks.common import API_KEY, Row, buy_numbers, connection_json, environment

KEPT = 10_000
QUICK_KEPT = 2_000
AGE_DAYS = 40
WITH_SMS = 100


def _requests(sandbox: Any) -> int:
    return int(sandbox.state()["requests"].get("getRentHistory", 0))


def run(quick: bool, shared: dict[str, object]) -> list[Row]:
    """One round each way over ``KEPT`` rentals (``QUICK_KEPT`` with ``quick``)."""
    from airflow_provider_smsonline import protocol
    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
    from airflow_provider_smsonline.sandbox import Sandbox

    kept = QUICK_KEPT if quick else KEPT
    params = protocol.get_rent_number_params("tg", 0, rent_time=2160)
    with Sandbox(port=0, api_key=API_KEY, stock=kept, balance=10**9) as sandbox:
        old = buy_numbers(sandbox.url, kept // 2, 4, params, protocol.parse_rental)
        sandbox.advance_clock(AGE_DAYS * 86400)
        new = buy_numbers(sandbox.url, kept - kept // 2, 4, params, protocol.parse_rental)
        watched = set(old) | set(new)
        with environment(AIRFLOW_CONN_SMSONLINE_DEFAULT=connection_json(sandbox.url, timeout=60)):
            now = datetime.now(timezone.utc)
            hook = SmsOnlineHook()
            before = {row.id: row.sms for row in hook.get_rent_history(now - timedelta(days=AGE_DAYS + 1))}
            chosen = random.Random(5).sample(sorted(watched), WITH_SMS)
            for rent_id in chosen:
                sandbox.deliver_sms(rent_id, text="Your code is 1234")
            results = {}
            for label, days in (("last 30 days", 30), ("back to the oldest", AGE_DAYS + 1)):
                calls = _requests(sandbox)
                rows = hook.get_rent_history(now - timedelta(days=days))
                calls = _requests(sandbox) - calls
                seen = {row.id for row in rows} & watched
                changed = {row.id for row in rows if row.id in watched and row.sms != before.get(row.id)}
                results[label] = {"calls": calls, "seen": len(seen), "changed": len(changed & set(chosen))}
            hook.close()
    shared["history_scan"] = results
    recent, full = results["last 30 days"], results["back to the oldest"]
    return [
        Row(
            f"safety net of {kept:,} kept rentals by getRentHistory (half begun {AGE_DAYS} days ago): "
            "calls a round, rentals listed, new SMS told",
            f"last 30 days: {recent['calls']} calls, lists {recent['seen']:,}/{kept:,}, tells "
            f"{recent['changed']}/{WITH_SMS}; back to the oldest: {full['calls']} calls, lists "
            f"{full['seen']:,}/{kept:,}, tells {full['changed']}/{WITH_SMS}",
            "reported",
            None,
            f"getRentStatus: {kept:,} calls a round; not built: a rental begun over 30 days ago is in "
            "no recent window, and the page's sms is one string (the same text twice may not change it)",
        )
    ]


if __name__ == "__main__":
    for row in run("--quick" in sys.argv, {}):
        print(row)
