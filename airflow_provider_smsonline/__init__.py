# The package root: its version and nothing heavy, so that DAG files import it for free.
"""Apache Airflow provider for the SMS.online virtual-number rent API."""

__version__ = "0.1.0"
