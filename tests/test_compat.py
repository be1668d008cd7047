# The async connection lookup triggers use (_compat.aget_connection): every source Airflow reads
# (environment, secrets backend, metadata DB through the supervisor), found without blocking the
# event loop, including through the two supervisor channels that broke earlier lookups: Airflow
# 3.1/3.2's triggerer (sync send = async_to_sync on the loop) and `airflow dags test` (no async
# send at all). The real runs on 3.1.0 to 3.3.x are scripts/compat_matrix.py's.
from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_smsonline._compat import AirflowNotFoundException, aget_connection
from tests.conftest import CANARY_FORMS, CANARY_KEY, assert_no_key

CONN_ID = "smsonline_compat"
ENDPOINT = "http://127.0.0.1:8765/stubs/handler_api.php"


@pytest.fixture(autouse=True)
def _no_cached_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secrets backend configured by one test must not stay in the SDK's per-process cache."""
    from airflow.sdk import configuration

    if hasattr(configuration, "_secrets_backend_cache"):
        monkeypatch.setattr(configuration, "_secrets_backend_cache", {})
    monkeypatch.delenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", raising=False)


def _db_row(**fields: Any) -> Any:
    """The supervisor's answer to GetConnection, as it comes from the metadata DB."""
    from airflow.sdk.execution_time.comms import ConnectionResult

    values = {
        "conn_id": CONN_ID,
        "conn_type": "smsonline",
        "host": ENDPOINT,
        "schema": None,
        "login": None,
        "password": CANARY_KEY,
        "port": 8765,
        "extra": json.dumps({"timeout": 7}),
    }
    values.update(fields)
    return ConnectionResult(**values)


class TriggererComms:
    """Airflow 3.1/3.2's triggerer channel: the sync ``send`` is ``async_to_sync(asend)``, and
    ``asend`` only works on the event loop that owns the socket."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.asked: list[str] = []

    def send(self, msg: Any) -> Any:
        from asgiref.sync import async_to_sync

        return async_to_sync(self.asend)(msg)

    async def asend(self, msg: Any) -> Any:
        from airflow.sdk.execution_time.comms import GetConnection

        if asyncio.get_running_loop() is not self.loop:
            raise RuntimeError("Task got Future attached to a different loop")
        await asyncio.sleep(0)  # the answer arrives through the owning loop
        if isinstance(msg, GetConnection):
            self.asked.append(msg.conn_id)
            return _db_row()
        return None


class DagsTestComms:
    """``airflow dags test``'s in-process channel: a sync ``send`` only, no ``asend``."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def send(self, msg: Any) -> Any:
        from airflow.sdk.execution_time.comms import GetConnection

        if isinstance(msg, GetConnection):
            self.asked.append(msg.conn_id)
            return _db_row()
        return None


def _use_comms(monkeypatch: pytest.MonkeyPatch, comms: Any) -> None:
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)


def test_env_connection_gives_host_port_password_and_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps(
            {
                "conn_type": "smsonline",
                "host": ENDPOINT,
                "port": 8765,
                "password": CANARY_KEY,
                "extra": {"timeout": 20, "verify_ssl": False},
            }
        ),
    )

    fields = asyncio.run(aget_connection(CONN_ID))

    assert fields == {
        "conn_id": CONN_ID,
        "host": ENDPOINT,
        "port": 8765,
        "password": CANARY_KEY,
        "extras": {"timeout": 20, "verify_ssl": False},
    }


def test_secrets_backend_connection_is_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "connections.json"
    path.write_text(
        json.dumps(
            {
                CONN_ID: {
                    "conn_type": "smsonline",
                    "host": ENDPOINT,
                    "password": CANARY_KEY,
                    "extra": {"timeout": 5},
                }
            }
        )
    )
    monkeypatch.setenv("AIRFLOW__SECRETS__BACKEND", "airflow.secrets.local_filesystem.LocalFilesystemBackend")
    monkeypatch.setenv("AIRFLOW__SECRETS__BACKEND_KWARGS", json.dumps({"connections_file_path": str(path)}))

    fields = asyncio.run(aget_connection(CONN_ID))

    assert (fields["host"], fields["password"], fields["extras"]) == (ENDPOINT, CANARY_KEY, {"timeout": 5})


def test_metadata_db_connection_through_a_triggerer_whose_channel_lives_on_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Airflow 3.1/3.2: the blocking lookup's supervisor round trip must run back on this loop; a
    # plain worker thread (asyncio.to_thread) would start a second loop and never get the answer.
    async def lookup() -> tuple[dict[str, Any], TriggererComms]:
        comms = TriggererComms(asyncio.get_running_loop())
        _use_comms(monkeypatch, comms)
        return await aget_connection(CONN_ID), comms

    fields, comms = asyncio.run(asyncio.wait_for(lookup(), timeout=30))

    assert comms.asked == [CONN_ID]
    assert (fields["host"], fields["port"], fields["password"]) == (ENDPOINT, 8765, CANARY_KEY)
    assert fields["extras"] == {"timeout": 7}


def test_metadata_db_connection_through_dags_test_channel_without_async_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `airflow dags test` runs the trigger with a supervisor that has no asend: Airflow's own
    # async lookup finds only environment and secrets-backend connections there.
    comms = DagsTestComms()
    _use_comms(monkeypatch, comms)

    fields = asyncio.run(aget_connection(CONN_ID))

    assert comms.asked == [CONN_ID]
    assert fields["password"] == CANARY_KEY


def test_lookup_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import BaseHook
    from airflow.sdk.definitions.connection import Connection

    threads: list[int] = []

    def slow_lookup(conn_id: str) -> Connection:
        threads.append(threading.get_ident())
        time.sleep(0.5)  # a slow secrets backend
        return Connection(conn_id=conn_id, conn_type="smsonline", password=CANARY_KEY)

    monkeypatch.setattr(BaseHook, "get_connection", staticmethod(slow_lookup))

    async def lookup_while_ticking() -> tuple[int, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        ticker = asyncio.create_task(tick())
        await aget_connection(CONN_ID)
        ticker.cancel()
        return ticks, threading.get_ident()

    ticks, loop_thread = asyncio.run(lookup_while_ticking())

    assert threads and threads[0] != loop_thread
    assert ticks >= 10  # the loop kept running other coroutines during the 0.5 s lookup


def test_missing_connection_raises_not_found() -> None:
    with pytest.raises(AirflowNotFoundException, match=CONN_ID):
        asyncio.run(aget_connection(CONN_ID))


def test_airflow_3_1_outside_a_supervised_process_reports_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    # Airflow 3.1's SDK imports the supervisor channel after the other sources miss; a process
    # that is no task or triggerer has none (ImportError).
    from airflow.sdk import BaseHook

    def no_channel(conn_id: str) -> None:
        raise ImportError("cannot import name 'SUPERVISOR_COMMS'")

    monkeypatch.setattr(BaseHook, "get_connection", staticmethod(no_channel))

    with pytest.raises(AirflowNotFoundException, match=CONN_ID):
        asyncio.run(aget_connection(CONN_ID))


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ('{"timeout": 20', "extra is not valid JSON"),
        ("[1, 2]", "extra must be a JSON object"),
        ('"text"', "extra must be a JSON object"),
    ],
)
def test_bad_extra_is_refused_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, extra: str, says: str
) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "smsonline", "password": CANARY_KEY, "extra": extra}),
    )

    with pytest.raises(ValueError, match=says) as raised:
        asyncio.run(aget_connection(CONN_ID))

    assert CONN_ID in str(raised.value)
    assert_no_key(str(raised.value))
    # json's own error quotes the text, which may hold a secret: it is not chained.
    error = raised.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_password_and_extras_are_masked_in_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps(
            {"conn_type": "smsonline", "password": CANARY_KEY, "extra": {"api_key": "extra-secret-42"}}
        ),
    )

    asyncio.run(aget_connection(CONN_ID))

    line = redact(f"key={CANARY_FORMS[0]} extra=extra-secret-42")
    assert CANARY_KEY not in line and "extra-secret-42" not in line
