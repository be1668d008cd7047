# CPU per poll in the triggerer's event loop: RentSmsTrigger waits beside bare httpx and bare
# aiohttp GETs of the same getRentStatus query, in one process, against the sandbox in another.
"""CPU per poll: ``RentSmsTrigger`` vs a bare ``httpx.AsyncClient`` GET vs a bare
``aiohttp.ClientSession`` GET, all in the same run.

Two processes: the sandbox, and the *poll process* (``python -m benchmarks.poll_cost --child``),
whose CPU time is what is measured. In the poll process, one event loop holds three groups of
``WORKERS`` waits each, on ``WORKERS`` rentals that have no SMS:

* ``trigger``: ``RentSmsTrigger(rent_id, conn, pattern, seen=[])``, each ``run()`` a task, as the
  triggerer runs them (the shared aiohttp pool of ``hooks/async_client.py``, the request
  policy, the parser and the SMS walk included);
* ``httpx``: a loop of ``await client.get(url, params=query)`` and ``response.content`` on one
  shared ``httpx.AsyncClient``;
* ``aiohttp``: the same on one shared ``aiohttp.ClientSession`` (``await response.read()``).

``url`` and ``query`` are exactly what the trigger sends (``policy.build_request``); every
group polls every ``INTERVAL`` s ± 10 % and the bare pools are capped at the trigger's
``MAX_CONNECTIONS``. The groups take turns in blocks (the order rotates each round): during a
group's block the others are parked on a closed gate inside their sleep, so they cost nothing.
A block's CPU per poll is the process's CPU time over the block divided by the getRentStatus
requests the sandbox counted in it (read before the block starts and after the group's last
poll has returned). The ratio is the median over rounds of trigger block / httpx block.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
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
    use_comparison_packages,
)

CONN_ID = "smsonline_bench"
PATTERN = r"code (\d+)"
#: Waits per group.
WORKERS = 50
#: Seconds between a wait's polls (± 10 %): short, so that a block holds many polls.
INTERVAL = 0.25
JITTER = 0.1
#: The target: the trigger's CPU per poll at most this times the bare httpx GET's of the same run.
TARGET_RATIO = 0.5
GROUPS = ("trigger", "httpx", "aiohttp")


# ----------------------------------------------------------------------------- the poll process


class _Gate:
    """Lets a group's waits poll while open; parks them (no timer, no CPU) while closed."""

    def __init__(self, size: int) -> None:
        self.open = asyncio.Event()
        self.size = size
        self.parked = 0
        self.all_parked = asyncio.Event()

    async def sleep(self, delay: float) -> None:
        """The waits' sleep between polls, as ``asyncio.sleep`` while the gate is open."""
        await asyncio.sleep(delay)
        if not self.open.is_set():
            self.parked += 1
            if self.parked == self.size:
                self.all_parked.set()
            await self.open.wait()
            self.parked -= 1

    async def run_block(self, seconds: float) -> None:
        """Open for ``seconds``, close, and return once every wait is parked (no poll in flight)."""
        self.all_parked.clear()
        self.open.set()
        await asyncio.sleep(seconds)
        self.open.clear()
        await self.all_parked.wait()


def _jittered() -> float:
    return INTERVAL * random.uniform(1 - JITTER, 1 + JITTER)


async def _bare_wait(get: Callable[[], Awaitable[object]], gate: _Gate) -> None:
    while True:
        await get()
        await gate.sleep(_jittered())


def _sandbox_polls(base_url: str) -> int:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(base_url + "/sandbox/state", timeout=60) as response:
        return int(json.load(response)["requests"].get("getRentStatus", 0))


async def _measure(config: dict[str, Any]) -> dict[str, Any]:
    import aiohttp
    import httpx

    import airflow_provider_smsonline.triggers.base as trigger_module
    from airflow_provider_smsonline import policy, protocol
    from airflow_provider_smsonline.hooks.async_client import MAX_CONNECTIONS, AsyncSmsOnlineClient
    from airflow_provider_smsonline.triggers.rent import RentSmsTrigger

    ids: dict[str, list[int]] = config["ids"]
    gates = {group: _Gate(len(ids[group])) for group in GROUPS}
    # The triggers' sleep between polls goes through their group's gate (the same gate the bare
    # waits use): this replaces triggers.base._sleep, the one pause every trigger takes.
    trigger_module._sleep = gates["trigger"].sleep  # type: ignore[assignment]
    # One client held open for the whole run: the shared pool stays up between blocks, as it
    # does in a triggerer that always has waits.
    keeper = await AsyncSmsOnlineClient.from_conn_id(CONN_ID)
    await keeper.__aenter__()
    config_of = keeper.config

    def request_of(rent_id: int) -> policy.Request:
        return policy.build_request(
            config_of, protocol.get_rent_status_params(rent_id, 0, protocol.PAGE_SIZE)
        )

    httpx_client = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
        timeout=config_of.timeout,
    )
    aiohttp_session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
        timeout=aiohttp.ClientTimeout(config_of.timeout),
    )

    def httpx_get(rent_id: int) -> Callable[[], Awaitable[object]]:
        request = request_of(rent_id)

        async def get() -> bytes:
            response = await httpx_client.get(request.url, params=request.query)
            response.raise_for_status()
            return response.content

        return get

    def aiohttp_get(rent_id: int) -> Callable[[], Awaitable[object]]:
        request = request_of(rent_id)

        async def get() -> bytes:
            async with aiohttp_session.get(request.url, params=request.query) as response:
                response.raise_for_status()
                return await response.read()

        return get

    async def trigger_wait(rent_id: int) -> None:
        trigger = RentSmsTrigger(
            rent_id, CONN_ID, pattern=PATTERN, seen=[], poll_interval=INTERVAL, jitter=JITTER
        )
        async for event in trigger.run():
            raise RuntimeError(f"a wait ended: {event.payload}")  # no SMS is ever delivered

    tasks = [asyncio.create_task(trigger_wait(rent_id)) for rent_id in ids["trigger"]]
    tasks += [asyncio.create_task(_bare_wait(httpx_get(rent_id), gates["httpx"])) for rent_id in ids["httpx"]]
    tasks += [
        asyncio.create_task(_bare_wait(aiohttp_get(rent_id), gates["aiohttp"])) for rent_id in ids["aiohttp"]
    ]

    base_url = config["base_url"]
    blocks: dict[str, list[tuple[float, int]]] = {group: [] for group in GROUPS}
    for index in range(-1, config["rounds"]):  # round -1: warm-up (start-up, connections), not kept
        order = GROUPS[index % 3 :] + GROUPS[: index % 3]
        for group in order:
            before = await asyncio.to_thread(_sandbox_polls, base_url)
            cpu = time.process_time()
            await gates[group].run_block(config["block_seconds"])
            used = time.process_time() - cpu
            polls = await asyncio.to_thread(_sandbox_polls, base_url) - before
            if index >= 0:
                blocks[group].append((used, polls))
            for task in tasks:
                if task.done():
                    task.result()  # a wait that failed: stop here, with its error
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await keeper.aclose()
    await httpx_client.aclose()
    await aiohttp_session.close()
    return {"blocks": blocks}


def child() -> None:
    """The poll process: configuration on stdin, the blocks' CPU and polls as one JSON line."""
    use_comparison_packages()
    config = json.loads(sys.stdin.readline())
    print(json.dumps(asyncio.run(_measure(config))), flush=True)


# ----------------------------------------------------------------------------- the parent


def run(quick: bool, shared: dict[str, Any]) -> list[Row]:
    """Measure the three groups in alternating blocks; one row with the trigger/httpx ratio."""
    import psutil

    rounds, block_seconds = (4, 1.0) if quick else (5, 1.5)
    variable = f"AIRFLOW_CONN_{CONN_ID.upper()}"
    with SandboxProcess() as sandbox, environment(**{variable: connection_json(sandbox.url)}):
        rentals = rent_numbers(sandbox.url, WORKERS * len(GROUPS))
        ids = {group: rentals[i * WORKERS : (i + 1) * WORKERS] for i, group in enumerate(GROUPS)}
        config = {"ids": ids, "base_url": sandbox.base_url, "rounds": rounds, "block_seconds": block_seconds}
        server = psutil.Process(sandbox.pid)
        server_cpu = sum(server.cpu_times()[:2])
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.poll_cost", "--child"],
            input=json.dumps(config) + "\n",
            capture_output=True,
            text=True,
            env=child_env(),
            cwd=ROOT,
            timeout=300,
        )
        server_cpu = sum(server.cpu_times()[:2]) - server_cpu
        if out.returncode != 0:
            raise RuntimeError(f"the poll process failed:\n{out.stderr[-3000:]}")
        polls_served = sandbox.state()["requests"].get("getRentStatus", 0)
    blocks: dict[str, list[list[float]]] = json.loads(out.stdout.strip().splitlines()[-1])["blocks"]
    per_poll = {group: [1000 * used / max(polls, 1) for used, polls in blocks[group]] for group in GROUPS}
    spreads = {group: Spread.of(values) for group, values in per_poll.items()}
    ratio = Spread.of(t / h for t, h in zip(per_poll["trigger"], per_poll["httpx"], strict=True))
    aiohttp_ratio = Spread.of(t / a for t, a in zip(per_poll["trigger"], per_poll["aiohttp"], strict=True))
    rate = Spread.of(polls / block_seconds for _, polls in blocks["trigger"])
    shared["cpu_per_poll_ms"] = spreads["trigger"].median
    shared["httpx_cpu_per_poll_ms"] = spreads["httpx"].median
    shared["aiohttp_cpu_per_poll_ms"] = spreads["aiohttp"].median
    return [
        Row(
            f"CPU per poll in the event loop: RentSmsTrigger vs bare httpx.AsyncClient GET of the same "
            f"query ({WORKERS} waits per client, every {INTERVAL:g} s ± {JITTER:.0%}, {rounds} rounds of "
            f"{block_seconds:g} s blocks, alternating)",
            f"{ratio.median:.2f}× ({ratio.low:.2f}–{ratio.high:.2f} over rounds); "
            f"trigger {spreads['trigger'].show(' ms', 3)}, httpx {spreads['httpx'].show(' ms', 3)}",
            f"≤ {TARGET_RATIO:g}× bare httpx",
            ratio.median <= TARGET_RATIO,
            f"bare aiohttp.ClientSession GET: {spreads['aiohttp'].show(' ms', 3)} (trigger "
            f"{aiohttp_ratio.median:.2f}× it); trigger polls {rate.show('/s', 0)} in its blocks; "
            f"sandbox (own process) {1000 * server_cpu / max(polls_served, 1):.2f} ms CPU per request",
        )
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the poll process of the CPU-per-poll benchmark")
    parser.add_argument("--child", action="store_true", required=True)
    parser.parse_args()
    child()
