# Throughput: rentals (getRentNumber) per second through SmsOnlineHook from 1 and 8 threads, one
# hook each, beside the sandbox's own ceiling: raw requests getBalance per second from as many threads.
"""Rentals per second through the hook against the sandbox, and what the sandbox can serve at all.

Each run lasts a fixed time; runs of the three clients (the hook renting, raw ``requests`` and
stdlib ``http.client`` asking getBalance) at 1 and 8 threads take turns, rotated each round, and
the result is the median over rounds with min and max. The sandbox is Python's
``ThreadingHTTPServer`` in its own process (one core at most, for the GIL); its CPU use during
the hook's runs says whether it was the bound.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from benchmarks.common import API_KEY, Row, SandboxProcess, Spread, connection_json, environment

THREADS = (1, 8)


def _rate(make_call: Callable[[], Callable[[], Any]], threads: int, seconds: float) -> float:
    """Calls per second from ``threads`` threads, each with its own client, for ``seconds``."""
    calls = [make_call() for _ in range(threads)]
    for call in calls:  # connect and warm up outside the timed window
        call()
    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    stop_at = 0.0

    def work(index: int) -> None:
        call = calls[index]
        start.wait()
        done = 0
        while time.perf_counter() < stop_at:
            call()
            done += 1
        counts[index] = done

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    begun = time.perf_counter()
    stop_at = begun + seconds
    start.wait()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - begun)


def run(quick: bool, shared: dict[str, Any]) -> list[Row]:
    """Measure; one row per thread count."""
    import psutil
    import requests

    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

    rounds, seconds = (2, 1.5) if quick else (2, 2.5)
    query = {"action": "getBalance", "api_key": API_KEY}
    with SandboxProcess() as sandbox, environment(AIRFLOW_CONN_SMSONLINE_BENCH=connection_json(sandbox.url)):
        server, client = psutil.Process(sandbox.pid), psutil.Process()
        where = urlsplit(sandbox.url)
        target = f"{where.path}?{urlencode(query)}"

        def hook_rental() -> Callable[[], Any]:
            hook = SmsOnlineHook(smsonline_conn_id="smsonline_bench")
            return lambda: hook.get_rent_number("tg", 0)

        def raw_balance() -> Callable[[], Any]:
            session = requests.Session()
            return lambda: session.get(sandbox.url, params=query).content

        def stdlib_balance() -> Callable[[], Any]:
            connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=30)

            def call() -> bytes:
                connection.request("GET", target)
                return connection.getresponse().read()

            return call

        clients = {"hook": hook_rental, "raw": raw_balance, "stdlib": stdlib_balance}
        runs = [(kind, threads) for threads in THREADS for kind in clients]
        rates: dict[tuple[str, int], list[float]] = {run: [] for run in runs}
        cpu: dict[tuple[str, int], list[float]] = {
            (side, t): [] for side in ("server", "client") for t in THREADS
        }
        for index in range(rounds):
            for kind, threads in runs[index:] + runs[:index]:
                before = {"server": sum(server.cpu_times()[:2]), "client": sum(client.cpu_times()[:2])}
                begun = time.perf_counter()
                rates[(kind, threads)].append(_rate(clients[kind], threads, seconds))
                if kind == "hook":
                    wall = time.perf_counter() - begun
                    for side, process in (("server", server), ("client", client)):
                        used = sum(process.cpu_times()[:2]) - before[side]
                        cpu[(side, threads)].append(100 * used / wall)
    rows = []
    for threads in THREADS:
        hook, raw, stdlib = (Spread.of(rates[(kind, threads)]) for kind in clients)
        plural = "s" if threads > 1 else ""
        client_cpu, server_cpu = (Spread.of(cpu[(side, threads)]) for side in ("client", "server"))
        rows.append(
            Row(
                f"throughput: rentals/s through SmsOnlineHook.get_rent_number, {threads} thread{plural} "
                f"(one hook each; {rounds} runs of {seconds:g} s)",
                f"{hook.show('/s', 0)}; CPU: client process {client_cpu.show('%', 0)}, "
                f"sandbox {server_cpu.show('%', 0)}",
                "reported",
                None,
                f"sandbox ceiling, getBalance from {threads} thread{plural}: "
                f"raw requests {raw.show('/s', 0)}, http.client {stdlib.show('/s', 0)}",
            )
        )
    return rows
