# A later try of one task instance and run that asks for something else than the try that paid
# (a mapped task's list in another order after a clear): the earlier purchase is never served as
# the new one, nothing is charged again, and what was paid for is named. Against the sandbox.
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_smsonline._compat import AirflowFailException
from airflow_provider_smsonline.exceptions import OutcomeUnknownError
from airflow_provider_smsonline.operators.activation import ActivateNumberOperator
from airflow_provider_smsonline.operators.rent import ContinueRentOperator, RentNumberOperator
from airflow_provider_smsonline.sandbox import Sandbox
from tests.conftest import CANARY_KEY, FakeTaskInstance, connection_env, task_context


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch, memory_variables: dict[str, object]) -> Iterator[Sandbox]:
    """A documented-only sandbox, the default connection on it, the ledger's Variables in memory."""
    with Sandbox(port=0, api_key=CANARY_KEY, seed=5) as running:
        monkeypatch.setenv(
            "AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(host=running.url, read_retries=0, timeout=1)
        )
        yield running


def try_of(task_id: str, map_index: int = 0) -> Any:
    """A try of one mapped task instance, always of the same run."""
    return task_context(FakeTaskInstance(task_id=task_id, map_index=map_index))


def charges(sandbox: Sandbox, action: str) -> list[dict[str, Any]]:
    return [c for c in sandbox.state()["charges"] if c["action"] == action]


def rent(service: str) -> RentNumberOperator:
    return RentNumberOperator(task_id="rent", service=service, country=0, rent_time=4)


def test_a_retry_asking_for_another_service_fails_naming_the_rental_and_charges_nothing(
    sandbox: Sandbox, memory_variables: dict[str, object]
) -> None:
    first = rent("tg").execute(try_of("rent"))
    assert len(charges(sandbox, "getRentNumber")) == 1

    with pytest.raises(AirflowFailException) as failure:
        rent("wa").execute(try_of("rent"))  # the same run and map index, asked for another service
    message = str(failure.value)
    assert f"already paid for rental {first['id']} in this run" in message
    assert "service='tg'" in message and "service='wa'" in message
    # Starting anew in this run means deleting the record and the claim it holds on the rental.
    assert re.search(
        r"delete the Airflow Variables 'smsonline_charge__[^']+' and 'smsonline_rental__[^']+'", message
    )
    assert len(charges(sandbox, "getRentNumber")) == 1  # nothing charged again
    held = next(r for r in sandbox.state()["rentals"] if r["id"] == first["id"])
    assert held["status"] == "active" and held["service"] == "tg"  # nor released

    # The same arguments still get the rental back, charging nothing.
    assert rent("tg").execute(try_of("rent")) == first
    assert len(charges(sandbox, "getRentNumber")) == 1


def test_a_renewal_asked_for_another_rental_fails_without_renewing_either(sandbox: Sandbox) -> None:
    a = rent("tg").execute(try_of("rent", 0))
    b = rent("wa").execute(try_of("rent", 1))
    ContinueRentOperator(task_id="renew", rent_id=a["id"], rent_time=4).execute(try_of("renew"))
    assert len(charges(sandbox, "continueRentNumber")) == 1

    with pytest.raises(AirflowFailException, match=f"already paid for rental {a['id']} in this run"):
        ContinueRentOperator(task_id="renew", rent_id=b["id"], rent_time=4).execute(try_of("renew"))
    assert len(charges(sandbox, "continueRentNumber")) == 1


def test_an_activation_asked_for_another_service_fails_naming_it_and_buys_nothing(sandbox: Sandbox) -> None:
    def activate(service: str) -> Any:
        return ActivateNumberOperator(task_id="activate", service=service, country=0).execute(
            try_of("activate")
        )

    first = activate("tg")
    with pytest.raises(AirflowFailException, match=f"already paid for activation {first['id']} in this run"):
        activate("wa")
    assert len(sandbox.state()["activations"]) == 1
    assert activate("tg")["id"] == first["id"]


def test_a_lost_answer_that_bought_nothing_lets_the_new_arguments_be_served(sandbox: Sandbox) -> None:
    sandbox.inject_fault("getRentNumber", "http_500")  # no answer; the server charged nothing
    with pytest.raises(OutcomeUnknownError):  # retryable: the record stays pending
        rent("tg").execute(try_of("rent"))
    assert charges(sandbox, "getRentNumber") == []

    served = rent("wa").execute(try_of("rent"))  # the pending record asked for tg; nothing came of it
    assert next(r for r in sandbox.state()["rentals"] if r["id"] == served["id"])["service"] == "wa"
    assert len(charges(sandbox, "getRentNumber")) == 1


def test_a_record_of_an_older_release_without_the_arguments_is_served_as_before(
    sandbox: Sandbox, memory_variables: dict[str, object]
) -> None:
    first = rent("tg").execute(try_of("rent"))
    (record,) = [v for v in memory_variables.values() if isinstance(v, dict) and v.get("state") == "done"]
    assert record.pop("asked") == {
        "country": 0,
        "operator": None,
        "rent_time": 4,
        "service": "tg",
    }
    assert rent("wa").execute(try_of("rent")) == first  # it cannot tell: reused, as before
    assert len(charges(sandbox, "getRentNumber")) == 1


def test_an_activation_of_a_lost_worker_is_looked_for_as_its_try_asked(sandbox: Sandbox) -> None:
    # A try wrote its pending record for "tg", bought, and its worker was lost before the answer
    # was recorded. The next try asks for "wa": it looks for what the record asked for, finds the
    # activation (its number, masked in getActiveActivations as documented, read from getHistory),
    # refuses to serve it as the "wa" one, names it, and buys nothing.
    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
    from airflow_provider_smsonline.ledger import ChargeLedger
    from airflow_provider_smsonline.ledger.records import ActivationPending, activation_to_json, asked_of

    context = try_of("activate")
    ledger = ChargeLedger.for_context(context)
    started = datetime.now(timezone.utc) - timedelta(hours=1)
    lost = ActivationPending(
        started=started,
        until=started + timedelta(seconds=10),
        snapshot=(),
        service="tg",
        country=0,
        asked=asked_of({"service": "tg", "country": 0, "operator": None}),
    )
    ledger.store.set(ledger.key, activation_to_json(lost, task=ledger.task.to_json(), at=started))
    with SmsOnlineHook() as hook:
        bought = hook.get_number("tg", 0)

    with pytest.raises(AirflowFailException, match=rf"already paid for activation {bought.id} in this run"):
        ActivateNumberOperator(task_id="activate", service="wa", country=0).execute(context)
    assert [a["id"] for a in sandbox.state()["activations"]] == [bought.id]  # nothing bought for "wa"


def test_a_pending_activation_of_an_older_release_is_compared_on_its_service(
    monkeypatch: pytest.MonkeyPatch, memory_variables: dict[str, object]
) -> None:
    # Written before records kept the ask: it still says the service and country it bought for.
    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook
    from airflow_provider_smsonline.ledger import ChargeLedger
    from airflow_provider_smsonline.ledger.records import ActivationPending, activation_to_json

    with Sandbox(port=0, api_key=CANARY_KEY, seed=6, documented_only=False) as rich:  # numbers shown
        monkeypatch.setenv(
            "AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(host=rich.url, read_retries=0, timeout=1)
        )
        context = try_of("activate")
        ledger = ChargeLedger.for_context(context)
        started = datetime.now(timezone.utc) - timedelta(hours=1)
        old = ActivationPending(
            started=started, until=started + timedelta(seconds=10), snapshot=(), service="tg", country=0
        )
        value = activation_to_json(old, task=ledger.task.to_json(), at=started)
        assert value.pop("asked") is None
        ledger.store.set(ledger.key, value)
        with SmsOnlineHook() as hook:
            bought = hook.get_number("tg", 0)

        with pytest.raises(
            AirflowFailException, match=f"already paid for activation {bought.id} in this run"
        ):
            ActivateNumberOperator(task_id="activate", service="wa", country=0).execute(context)
        assert [a["id"] for a in rich.state()["activations"]] == [bought.id]


def test_a_renewal_that_came_back_under_a_new_id_serves_a_try_asking_to_renew_that_id(
    sandbox: Sandbox, memory_variables: dict[str, object]
) -> None:
    from airflow_provider_smsonline.ledger import ChargeLedger, Done
    from airflow_provider_smsonline.ledger.records import asked_of, record_to_json
    from airflow_provider_smsonline.protocol import Rental

    a = rent("tg").execute(try_of("rent", 0))
    b = rent("tg").execute(try_of("rent", 1))
    # The renewal of A was answered with B's id (a peer's documented behaviour): so the record says.
    context = try_of("renew")
    ledger = ChargeLedger.for_context(context)
    renewed = Rental(id=b["id"], number=b["number"], end_date=datetime.fromisoformat(b["end_date"]))
    done = Done(rental=renewed, renewing=a["id"], asked=asked_of({"rent_id": a["id"], "rent_time": 4}))
    ledger.store.set(
        ledger.key, record_to_json(done, task=ledger.task.to_json(), at=datetime.now(timezone.utc))
    )

    again = ContinueRentOperator(task_id="renew", rent_id=b["id"], rent_time=4).execute(context)
    assert again["id"] == b["id"]
    assert charges(sandbox, "continueRentNumber") == []
