# Waiting rentals: N RentSmsTrigger waits in one event loop, as the triggerer runs them, against the
# sandbox in its own process, each SMS delivered at a random moment by a third process.
"""N deferred waits in one event loop: memory per wait, time from SMS to event, polls per interval.

Three processes: the sandbox; the *trigger process* (``python -m benchmarks.waits --child``),
which runs each trigger's ``run()`` async generator as a task of one loop, as the triggerer does;
and the deliverer (``waits_deliver.py``), which posts each rental's SMS at a random moment of the
delivery window and samples the sandbox's getRentStatus counter every second.

Two passes, each with its own sandbox and rentals: the first measures RSS (psutil, sampled every
0.25 s), the delay from SMS to event and the polls; the second repeats the run under tracemalloc
(peak of traced Python allocations), which slows the loop, so its delays are shown but not judged.
Memory is measured after a warm-up wait (lazy imports done) and includes everything the N waits
add: triggers, tasks, connection lookups, the shared HTTP pool and in-flight answers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from benchmarks.common import ROOT, Row, SandboxProcess, Spread, child_env, connection_json, environment

DELIVERER = ROOT / "benchmarks" / "waits_deliver.py"
CONN_ID = "smsonline_bench"
PATTERN = r"code (\d+)"
#: The memory budget per wait, in bytes.
TARGET_BYTES_PER_WAIT = 20 * 1024
#: An event must fire within one poll interval plus this many seconds of its SMS.
TARGET_SLACK_SECONDS = 1.0


# ----------------------------------------------------------------------------- the trigger process


async def _one_wait(trigger: Any) -> tuple[int, float, dict[str, Any]]:
    """Run ``trigger.run()`` as the triggerer does: take its first event, then close it."""
    events = trigger.run()
    try:
        event = await events.__anext__()
        return trigger.rent_id, time.time(), event.payload
    finally:
        await events.aclose()


async def _measure(config: dict[str, Any], deliverer: subprocess.Popen[str]) -> dict[str, Any]:
    import psutil

    from airflow_provider_smsonline.triggers.rent import RentSmsTrigger

    interval, jitter = config["interval"], config["jitter"]
    # Warm-up: one wait whose SMS is already there, so that lazy imports and first-use caches
    # (connection lookup, log masker, httpx) are in place before the baseline is taken.
    await _one_wait(RentSmsTrigger(config["warm_id"], CONN_ID, pattern=PATTERN, poll_interval=interval))
    traced = config["tracemalloc"]
    process = psutil.Process()
    gc.collect()
    if traced:
        import tracemalloc

        tracemalloc.start()
    rss_before = process.memory_info().rss
    rss_peak = rss_before
    since = datetime.now(timezone.utc)
    timeout_at = since + timedelta(seconds=config["window"] + 4 * interval + 60)
    triggers = [
        RentSmsTrigger(
            rent_id,
            CONN_ID,
            pattern=PATTERN,
            since=since,
            poll_interval=interval,
            jitter=jitter,
            timeout_at=timeout_at,
        )
        for rent_id in config["ids"]
    ]
    tasks = [asyncio.create_task(_one_wait(trigger)) for trigger in triggers]
    start = time.time()  # no task has run yet: every first poll comes after this
    cpu_start = time.process_time()
    assert deliverer.stdin is not None
    deliverer.stdin.write(f"go {start}\n")
    deliverer.stdin.flush()

    async def watch_rss() -> None:
        nonlocal rss_peak
        while True:
            rss_peak = max(rss_peak, process.memory_info().rss)
            await asyncio.sleep(0.25)

    watcher = asyncio.create_task(watch_rss())
    results = await asyncio.gather(*tasks)
    cpu_used = time.process_time() - cpu_start
    watcher.cancel()
    rss_peak = max(rss_peak, process.memory_info().rss)
    traced_peak = None
    if traced:
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {
        "start": start,
        "events": {str(rent_id): [moment, payload] for rent_id, moment, payload in results},
        "rss_added": rss_peak - rss_before,
        "traced_peak": traced_peak,
        "cpu_seconds": cpu_used,
        "load_average": os.getloadavg()[0],
    }


def child() -> None:
    """The trigger process: read the configuration on stdin, print the results as one JSON line."""
    config = json.loads(sys.stdin.readline())
    rng = random.Random(config["seed"])
    schedule = [
        [rent_id, rng.uniform(0, config["window"]), f"Your code {rent_id}"] for rent_id in config["ids"]
    ]
    deliverer = subprocess.Popen(
        [sys.executable, str(DELIVERER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert deliverer.stdin is not None and deliverer.stdout is not None
    deliverer.stdin.write(
        json.dumps({"base_url": config["base_url"], "schedule": schedule, "sample_every": 1.0}) + "\n"
    )
    deliverer.stdin.flush()
    result = asyncio.run(_measure(config, deliverer))
    deliverer.stdin.write("stop\n")
    deliverer.stdin.flush()
    delivered = json.loads(deliverer.stdout.readline())
    deliverer.wait(timeout=60)
    result.update(delivered)
    print(json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- the parent


def _pass(n: int, window: float, interval: float, jitter: float, traced: bool, seed: int) -> dict[str, Any]:
    """One run of ``n`` waits against a fresh sandbox; the child's results plus the sandbox's polls."""
    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

    variable = f"AIRFLOW_CONN_{CONN_ID.upper()}"
    with SandboxProcess() as sandbox, environment(**{variable: connection_json(sandbox.url)}):
        env = child_env()
        with SmsOnlineHook(smsonline_conn_id=CONN_ID) as hook:
            ids = [hook.get_rent_number("tg", 0).id for _ in range(n + 1)]
        warm_id, ids = ids[0], ids[1:]
        sandbox.post(f"/sandbox/rentals/{warm_id}/sms", {"text": "Your code 1", "phone_from": "Bench"})
        config = {
            "ids": ids,
            "warm_id": warm_id,
            "interval": interval,
            "jitter": jitter,
            "window": window,
            "base_url": sandbox.base_url,
            "tracemalloc": traced,
            "seed": seed,
        }
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.waits", "--child"],
            input=json.dumps(config) + "\n",
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=window + 10 * interval + 300,
        )
        if out.returncode != 0:
            raise RuntimeError(f"the trigger process failed:\n{out.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        polls = sandbox.state()["polls"]
    result["polls"] = {rent_id: polls.get(str(rent_id), 0) for rent_id in ids}
    result["ids"] = ids
    return result


def _analyse(result: dict[str, Any], interval: float, jitter: float) -> dict[str, Any]:
    """Delays from SMS to event, bytes per wait, polls per interval and per rental."""
    n = len(result["ids"])
    start = result["start"]
    delays, spans, wrong = [], {}, 0
    for rent_id in result["ids"]:
        moment, payload = result["events"][str(rent_id)]
        posted, _ = result["deliveries"][str(rent_id)]
        if payload.get("status") != "success" or payload.get("code") != str(rent_id):
            wrong += 1
        delays.append(moment - posted)  # from when the SMS was posted: the longest it can be
        spans[rent_id] = moment - start
    # No trigger may poll more often than its shortest jittered interval allows.
    too_often = sum(
        1
        for rent_id, polls in result["polls"].items()
        if polls > 1 + int(spans[rent_id] / (interval * (1 - jitter)))
    )
    samples = result["samples"]
    end = max(moment for moment, _ in result["events"].values())
    total = samples[-1][1] - samples[0][1]
    rate = total / ((end - start) / interval)  # polls per interval, averaged over the whole wait
    # The busiest interval: counts between samples (one a second) about one interval apart; the
    # first interval, when every wait checks at once, apart from the rest.
    busiest = {"start": 0, "later": 0}
    for i, (t_i, c_i) in enumerate(samples):
        for t_j, c_j in samples[i + 1 :]:
            if t_j - t_i >= interval - 0.05:
                if t_j - t_i <= interval + 0.5:
                    phase = "start" if t_i - start < interval - 0.05 else "later"
                    busiest[phase] = max(busiest[phase], c_j - c_i)
                break
    return {
        "n": n,
        "delay": Spread.of(delays),
        "wrong": wrong,
        "too_often": too_often,
        "rate": rate,
        "busiest": busiest,
        "cpu_per_poll_ms": 1000 * result["cpu_seconds"] / max(total, 1),
        "cpu_share": result["cpu_seconds"] / (end - start),
        "load_average": result["load_average"],
        "rss_per_wait": result["rss_added"] / n,
        "traced_per_wait": (result["traced_peak"] / n) if result["traced_peak"] is not None else None,
        "seconds": end - start,
    }


def run(quick: bool, shared: dict[str, Any]) -> list[Row]:
    """Two passes (RSS, then tracemalloc); rows for memory, delay and polls."""
    n, window, interval, jitter = (300, 10.0, 5.0, 0.1) if quick else (1000, 20.0, 5.0, 0.1)
    plain = _analyse(_pass(n, window, interval, jitter, traced=False, seed=1), interval, jitter)
    traced = _analyse(_pass(n, window, interval, jitter, traced=True, seed=2), interval, jitter)
    limit = interval + TARGET_SLACK_SECONDS
    rss_kb, traced_kb = plain["rss_per_wait"] / 1024, traced["traced_per_wait"] / 1024
    poke_mb = shared.get("poke_rss_mb")
    poke = (
        f"{n} poke-mode sensors hold {n} worker slots, one process each: ≥ {poke_mb:.0f} MB RSS apiece "
        f"(airflow.sdk + sensor + hook imported), ≈ {n * poke_mb / 1024:.0f} GB in all"
        if isinstance(poke_mb, float)
        else f"{n} poke-mode sensors hold {n} worker slots, one process each"
    )
    setup = f"N = {n}, poll {interval:g} s ± {jitter:.0%}, SMS at random within {window:g} s"
    return [
        Row(
            f"waiting rentals, peak added memory per wait ({setup})",
            f"RSS {rss_kb:.1f} KB; tracemalloc {traced_kb:.1f} KB",
            f"≤ {TARGET_BYTES_PER_WAIT // 1024} KB per wait",
            max(rss_kb, traced_kb) * 1024 <= TARGET_BYTES_PER_WAIT,
            poke,
        ),
        Row(
            "waiting rentals, SMS to event (each wait)",
            f"{plain['delay'].show(' s', 2)}, wrong events {plain['wrong']}",
            f"each ≤ {limit:g} s (interval + {TARGET_SLACK_SECONDS:g} s)",
            plain["delay"].high <= limit and plain["wrong"] == 0,
            f"trigger process: {plain['cpu_per_poll_ms']:.1f} ms CPU per poll (start-up included), "
            f"{plain['cpu_share']:.0%} of a core on average (machine's load average "
            f"{plain['load_average']:.1f} on {os.cpu_count()} cores); "
            f"under tracemalloc: {traced['delay'].show(' s', 2)}, "
            f"wrong events {traced['wrong']}",
        ),
        Row(
            "waiting rentals, polls seen by the sandbox",
            f"{plain['rate']:.0f} per {interval:g} s on average over {plain['seconds']:.0f} s; "
            f"rentals polled faster than their interval: {plain['too_often']}",
            f"≤ N = {n} per interval",
            plain["rate"] <= n and plain["too_often"] == 0,
            f"busiest {interval:g} s window: {plain['busiest']['later']} after the first {interval:g} s, "
            f"{plain['busiest']['start']} in it (each wait checks at once on start, and a jittered "
            f"next check may come {jitter:.0%} early)",
        ),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the trigger process of the waiting-rentals benchmark")
    parser.add_argument("--child", action="store_true", required=True)
    parser.parse_args()
    child()
