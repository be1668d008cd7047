# The demo behind `make demo`: a sandbox, a throwaway Airflow, one DAG that rents a number,
# and the rental read back from Airflow's XCom.
"""Rent a number from the SMS.online sandbox through a real Airflow run, end to end."""

from __future__ import annotations

import argparse
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
        # SMS.online's dates carry no zone; the connection names the server's (the sandbox writes
        # UTC+3, as SMS.online's peers do), so that end_date reads right.
        airflow.use_sandbox(sandbox, server_timezone="Etc/GMT-3")
        print(f"Airflow home: {airflow.home} (creating the metadata DB if needed)")
        airflow.migrate()
        print("Running DAG smsonline_rent_manual with `airflow dags test` ...")
        conf = {"service": args.service, "country": args.country, "rent_time": args.rent_time}
        run = airflow.dags_test("smsonline_rent_manual", conf=conf)
        if run.state != "success":
            print(run.output[-5000:], file=sys.stderr)
            print(f"\nThe DAG run ended {run.state!r} (exit code {run.returncode}).", file=sys.stderr)
            return 1
        rent = run.task("rent")
        state = sandbox.state()
        print()
        print(f"DAG run {run.run_id}: {run.state}")
        print("Read back from Airflow's XCom (task 'rent'):")
        print(f"  id        {rent.xcoms['id']}")
        print(f"  number    +{rent.xcoms['number']}")
        print(f"  end_date  {rent.xcoms['end_date']}")
        print(
            f"Sandbox: {len(state['rentals'])} rental(s), {len(state['charges'])} charge(s), "
            f"balance now {state['balance']}"
        )
    print("Sandbox stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
