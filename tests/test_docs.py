# The documentation says what the code does: the connection form's texts (descriptions, labels,
# placeholders, defaults, ranges) appear in docs/connection.rst word for word, the README's DAG is
# the example DAG's code, every example DAG has a how-to page built from its source, and the
# README's links into the docs name pages and sections that exist. (`make docs` builds the pages
# with warnings as errors: references, includes and the toctree are checked there.)
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_smsonline.get_provider_info import DOCUMENTATION_URL, get_provider_info
from tests import rst

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXAMPLES = sorted((ROOT / "example_dags").glob("smsonline_*.py"))


def connection_type() -> dict[str, Any]:
    (entry,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "smsonline"]
    return entry


def plain(cell: str) -> str:
    """A docs cell as the form would show its text: ``literal`` markup removed."""
    return re.sub(r"``([^`]*)``", r"\1", cell)


def docs_fields() -> dict[str, list[str]]:
    """docs/connection.rst's table of fields: field → [label in the form, meaning]."""
    return rst.table_rows(rst.section(rst.page("connection"), "Fields"))


def docs_extras() -> dict[str, list[str]]:
    """docs/connection.rst's table of extras: extra → [label in the form, default, meaning]."""
    fields = rst.section(rst.page("connection"), "Fields")
    (_, extras) = rst.list_tables(fields)
    return {re.sub(r"^``(.*)``$", r"\1", row[0]): row[1:] for row in extras[1:]}


def shown_default(schema: dict[str, Any]) -> str:
    if "default" not in schema:
        return "—"
    default = schema["default"]
    return ("true" if default else "false") if isinstance(default, bool) else str(default)


# ----------------------------------------------------------------------------- one source of texts


def test_docs_list_exactly_the_extras_of_the_form() -> None:
    assert set(docs_extras()) == set(connection_type()["conn-fields"])


@pytest.mark.parametrize("name", sorted(connection_type()["conn-fields"]))
def test_each_extra_reads_the_same_in_the_form_and_the_docs(name: str) -> None:
    field = connection_type()["conn-fields"][name]
    label, default, meaning = docs_extras()[name]
    assert label == field["label"]
    assert default == shown_default(field["schema"])
    # The docs may say more, after the form's description, never something else.
    assert plain(meaning).startswith(field["description"]), (meaning, field["description"])


@pytest.mark.parametrize("name", sorted(connection_type()["conn-fields"]))
def test_an_extras_range_in_its_description_is_the_forms_range(name: str) -> None:
    field = connection_type()["conn-fields"][name]
    schema = field["schema"]
    if "minimum" in schema and "maximum" in schema:
        assert f"{schema['minimum']:.15g} to {schema['maximum']:.15g}" in field["description"]


def test_the_ranges_of_the_form_are_the_hooks() -> None:
    from airflow_provider_smsonline.policy import config

    fields = connection_type()["conn-fields"]
    assert fields["timeout"]["schema"]["maximum"] == config.MAX_TIMEOUT
    assert fields["read_retries"]["schema"]["maximum"] == config.MAX_READ_RETRIES
    assert fields["max_response_bytes"]["schema"]["maximum"] == config.MAX_MAX_RESPONSE_BYTES


def test_each_standard_field_reads_the_same_in_the_form_and_the_docs() -> None:
    behaviour = connection_type()["ui-field-behaviour"]
    fields = docs_fields()
    for name, placeholder in behaviour["placeholders"].items():
        label, meaning = fields[name]
        assert label == behaviour["relabeling"].get(name, name.capitalize()), name
        assert plain(meaning).startswith(placeholder), (meaning, placeholder)
    for hidden in behaviour["hidden-fields"]:
        assert hidden not in fields


def test_the_form_and_the_docs_warn_of_the_test_button_of_airflow_3_3_2() -> None:
    # A connection without a port cannot be tested from 3.3.2's UI: both say so before the click.
    assert "Test button of Airflow 3.3.2" in connection_type()["ui-field-behaviour"]["placeholders"]["port"]
    page = rst.page("connection")
    warning = page.split(".. warning::", 1)[1].split("\nFields\n", 1)[0]
    assert "3.3.2" in warning and "port" in warning
    assert page.index(".. warning::") < page.index("The Test button\n")
    readme = README.read_text()
    assert "Airflow 3.3.2 and the Test button" in readme.split("## The connection", 1)[1]


# ----------------------------------------------------------------------------- README and how-to guides


def example_code(path: Path) -> str:
    """An example DAG's code between its ``[START howto_<name>]`` and ``[END ...]`` markers."""
    text = path.read_text()
    start, end = f"# [START howto_{path.stem}]\n", f"# [END howto_{path.stem}]"
    assert start in text and end in text, path.name
    return text.split(start, 1)[1].split(end, 1)[0]


def test_the_readmes_complete_dag_is_the_example_dags_code() -> None:
    section = README.read_text().split("## A complete DAG\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert block == example_code(ROOT / "example_dags" / "smsonline_verification_code.py")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_dag_has_a_how_to_page_built_from_its_source(example: Path) -> None:
    page = rst.page(f"howto/{example.stem}")
    assert f".. literalinclude:: ../../example_dags/{example.name}" in page
    assert f":start-after: [START howto_{example.stem}]" in page
    assert f":end-before: [END howto_{example.stem}]" in page
    assert example_code(example).strip()
    assert f"   {example.stem}\n" in rst.page("howto/index")  # in the guides' toctree


def section_ids(text: str) -> set[str]:
    """The ids Sphinx gives a page's section titles (docutils' ``make_id``)."""
    lines = text.splitlines()
    titles = [
        lines[i]
        for i in range(len(lines) - 1)
        if lines[i].strip() and re.fullmatch(r"([=\-~^])\1{2,}", lines[i + 1])
    ]
    return {re.sub(r"[^a-z0-9]+", "-", plain(title).lower()).strip("-") for title in titles}


def test_readme_links_into_the_docs_name_pages_and_sections_that_exist() -> None:
    links = re.findall(r"\]\((" + re.escape(DOCUMENTATION_URL) + r"[^)]*)\)", README.read_text())
    assert len(links) > 10
    for link in links:
        path, _, anchor = link[len(DOCUMENTATION_URL) :].partition("#")
        page = (path or "index.html").removesuffix(".html")
        source = rst.DOCS / f"{page}.rst"
        assert source.is_file(), link
        assert not anchor or anchor in section_ids(source.read_text()), link
