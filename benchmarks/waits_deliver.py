# Run as its own process by the waiting-rentals benchmark: delivers each rental's SMS at its
# scheduled moment through the sandbox's control API, and samples the sandbox's request counters.
"""SMS deliverer and poll sampler for ``waits.py`` (standard library only).

Reads one JSON line on stdin (``base_url``, ``schedule`` as ``[[rent_id, seconds, text], ...]``,
``sample_every``), then ``go T0`` (a ``time.time()``), then ``stop``. Prints one JSON line: when
each SMS was posted (``deliveries``: rent_id → [start, end]) and the sandbox's getRentStatus
count over time (``samples``: [[time, count], ...]).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.request
from typing import Any

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _polls(base_url: str) -> int:
    with _NO_PROXY.open(base_url + "/sandbox/state", timeout=60) as response:
        state: dict[str, Any] = json.load(response)
    return int(state["requests"].get("getRentStatus", 0))


def _deliver(base_url: str, rent_id: int, text: str) -> None:
    request = urllib.request.Request(
        f"{base_url}/sandbox/rentals/{rent_id}/sms",
        data=json.dumps({"text": text, "phone_from": "Bench"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with _NO_PROXY.open(request, timeout=60) as response:
        response.read()


def main() -> None:
    """Deliver, sample, report."""
    config = json.loads(sys.stdin.readline())
    base_url: str = config["base_url"]
    every: float = config["sample_every"]
    start = float(sys.stdin.readline().split()[1])
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        moment = start
        while True:
            samples.append((time.time(), _polls(base_url)))
            moment += every
            if stop.wait(max(0.0, moment - time.time())):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    deliveries: dict[int, tuple[float, float]] = {}
    for rent_id, offset, text in sorted(config["schedule"], key=lambda item: item[1]):
        time.sleep(max(0.0, start + offset - time.time()))
        posted = time.time()
        _deliver(base_url, rent_id, text)
        deliveries[rent_id] = (posted, time.time())
    sys.stdin.readline()  # "stop": every wait has ended
    stop.set()
    sampler.join()
    samples.append((time.time(), _polls(base_url)))
    print(json.dumps({"deliveries": deliveries, "samples": samples}), flush=True)


if __name__ == "__main__":
    main()
