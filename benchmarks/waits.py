# Waiting rentals: 10,000 RentSmsTrigger waits in one event loop, as the triggerer runs them,
# against the sandbox in its own process, each SMS delivered at a random moment by a third process.
"""N deferred waits in one event loop: memory per wait, SMS to event, CPU per poll, polls.

Three processes: the sandbox; the *trigger process* (``python -m benchmarks.waits --child``),
which runs each trigger's ``run()`` async generator as a task of one loop, as the triggerer does;
and the deliverer (``waits_deliver.py``), which posts each rental's SMS through the sandbox's
control API and samples the sandbox's getRentStatus counter.

The timeline of a pass, from ``T0``:

* ``[0, S)``: the N waits start, evenly spread over one poll interval (``S`` = the interval),
  as waits deferred one after another reach a triggerer; each checks at once, then every
  interval ± 10 %;
* ``[S, S + Q)``: all N wait, nothing arrives: the steady state, on which the CPU per poll and
  the polls per interval are judged;
* ``[S + Q, S + Q + W)``: each rental's SMS is posted at a random moment; each wait ends with
  its event at its next check.

Two passes, each with its own sandbox and rentals: the first (N = 10,000) measures RSS (psutil,
sampled every 0.25 s), the delays, the CPU and the polls; the second (N = 500) repeats the run
under tracemalloc (peak of traced Python allocations), which slows the loop, so its delays are
shown but not judged. Memory is measured after a warm-up wait (lazy imports done) and includes
everything the N waits add: triggers, tasks, connection lookups, the shared HTTP pool and the
answers in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import random
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from benchmarks.common import (
    ROOT,
    Row,
    SandboxProcess,
    Spread,
    child_env,
    connection_json,
    environment,
    rent_numbers,
)

DELIVERER = ROOT / "benchmarks" / "waits_deliver.py"
CONN_ID = "smsonline_bench"
PATTERN = r"code (\d+)"
JITTER = 0.1
#: The memory budget per wait, in bytes.
TARGET_BYTES_PER_WAIT = 20 * 1024
#: An event must fire within the longest jittered poll interval plus this many seconds of its SMS.
TARGET_SLACK_SECONDS = 1.0
#: The interval the core-share figure is scaled to, and the share of one core it may need.
SCALE_WAITS, SCALE_INTERVAL, TARGET_CORE_SHARE = 10_000, 5.0, 0.5


# ----------------------------------------------------------------------------- the trigger process


async def _one_wait(trigger: Any, started: float) -> tuple[int, float, float, dict[str, Any]]:
    """Run ``trigger.run()`` as the triggerer does: take its first event, then close it."""
    events = trigger.run()
    try:
        event = await events.__anext__()
        return trigger.rent_id, started, time.time(), event.payload
    finally:
        await events.aclose()


async def _measure(config: dict[str, Any], deliverer: subprocess.Popen[str]) -> dict[str, Any]:
    import psutil

    from airflow_provider_smsonline.hooks.async_client import AsyncSmsOnlineClient
    from airflow_provider_smsonline.triggers.rent import RentSmsTrigger

    interval, ids = config["interval"], config["ids"]
    # Count the polls where they are made: a counting wrapper around the client's getRentStatus
    # (one more Python call per poll, well under a microsecond). The sandbox's own counters are
    # read once at the end (each read of /sandbox/state lists every rental: ~0.3 s at 10,000).
    polls = 0
    get_rent_status = AsyncSmsOnlineClient.get_rent_status

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal polls
        try:
            return await get_rent_status(self, *args, **kwargs)
        finally:
            polls += 1

    AsyncSmsOnlineClient.get_rent_status = counted  # type: ignore[method-assign]
    # Warm-up: one wait whose SMS is already there, so that lazy imports and first-use caches
    # (connection lookup, log masker, the HTTP pool's code) are in place before the baseline.
    warm = RentSmsTrigger(config["warm_id"], CONN_ID, pattern=PATTERN, seen=[], poll_interval=interval)
    await _one_wait(warm, time.time())
    del warm
    traced = config["tracemalloc"]
    process = psutil.Process()
    gc.collect()
    if traced:
        import tracemalloc

        tracemalloc.start()
    rss_before = process.memory_info().rss
    samples: list[tuple[float, float, int, int]] = []  # (time, CPU seconds, RSS, polls)
    start = time.time()
    timeout_at = datetime.now(timezone.utc) + timedelta(
        seconds=config["stagger"] + config["quiet"] + config["window"] + 4 * interval + 60
    )
    assert deliverer.stdin is not None
    deliverer.stdin.write(f"go {start}\n")
    deliverer.stdin.flush()

    async def watch() -> None:
        while True:
            samples.append((time.time(), time.process_time(), process.memory_info().rss, polls))
            await asyncio.sleep(0.25)

    watcher = asyncio.create_task(watch())
    tasks: list[asyncio.Task[tuple[int, float, float, dict[str, Any]]]] = []
    # The waits reach the loop evenly over `stagger` seconds, a few at a time.
    step = config["stagger"] / len(ids)
    for index, rent_id in enumerate(ids):
        delay = start + index * step - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        trigger = RentSmsTrigger(
            rent_id,
            CONN_ID,
            pattern=PATTERN,
            seen=[],
            poll_interval=interval,
            jitter=JITTER,
            timeout_at=timeout_at,
        )
        tasks.append(asyncio.create_task(_one_wait(trigger, time.time())))
    results = await asyncio.gather(*tasks)
    watcher.cancel()
    samples.append((time.time(), time.process_time(), process.memory_info().rss, polls))
    traced_peak = None
    if traced:
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {
        "start": start,
        "events": {str(rent_id): [begun, moment, payload] for rent_id, begun, moment, payload in results},
        "rss_before": rss_before,
        "samples": samples,
        "traced_peak": traced_peak,
        "load_average": os.getloadavg()[0],
    }


def child() -> None:
    """The trigger process: read the configuration on stdin, print the results as one JSON line."""
    config = json.loads(sys.stdin.readline())
    rng = random.Random(config["seed"])
    first = config["stagger"] + config["quiet"]
    schedule = [
        [rent_id, first + rng.uniform(0, config["window"]), f"Your code {rent_id}"]
        for rent_id in config["ids"]
    ]
    deliverer = subprocess.Popen(
        [sys.executable, str(DELIVERER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert deliverer.stdin is not None and deliverer.stdout is not None
    deliverer.stdin.write(
        json.dumps(
            {
                "base_url": config["base_url"],
                "schedule": schedule,
                "threads": 4,
            }
        )
        + "\n"
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


def _pass(n: int, interval: float, quiet: float, window: float, traced: bool, seed: int) -> dict[str, Any]:
    """One run of ``n`` waits against a fresh sandbox; the child's results plus the sandbox's polls."""
    import psutil

    variable = f"AIRFLOW_CONN_{CONN_ID.upper()}"
    with SandboxProcess() as sandbox, environment(**{variable: connection_json(sandbox.url)}):
        warm_id, *ids = rent_numbers(sandbox.url, n + 1)
        sandbox.post(f"/sandbox/rentals/{warm_id}/sms", {"text": "Your code 1", "phone_from": "Bench"})
        config = {
            "ids": ids,
            "warm_id": warm_id,
            "interval": interval,
            "stagger": interval,
            "quiet": quiet,
            "window": window,
            "base_url": sandbox.base_url,
            "tracemalloc": traced,
            "seed": seed,
        }
        server = psutil.Process(sandbox.pid)
        server_cpu = sum(server.cpu_times()[:2])
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.waits", "--child"],
            input=json.dumps(config) + "\n",
            capture_output=True,
            text=True,
            env=child_env(),
            cwd=ROOT,
            timeout=2 * interval + quiet + window + 10 * interval + 300,
        )
        if out.returncode != 0:
            raise RuntimeError(f"the trigger process failed:\n{out.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        result["sandbox_cpu"] = sum(server.cpu_times()[:2]) - server_cpu
        state = sandbox.state()
        polls, result["sandbox_polls"] = state["polls"], state["requests"].get("getRentStatus", 0)
    # The trigger's warning when a check failed and it backs off (a time-out, a refused connection).
    result["retries"] = out.stderr.count("checking again in")
    result["polls"] = {rent_id: polls.get(str(rent_id), 0) for rent_id in ids}
    result["ids"] = ids
    result["config"] = config
    return result


def _analyse(result: dict[str, Any]) -> dict[str, Any]:
    """Delays, bytes per wait, CPU per poll and polls per interval in the steady state, per rental."""
    config = result["config"]
    interval, n = config["interval"], len(result["ids"])
    start = result["start"]
    delays, wrong, too_often = [], 0, 0
    for rent_id in result["ids"]:
        begun, moment, payload = result["events"][str(rent_id)]
        posted, _ = result["deliveries"][str(rent_id)]
        if payload.get("status") != "success" or payload.get("code") != str(rent_id):
            wrong += 1
        delays.append(moment - posted)  # from when the SMS was posted: the longest it can be
        # No wait may poll more often than its shortest jittered interval allows.
        if result["polls"][rent_id] > 1 + int((moment - begun) / (interval * (1 - JITTER))):
            too_often += 1
    samples = result["samples"]  # (time, CPU seconds, RSS, polls), every 0.25 s
    # The steady state: after every wait has started (a loop short of CPU starts them late, so a
    # second after the last actual start) and before the first SMS is posted.
    first_sms = min(posted for posted, _ in result["deliveries"].values())
    last_start = max(begun for begun, _, _ in result["events"].values())
    steady_from = max(start + config["stagger"], last_start + 1.0)
    steady = [s for s in samples if steady_from <= s[0] <= first_sms]
    if len(steady) >= 2:
        (t_a, cpu_a, _, polls_a), (t_b, cpu_b, _, polls_b) = steady[0], steady[-1]
    else:  # the loop was so short of CPU that the last wait started after the first SMS
        t_a = t_b = cpu_a = cpu_b = polls_a = polls_b = 0
    seconds, steady_polls = t_b - t_a, polls_b - polls_a
    total_polls = samples[-1][3] - samples[0][3]
    return {
        "n": n,
        "delay": Spread.of(delays),
        "wrong": wrong,
        "too_often": too_often,
        "steady_seconds": seconds,
        "start_lag": max(0.0, last_start - (start + config["stagger"])),
        "steady_rate": steady_polls / seconds * interval if seconds else math.nan,  # polls per interval
        "cpu_per_poll_ms": 1000 * (cpu_b - cpu_a) / steady_polls if steady_polls else math.nan,
        "cpu_share": (cpu_b - cpu_a) / seconds if seconds else math.nan,
        "run_cpu_per_poll_ms": 1000 * (samples[-1][1] - samples[0][1]) / max(total_polls, 1),
        "total_polls": total_polls,
        # As judged since the first version of this benchmark: polls over the whole run, per interval.
        "run_rate": total_polls / ((samples[-1][0] - start) / interval),
        "sandbox_polls": result["sandbox_polls"],
        "load_average": result["load_average"],
        "rss_per_wait": (max(s[2] for s in samples) - result["rss_before"]) / n,
        "traced_per_wait": (result["traced_peak"] / n) if result["traced_peak"] is not None else None,
        "seconds": samples[-1][0] - start,
        "retries": result["retries"],
        "sandbox_share": result["sandbox_cpu"] / (samples[-1][0] - start),
    }


def run(quick: bool, shared: dict[str, Any]) -> list[Row]:
    """Two passes (N waits with RSS, then fewer under tracemalloc); rows for memory, delay, CPU, polls."""
    # N waits at this interval make N / interval polls a second: sized so that the sandbox (one
    # Python process) and the trigger process keep up on a shared 2-core machine; the CPU per
    # poll is then scaled to 10,000 waits polling every 5 s.
    if quick:
        n, interval, quiet, window, traced_n = 2000, 5.0, 5.0, 5.0, 500
    else:
        n, interval, quiet, window, traced_n = 10_000, 30.0, 10.0, 15.0, 500
    plain = _analyse(_pass(n, interval, quiet, window, traced=False, seed=1))
    traced = _analyse(_pass(traced_n, 5.0, 2.5, 5.0, traced=True, seed=2))
    limit = interval * (1 + JITTER) + TARGET_SLACK_SECONDS
    rss_kb, traced_kb = plain["rss_per_wait"] / 1024, traced["traced_per_wait"] / 1024
    poke_mb = shared.get("poke_rss_mb")
    poke = (
        f"{n:,} poke-mode sensors hold {n:,} worker slots, one process each: ≥ {poke_mb:.0f} MB RSS "
        f"apiece (airflow.sdk + sensor + hook imported), ≈ {n * poke_mb / 1024:,.0f} GB in all"
        if isinstance(poke_mb, float)
        else f"{n:,} poke-mode sensors hold {n:,} worker slots, one process each"
    )
    setup = (
        f"N = {n:,} in one event loop, poll {interval:g} s ± {JITTER:.0%}, started over {interval:g} s, "
        f"SMS at random within {window:g} s after {quiet:g} s of steady polling"
    )
    per_poll = plain["cpu_per_poll_ms"]
    polls_per_second = SCALE_WAITS / SCALE_INTERVAL
    share = polls_per_second * per_poll / 1000
    bare = ""
    if "httpx_cpu_per_poll_ms" in shared:
        bare = (
            f"; with a bare httpx GET's CPU ({shared['httpx_cpu_per_poll_ms']:.3f} ms): "
            f"{polls_per_second * shared['httpx_cpu_per_poll_ms'] / 1000:.0%}, bare aiohttp "
            f"({shared['aiohttp_cpu_per_poll_ms']:.3f} ms): "
            f"{polls_per_second * shared['aiohttp_cpu_per_poll_ms'] / 1000:.0%} (the polls row)"
        )
    load = f"machine's load average {plain['load_average']:.1f} on {os.cpu_count()} cores"
    return [
        Row(
            f"waiting rentals, peak added memory per wait ({setup})",
            f"RSS {rss_kb:.1f} KB; tracemalloc {traced_kb:.1f} KB (N = {traced['n']:,}, poll 5 s)",
            f"≤ {TARGET_BYTES_PER_WAIT // 1024} KB per wait",
            max(rss_kb, traced_kb) * 1024 <= TARGET_BYTES_PER_WAIT,
            poke,
        ),
        Row(
            "waiting rentals, SMS to event (each wait)",
            f"{plain['delay'].show(' s', 2)}, wrong events {plain['wrong']}",
            f"each ≤ {limit:g} s (longest jittered interval + {TARGET_SLACK_SECONDS:g} s)",
            plain["delay"].high <= limit and plain["wrong"] == 0,
            f"under tracemalloc (N = {traced['n']:,}, poll 5 s): {traced['delay'].show(' s', 2)}, "
            f"wrong events {traced['wrong']}; whole run {plain['seconds']:.0f} s; failed checks retried "
            f"{plain['retries']}; sandbox {plain['sandbox_share']:.0%} of a core; {load}",
        ),
        Row(
            f"waiting rentals, trigger process CPU per poll (steady state: all {n:,} waiting, "
            f"{plain['steady_seconds']:.0f} s)",
            f"{per_poll:.3f} ms; {plain['cpu_share']:.0%} of a core at "
            f"{plain['steady_rate'] / interval:.0f} polls/s"
            if plain["steady_seconds"]
            else "none: the loop, short of CPU, started its last wait after the first SMS",
            "reported",
            None,
            f"whole run, start-ups and events included: {plain['run_cpu_per_poll_ms']:.3f} ms per poll; "
            f"the last wait started {max(plain['start_lag'], 0):.1f} s after its planned moment",
        ),
        Row(
            f"share of one core for {SCALE_WAITS:,} waits polling every {SCALE_INTERVAL:g} s "
            f"({polls_per_second:.0f} polls/s × the CPU per poll above)",
            f"{share:.0%}",
            "reported (the judged target is CPU per poll ≤ 0.5× a bare httpx GET, row above; "
            f"{TARGET_CORE_SHARE:.0%} would need a machine about twice as fast per request)",
            None,
            f"the {n:,} waits above, every {interval:g} s: {plain['cpu_share']:.0%} measured{bare}",
        ),
        Row(
            "waiting rentals, polls",
            f"{plain['run_rate']:.0f} per {interval:g} s on average over the {plain['seconds']:.0f} s run; "
            f"rentals the sandbox saw polled faster than their interval: {plain['too_often']}",
            f"≤ N = {n:,} per interval",
            plain["run_rate"] <= n and plain["too_often"] == 0,
            f"steady state (all {n:,} waiting): {plain['steady_rate']:.0f} per {interval:g} s; each "
            f"rental's polls ≤ 1 + its time waited / ({1 - JITTER:g} × interval); in all: the sandbox "
            f"counted {plain['sandbox_polls']:,}, the trigger process made {plain['total_polls']:,} "
            f"(+ 1 warm-up)",
        ),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the trigger process of the waiting-rentals benchmark")
    parser.add_argument("--child", action="store_true", required=True)
    parser.parse_args()
    child()
