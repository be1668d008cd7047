# Reading the documentation's reStructuredText source in tests: its sections and the rows of its
# `list-table` tables, the one table form the docs use.
"""Sections and ``list-table`` rows of the reStructuredText pages under ``docs/``."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"

_UNDERLINE = re.compile(r"([=\-~^\"'`#*+])\1{2,}")


def page(name: str) -> str:
    """The source of ``docs/<name>.rst``."""
    return (DOCS / f"{name}.rst").read_text()


def section(text: str, title: str) -> str:
    """The body of the section titled ``title`` (up to the next title of the same or a higher
    level, which in these pages is any title underlined with the same or an earlier character)."""
    lines = text.splitlines()
    order: list[str] = []
    start: int | None = None
    level = ""
    for i in range(len(lines) - 1):
        underline = lines[i + 1]
        if not (lines[i].strip() and not lines[i].startswith(" ") and _UNDERLINE.fullmatch(underline)):
            continue
        if len(underline) < len(lines[i].rstrip()):
            continue
        char = underline[0]
        if char not in order:
            order.append(char)
        if start is not None and order.index(char) <= order.index(level):
            return "\n".join(lines[start:i])
        if start is None and lines[i].strip() == title:
            start, level = i + 2, char
    if start is None:
        raise KeyError(f"no section titled {title!r}")
    return "\n".join(lines[start:])


def list_tables(text: str) -> list[list[list[str]]]:
    """Every ``.. list-table::`` in ``text``: a list of rows, each a list of cells (text as
    written, a cell's lines joined with spaces)."""
    tables: list[list[list[str]]] = []
    rows: list[list[str]] | None = None
    for line in text.splitlines():
        if line.startswith(".. list-table::"):
            rows = []
            tables.append(rows)
            continue
        if rows is None:
            continue
        if line.startswith("   * - "):
            rows.append([line[len("   * - ") :].strip()])
        elif line.startswith("     - ") and rows:
            rows[-1].append(line[len("     - ") :].strip())
        elif line.startswith("       ") and rows:
            rows[-1][-1] += " " + line.strip()
        elif line.strip() and not line.startswith("   "):
            rows = None
    return tables


def table_rows(text: str) -> dict[str, list[str]]:
    """The rows of the first list-table in ``text``, keyed by their first cell with its
    ``literal`` markup removed: first cell → the other cells."""
    (table, *_) = list_tables(text)
    return {re.sub(r"^``(.*)``$", r"\1", row[0]): row[1:] for row in table[1:]}
