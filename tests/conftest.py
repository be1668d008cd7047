# Fixtures every test file shares: the canary key, an SMS.online connection from the
# environment, and an isolated AIRFLOW_HOME so that no test touches the developer's Airflow.
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

#: The API key every test uses: '+', '/' and '=' change under URL encoding, so a leak of the
#: encoded form is caught too. Tests assert that none of CANARY_FORMS appears anywhere.
CANARY_KEY = "cAnAry+key/with=PADDING=="
CANARY_FORMS = tuple(dict.fromkeys((CANARY_KEY, quote_plus(CANARY_KEY), quote(CANARY_KEY, safe=""))))

#: The endpoint unit tests mock with requests-mock (nothing listens there).
MOCK_ENDPOINT = "http://smsonline.invalid/stubs/handler_api.php"

_HOME = tempfile.mkdtemp(prefix="smsonline-tests-airflow-home-")
os.environ.setdefault("AIRFLOW_HOME", _HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")


def assert_no_key(text: str | bytes) -> None:
    """Fail if any form of the canary key appears in ``text``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for form in CANARY_FORMS:
        assert form not in text, f"the API key leaked (as {form!r})"


def connection_env(host: str = MOCK_ENDPOINT, password: str = CANARY_KEY, **extra: object) -> str:
    """The JSON of an SMS.online connection for an ``AIRFLOW_CONN_*`` variable."""
    conn: dict[str, object] = {"conn_type": "smsonline", "host": host, "password": password}
    if extra:
        conn["extra"] = extra
    return json.dumps(conn)


@pytest.fixture(autouse=True)
def _quick_charging_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The charging lease's settle time, shortened in this process (tests/test_ledger_lease.py
    tests the mechanism; real Airflow runs keep the production value)."""
    from airflow_provider_smsonline.ledger import lease

    monkeypatch.setattr(lease, "SETTLE_SECONDS", 0.02)
    monkeypatch.setattr(lease, "POLL_SECONDS", 0.01)


@pytest.fixture
def smsonline_conn(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``smsonline_default`` pointing at MOCK_ENDPOINT with the canary key, reads not retried."""
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(read_retries=0))
    yield "smsonline_default"


# ----------------------------------------------------------------------------- core test helpers
# Used by the core's unit tests (protocol, hook, operators, ledger, secrets).


def sent_query(request: object) -> dict[str, str]:
    """The query parameters of a request recorded by requests-mock, case and encoding undone."""
    from urllib.parse import parse_qs, urlsplit

    query = parse_qs(urlsplit(request.url).query, keep_blank_values=True)  # type: ignore[attr-defined]
    return {name: values[-1] for name, values in query.items()}


def sent_actions(mocker: object) -> list[str]:
    """The ``action`` of every request requests-mock saw, in order."""
    return [sent_query(r).get("action", "") for r in mocker.request_history]  # type: ignore[attr-defined]


def action_url(action: str, endpoint: str = MOCK_ENDPOINT) -> str:
    """A requests-mock URL matching only requests for ``action`` on ``endpoint``."""
    return f"{endpoint}?action={action}"


class FakeTaskInstance:
    """Just enough of a task instance for an operator's ``execute``: ids and ``xcom_push``."""

    def __init__(
        self, task_id: str = "rent", run_id: str = "manual__2025-01-01", map_index: int = -1
    ) -> None:
        self.dag_id = "smsonline_dag"
        self.task_id = task_id
        self.run_id = run_id
        self.map_index = map_index
        self.try_number = 1
        self.xcoms: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcoms[key] = value


@pytest.fixture
def task_instance() -> FakeTaskInstance:
    """A fake task instance recording XCom pushes (``.xcoms``)."""
    return FakeTaskInstance()


@pytest.fixture
def memory_variables(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Airflow Variables of the charge ledger kept in a dict (JSON round-tripped), listable as on
    Airflow 3.3: no DB needed."""
    from airflow_provider_smsonline import ledger

    variables: dict[str, object] = {}

    def get(self: object, key: str) -> dict[str, object]:
        return json.loads(json.dumps(variables.get(key, {})))

    def set_(self: object, key: str, value: dict[str, object]) -> None:
        variables[key] = json.loads(json.dumps(value))

    def delete(self: object, key: str) -> None:
        variables.pop(key, None)

    def keys(self: object, prefix: str) -> list[str]:  # as Airflow 3.3 lists them
        return [key for key in list(variables) if key.startswith(prefix)]

    monkeypatch.setattr(ledger.VariableStore, "get", get)
    monkeypatch.setattr(ledger.VariableStore, "set", set_)
    monkeypatch.setattr(ledger.VariableStore, "delete", delete)
    monkeypatch.setattr(ledger.VariableStore, "keys", keys)
    return variables


class LoopbackApi:
    """A real HTTP server on 127.0.0.1 that answers queued behaviours, one per request.

    Behaviours: ``("reply", status, body)``, ``("reset",)`` (TCP RST, no answer) and
    ``("stall", seconds)`` (no answer for that long) and
    ``("trickle", body, seconds_per_byte)``. The last one repeats. ``paths`` records
    every request line's target, query included.
    """

    def __init__(self) -> None:
        import http.server
        import threading

        self.behaviours: list[tuple[object, ...]] = [("reply", 200, b"ACCESS_BALANCE:1.00")]
        self.paths: list[str] = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                import socket
                import struct
                import time

                api.paths.append(self.path)
                behaviour = api.behaviours.pop(0) if len(api.behaviours) > 1 else api.behaviours[0]
                if behaviour[0] == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if behaviour[0] == "trickle":  # ("trickle", body, seconds per byte)
                    payload = bytes(behaviour[1])  # type: ignore[call-overload]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    try:
                        for byte in payload:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(float(behaviour[2]))  # type: ignore[arg-type]
                    except OSError:
                        pass  # the client gave up, as it should
                    self.close_connection = True
                    return
                if behaviour[0] == "stall":
                    time.sleep(float(behaviour[1]))  # type: ignore[arg-type]
                    self.close_connection = True
                    return
                _, status, body = behaviour
                payload = body if isinstance(body, bytes) else str(body).encode()
                self.send_response(int(status))  # type: ignore[call-overload]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/stubs/handler_api.php"

    def behave(self, *behaviours: tuple[object, ...]) -> None:
        """Answer the next requests with ``behaviours`` in order (the last one repeats)."""
        self.behaviours = list(behaviours)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def loopback_api() -> Iterator[LoopbackApi]:
    """A real HTTP server on loopback (see :class:`LoopbackApi`)."""
    api = LoopbackApi()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def refused_endpoint() -> str:
    """A loopback URL where nothing listens: connecting is refused, nothing is sent."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/stubs/handler_api.php"


def task_context(ti: FakeTaskInstance) -> Any:
    """A task's context holding only ``ti`` (typed ``Any``: Airflow's Context is a TypedDict)."""
    return {"ti": ti}
