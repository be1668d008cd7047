# Push vs poll: SmsReceivedTrigger watches in one event loop (as the triggerer runs them) woken by
# webhook hints read from a database by the one shared reader, against polling alone. The sandbox
# runs in its own process; the hints live in a SQLite file (a stand-in for the metadata DB's
# Variable row) written as the api-server's receiver writes them.
"""Push vs poll: SMS-to-event delay, getRentStatus calls per SMS, triggerer CPU and DB reads.

Two passes, each a *watch process* (``python -m benchmarks.push --child``) running N watches of
``SmsReceivedTrigger`` as tasks of one loop, and this process delivering SMS through the
sandbox's control API:

* **push**: N = 10,000 watches polling every 600 s, push on, the hints read from a SQLite file
  (one JSON row, as the Variable) every 0.5 s. First ``IDLE`` seconds with no SMS (the CPU and
  reads "between SMS"), then SMS at ``RATE`` a second to random rentals, each followed at once by
  the hint the receiver would write for it.
* **poll**: N = 1,000 watches polling every 30 s (the default), push off, SMS at the same rate.

The delay is from the SMS reaching the sandbox (its hint written at the same moment) to the
watch yielding its event; the webhook's own hop and Airflow storing the event come on top (the
real multi-process test, ``tests/test_webhook_airflow.py``, prints those delays end to end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from airflow_provider_smsonline.webhook.hints import RENTAL
from benchmarks.common import ROOT, Row, SandboxProcess, Spread, child_env, connection_json, p95, rent_numbers

CONN_ID = "smsonline_bench"
#: Starts the watch process's measurement lines (its other lines are the watches' logs).
MARK = "@@bench "
#: Seconds with no SMS, on which the CPU and the reads between SMS are judged.
IDLE = 20.0
#: SMS a second across all watched rentals (a busy fleet: 170,000 a day).
RATE = 2.0
#: SMS per pass.
SMS = 40
#: Targets.
TARGET_P95 = 2.0
TARGET_CALLS = 2.0
TARGET_CPU = 10.0


# ----------------------------------------------------------------------------- the hint store


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS variable (key TEXT PRIMARY KEY, val TEXT)")
    return db


class SqliteHints:
    """The hint Variable as a row of a SQLite table: written as the receiver writes, read as the
    triggerer's reader reads (one SELECT per read)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.reads = 0
        self._db: sqlite3.Connection | None = None

    def add(self, keys: Any, at: float) -> None:
        """Merge hints for ``keys`` (``(kind, id)``) as the api-server's receiver writes them."""
        from airflow_provider_smsonline.webhook.hints import HINTS_KEY, encode_hints, merge_hints, read_hints

        db = self._db = self._db or _connect(self.path)
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT val FROM variable WHERE key = ?", (HINTS_KEY,)).fetchone()
        text = encode_hints(merge_hints(read_hints(row[0]) if row else None, keys, at))
        db.execute("INSERT OR REPLACE INTO variable VALUES (?, ?)", (HINTS_KEY, text))
        db.execute("COMMIT")

    async def __call__(self) -> str | None:
        """The Variable's text, as the triggerer's reader gets it."""
        from airflow_provider_smsonline.webhook.hints import HINTS_KEY

        db = self._db = self._db or _connect(self.path)
        self.reads += 1
        row = db.execute("SELECT val FROM variable WHERE key = ?", (HINTS_KEY,)).fetchone()
        return str(row[0]) if row else None


# ----------------------------------------------------------------------------- the watch process


class _Records:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    async def load(self, key: str) -> Any:
        return self.data.get(key)

    async def save(self, key: str, record: Any) -> None:
        self.data[key] = record

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)


async def _watch_all(ids: list[int], push: bool, poll: float, db: str) -> None:
    from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient
    from airflow_provider_smsonline.triggers import events
    from airflow_provider_smsonline.triggers.events import SmsReceivedTrigger
    from airflow_provider_smsonline.webhook import news

    source = SqliteHints(db)
    events._records = _Records()
    news.configure(enabled=push, source=source)
    calls = 0
    get_rent_status = AsyncSmsOnlineClient.get_rent_status

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:  # getRentStatus calls, counted here
        nonlocal calls
        calls += 1
        return await get_rent_status(self, *args, **kwargs)

    AsyncSmsOnlineClient.get_rent_status = counted  # type: ignore[method-assign]

    async def watch(rent_id: int) -> None:
        trigger = SmsReceivedTrigger(rent_id=rent_id, smsonline_conn_id=CONN_ID, poll_interval=poll)
        async for _event in trigger.run():
            print(MARK + json.dumps({"event": rent_id, "t": time.time()}), flush=True)

    for rent_id in ids:  # spread over a second, as deferred waits reach a triggerer one by one
        asyncio.get_running_loop().create_task(watch(rent_id))
        await asyncio.sleep(1.0 / len(ids))
    while True:
        sample = {"t": time.time(), "cpu": time.process_time(), "reads": source.reads, "calls": calls}
        print(MARK + json.dumps(sample), flush=True)
        await asyncio.sleep(1.0)


def child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ids", required=True)
    parser.add_argument("--push", action="store_true")
    parser.add_argument("--poll", type=float, required=True)
    parser.add_argument("--db", required=True)
    args = parser.parse_args(argv)
    ids = json.loads(Path(args.ids).read_text())
    asyncio.run(_watch_all(ids, args.push, args.poll, args.db))
    return 0


# ----------------------------------------------------------------------------- one pass


def _pass(sandbox: SandboxProcess, ids: list[int], push: bool, poll: float, work: Path) -> dict[str, Any]:
    db = str(work / f"hints-{'push' if push else 'poll'}.db")
    store = SqliteHints(db)
    store.add([], time.time())
    (work / "ids.json").write_text(json.dumps(ids))
    command = [sys.executable, "-m", "benchmarks.push", "--child", "--ids", str(work / "ids.json")]
    command += ["--poll", str(poll), "--db", db] + (["--push"] if push else [])
    env = child_env(**{f"AIRFLOW_CONN_{CONN_ID.upper()}": connection_json(sandbox.url, timeout=30)})
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    samples: list[dict[str, Any]] = []
    fired: dict[int, float] = {}
    assert process.stdout is not None

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if not line.startswith(MARK):  # the watches' own log lines
                continue
            item = json.loads(line[len(MARK) :])
            if "event" in item:
                fired.setdefault(item["event"], item["t"])
            else:
                samples.append(item)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:

        def polls() -> int:  # getRentStatus calls so far, as the watch process counts them
            time.sleep(1.1)
            return int(samples[-1]["calls"]) if samples else 0

        # Every watch took its baseline and is asleep: the calls reach N and stop growing.
        deadline, last = time.monotonic() + 600, -1
        while time.monotonic() < deadline:
            time.sleep(2)
            now = polls()
            if now >= len(ids) and now == last:
                break
            last = now
        idle_from, calls_idle = time.time(), polls()
        time.sleep(IDLE)
        idle_to, calls_before = time.time(), polls()
        chosen = random.Random(7).sample(ids, SMS)
        sent: dict[int, float] = {}
        for rent_id in chosen:
            sandbox.post(
                f"/sandbox/rentals/{rent_id}/sms", {"text": f"code {rent_id}", "phone_from": "Bench"}
            )
            sent[rent_id] = time.time()
            if push:
                store.add([(RENTAL, rent_id)], time.time())  # what the receiver writes for the webhook
            time.sleep(1.0 / RATE)
        deadline = time.monotonic() + (10 if push else poll * 1.2 + 5)
        while len(fired) < SMS and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(6 if push else 0)  # past the re-checks
        sms_to = time.time()
        calls_after = polls()
    finally:
        process.terminate()
        process.wait(timeout=30)
    delays = [fired[r] - sent[r] for r in chosen if r in fired]

    def window(start: float, end: float) -> tuple[float, float]:
        inside = [s for s in samples if start <= s["t"] <= end]
        first, last = inside[0], inside[-1]
        span = last["t"] - first["t"]
        return 100 * (last["cpu"] - first["cpu"]) / span, (last["reads"] - first["reads"]) / span

    idle_cpu, idle_reads = window(idle_from, idle_to)
    busy_cpu, busy_reads = window(idle_to, sms_to)
    steady_calls = (calls_before - calls_idle) / (idle_to - idle_from) * (sms_to - idle_to)
    return {
        "delays": sorted(delays),
        "fired": len(delays),
        "calls_per_sms": (calls_after - calls_before - steady_calls) / SMS,
        "calls_per_second": (calls_after - calls_before) / (sms_to - idle_to),
        "idle_cpu": idle_cpu,
        "idle_reads": idle_reads,
        "busy_cpu": busy_cpu,
        "busy_reads": busy_reads,
    }


def run(quick: bool, shared: dict[str, object]) -> list[Row]:
    """The push pass (10,000 watches; 2,000 with ``quick``) and the poll pass (1,000)."""
    import tempfile

    watches = 2_000 if quick else 10_000
    with (
        tempfile.TemporaryDirectory(prefix="smsonline-bench-push-") as tmp,
        SandboxProcess(stock=watches + 2_000) as sandbox,
    ):
        work = Path(tmp)
        push = _pass(sandbox, rent_numbers(sandbox.url, watches), True, 600.0, work)
        poll = _pass(sandbox, rent_numbers(sandbox.url, 1_000), False, 30.0, work)
    push_p95 = p95(push["delays"])
    return [
        Row(
            f"SMS to event, push ({watches:,} watches polling every 600 s, hints read every 0.5 s)",
            f"{Spread.of(push['delays']).median:.2f} s, p95 {push_p95:.2f} s ({push['fired']}/{SMS} fired)",
            f"p95 ≤ {TARGET_P95:g} s",
            push_p95 <= TARGET_P95 and push["fired"] == SMS,
            f"poll (1,000 watches every 30 s, no push): median {Spread.of(poll['delays']).median:.1f} s, "
            f"p95 {p95(poll['delays']):.1f} s ({poll['fired']}/{SMS} fired)",
        ),
        Row(
            "getRentStatus calls per SMS, push (beyond the 600 s polls)",
            f"{push['calls_per_sms']:.2f}",
            f"≤ {TARGET_CALLS:g}",
            push["calls_per_sms"] <= TARGET_CALLS,
            f"poll: 1,000 watches every 30 s make {poll['calls_per_second']:.0f} calls/s whatever the SMS "
            f"(10,000 at 5 s: 2,000/s); push pass: {push['calls_per_second']:.2f} calls/s",
        ),
        Row(
            f"watch process CPU between SMS, {watches:,} watches, push on",
            f"{push['idle_cpu']:.1f} % of a core; hint reads {push['idle_reads']:.1f}/s",
            f"< {TARGET_CPU:g} %",
            push["idle_cpu"] < TARGET_CPU,
            f"with SMS at {RATE:g}/s: {push['busy_cpu']:.1f} % of a core, reads {push['busy_reads']:.1f}/s; "
            f"poll pass (1,000 every 30 s, while they poll): {poll['busy_cpu']:.1f} %",
        ),
    ]


if __name__ == "__main__":
    if "--child" in sys.argv:
        sys.argv.remove("--child")
        if os.environ.get("SMSONLINE_BENCH_DEPS"):
            sys.path.append(os.environ["SMSONLINE_BENCH_DEPS"])
        sys.exit(child(sys.argv[1:]))
    for row in run("--quick" in sys.argv, {}):
        print(row)
