# Many activation waits on one account: the calls SMS.online gets and the delay from a code to the
# wait's event, by poll and by push. The waits run as tasks of one event loop in a child process
# (as the triggerer runs them) against the sandbox in its own process; the hints the push pass
# reads live in a SQLite file written as the api-server's receiver writes them.
"""Activation waits at scale: API calls per second, and code-to-event delay by poll and by push.

Passes, each a *wait process* (``python -m benchmarks.activation_scale --child``) running N
``ActivationCodeTrigger`` waits on activations of one account, and this process delivering
codes through the sandbox's control API:

* **poll, 200** and **poll, 2,000**: N waits with ``poll_interval=2``, push off. First ``IDLE``
  seconds with no code: the API calls a second (getActiveActivations and getStatus, counted by
  the sandbox). Then ``CODES`` codes, one every ``1 / RATE`` s, to random activations: the delay
  from each code reaching the sandbox to its wait's event.
* **push, 2,000**: N waits with ``poll_interval=600``, push on: each code is followed at once by
  the hint the receiver writes for SMS.online's activation webhook; the same measures.

Before this provider shared one getActiveActivations per account, each wait asked getStatus
every ``poll_interval``: N / 2 calls a second at a 2 s poll (the comparison column).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from airflow_provider_smsonline.webhook.hints import ACTIVATION
from benchmarks.common import (
    ROOT,
    Row,
    SandboxProcess,
    Spread,
    activate_numbers,
    child_env,
    connection_json,
    p95,
)
from benchmarks.push import SqliteHints

CONN_ID = "smsonline_bench"
MARK = "@@bench "
#: Seconds with no code, over which the calls a second are counted.
IDLE = 12.0
#: Codes per pass, and how many a second.
CODES = 20
RATE = 2.0
#: Targets.
TARGET_CALLS = 2.0
TARGET_PUSH_P95 = 2.0
ACTIONS = ("getActiveActivations", "getStatus")


# ----------------------------------------------------------------------------- the wait process


async def _wait_all(ids: list[int], poll: float, push: bool, db: str) -> None:
    from airflow_provider_smsonline.triggers.activation import ActivationCodeTrigger
    from airflow_provider_smsonline.webhook import news

    news.configure(enabled=push, source=SqliteHints(db))

    async def wait(activation_id: int) -> None:
        trigger = ActivationCodeTrigger(activation_id, CONN_ID, poll_interval=poll)
        async for event in trigger.run():
            payload = {"event": activation_id, "status": event.payload["status"], "t": time.time()}
            print(MARK + json.dumps(payload), flush=True)

    for activation_id in ids:  # spread over a second, as deferred waits reach a triggerer
        asyncio.get_running_loop().create_task(wait(activation_id))
        await asyncio.sleep(1.0 / len(ids))
    print(MARK + json.dumps({"started": len(ids)}), flush=True)
    while True:
        await asyncio.sleep(3600)


def child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ids", required=True)
    parser.add_argument("--poll", type=float, required=True)
    parser.add_argument("--push", action="store_true")
    parser.add_argument("--db", required=True)
    args = parser.parse_args(argv)
    asyncio.run(_wait_all(json.loads(Path(args.ids).read_text()), args.poll, args.push, args.db))
    return 0


# ----------------------------------------------------------------------------- one pass


def _calls(sandbox: SandboxProcess) -> int:
    requests = sandbox.state()["requests"]
    return sum(int(requests.get(action, 0)) for action in ACTIONS)


def _pass(sandbox: SandboxProcess, count: int, poll: float, push: bool, work: Path) -> dict[str, Any]:
    sandbox.post("/sandbox/reset")
    ids = activate_numbers(sandbox.url, count)
    db = str(work / f"hints-{count}-{poll:g}.db")
    hints = SqliteHints(db)
    hints.add([], time.time())
    (work / "ids.json").write_text(json.dumps(ids))
    command = [
        sys.executable,
        "-m",
        "benchmarks.activation_scale",
        "--child",
        "--ids",
        str(work / "ids.json"),
    ]
    command += ["--poll", str(poll), "--db", db, *(["--push"] if push else [])]
    env = child_env(**{f"AIRFLOW_CONN_{CONN_ID.upper()}": connection_json(sandbox.url, timeout=30)})
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    fired: dict[int, float] = {}
    statuses: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if not line.startswith(MARK):
                continue
            item = json.loads(line[len(MARK) :])
            if "started" in item:
                started.set()
            else:
                fired.setdefault(item["event"], item["t"])
                statuses.append(item["status"])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not started.wait(300):
            raise RuntimeError("the waits did not start")
        time.sleep(4.0)  # every wait has joined and seen a round
        before, at = _calls(sandbox), time.monotonic()
        time.sleep(IDLE)
        idle_rate = (_calls(sandbox) - before) / (time.monotonic() - at)
        chosen = random.Random(11).sample(ids, CODES)
        sent: dict[int, float] = {}
        calls_before = _calls(sandbox)
        for activation_id in chosen:
            code = f"{activation_id % 1_000_000:06d}"
            sandbox.post(f"/sandbox/activations/{activation_id}/code", {"code": code})
            sent[activation_id] = time.time()
            if push:
                hints.add([(ACTIVATION, activation_id)], time.time())  # the receiver's write
            time.sleep(1.0 / RATE)
        deadline = time.monotonic() + (15 if push else poll * 2 + 10)
        while len(fired) < CODES and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)
        calls_codes = _calls(sandbox) - calls_before
    finally:
        process.terminate()
        process.wait(timeout=30)
    delays = sorted(fired[a] - sent[a] for a in chosen if a in fired)
    return {
        "idle_rate": idle_rate,
        "delays": delays,
        "fired": len(delays),
        "other_events": len(statuses) - len(delays),
        "calls_per_code": calls_codes / CODES,
    }


def _median(values: list[float]) -> float:
    return Spread.of(values).median if values else float("inf")


def run(quick: bool, shared: dict[str, object]) -> list[Row]:
    """The three passes; rows of calls a second and of code-to-event delay."""
    import tempfile

    big = 1_000 if quick else 2_000
    with (
        tempfile.TemporaryDirectory(prefix="smsonline-bench-activations-") as tmp,
        SandboxProcess(stock=big + 10) as sandbox,
    ):
        work = Path(tmp)
        small = _pass(sandbox, 200, 2.0, False, work)
        polled = _pass(sandbox, big, 2.0, False, work)
        pushed = _pass(sandbox, big, 600.0, True, work)
    shared["activation_scale"] = {"small": small, "polled": polled, "pushed": pushed}
    rows = []
    for label, result, count in (("200", small, 200), (f"{big:,}", polled, big)):
        rows.append(
            Row(
                f"API calls a second, {label} activation waits on one account, poll_interval 2 s, no code",
                f"{result['idle_rate']:.2f}/s",
                f"≤ {TARGET_CALLS:g}/s",
                result["idle_rate"] <= TARGET_CALLS,
                f"one getStatus per wait per poll (before): {count / 2:,.0f}/s; with codes at {RATE:g}/s: "
                f"{result['calls_per_code']:.2f} calls per code",
            )
        )
    rows.append(
        Row(
            f"code to event, push ({big:,} waits, poll_interval 600 s, hints read every 0.5 s)",
            f"median {_median(pushed['delays']):.2f} s, p95 {p95(pushed['delays']):.2f} s "
            f"({pushed['fired']}/{CODES} fired, {pushed['other_events']} other events)",
            f"p95 ≤ {TARGET_PUSH_P95:g} s",
            p95(pushed["delays"]) <= TARGET_PUSH_P95
            and pushed["fired"] == CODES
            and not pushed["other_events"],
            f"poll ({big:,} waits, poll_interval 2 s): median {_median(polled['delays']):.2f} s, "
            f"p95 {p95(polled['delays']):.2f} s ({polled['fired']}/{CODES} fired); push pass: "
            f"{pushed['idle_rate']:.3f} calls/s between codes, {pushed['calls_per_code']:.2f} per code",
        )
    )
    return rows


if __name__ == "__main__":
    if "--child" in sys.argv:
        sys.argv.remove("--child")
        if os.environ.get("SMSONLINE_BENCH_DEPS"):
            sys.path.append(os.environ["SMSONLINE_BENCH_DEPS"])
        sys.exit(child(sys.argv[1:]))
    for row in run("--quick" in sys.argv, {}):
        print(row)
