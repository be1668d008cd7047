# `python -m airflow_provider_smsonline.webhook`: print this Airflow's webhook URL, to paste into
# SMS.online's profile (the activation webhook) or to check what rentals are given.
"""Print the webhook URL built from ``[smsonline] webhook_secret`` and ``[api] base_url``.

::

    python -m airflow_provider_smsonline.webhook                 # [api] base_url
    python -m airflow_provider_smsonline.webhook https://airflow.example.com

Exits 1 with the reason (the setting to fix) when the URL cannot be built.
"""

from __future__ import annotations

import sys

from airflow_provider_smsonline.webhook import WebhookConfigError, webhook_url


def main(argv: list[str] | None = None) -> int:
    """Print the URL; 0 when printed, 1 (and the reason on stderr) when it cannot be built."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or any(a.startswith("-") for a in args):
        print("usage: python -m airflow_provider_smsonline.webhook [BASE_URL]", file=sys.stderr)
        return 2
    try:
        print(webhook_url(args[0] if args else None))
    except WebhookConfigError as error:
        print(f"cannot build the webhook URL: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
