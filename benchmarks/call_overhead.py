# Call overhead: sequential getBalance and getRentNumber through SmsOnlineHook, beside a raw
# requests.Session.get with the same query and providers-http's HttpHook.run, alternating in blocks.
"""Per-call cost of :class:`SmsOnlineHook` against the sandbox on loopback.

Four clients send the same query to the same sandbox (its own process): the hook, a raw
``requests.Session().get(url, params=query).content``, ``HttpHook(method="GET").run(...)``, and
a *lean* raw session that, like the hook, merges the environment's settings once and sends a
prepared request (what the hook would cost without its own work). They take turns in blocks of
calls (the order rotates every round), so that drifts of a shared machine hit all alike. Per
client: the median, over blocks, of the mean wall time per call in a block. The ratio is the
median over rounds of hook block / raw block of the same round: blocks are short (10 calls)
so that the two blocks of a round see the same machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import API_KEY, Row, SandboxProcess, Spread, connection_json, environment

#: The overhead budget: the hook's call may take this times a raw session's.
TARGET_RATIO = 1.05


def _clients(url: str) -> dict[str, dict[str, Callable[[], Any]]]:
    """For each client, one call of each action."""
    import requests
    from airflow.providers.http.hooks.http import HttpHook

    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

    hook = SmsOnlineHook(smsonline_conn_id="smsonline_bench")
    session = requests.Session()
    http_hook = HttpHook(method="GET", http_conn_id="http_bench")
    lean_session = requests.Session()
    settings = lean_session.merge_environment_settings(url, {}, None, None, None)
    balance = {"action": "getBalance", "api_key": API_KEY}
    # The query SmsOnlineHook sends for get_rent_number("tg", 0), in the same order.
    rent = {"action": "getRentNumber", "service": "tg", "country": "0", "api_key": API_KEY}
    endpoint = "stubs/handler_api.php"

    def lean(query: dict[str, str]) -> bytes:
        prepared = lean_session.prepare_request(requests.Request("GET", url, params=query))
        return lean_session.send(prepared, **settings).content

    return {
        "hook": {
            "getBalance": hook.get_balance,
            "getRentNumber": lambda: hook.get_rent_number("tg", 0),
        },
        "raw": {
            "getBalance": lambda: session.get(url, params=balance).content,
            "getRentNumber": lambda: session.get(url, params=rent).content,
        },
        "HttpHook": {
            "getBalance": lambda: http_hook.run(endpoint, data=balance).content,
            "getRentNumber": lambda: http_hook.run(endpoint, data=rent).content,
        },
        "lean": {"getBalance": lambda: lean(balance), "getRentNumber": lambda: lean(rent)},
    }


def _block(call: Callable[[], Any], size: int) -> tuple[float, float]:
    """Microseconds per call over ``size`` calls in a row: wall time, and this process's CPU time."""
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(size):
        call()
    return (time.perf_counter() - started) / size * 1e6, (time.process_time() - cpu) / size * 1e6


def _row(
    action: str, blocks: int, size: int, wall: dict[str, list[float]], cpu: dict[str, list[float]]
) -> Row:
    """The table row of one action from each client's per-block wall and CPU times."""

    def against_raw(name: str) -> Spread:
        return Spread.of(a / r for a, r in zip(wall[name], wall["raw"], strict=True))

    hook, raw, http = (Spread.of(wall[name]) for name in ("hook", "raw", "HttpHook"))
    cpu_of = {name: Spread.of(values).median for name, values in cpu.items()}
    ratio = against_raw("hook")
    return Row(
        f"call overhead, {action}: SmsOnlineHook vs raw requests.Session.get "
        f"({blocks} rounds of {size} calls each, alternating; per call)",
        f"{ratio.median:.3f}× ({ratio.low:.2f}–{ratio.high:.2f} over rounds; per call: hook "
        f"{hook.show(' µs', 0)}, raw {raw.show(' µs', 0)})",
        f"≤ {TARGET_RATIO:g}×",
        ratio.median <= TARGET_RATIO,
        f"HttpHook.run: {against_raw('HttpHook').median:.2f}× raw ({http.show(' µs', 0)}); "
        f"raw merging the environment once (as the hook): {against_raw('lean').median:.2f}× raw; "
        f"client CPU per call: hook {cpu_of['hook']:.0f} µs, raw {cpu_of['raw']:.0f} µs, "
        f"raw merging once {cpu_of['lean']:.0f} µs, HttpHook {cpu_of['HttpHook']:.0f} µs",
    )


def run(quick: bool, shared: dict[str, Any]) -> list[Row]:
    """Measure each client on each action; rows with the hook/raw ratios."""
    blocks, size = (15, 10) if quick else (30, 10)
    rows = []
    with (
        SandboxProcess() as sandbox,
        environment(
            AIRFLOW_CONN_SMSONLINE_BENCH=connection_json(sandbox.url),
            AIRFLOW_CONN_HTTP_BENCH=sandbox.base_url,
        ),
    ):
        clients = _clients(sandbox.url)
        names = list(clients)
        for action in ("getBalance", "getRentNumber"):
            for name in names:  # warm-up: connections open, lazy imports done
                _block(clients[name][action], 20)
            wall: dict[str, list[float]] = {name: [] for name in names}
            cpu: dict[str, list[float]] = {name: [] for name in names}
            for index in range(blocks):
                for name in names[index % len(names) :] + names[: index % len(names)]:
                    elapsed, used = _block(clients[name][action], size)
                    wall[name].append(elapsed)
                    cpu[name].append(used)
            rows.append(_row(action, blocks, size, wall, cpu))
    return rows
