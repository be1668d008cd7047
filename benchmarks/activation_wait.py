# An activation wait's cost in the triggerer beside a rent wait's: CPU per poll and memory per
# wait, each kind run alone in its own child process against one sandbox in this process.
"""Activation wait vs rent wait: CPU per poll and memory per wait in the triggerer.

For each kind, a child process (``python -m benchmarks.activation_wait --child``) runs ``WAITS``
triggers in one event loop, as the triggerer does: ``ActivationCodeTrigger`` (one getStatus per
poll) or ``RentSmsTrigger`` (one getRentStatus page per poll), every ``INTERVAL`` s ± 10 %, on
activations or rentals that never receive a code. After a warm-up, the child's CPU time over a
measured span is divided by the polls the sandbox counted in that span; memory per wait is the
traced Python memory held after the warm-up (``tracemalloc``), over ``WAITS``. Reported only
(no target): the point is the two side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import tracemalloc
import urllib.parse
import urllib.request
from typing import Any

from benchmarks.common import API_KEY, ROOT, Row, Spread, child_env, connection_json

CONN_ID = "smsonline_bench"
WAITS = 200
INTERVAL = 0.25
ACTIONS = {"activation": "getStatus", "rent": "getRentStatus"}


def _requests(base_url: str, action: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(base_url + "/sandbox/state", timeout=60) as response:
        return int(json.load(response)["requests"].get(action, 0))


async def _measure(kind: str, ids: list[int], base_url: str, seconds: float) -> dict[str, Any]:
    from airflow_provider_smsonline.triggers.activation import ActivationCodeTrigger
    from airflow_provider_smsonline.triggers.rent import RentSmsTrigger

    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]

    async def wait(item: int) -> None:
        trigger: Any
        if kind == "activation":
            trigger = ActivationCodeTrigger(item, CONN_ID, poll_interval=INTERVAL)
        else:
            trigger = RentSmsTrigger(item, CONN_ID, pattern=r"code (\d+)", seen=[], poll_interval=INTERVAL)
        async for event in trigger.run():
            raise RuntimeError(f"a wait ended: {event.payload}")

    tasks = [asyncio.create_task(wait(item)) for item in ids]
    await asyncio.sleep(2.0)  # warm-up: connections, first polls
    held = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    before = await asyncio.to_thread(_requests, base_url, ACTIONS[kind])
    cpu = time.process_time()
    await asyncio.sleep(seconds)
    used = time.process_time() - cpu
    polls = await asyncio.to_thread(_requests, base_url, ACTIONS[kind]) - before
    for task in tasks:
        if task.done():
            task.result()
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"cpu": used, "polls": polls, "bytes_per_wait": held / len(ids)}


def _child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--kind", choices=list(ACTIONS))
    parser.add_argument("--ids")
    parser.add_argument("--base-url")
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args(argv)
    result = asyncio.run(_measure(args.kind, json.loads(args.ids), args.base_url, args.seconds))
    print(json.dumps(result))


def _buy(url: str, kind: str, count: int) -> list[int]:
    from airflow_provider_smsonline import protocol
    from airflow_provider_smsonline.protocol import parse_number, parse_rental

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    ids = []
    for index in range(count):
        country = index % 3
        if kind == "activation":
            params = protocol.get_number_params("tg", country)
        else:
            params = protocol.get_rent_number_params("tg", country)
        query = urllib.parse.urlencode({**params, "api_key": API_KEY})
        with opener.open(f"{url}?{query}", timeout=30) as response:
            body = response.read()
        ids.append((parse_number(200, body) if kind == "activation" else parse_rental(200, body)).id)
    return ids


def run(quick: bool, shared: dict[str, object]) -> list[Row]:
    """Both kinds, ``rounds`` times each; rows of CPU per poll and memory per wait."""
    from airflow_provider_smsonline.sandbox import Sandbox

    rounds, seconds = (2, 3.0) if quick else (2, 6.0)  # sized to keep `make bench` near 5 minutes
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in ACTIONS}
    with Sandbox(port=0, api_key=API_KEY, stock=WAITS, balance=10**7) as sandbox:
        ids = {kind: _buy(sandbox.url, kind, WAITS) for kind in ACTIONS}
        env = child_env(AIRFLOW_CONN_SMSONLINE_BENCH=connection_json(sandbox.url, timeout=10))
        for _ in range(rounds):
            for kind in ACTIONS:
                done = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.activation_wait",
                        "--child",
                        "--kind",
                        kind,
                        "--ids",
                        json.dumps(ids[kind]),
                        "--base-url",
                        sandbox.base_url,
                        "--seconds",
                        str(seconds),
                    ],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=True,
                )
                results[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    per_poll = {k: Spread.of(1e6 * r["cpu"] / max(r["polls"], 1) for r in v) for k, v in results.items()}
    memory = {k: Spread.of(r["bytes_per_wait"] / 1024 for r in v) for k, v in results.items()}
    shared["activation_wait"] = {"per_poll_us": per_poll, "kib_per_wait": memory}
    return [
        Row(
            f"activation wait: CPU per poll ({WAITS} waits)",
            per_poll["activation"].show(" µs", 0),
            "reported",
            None,
            f"rent wait: {per_poll['rent'].show(' µs', 0)}",
        ),
        Row(
            f"activation wait: memory per wait ({WAITS} waits)",
            memory["activation"].show(" KiB", 1),
            "reported",
            None,
            f"rent wait: {memory['rent'].show(' KiB', 1)}",
        ),
    ]


if __name__ == "__main__":
    if "--child" in sys.argv:
        if os.environ.get("SMSONLINE_BENCH_DEPS"):
            sys.path.append(os.environ["SMSONLINE_BENCH_DEPS"])
        _child(sys.argv[1:])
    else:
        for row in run("--quick" in sys.argv, {}):
            print(row)
