# `make demo` as a new user meets it, from a fresh copy of the source: it rents a number through a
# real Airflow run and says what it asked for, what it got, and what that cost (the rental's price
# as getRentList lists it, and the balance before and after, both documented actions).
from __future__ import annotations

import os
import re
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from tests.test_demo_ui import fresh_copy

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


def test_make_demo_says_what_it_rented_for_how_long_and_what_it_cost(tmp_path: Path) -> None:
    import airflow

    source = fresh_copy(tmp_path)
    version = airflow.__version__
    done = subprocess.run(
        ["make", "-o", f".venv/.installed-{version}", f"AIRFLOW_VERSION={version}", "demo"],
        cwd=source,
        env={"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/local/bin:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout
    assert done.returncode == 0, output[-3000:] + done.stderr[-3000:]
    assert "Asked for: service 'tg', country 0, 4 hours" in output
    assert re.search(r"end_date +\S+\+03:00 +\(4 hours from the rental\)", output)
    cost = re.search(r"^Cost: (\d+(?:\.\d+)?) \(the rental's price in getRentList\)$", output, re.MULTILINE)
    balance = re.search(r"^Balance: (\S+) before, (\S+) after \(getBalance\)$", output, re.MULTILINE)
    assert cost and balance, output
    assert Decimal(cost[1]) > 0
    assert Decimal(balance[1]) - Decimal(balance[2]) == Decimal(cost[1])
