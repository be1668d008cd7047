# Run in a fresh process by parse_cost.py: import airflow.sdk, then time (perf_counter, in this
# process) the imports a DAG file or the triggerer adds on top; print the times as one JSON line.
"""Import-time probe: ``python benchmarks/import_probe.py ours|http``.

Standard library only, so that the probe adds nothing to what it measures. Every time is in
milliseconds, measured after ``import airflow.sdk`` has finished, twice: ``*_ms`` is wall time
(``time.perf_counter``), ``*_cpu_ms`` this process's CPU time (``time.process_time``, which
leaves out the time the process waited for a core while other processes used the machine).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

OURS_DAG_MODULES = ("airflow_provider_smsonline.operators.rent", "airflow_provider_smsonline.sensors.rent")
OURS_TRIGGER_MODULE = "airflow_provider_smsonline.triggers.rent"
HTTP_DAG_MODULES = ("airflow.providers.http.operators.http", "airflow.providers.http.sensors.http")
#: BaseOperator subclasses created to price one class.
CLASSES = 20


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


def _timed(result: dict[str, float], key: str, action: Callable[[], object]) -> None:
    """Run ``action``; record its wall time as ``key`` and its CPU time as ``key`` + ``_cpu``."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    result[f"{key}_ms"] = _ms(wall)
    result[f"{key}_cpu_ms"] = (time.process_time() - cpu) * 1000


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _importer(*modules: str) -> Callable[[], None]:
    def load() -> None:
        for module in modules:
            importlib.import_module(module)

    return load


def _operator_class_ms() -> float:
    """Milliseconds to create one BaseOperator subclass (its metaclass wraps ``__init__``)."""
    from airflow.sdk import BaseOperator

    started = time.perf_counter()
    for _ in range(CLASSES):

        class _Probe(BaseOperator):
            template_fields = ("value",)

            def __init__(self, *, value: object = None, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self.value = value

            def execute(self, context: Any) -> None:
                return None

    return _ms(started) / CLASSES


def main(which: str) -> dict[str, float]:
    """The probe's measurements for ``ours`` or ``http``."""
    # providers-http may live outside the venv (benchmarks/common.py installs it there): after
    # the venv's site-packages, before airflow is imported (its __path__ is extended then).
    deps = os.environ.get("SMSONLINE_BENCH_DEPS")
    if deps and deps not in sys.path:
        sys.path.append(deps)
    started = time.perf_counter()
    import airflow.sdk  # noqa: F401  (the baseline every DAG file pays)

    result = {"sdk_ms": _ms(started), "sdk_rss_mb": _rss_mb()}
    if which == "ours":
        _timed(result, "dag", _importer(*OURS_DAG_MODULES))
        _timed(result, "trigger_module", _importer(OURS_TRIGGER_MODULE))
        _timed(result, "trigger_base", _importer("airflow.triggers.base"))
        # First use of the class loads it (and protocol.py) from the private module.
        _timed(result, "trigger_class", lambda: sys.modules[OURS_TRIGGER_MODULE].RentSmsTrigger)
        result["operator_class_ms"] = _operator_class_ms()
        # What one poke-mode sensor process holds: Airflow, the sensor, the hook and requests.
        importlib.import_module("airflow_provider_smsonline.hooks.smsonline")
        importlib.import_module("requests")
        result["poke_rss_mb"] = _rss_mb()
    elif which == "http":
        _timed(result, "dag", _importer(*HTTP_DAG_MODULES))
    else:
        raise SystemExit(f"usage: {sys.argv[0]} ours|http")
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "")))
