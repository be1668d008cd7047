# Fixtures every test file shares: the canary key, an SMS.online connection from the
# environment, and an isolated AIRFLOW_HOME so that no test touches the developer's Airflow.
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
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


@pytest.fixture
def smsonline_conn(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``smsonline_default`` pointing at MOCK_ENDPOINT with the canary key, reads not retried."""
    monkeypatch.setenv("AIRFLOW_CONN_SMSONLINE_DEFAULT", connection_env(read_retries=0))
    yield "smsonline_default"
