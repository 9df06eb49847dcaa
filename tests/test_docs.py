"""The user's guide shows tested code: its snippet markers must be intact."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from trio_boca._connection import CLOSINGS

DOCS = sorted(Path("docs").glob("*.md"))
MARKER = re.compile(r'--8<-- "(?P<path>[^":]+)(?::(?P<where>[^"]+))?"')


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_snippet_markers_name_files_that_exist(page: Path) -> None:
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if not line.lstrip().startswith("--8"):
            continue
        found = MARKER.fullmatch(line.strip())
        assert found, f"{page}:{number}: malformed snippet marker {line!r}"
        source = Path(found["path"])
        assert source.is_file(), f"{page}:{number}: no file {source}"
        where = found["where"]
        if where and not where[0].isdigit():
            text = source.read_text()
            assert f"--8<-- [start:{where}]" in text, f"{page}:{number}: no section {where!r}"


def test_every_page_is_in_the_navigation() -> None:
    nav = Path("mkdocs.yml").read_text()
    assert [p.name for p in DOCS if p.name not in nav] == []


def test_the_close_table_on_the_errors_page_is_the_one_in_the_code() -> None:
    page = Path("docs/errors.md").read_text()
    table = page.split("<!-- closings:start -->")[1].split("<!-- closings:end -->")[0]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table.strip().splitlines()]
    for (why, code, reason, status, logged), (end, closing) in zip(
        rows[2:], CLOSINGS.items(), strict=True
    ):
        assert why == end.value
        assert code.startswith("its own") if closing.code is None else code == str(closing.code)
        assert reason == ("its own" if closing.reason is None else closing.reason)
        assert status == str(closing.status)
        level = logging.getLevelName(closing.level)
        assert logged == "nothing" if not closing.level else logged.startswith(f"`{level}`")
