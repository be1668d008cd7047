# Every third-party package the provider's code imports is declared in pyproject.toml, with a
# lower bound (the one `make test-matrix` exercises) and, where a next major could break us, an
# upper bound. An undeclared import works in a developer's venv and fails for a user whose
# Airflow does not happen to bring it (as common-compat, httpx and urllib3 once did).
from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "airflow_provider_smsonline"

#: Declared without an upper bound on purpose: certifi is a CA bundle versioned by date.
NO_UPPER_BOUND = {"certifi"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements(lines: list[str]) -> dict[str, str]:
    """name → specifier text, e.g. ``{"requests": ">=2.32.5,<3"}``."""
    found = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$", line)
        assert match, f"cannot read requirement {line!r}"
        found[_canonical(match.group(1))] = match.group(3)
    return found


def _imported_modules() -> dict[str, set[str]]:
    """Dotted module → the package files importing it (absolute imports only)."""
    modules: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                modules.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return modules


def _distribution_of(module: str) -> str:
    """The distribution that provides ``module`` (Airflow's namespace split by its packages)."""
    parts = module.split(".")
    if parts[0] == "airflow":
        if parts[1:2] == ["sdk"]:
            return "apache-airflow-task-sdk"
        if parts[1:2] == ["providers"]:
            return "apache-airflow-providers-" + "-".join(parts[2:4] if parts[2] == "common" else parts[2:3])
        return "apache-airflow"
    installed = packages_distributions().get(parts[0])
    return _canonical(installed[0]) if installed else _canonical(parts[0])


def test_every_third_party_import_is_declared() -> None:
    project = _project()
    declared = set(_requirements(project["dependencies"]))
    optional = {
        name for extra in project.get("optional-dependencies", {}).values() for name in _requirements(extra)
    }
    missing = {}
    for module, files in _imported_modules().items():
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top == "airflow_provider_smsonline" or top == "__future__":
            continue
        dist = _distribution_of(module)
        if dist not in declared and dist not in optional:
            missing[module] = (dist, sorted(files))
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_every_dependency_has_a_lower_bound_and_the_next_major_excluded() -> None:
    for name, spec in _requirements(_project()["dependencies"]).items():
        assert ">=" in spec, f"{name} has no lower bound"
        if name not in NO_UPPER_BOUND:
            assert "<" in spec.replace("<=", ""), f"{name} has no upper bound (the next major may break us)"


def test_the_optional_socks_transport_is_an_extra_not_a_dependency() -> None:
    project = _project()
    assert "aiohttp-socks" not in _requirements(project["dependencies"])
    assert "aiohttp-socks" in _requirements(project["optional-dependencies"]["socks"])


def test_the_async_connection_lookup_needs_no_common_compat_provider() -> None:
    imported = _imported_modules()
    assert not [m for m in imported if m.startswith("airflow.providers.common.compat")]
    assert "apache-airflow-providers-common-compat" not in _requirements(_project()["dependencies"])
