# Sphinx configuration of the provider's documentation (`make docs` builds it into docs/_build/html
# with warnings as errors). Pages are reStructuredText; the how-to guides include the example DAGs'
# code by reference, between their `[START ...]` / `[END ...]` markers, as Airflow's providers do.
"""Sphinx configuration for airflow-provider-smsonline."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The version, read from the package's source without importing it (importing pulls in Airflow).
_init = (ROOT / "airflow_provider_smsonline" / "__init__.py").read_text()
release = re.search(r'__version__ = "([^"]+)"', _init)[1]  # type: ignore[index]
version = release

project = "airflow-provider-smsonline"
author = "airflow-provider-smsonline contributors"
copyright = "airflow-provider-smsonline contributors, Apache License 2.0"

# The Python API page documents the package from its docstrings (importing it imports Airflow).
extensions = ["sphinx.ext.autodoc"]
autodoc_typehints = "none"  # signatures name their types in the docstrings' words
autodoc_member_order = "bysource"
autodoc_default_options = {"undoc-members": False}
# Names outside this package (Airflow's, the standard library's) and the package's internal
# modules (protocol, policy, ledger: documented in their source, not here) have no page to link to.
nitpick_ignore_regex = [
    (r"py:.*", r"(?!airflow_provider_smsonline\.).*"),
    (r"py:.*", r"airflow_provider_smsonline\.(protocol|policy|ledger|dates|validation)(\..*)?"),
    (r"py:data", r"airflow_provider_smsonline\.triggers\..*"),
]
exclude_patterns = ["_build"]
# Every cross-reference must resolve (`-n` in `make docs`).
nitpicky = True
# Literal blocks without a language stay plain; code blocks name theirs.
highlight_language = "none"
html_theme = "alabaster"
html_title = f"SMS.online provider for Apache Airflow {release}"
html_theme_options = {
    "description": "Rent SMS.online virtual numbers from Apache Airflow",
    "github_user": "airflow-provider-smsonline",
    "github_repo": "airflow-provider-smsonline",
    "page_width": "1100px",
    "sidebar_width": "240px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}
html_static_path: list[str] = []
