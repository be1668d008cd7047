# The demo behind `make demo`: a sandbox, a throwaway Airflow, one DAG that rents a number,
# and the rental read back from Airflow's XCom.
"""Rent a number from the SMS.online sandbox through a real Airflow run, end to end."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", default=str(ROOT / ".airflow_home" / "demo"), help="AIRFLOW_HOME to use")
    parser.add_argument("--service", default="tg")
    parser.add_argument("--country", type=int, default=0)
    parser.add_argument("--rent-time", type=int, default=4)
    args = parser.parse_args()

    from airflow_provider_smsonline.sandbox import Sandbox
    from airflow_provider_smsonline.testing import LocalAirflow

    with Sandbox(host="127.0.0.1", port=0) as sandbox:
        print(f"SMS.online sandbox listening on {sandbox.url}")
        airflow = LocalAirflow(home=args.home, dags_folder=ROOT / "example_dags")
        # SMS.online's dates carry no zone; the sandbox's connection names the zone it writes them
        # in (UTC+3, as SMS.online's peers do), so that end_date reads right.
        airflow.use_sandbox(sandbox)
        # The demo asks the sandbox itself through the same connection, with documented actions:
        # the balance (getBalance) before and after, and the rental's price as getRentList lists it.
        os.environ.update({k: v for k, v in airflow.extra_env.items() if k.startswith("AIRFLOW_CONN_")})
        from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

        with SmsOnlineHook() as hook:
            balance_before = hook.get_balance()
        print(f"Airflow home: {airflow.home} (creating the metadata DB if needed, about 10 s)")
        airflow.migrate()
        print(
            f"Running DAG smsonline_rent_manual with `airflow dags test` (about 20 s): renting a number "
            f"for service {args.service!r} in country {args.country} for {args.rent_time} hours ..."
        )
        conf = {"service": args.service, "country": args.country, "rent_time": args.rent_time}
        run = airflow.dags_test("smsonline_rent_manual", conf=conf)
        if run.state != "success":
            print(run.output[-5000:], file=sys.stderr)
            print(f"\nThe DAG run ended {run.state!r} (exit code {run.returncode}).", file=sys.stderr)
            return 1
        rent = run.task("rent")
        with SmsOnlineHook() as hook:
            balance_after = hook.get_balance()
            rent_id = int(rent.xcoms["id"])
            entry = next((e for e in hook.get_rent_list(rent_id) if e.id == rent_id), None)
        price = "not listed" if entry is None or entry.price is None else f"{entry.price}"
        print()
        print(f"DAG run {run.run_id}: {run.state}")
        print(f"Asked for: service {args.service!r}, country {args.country}, {args.rent_time} hours")
        print("Read back from Airflow's XCom (task 'rent'):")
        print(f"  id        {rent.xcoms['id']}")
        print(f"  number    +{rent.xcoms['number']}")
        print(f"  end_date  {rent.xcoms['end_date']}  ({args.rent_time} hours from the rental)")
        print(f"Cost: {price} (the rental's price in getRentList)")
        print(f"Balance: {balance_before} before, {balance_after} after (getBalance)")
    print("Sandbox stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
