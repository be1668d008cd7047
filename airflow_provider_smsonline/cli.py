# `python -m airflow_provider_smsonline`: what an account can rent and buy, from the command line,
# through an Airflow connection, as the hook reads it. Prints prices and stock, never the key.
"""The command line: the service codes, prices and stock SMS.online offers.

::

    python -m airflow_provider_smsonline rent-prices --country 0            # getRentPrices
    python -m airflow_provider_smsonline rent-prices --country 0 1 --hours 24
    python -m airflow_provider_smsonline activation-prices --service tg --country 0   # getPrices

Each reads the connection ``--conn-id`` (``smsonline_default``) as ``airflow connections test``
does: from ``AIRFLOW_CONN_*``, the secrets backend or Airflow's metadata DB. ``--json`` prints one JSON list.
Exit status 0, 1 when SMS.online refused or could not be reached (the message says why), 2 for
bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from airflow_provider_smsonline.validation import validate_country, validate_rent_time, validate_service

__all__ = ["build_parser", "main"]

_PROG = "python -m airflow_provider_smsonline"
_EPILOG = """\
Service codes: rent-prices lists those a country offers. Country ids are listed in SMS.online's
API documentation (https://sms.online/help/api-docs); an unknown one is refused (BAD_COUNTRY).
The connection: AIRFLOW_CONN_SMSONLINE_DEFAULT, a secrets backend or `airflow connections add`
(see the documentation's connection page). The API key is never printed.
"""


def _argument(validate: Callable[[object], Any]) -> Callable[[str], Any]:
    """An argparse type that checks a value as the operators check it (its message on failure)."""

    def convert(text: str) -> Any:
        try:
            return validate(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = validate.__name__.removeprefix("validate_")
    return convert


def build_parser() -> argparse.ArgumentParser:
    """The command line's commands and options."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="What an SMS.online account can rent and buy, with prices and stock.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--conn-id", default="smsonline_default", help="the Airflow connection (default: %(default)s)"
    )
    common.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    countries: dict[str, Any] = {
        "type": _argument(validate_country),
        "nargs": "+",
        "required": True,
        "metavar": "ID",
        "help": "country ids, e.g. 0",
    }
    rent = commands.add_parser(
        "rent-prices",
        parents=[common],
        help="rental prices and stock per service (getRentPrices)",
        description="Rental prices and numbers in stock, per country and service (getRentPrices).",
    )
    rent.add_argument("--country", **countries)
    rent.add_argument(
        "--hours",
        type=_argument(validate_rent_time),
        default=None,
        help="the prices of this rent time (4, 8, 12, 24, 72, 168, 360, 720 or 2160); default: the server's",
    )
    activation = commands.add_parser(
        "activation-prices",
        parents=[common],
        help="one-time number prices and stock (getPrices)",
        description="Activation (one-time number) prices and numbers in stock (getPrices), per "
        "country and service: SMS.online asks for both.",
    )
    activation.add_argument(
        "--service", type=_argument(validate_service), nargs="+", required=True, metavar="CODE"
    )
    activation.add_argument("--country", **countries)
    return parser


def _hook(conn_id: str) -> Any:
    """The hook, reading its connection as Airflow's own commands (``airflow connections test``)
    do: the environment, the secrets backend, then the metadata DB. A task's lookup (the Task
    SDK's) reaches the metadata DB only through a task's supervisor, which a command lacks."""
    # the hook (requests, Airflow's models) loads only when a command runs
    from airflow_provider_smsonline.hooks.smsonline import SmsOnlineHook

    class CommandLineHook(SmsOnlineHook):
        @classmethod
        def get_connection(cls, conn_id: str) -> Any:
            from airflow.models.connection import Connection

            return Connection.get_connection_from_secrets(conn_id)

    return CommandLineHook(smsonline_conn_id=conn_id)


def _prices(args: argparse.Namespace) -> list[Any]:
    prices: list[Any] = []
    with _hook(args.conn_id) as hook:
        for country in args.country:
            if args.command == "rent-prices":
                prices += hook.get_rent_prices(country, args.hours)
            else:
                for service in args.service:
                    prices += hook.get_prices(service=service, country=country)
    return sorted(prices, key=lambda price: (price.country, price.service))


def _print(prices: Sequence[Any], as_json: bool, out: TextIO) -> None:
    rows = [
        {"country": p.country, "service": p.service, "cost": str(p.cost), "count": p.count} for p in prices
    ]
    if as_json:
        print(json.dumps(rows), file=out)
        return
    if not rows:
        print("nothing listed", file=out)
        return
    table = [("country", "service", "cost", "in stock")]
    table += [(str(r["country"]), str(r["service"]), str(r["cost"]), str(r["count"])) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip(), file=out)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run one command; returns the exit status (0 done, 1 refused or unreachable, 2 bad arguments)."""
    from airflow_provider_smsonline._compat import AirflowNotFoundException
    from airflow_provider_smsonline.exceptions import SmsOnlineError

    args = build_parser().parse_args(argv)
    try:
        prices = _prices(args)
    except AirflowNotFoundException:
        print(
            f"error: no connection {args.conn_id!r}: set AIRFLOW_CONN_{args.conn_id.upper()} or add it with "
            "`airflow connections add` (see the documentation's connection page)",
            file=sys.stderr,
        )
        return 1
    except (SmsOnlineError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    _print(prices, args.json, out or sys.stdout)
    return 0
