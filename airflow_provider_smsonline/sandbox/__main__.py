# `python -m airflow_provider_smsonline.sandbox`: serve the sandbox until SIGINT or SIGTERM.
"""Serve the SMS.online sandbox; once it accepts requests, print its endpoint URL on one line and,
on the next, a ready ``export AIRFLOW_CONN_SMSONLINE_DEFAULT=...`` of the connection that reads it
right (its ``server_timezone`` is the zone the sandbox writes its dates in)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from types import FrameType

import airflow_provider_smsonline.sandbox.inputs as inputs
from airflow_provider_smsonline.sandbox.inputs import DEFAULT_UTC_OFFSET
from airflow_provider_smsonline.sandbox.readings import CHOICES, STRICTEST, Readings
from airflow_provider_smsonline.sandbox.server import (
    DEFAULT_WEBHOOK_TIMEOUT_SECONDS,
    MAX_WEBHOOK_TIMEOUT_SECONDS,
    Sandbox,
    is_loopback_host,
)
from airflow_provider_smsonline.sandbox.state import DEFAULT_CANCEL_WINDOW_SECONDS
from airflow_provider_smsonline.validation import validate_webhook_url

_EPILOG = """\
control API (JSON, loopback clients only):
  GET  /sandbox/state              balance, rentals, charges, counters, faults
  GET  /sandbox/catalogue          services, countries, operators, prices
  POST /sandbox/rentals/ID/sms     {"text": ..., "phone_from": ..., "service": ...} (ID or latest)
  POST /sandbox/activations/ID/code {"code": ..., "text": ...} (ID or latest)
  POST /sandbox/profile            {"activation_webhook": URL or null} (the account's settings)
  POST /sandbox/faults             {"action": ..., "mode": ..., "count": N, "delay": S}
                                   or {"mode": "random", "action": ..., "rate": R, "seed": N}
  DELETE /sandbox/faults           clear faults
  POST /sandbox/clock              {"advance_seconds": S}
  POST /sandbox/reset              {"balance": ..., "stock": N} (both optional)
"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help; the epilog's layout kept."""


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite() or not 0 <= value <= inputs.MAX_BALANCE:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to {inputs.MAX_BALANCE}: {text!r}")
    return value


def _stock(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= inputs.MAX_STOCK:
        raise argparse.ArgumentTypeError(f"must be from 0 to {inputs.MAX_STOCK}: {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535: {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if abs(value) > inputs.MAX_SEED:
        raise argparse.ArgumentTypeError(f"must fit in 63 bits: {text!r}")
    return value


def _seconds_up_to(maximum: float) -> Callable[[str], float]:
    def seconds(text: str) -> float:
        try:
            return inputs.seconds(text, "seconds", maximum)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a number of seconds from 0 to {maximum:g}: {text!r}"
            ) from None

    return seconds


def _hours(text: str) -> float:
    low, high = inputs.UTC_OFFSET_RANGE
    try:
        value = float(text)
        inputs.utc_offset(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be hours from {low:g} to {high:g} in steps of 0.25: {text!r}"
        ) from None
    return value


def _webhook_url(text: str) -> str:
    try:
        checked = validate_webhook_url(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an http:// or https:// URL with a host: {text!r}"
        ) from None
    if checked is None:
        raise argparse.ArgumentTypeError("must not be empty")
    return checked


_READINGS_HELP = {
    "webhook_param": "the name getRentNumber reads a rental's webhook URL under: uri (the webhooks page) or "
    "url (the peers')",
    "rent_list": "getRentList: id-one (an id required, only that rental listed), id-all (an id required, "
    "every rental listed) or no-id (the prose: every rental, no id)",
    "resend_status": "how getStatus spells 'waiting for SMS to be resent'",
}


def build_parser() -> argparse.ArgumentParser:
    """The command line's options."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_smsonline.sandbox",
        description="A local SMS.online look-alike: serves /stubs/handler_api.php and a control API\n"
        "under /sandbox/. Prints the endpoint URL when ready, then the export of the connection that\n"
        "reads it (server_timezone included); stops on Ctrl-C or SIGTERM.",
        epilog=_EPILOG,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=_port, default=8765, help="port to listen on (0: any free one)")
    parser.add_argument("--api-key", default="sandbox", help="the only API key the sandbox accepts")
    parser.add_argument(
        "--balance", type=_amount, default=Decimal("1000"), help="the account's starting balance"
    )
    parser.add_argument(
        "--stock", type=_stock, default=50, help="numbers each service and country starts with"
    )
    parser.add_argument(
        "--seed", type=_seed, default=None, help="seed for the phone numbers drawn (None: random)"
    )
    parser.add_argument(
        "--cancel-window",
        type=_seconds_up_to(inputs.MAX_CLOCK_OFFSET_SECONDS),
        default=DEFAULT_CANCEL_WINDOW_SECONDS,
        metavar="SECONDS",
        help="seconds after renting during which a cancel is refunded",
    )
    parser.add_argument(
        "--webhook-timeout",
        type=_seconds_up_to(MAX_WEBHOOK_TIMEOUT_SECONDS),
        default=DEFAULT_WEBHOOK_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="seconds a webhook post may take before it counts as failed",
    )
    parser.add_argument(
        "--drop-webhooks",
        action="store_true",
        help="post no webhook (each counts as failed), as when SMS.online's post is lost: "
        "proves that the waits' poll still finds the SMS",
    )
    parser.add_argument(
        "--activation-webhook",
        type=_webhook_url,
        default=None,
        metavar="URL",
        help="the account's activation webhook URL, as set in SMS.online's profile: each code "
        "delivered is posted there once, in the documented shape (settable later: POST /sandbox/profile)",
    )
    parser.add_argument(
        "--utc-offset",
        type=_hours,
        default=DEFAULT_UTC_OFFSET,
        metavar="HOURS",
        help="the zone (hours east of UTC) the API writes every date in: endDate, SMS dates; "
        "written without an offset, as SMS.online does",
    )
    parser.add_argument(
        "--rich",
        action="store_true",
        help="answer more than SMS.online's pages document (endDate, service, country in "
        "getRentList; cost in getRentNumber and continueRentNumber); by default only what they document",
    )
    readings = parser.add_argument_group(
        "readings",
        "where SMS.online's pages contradict themselves, which reading to play (the default: the "
        "strictest documented one)",
    )
    for switch, explained in _READINGS_HELP.items():
        readings.add_argument(
            "--" + switch.replace("_", "-"),
            choices=CHOICES[switch],
            default=getattr(STRICTEST, switch),
            help=explained,
        )
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
        utc_offset=args.utc_offset,
        documented_only=not args.rich,
        drop_webhooks=args.drop_webhooks,
        activation_webhook=args.activation_webhook,
        readings=Readings(
            webhook_param=args.webhook_param, rent_list=args.rent_list, resend_status=args.resend_status
        ),
    )
    try:
        sandbox.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(sandbox.url, flush=True)
    print(f"export AIRFLOW_CONN_SMSONLINE_DEFAULT='{json.dumps(sandbox.connection())}'", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
