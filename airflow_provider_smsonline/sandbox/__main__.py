# `python -m airflow_provider_smsonline.sandbox`: serve the sandbox until SIGINT or SIGTERM.
"""Serve the SMS.online sandbox; print its endpoint URL on one line once it accepts requests."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from decimal import Decimal, InvalidOperation
from types import FrameType

from airflow_provider_smsonline.sandbox.server import Sandbox, is_loopback_host
from airflow_provider_smsonline.sandbox.state import DEFAULT_CANCEL_WINDOW_SECONDS


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number: {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line's options."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_smsonline.sandbox",
        description="A local SMS.online look-alike: serves /stubs/handler_api.php and a control API "
        "under /sandbox/. Prints the endpoint URL when ready; stops on Ctrl-C or SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_non_negative_int, default=8765, help="port (0: any free one)")
    parser.add_argument("--api-key", default="sandbox", help="the API key to accept (default: sandbox)")
    parser.add_argument("--balance", type=_amount, default=Decimal("1000"), help="starting balance")
    parser.add_argument("--stock", type=_non_negative_int, default=50, help="numbers per service and country")
    parser.add_argument("--seed", type=int, default=None, help="seed for the phone numbers drawn")
    parser.add_argument(
        "--cancel-window",
        type=_seconds,
        default=DEFAULT_CANCEL_WINDOW_SECONDS,
        help="seconds after renting during which a cancel is refunded (default 1200)",
    )
    parser.add_argument("--webhook-timeout", type=_seconds, default=2.0, help="seconds per webhook post")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (the API key travels in clear)",
    )
    parser.add_argument("--verbose", action="store_true", help="log each request (never its query) to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox until SIGINT or SIGTERM; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.allow_remote and not is_loopback_host(args.host):
        parser.error(f"refusing to listen on {args.host!r}: not a loopback address (pass --allow-remote)")
    if not args.api_key:
        parser.error("--api-key must not be empty")

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    sandbox = Sandbox(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        balance=args.balance,
        stock=args.stock,
        seed=args.seed,
        cancel_window_seconds=args.cancel_window,
        allow_remote=args.allow_remote,
        verbose=args.verbose,
        webhook_timeout=args.webhook_timeout,
    )
    try:
        sandbox.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(sandbox.url, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
