# Run as its own process by the waiting-rentals benchmark: delivers each rental's SMS at its
# scheduled moment through the sandbox's control API.
"""SMS deliverer for ``waits.py`` (standard library only).

Reads one JSON line on stdin (``base_url``, ``schedule`` as ``[[rent_id, seconds, text], ...]``,
``threads``), then ``go T0`` (a ``time.time()``), then ``stop``. Prints one JSON line: when
each SMS was posted (``deliveries``: rent_id → [start, end]).

The SMS go out from ``threads`` threads on kept-alive connections (10,000 SMS in a few seconds
would overrun one thread opening a connection each).
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit


def main() -> None:
    """Deliver, then report."""
    config = json.loads(sys.stdin.readline())
    where = urlsplit(config["base_url"])
    threads: int = config.get("threads", 1)
    start = float(sys.stdin.readline().split()[1])
    schedule = sorted(config["schedule"], key=lambda item: item[1])
    deliveries: dict[int, tuple[float, float]] = {}
    failures: list[BaseException] = []

    def deliver(part: list[list[Any]]) -> None:
        connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=120)
        try:
            for rent_id, offset, text in part:
                time.sleep(max(0.0, start + offset - time.time()))
                posted = time.time()
                body = json.dumps({"text": text, "phone_from": "Bench"})
                connection.request(
                    "POST", f"/sandbox/rentals/{rent_id}/sms", body, {"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"posting the SMS of rental {rent_id} answered {response.status}")
                deliveries[rent_id] = (posted, time.time())
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            connection.close()

    senders = [threading.Thread(target=deliver, args=(schedule[i::threads],)) for i in range(threads)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    sys.stdin.readline()  # "stop": every wait has ended
    if failures:
        raise SystemExit(f"delivering failed: {failures[0]!r}")
    print(json.dumps({"deliveries": deliveries}), flush=True)


if __name__ == "__main__":
    main()
