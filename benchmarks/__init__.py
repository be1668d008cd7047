# The benchmark suite: how light and fast the provider is beside apache-airflow-providers-http and
# raw requests. Entry point: `python benchmarks/run.py` (or `make bench`); results in docs/benchmarks.rst.
"""Benchmarks of airflow-provider-smsonline; run them with ``python benchmarks/run.py``."""
