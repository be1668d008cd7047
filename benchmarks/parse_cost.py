# DAG parse cost: what importing the provider's operator, sensor and trigger modules adds to a
# process that has imported airflow.sdk, beside HttpOperator + HttpSensor, in alternating fresh processes.
"""Import cost of the provider's modules vs apache-airflow-providers-http, in fresh processes.

Each round starts two fresh processes, ours and providers-http's, in alternating order. Each
imports ``airflow.sdk`` and then times, in the process, the imports that follow (see
``import_probe.py``): no baseline process is subtracted. The target is judged on the process's
CPU time (``time.process_time``); wall time (``time.perf_counter``) is shown beside it: the same
on a quiet machine, it also counts the time the process waited for a core on a busy one.
Bytecode is cached (``PYTHONPYCACHEPREFIX``) as it is for an installed package; one warm-up
round is not counted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Row, Spread, child_env

PROBE = ROOT / "benchmarks" / "import_probe.py"
#: The DAG-parse budget of the provider's modules, in milliseconds.
TARGET_MS = 3.0


def _probe(which: str, source: Path = ROOT) -> dict[str, float]:
    """One fresh process's figures; ``source``: the directory holding the package to import.

    The package is found on ``PYTHONPATH``, as an installed wheel is found in site-packages, not
    through the editable install's import hook (setuptools' finder), which no user's DAG
    processor has and which adds about 0.3 ms to the first import of the package.
    """
    extra = {"PYTHONPATH": str(source)}
    out = subprocess.run(
        [sys.executable, str(PROBE), which],
        capture_output=True,
        text=True,
        env=child_env(**extra),
        cwd=source,
        timeout=300,
        check=True,
    )
    data: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


def _checkout(ref: str) -> Path:
    """The package as it was at git ``ref``, in a temporary directory (imported before the venv's)."""
    where = Path(tempfile.mkdtemp(prefix="smsonline-parse-baseline-"))
    archive = subprocess.run(
        ["git", "archive", ref, "airflow_provider_smsonline"], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    return where


def run(quick: bool, shared: dict[str, Any]) -> list[Row]:
    """Measure; ``shared`` receives ``poke_rss_mb`` for the waiting-rentals comparison.

    With ``shared["parse_against"]`` (a git ref), the package at that ref is measured in the same
    rounds too, and the ratio of the two is reported: unlike the milliseconds, which move about 2×
    with the machine's state, the ratio holds from one machine state to the next.
    """
    rounds = 6 if quick else 8
    ref = shared.get("parse_against")
    baseline = _checkout(ref) if ref else None
    probes = {"ours": lambda: _probe("ours"), "http": lambda: _probe("http")}
    if baseline is not None:
        probes["baseline"] = lambda: _probe("ours", baseline)
    for probe in probes.values():  # warm-up: bytecode written, files in the page cache
        probe()
    samples: dict[str, list[dict[str, float]]] = {which: [] for which in probes}
    for index in range(rounds):
        order = list(probes)[index % len(probes) :] + list(probes)[: index % len(probes)]
        for which in order:
            samples[which].append(probes[which]())
    if baseline is not None:
        shutil.rmtree(baseline, ignore_errors=True)
    ours, http = samples["ours"], samples["http"]

    def spread(samples: list[dict[str, float]], *keys: str) -> Spread:
        return Spread.of(sum(s[k] for k in keys) for s in samples)

    def both(samples: list[dict[str, float]], *stages: str) -> tuple[Spread, Spread]:
        """CPU and wall time of ``stages`` together."""
        cpu = spread(samples, *(f"{stage}_cpu_ms" for stage in stages))
        return cpu, spread(samples, *(f"{stage}_ms" for stage in stages))

    modules_cpu, modules = both(ours, "dag", "trigger_module")
    dag_cpu, dag = both(ours, "dag")
    trigger_module_cpu, trigger_module = both(ours, "trigger_module")
    base_cpu = spread(ours, "trigger_base_cpu_ms")
    class_cpu = spread(ours, "trigger_class_cpu_ms")
    first_use_cpu, first_use = both(ours, "trigger_base", "trigger_class")
    http_cpu, http_dag = both(http, "dag")
    sdk = spread(ours + http, "sdk_ms")
    operator_class = spread(ours, "operator_class_ms")
    poke_rss = spread(ours, "poke_rss_mb")
    shared["poke_rss_mb"] = poke_rss.median
    processes = f"{rounds} + {rounds} fresh processes, alternating"
    rows = [
        Row(
            "DAG parse: import operators.rent + sensors.rent + triggers.rent after airflow.sdk "
            f"(CPU time in process, wall time beside it; {processes})",
            f"{modules_cpu.show(' ms', 2)}; wall {modules.show(' ms', 2)}",
            f"≤ {TARGET_MS:g} ms added",
            modules_cpu.median <= TARGET_MS,
            f"HttpOperator + HttpSensor: {http_cpu.show(' ms')}; wall {http_dag.show(' ms')} "
            f"({http_cpu.median / modules_cpu.median:.0f}× ours); "
            f"import airflow.sdk itself: wall {sdk.show(' ms', 0)}",
        ),
        Row(
            "  of which operators.rent + sensors.rent (what a DAG file imports)",
            f"{dag_cpu.show(' ms', 2)}; wall {dag.show(' ms', 2)}",
            f"≤ {TARGET_MS:g} ms added",
            dag_cpu.median <= TARGET_MS,
            f"triggers.rent module alone: {trigger_module_cpu.show(' ms', 2)}; "
            f"wall {trigger_module.show(' ms', 2)} (RentSmsTrigger loads on first use)",
        ),
        Row(
            "RentSmsTrigger first use (triggerer only; never at DAG parse)",
            f"{first_use_cpu.show(' ms')}; wall {first_use.show(' ms')}",
            "reported",
            None,
            f"of which airflow.triggers.base (any trigger pays it): {base_cpu.show(' ms')}; "
            f"our trigger class and protocol.py: {class_cpu.show(' ms')} (CPU)",
        ),
        Row(
            "one BaseOperator subclass (class creation)",
            operator_class.show(" ms", 2),
            "reported",
            None,
            "a DAG file importing operators.rent and sensors.rent creates 9 such classes "
            "(operators.base 3, operators.rent 4, sensors.base 1, sensors.rent 1)",
        ),
    ]
    if baseline is not None:
        theirs = samples["baseline"]
        ratio = Spread.of(a["dag_cpu_ms"] / b["dag_cpu_ms"] for a, b in zip(ours, theirs, strict=True))
        base_cpu = spread(theirs, "dag_cpu_ms")
        rows.append(
            Row(
                f"  operators.rent + sensors.rent beside the package at {ref} (paired rounds, CPU)",
                f"{ratio.show('×', 2)} (per-round ratio)",
                "reported",
                None,
                f"this tree {dag_cpu.show(' ms', 2)}; {ref} {base_cpu.show(' ms', 2)}",
            )
        )
    return rows
