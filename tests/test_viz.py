"""gmlib.book.viz: tables that render as tables."""

from __future__ import annotations

import pytest

from gmlib.book.viz import markdown_table


def test_markdown_table_escapes_bars_so_a_cell_stays_one_cell() -> None:
    table = markdown_table(["start", "max |cos|"], [["noise", "|x| = 1"]]).data.splitlines()
    assert table[0] == r"| start | max \|cos\| |"
    assert table[2] == r"| noise | \|x\| = 1 |"
    assert all(line.replace(r"\|", "").count("|") == 3 for line in table)


def test_markdown_table_refuses_a_row_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match=r"row \['a'\] has 1 cells, expected 2"):
        markdown_table(["x", "y"], [["a"]])
