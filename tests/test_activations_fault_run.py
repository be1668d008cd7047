# The activation family's fault run, in process: many task instances buy activations through the
# operator (with the charge ledger, retried as Airflow retries) while the sandbox injects every
# fault mode into getNumber, getActiveActivations and getStatus, and some tries are "killed" between
# the answer and its record. Never two activations for one task instance, never one activation for
# two, every charge held, refunded or named in a failure, and the key nowhere.
from __future__ import annotations

import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from airflow_provider_smsonline._compat import AirflowFailException
from airflow_provider_smsonline.ledger import activation as activation_ledger
from airflow_provider_smsonline.operators.activation import ActivateNumberOperator
from airflow_provider_smsonline.sandbox import FAULT_MODES, Sandbox
from tests.conftest import CANARY_KEY, FakeTaskInstance, assert_no_key, connection_env, task_context

TASKS = 80
RETRIES = 3
RATE = 0.3


class Killed(Exception):
    """A worker killed after getNumber was answered, before the ledger recorded it."""


@pytest.mark.slow
def test_activation_fault_run_never_buys_twice_and_accounts_for_every_charge(
    monkeypatch: pytest.MonkeyPatch, memory_variables: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rng = random.Random(13)
    kill_lock = threading.Lock()
    kills = {"left": 4, "done": 0}
    done_for_real = activation_ledger._done

    def sometimes_killed(ledger: Any, account: str, activation: Any, *more: Any) -> None:
        with kill_lock:
            kill = kills["left"] > 0 and rng.random() < 0.1
            if kill:
                kills["left"] -= 1
                kills["done"] += 1
        if kill:
            raise Killed(f"killed after activation {activation.id} was answered")
        done_for_real(ledger, account, activation, *more)

    monkeypatch.setattr(activation_ledger, "_done", sometimes_killed)
    # The ledger alone under faults (the turns are the Celery fault run's, scripts/faults_celery.py):
    # a lost answer would hold the account's turn for its whole window, one after the other.
    monkeypatch.setenv("AIRFLOW__SMSONLINE__CHARGE_LEASE", "False")
    with Sandbox(port=0, api_key=CANARY_KEY, seed=13, stock=TASKS * 2) as sandbox:
        monkeypatch.setenv(
            "AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(host=sandbox.url, read_retries=0, timeout=1)
        )
        delays = {"slow": 1.5, "timeout_after_commit": 1.5}
        # One plan for every action (a plan replaces the one before): getNumber, the snapshot and
        # the reconciliation's getActiveActivations and getStatus all suffer every mode.
        sandbox.set_random_faults("*", RATE, seed=7, delays=delays)

        def task_instance(index: int) -> dict[str, Any]:
            ti = FakeTaskInstance(task_id=f"activate_{index}")
            op = ActivateNumberOperator(task_id=ti.task_id, service="tg", country=index % 2)
            errors: list[str] = []
            for _ in range(RETRIES + 1):
                try:
                    return {"state": "success", "xcom": op.execute(task_context(ti)), "errors": errors}
                except AirflowFailException as error:
                    errors.append(str(error))
                    return {"state": "failed", "errors": errors}
                except Exception as error:  # retried, as Airflow retries
                    errors.append(f"{type(error).__name__}: {error}")
            return {"state": "failed", "errors": errors}

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(task_instance, range(TASKS)))
        sandbox.clear_faults()
        state = sandbox.state()

    held = [r["xcom"]["id"] for r in results if r["state"] == "success"]
    failures = " ".join(e for r in results for e in r["errors"])
    bought = {a["id"]: a for a in state["activations"]}
    injected = state["faults_injected"]

    assert len(held) == len(set(held)), "one activation held by two task instances"
    assert set(held) <= set(bought)
    for activation_id, record in bought.items():
        accounted = activation_id in held or record["refunded"] or str(activation_id) in failures
        assert accounted, f"activation {activation_id} is paid for, held by none and named nowhere"
    assert sum(1 for r in results if r["state"] == "success") >= TASKS // 2
    assert sum(injected.get("getNumber", {}).values()) >= 10
    # The random plan covers both actions; which call meets which mode depends on the threads'
    # timing, so every mode is asked of the run as a whole, getNumber meeting at least ten.
    assert all(sum(modes.get(mode, 0) for modes in injected.values()) >= 1 for mode in FAULT_MODES), injected
    assert kills["done"] >= 1
    assert_no_key(failures)
    assert_no_key(caplog.text)
    print(
        f"\n{TASKS} task instances: {len(held)} succeeded, {len(bought)} activations bought, "
        f"{sum(1 for r in bought.values() if r['refunded'])} refunded, kills {kills['done']}, "
        f"faults {injected}"
    )
