# What the published package promises: the licence, the metadata a package index shows, a README
# whose links work on that index, documentation that matches the code, an sdist that carries its
# tests, and the provider info Airflow reads. The slow tests build the sdist and the wheel for
# real, from a copy of the source tree.
from __future__ import annotations

import ast
import email.parser
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_smsonline import __version__

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli there
    import tomli as tomllib  # type: ignore[no-redef]

from airflow_provider_smsonline.get_provider_info import get_provider_info
from tests import rst

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CHANGELOG = ROOT / "CHANGELOG.md"
LICENSE = ROOT / "LICENSE"
PYPROJECT = ROOT / "pyproject.toml"

SOURCE_URL = "https://github.com/airflow-provider-smsonline/airflow-provider-smsonline"
DOCS_URL = "https://airflow-provider-smsonline.readthedocs.io/en/stable/"
PROJECT_URLS = {
    "Documentation": DOCS_URL,
    "Source": SOURCE_URL,
    "Changelog": f"{SOURCE_URL}/blob/main/CHANGELOG.md",
    "Issues": f"{SOURCE_URL}/issues",
}
#: Classifier families a package index reader filters on; each must be present.
CLASSIFIER_FAMILIES = (
    "Development Status :: ",
    "Topic :: ",
    "Intended Audience :: ",
    "Operating System :: ",
    "Framework :: Apache Airflow :: Provider",
    "Typing :: Typed",
)

#: Left out of the copy the slow tests build from: local state, never part of a distribution.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "*.egg-info",
    "build",
    "dist",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    ".airflow_home",
    "test-artifacts",
    "_build",
)


def pyproject() -> dict[str, Any]:
    with PYPROJECT.open("rb") as file:
        return tomllib.load(file)


# ----------------------------------------------------------------------------- the README as markdown


def prose(markdown: str) -> str:
    """The markdown outside fenced code blocks, with inline code spans emptied."""
    kept: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines():
        marker = re.match(r"\s*(```|~~~)", line)
        if marker:
            fence = None if fence == marker.group(1) else (fence or marker.group(1))
            continue
        if fence is None:
            kept.append(re.sub(r"`[^`\n]*`", "``", line))
    return "\n".join(kept)


def link_targets(markdown: str) -> list[str]:
    """Every link and image target: inline, reference definitions and HTML attributes."""
    text = prose(markdown)
    inline = re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)", text)
    references = re.findall(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?", text, flags=re.MULTILINE)
    html = re.findall(r"(?:href|src)\s*=\s*[\"']([^\"']*)[\"']", text)
    return inline + references + html


def heading_slugs(markdown: str) -> set[str]:
    """The anchors GitHub and the package index (readme_renderer, GFM) give the headings."""
    slugs: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_with_code_text(markdown).splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1))
        slug = re.sub(r"[^\w\- ]", "", text.replace("`", "").strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        slugs.add(slug if count == 0 else f"{slug}-{count}")
    return slugs


def prose_with_code_text(markdown: str) -> str:
    """The markdown outside fenced code blocks, inline code kept (headings use its text)."""
    kept: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines():
        marker = re.match(r"\s*(```|~~~)", line)
        if marker:
            fence = None if fence == marker.group(1) else (fence or marker.group(1))
            continue
        if fence is None:
            kept.append(line)
    return "\n".join(kept)


def reference_table(text: str, class_name: str) -> dict[str, list[str]]:
    """The parameter table under the docs' ````class_name```` title: argument → [default,
    templated, meaning]."""
    rows = rst.table_rows(rst.section(text, f"``{class_name}``"))
    return {name: cells for name, cells in rows.items() if re.fullmatch(r"\w+", name)}


#: The docs page holding each class's parameter reference.
REFERENCE_PAGES = {
    "RentNumberOperator": "operators",
    "ContinueRentOperator": "operators",
    "FinishRentOperator": "operators",
    "CancelRentOperator": "operators",
    "RentSmsSensor": "sensors",
}


# ----------------------------------------------------------------------------- licence and metadata


def test_license_file_is_the_apache_2_0_text() -> None:
    text = LICENSE.read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert len(text) > 10_000  # the whole licence, not a notice pointing to it


def test_pyproject_declares_the_spdx_license_and_ships_the_license_file() -> None:
    project = pyproject()["project"]
    assert project["license"] == "Apache-2.0"  # the SPDX string, not the deprecated table
    assert project["license-files"] == ["LICENSE"]
    # setuptools refuses a License classifier beside an SPDX expression.
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    (setuptools,) = [r for r in pyproject()["build-system"]["requires"] if r.startswith("setuptools")]
    assert setuptools == "setuptools>=77"  # the first setuptools that reads SPDX license strings


def test_pyproject_has_the_four_project_urls_and_the_classifiers() -> None:
    project = pyproject()["project"]
    assert project["urls"] == PROJECT_URLS
    for family in CLASSIFIER_FAMILIES:
        assert [c for c in project["classifiers"] if c.startswith(family)], family
    assert "Development Status :: 4 - Beta" in project["classifiers"]
    python = {c.rsplit(" ", 1)[1] for c in project["classifiers"] if re.search(r"Python :: 3\.\d+$", c)}
    assert python == {"3.10", "3.11", "3.12", "3.13"}
    assert project["requires-python"] == ">=3.10"


# ----------------------------------------------------------------------------- the README


def test_readme_links_are_absolute_or_anchors() -> None:
    targets = link_targets(README.read_text())
    assert targets, "no links found: the link parser is broken"
    relative = [t for t in targets if not re.match(r"(https?://[^\s/]+|#)", t)]
    assert relative == [], "relative links break on a package index page; use absolute URLs"


def test_readme_anchors_name_headings_of_the_readme() -> None:
    markdown = README.read_text()
    slugs = heading_slugs(markdown)
    missing = [t for t in link_targets(markdown) if t.startswith("#") and t[1:] not in slugs]
    assert missing == []


def test_readme_links_into_the_source_repository_name_files_that_exist() -> None:
    prefix = f"{SOURCE_URL}/blob/main/"
    paths = [t[len(prefix) :].split("#")[0] for t in link_targets(README.read_text()) if t.startswith(prefix)]
    assert paths
    assert [p for p in paths if not (ROOT / p).is_file()] == []


def test_the_link_checks_catch_relative_links_and_unknown_anchors() -> None:
    bad = "# Title\n\nSee [docs](docs/benchmarks.md), ![logo](img/logo.png), [x](#nowhere).\n"
    assert link_targets(bad) == ["docs/benchmarks.md", "img/logo.png", "#nowhere"]
    assert "nowhere" not in heading_slugs(bad)
    assert heading_slugs("## TaskFlow: the hook in a `@task`\n") == {"taskflow-the-hook-in-a-task"}
    assert link_targets("```\n[x](relative.md)\n```\n`[y](z.md)`\n") == []


def test_readme_starts_with_the_two_front_door_commands() -> None:
    markdown = README.read_text()
    first_block = markdown.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.splitlines()] == [["make", "demo"], ["make", "test"]]
    assert markdown.index("make demo") < markdown.index("## Install")


def test_readme_installs_with_airflows_constraints_file() -> None:
    install = README.read_text().split("## Install\n", 1)[1].split("\n## ", 1)[0]
    assert "pip install airflow-provider-smsonline" in install
    assert re.search(
        r"--constraint\s+https://raw\.githubusercontent\.com/apache/airflow/constraints-3\.\d+\.\d+/"
        r"constraints-3\.\d+\.txt",
        install,
    )
    assert "not in it" in install  # the provider itself is not in the constraints files


def test_docs_have_the_compatibility_table_marker() -> None:
    compatibility = rst.page("compatibility")
    assert ".. /compat-table\n" in compatibility
    table = compatibility.split(".. compat-table\n", 1)[1].split(".. /compat-table\n", 1)[0]
    (header, *_) = rst.list_tables(table)[0]
    assert header[:3] == ["Airflow", "Python", header[2]]
    assert header[2].startswith("apache-airflow-providers-common-compat")


def _reference_cases() -> list[tuple[type, dict[str, Any]]]:
    from airflow_provider_smsonline.operators.rent import (
        CancelRentOperator,
        ContinueRentOperator,
        FinishRentOperator,
        RentNumberOperator,
    )
    from airflow_provider_smsonline.sensors.rent import RentSmsSensor

    return [
        (RentNumberOperator, {"service": "tg", "country": 0}),
        (ContinueRentOperator, {"rent_id": 1, "rent_time": 4}),
        (FinishRentOperator, {"rent_id": 1}),
        (CancelRentOperator, {"rent_id": 1}),
        (RentSmsSensor, {"rent_id": 1}),
    ]


def provider_arguments(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword arguments the provider's own classes add (Airflow's base classes excluded)."""
    arguments: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None or not klass.__module__.startswith("airflow_provider_smsonline"):
            continue
        for name, parameter in inspect.signature(init).parameters.items():
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
                arguments.setdefault(name, parameter)
    return arguments


@pytest.mark.parametrize("cls, required", _reference_cases(), ids=lambda v: getattr(v, "__name__", ""))
def test_docs_parameter_reference_covers_every_argument(cls: type, required: dict[str, Any]) -> None:
    rows = reference_table(rst.page(REFERENCE_PAGES[cls.__name__]), cls.__name__)
    arguments = provider_arguments(cls)
    assert set(arguments) <= set(rows), f"undocumented: {set(arguments) - set(rows)}"
    operator = cls(task_id="t", **required)
    for name, (default, templated, meaning) in rows.items():
        assert meaning, name
        assert templated == ("yes" if name in cls.template_fields else "no"), name  # type: ignore[attr-defined]
        if name in arguments:
            assert (default == "required") == (arguments[name].default is inspect.Parameter.empty), name
        literal = re.fullmatch(r"``([^`]*)``", default)
        if literal and default != "required":
            assert ast.literal_eval(literal.group(1)) == getattr(operator, name), name


# ----------------------------------------------------------------------------- provider info


def test_provider_info_points_at_the_documentation_url_of_the_package() -> None:
    info = get_provider_info()
    assert info["documentation-url"] == pyproject()["project"]["urls"]["Documentation"]
    assert info["versions"] == [__version__]
    assert info["package-name"] == pyproject()["project"]["name"]


def test_provider_info_integration_has_docs_how_to_guides_and_tags() -> None:
    info = get_provider_info()
    (integration,) = info["integrations"]
    assert integration["integration-name"] == info["name"]
    assert integration["external-doc-url"].startswith("https://sms.online/")
    guides = integration["how-to-guide"]
    assert guides
    for guide in guides:
        page, _, anchor = guide.partition("#")
        assert page.startswith(info["documentation-url"]) and page.endswith(".html"), guide
        assert anchor == "", guide  # a whole page per guide
        source = rst.DOCS / (page[len(info["documentation-url"]) : -len(".html")] + ".rst")
        assert source.is_file(), guide  # a page the docs build
        assert "literalinclude:: ../../example_dags/" in source.read_text(), guide
    assert integration["tags"] == ["service"]
    for section in ("hooks", "operators", "sensors", "triggers"):
        assert [e["integration-name"] for e in info[section]] == [integration["integration-name"]]


def test_provider_info_passes_airflows_schemas() -> None:
    import airflow
    import jsonschema

    airflow_dir = Path(airflow.__file__).parent
    runtime = json.loads((airflow_dir / "provider_info.schema.json").read_text())
    jsonschema.validators.validator_for(runtime)(runtime).validate(get_provider_info())
    # The stricter schema of Airflow's own providers fixes the allowed integration tags.
    development = json.loads((airflow_dir / "provider.yaml.schema.json").read_text())
    tags = development["properties"]["integrations"]["items"]["properties"]["tags"]["items"]["enum"]
    assert set(get_provider_info()["integrations"][0]["tags"]) <= set(tags)


# ----------------------------------------------------------------------------- the changelog


def test_changelog_states_the_versioning_and_deprecation_policies() -> None:
    text = CHANGELOG.read_text()
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headings[:3] == ["Versioning policy", "Deprecation policy", "Unreleased"]
    assert f"## {__version__}" in text
    for public in ("XCom", "error classes", "argument", "connection type"):
        assert public in text, public
    assert "at least one minor release" in text


# ----------------------------------------------------------------------------- building for real


@dataclass(frozen=True)
class Built:
    """An sdist and the wheel built from it (as ``python -m build`` does), and the build output."""

    sdist: Path
    wheel: Path
    output: str


def build_distributions(source: Path, out: Path) -> Built:
    """Build the sdist of ``source``, then the wheel from the unpacked sdist, with the build
    backend and requirements ``pyproject.toml`` names, in an environment of their own."""
    config = tomllib.loads((source / "pyproject.toml").read_text())["build-system"]
    requirements = out / "build-env"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(requirements)]
    subprocess.run([*pip, *config["requires"]], check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(requirements), "PYTHONWARNINGS": "default"}
    hook = (
        "import importlib, sys; backend = importlib.import_module(sys.argv[1]); "
        "print(getattr(backend, sys.argv[2])(sys.argv[3]))"
    )

    def call(name: str, cwd: Path) -> tuple[Path, str]:
        done = subprocess.run(
            [sys.executable, "-c", hook, config["build-backend"], name, str(out)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return out / done.stdout.strip().splitlines()[-1], done.stdout + done.stderr

    sdist, sdist_output = call("build_sdist", source)
    with tarfile.open(sdist) as archive:
        # The "data" filter exists from Python 3.10.12 / 3.11.4 on; the archive is our own.
        extract: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(out / "unpacked", **extract)
    (unpacked,) = (out / "unpacked").iterdir()
    wheel, wheel_output = call("build_wheel", unpacked)
    return Built(sdist=sdist, wheel=wheel, output=sdist_output + wheel_output)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    yield build_distributions(source, work / "dist")


def wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode())


def sdist_names(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as archive:
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


@pytest.mark.slow
def test_the_build_gives_no_license_deprecation_warning(built: Built) -> None:
    warnings = [
        line for line in built.output.splitlines() if "licen" in line.lower() and "deprecat" in line.lower()
    ]
    assert warnings == []


@pytest.mark.slow
def test_wheel_holds_the_license_and_py_typed(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as archive:
        names = set(archive.namelist())
        (license_name,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(license_name).decode() == LICENSE.read_text()
    assert "airflow_provider_smsonline/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "example_dags/", "scripts/"))]


@pytest.mark.slow
def test_wheel_holds_the_account_pages_code_as_it_is_in_the_source(built: Built) -> None:
    from airflow_provider_smsonline.account import BUNDLE

    source = ROOT / "airflow_provider_smsonline" / "account" / "static" / BUNDLE
    with zipfile.ZipFile(built.wheel) as archive:
        assert archive.read(f"airflow_provider_smsonline/account/static/{BUNDLE}") == source.read_bytes()


@pytest.mark.slow
def test_wheel_metadata_has_the_spdx_license_urls_and_classifiers(built: Built) -> None:
    metadata = wheel_metadata(built.wheel)
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["License"] is None  # the deprecated free-text field
    urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL") or [])
    assert urls == PROJECT_URLS
    classifiers = metadata.get_all("Classifier") or []
    for family in CLASSIFIER_FAMILIES:
        assert [c for c in classifiers if c.startswith(family)], family
    assert not [c for c in classifiers if c.startswith("License ::")]
    assert metadata["Version"] == __version__
    assert metadata["Description-Content-Type"] == "text/markdown"


@pytest.mark.slow
def test_sdist_carries_the_tests_and_what_they_use(built: Built) -> None:
    names = sdist_names(built.sdist)
    needed = {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "tests/conftest.py"}
    for folder in ("tests", "example_dags", "scripts", "docs"):
        needed |= {
            p.relative_to(ROOT).as_posix()
            for p in (ROOT / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and "_build" not in p.parts
        }
    assert sorted(needed - names) == []
    assert not [n for n in names if n.startswith(".ci/") or "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.slow
def test_unit_tests_run_from_the_unpacked_sdist(built: Built) -> None:
    (unpacked,) = (built.sdist.parent / "unpacked").iterdir()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_protocol.py"],
        cwd=unpacked,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert re.search(r"\d+ passed", done.stdout)
