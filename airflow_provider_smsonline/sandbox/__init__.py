# The sandbox package: a local SMS.online look-alike for tests, demos, benchmarks and DAG development.
# Standard library only: importing it loads neither Airflow nor requests.
"""A local SMS.online look-alike that speaks the same ``handler_api.php`` protocol.

In process::

    from airflow_provider_smsonline.sandbox import Sandbox

    with Sandbox(port=0, api_key="sandbox") as sandbox:
        print(sandbox.url)   # point an SMS.online connection's host here

From a shell: ``python -m airflow_provider_smsonline.sandbox --port 8765 --api-key sandbox``
(``--help`` lists every option and its default).

By default the sandbox answers only the fields SMS.online's pages document (:mod:`.documented`
holds the table; ``Sandbox(documented_only=False)`` adds a few more) and writes every date in
UTC+3 (``Sandbox(utc_offset=...)``), a zone SMS.online never names.

Control API (JSON, no API key, loopback clients only): ``GET /sandbox/state``,
``GET /sandbox/catalogue``, ``POST /sandbox/rentals/<id>/sms``, ``GET|POST|DELETE /sandbox/faults``
(``{"mode": "random", "action": ..., "rate": 0.3, "seed": 1}`` sets a seeded random fault plan),
``POST /sandbox/reset``, ``GET|POST /sandbox/clock``.
"""

from __future__ import annotations

from airflow_provider_smsonline.sandbox.server import Answered, Sandbox, deliver_sms, is_loopback_host
from airflow_provider_smsonline.sandbox.state import (
    COUNTRIES,
    FAULT_MODES,
    SERVICES,
    Fault,
    RandomFaults,
    SandboxError,
    SandboxState,
    price_of,
)

__all__ = [
    "COUNTRIES",
    "FAULT_MODES",
    "SERVICES",
    "Answered",
    "Fault",
    "RandomFaults",
    "Sandbox",
    "SandboxError",
    "SandboxState",
    "deliver_sms",
    "is_loopback_host",
    "price_of",
]
