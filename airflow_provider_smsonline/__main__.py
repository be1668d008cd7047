# `python -m airflow_provider_smsonline`: the command line (airflow_provider_smsonline/cli.py).
"""Run the provider's command line: ``python -m airflow_provider_smsonline --help``."""

from __future__ import annotations

import sys

from airflow_provider_smsonline.cli import main

if __name__ == "__main__":
    sys.exit(main())
