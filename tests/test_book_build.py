"""book/build.py's page preparation: what each chapter page gains and loses on its way into the book."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "book" / "build.py"


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("book_build", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def executed_chapter(path: Path) -> Path:
    cells = [
        {"cell_type": "code", "id": "p", "metadata": {"tags": ["parameters"]}, "source": ["profile = 'auto'"],
         "outputs": [], "execution_count": 1},
        {"cell_type": "code", "id": "i", "metadata": {"tags": ["injected-parameters"]}, "source": ["profile = 'cpu'"],
         "outputs": [], "execution_count": 2},
        {"cell_type": "markdown", "id": "m", "metadata": {}, "source": ["# A chapter"]},
    ]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


@pytest.mark.parametrize("seconds, text", [(42.4, "42 s"), (59.6, "1 min 00 s"), (425, "7 min 05 s"), (3725, "62 min 05 s")])
def test_durations_read_as_minutes_and_seconds(build, seconds, text) -> None:
    assert build.duration(seconds) == text


def test_a_page_hides_the_injected_cell_and_ends_with_its_execution_time(build, tmp_path) -> None:
    target = tmp_path / "page.ipynb"
    record = {"seconds": 312.2, "date": "2026-12-01 14:05", "hardware": "CPU: Test (2 cores)"}
    build.prepare_page(executed_chapter(tmp_path / "run.ipynb"), target, "cpu", record)
    cells = json.loads(target.read_text())["cells"]
    assert cells[1]["metadata"]["tags"] == ["injected-parameters", "remove-cell"]
    assert "remove-cell" not in cells[0]["metadata"]["tags"]
    last = "".join(cells[-1]["source"])
    assert cells[-1]["cell_type"] == "markdown"
    assert "executed at profile `cpu` in 5 min 12 s on CPU: Test (2 cores)" in last and "(2026-12-01 14:05 UTC)" in last
    assert "{doc}`../build_info`" in last


def test_a_page_without_an_execution_record_gains_no_time_line(build, tmp_path) -> None:
    target = tmp_path / "page.ipynb"
    build.prepare_page(executed_chapter(tmp_path / "run.ipynb"), target, "ci", None)
    assert len(json.loads(target.read_text())["cells"]) == 3
