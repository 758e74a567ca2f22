"""The chapters' source pairs: in sync, output-free, with the anatomy every chapter shares.

(Executing them is the job of `book/build.py --execute-only` and `pytest --nbval-lax` in
`make test`; these checks are static and fast.)
"""

import ast
from pathlib import Path

import jupytext
import nbformat
import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CHAPTERS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.md"))
REPO = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["gmlib"]


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_there_are_chapters_and_every_md_has_its_ipynb():
    assert CHAPTERS, "no chapters found in notebooks/"
    md = {p.stem for p in CHAPTERS}
    ipynb = {p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    assert md == ipynb, f"unpaired chapters: {sorted(md ^ ipynb)}"


@pytest.mark.parametrize("md_path", CHAPTERS, ids=lambda p: p.stem)
def test_pair_is_in_sync(md_path):
    from_md = jupytext.read(md_path)
    stored = nbformat.read(md_path.with_suffix(".ipynb"), as_version=4)
    pairs = list(zip(from_md.cells, stored.cells))
    assert len(from_md.cells) == len(stored.cells), f"{md_path.name}: run `make sync` (cell counts differ)"
    for i, (a, b) in enumerate(pairs):
        assert a.cell_type == b.cell_type and a.source == b.source, f"{md_path.name} cell {i} differs: run `make sync`"
        assert a.metadata.get("tags", []) == b.metadata.get("tags", []), f"{md_path.name} cell {i}: tags differ"


@pytest.mark.parametrize("md_path", CHAPTERS, ids=lambda p: p.stem)
def test_ipynb_is_committed_without_outputs(md_path):
    nb = nbformat.read(md_path.with_suffix(".ipynb"), as_version=4)
    for i, cell in enumerate(code_cells(nb)):
        assert not cell.outputs and cell.execution_count is None, f"{md_path.stem}.ipynb cell {i} holds outputs"
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("md_path", CHAPTERS, ids=lambda p: p.stem)
def test_colab_badge_points_at_the_committed_ipynb(md_path):
    nb = jupytext.read(md_path)
    url = (f"https://colab.research.google.com/github/{REPO['repository']}/blob/{REPO['branch']}/"
           f"notebooks/{md_path.stem}.ipynb")
    head = "".join(c.source for c in nb.cells[:2])
    assert url in head, f"{md_path.name}: the Colab badge must link {url}"


@pytest.mark.parametrize("md_path", CHAPTERS, ids=lambda p: p.stem)
def test_parameters_cell_holds_only_commented_literals(md_path):
    nb = jupytext.read(md_path)
    tagged = [c for c in code_cells(nb) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{md_path.name}: exactly one cell must be tagged 'parameters'"
    tree = ast.parse(tagged[0].source)
    names = []
    for statement in tree.body:
        assert isinstance(statement, ast.Assign), f"{md_path.name}: parameters cell may only assign literals"
        ast.literal_eval(statement.value)  # raises if not a literal
        names.append(statement.targets[0].id)
    assert "profile" in names and "seed" in names
    for line in tagged[0].source.splitlines():
        if "=" in line:
            assert "#" in line, f"{md_path.name}: parameter line without a help comment: {line!r}"


@pytest.mark.parametrize("md_path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_anatomy(md_path):
    nb = jupytext.read(md_path)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for heading in ("Learning goals", "Prerequisites", "Runtime", "Exercises", "Summary", "References"):
        assert heading in text, f"{md_path.name}: missing section {heading!r}"
    assert "{exercise}" in text and "{solution}" in text
    last = code_cells(nb)[-1]
    assert "sanity" in last.source.lower() and "hide-input" in last.metadata.get("tags", []), \
        f"{md_path.name}: the last code cell must hold the hidden sanity assertions"


@pytest.mark.parametrize("md_path", CHAPTERS, ids=lambda p: p.stem)
def test_a_figure_cell_shows_only_its_figure(md_path):
    """A cell with a numbered figure (``mystnb: figure``) gives the figure's label to every rich
    output it displays: a table displayed there too makes a duplicate label, an error of the book
    build. Display tables in a cell of their own."""
    for i, cell in enumerate(code_cells(jupytext.read(md_path))):
        if "figure" in cell.metadata.get("mystnb", {}):
            assert "display(" not in cell.source, f"{md_path.name} cell {i}: a figure cell displays a table"
