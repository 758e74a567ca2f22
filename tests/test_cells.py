"""Experiments of independent cells on disk (gmlib.studies.cells.CellFolder): finished cells are
kept and found again, another experiment's folder is refused with what differs, starting over
removes only finished cells, and keys are plain folder names."""

from __future__ import annotations

import json

import pytest

from gmlib.run.checkpoint import CheckpointError
from gmlib.studies.cells import CellFolder


def test_finished_cells_are_kept_and_found_again(tmp_path) -> None:
    cells = CellFolder(tmp_path, "demo", {"seed": 0, "models": 2})
    assert cells.finished("a") is None and cells.records() == {}
    (cells.folder("a") / "synthetic.pt").write_bytes(b"set")  # a cell's own files live beside its record
    assert cells.record("a", {"accuracy": 0.5, "path": tmp_path}) == {"accuracy": 0.5, "path": str(tmp_path)}
    again = CellFolder(tmp_path, "demo", {"models": 2, "seed": 0})
    assert again.finished("a") == {"accuracy": 0.5, "path": str(tmp_path)}
    cells.record("b", {"accuracy": 0.25})
    assert list(again.records()) == ["a", "b"]
    assert json.loads((tmp_path / "experiment.json").read_text()) == {"kind": "demo", "identity": {"seed": 0, "models": 2}}


def test_another_experiment_is_refused_with_what_differs(tmp_path) -> None:
    CellFolder(tmp_path, "demo", {"seed": 0, "models": 2}).record("a", {})
    with pytest.raises(CheckpointError, match="other settings .*seed: 0 there, 1 here"):
        CellFolder(tmp_path, "demo", {"seed": 1, "models": 2})
    with pytest.raises(CheckpointError, match="holds a 'demo' experiment, not a 'grid' one"):
        CellFolder(tmp_path, "grid", {"seed": 0, "models": 2})
    (tmp_path / "experiment.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="could not read"):
        CellFolder(tmp_path, "demo", {"seed": 0, "models": 2})


def test_starting_over_removes_finished_cells_only(tmp_path) -> None:
    cells = CellFolder(tmp_path, "demo", {"seed": 0})
    cells.record("a", {"accuracy": 0.5})
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "unrelated").mkdir()
    fresh = CellFolder(tmp_path, "demo", {"seed": 1}, resume=False)
    assert fresh.records() == {} and not (tmp_path / "a").exists()
    assert (tmp_path / "notes.txt").is_file() and (tmp_path / "unrelated").is_dir()
    assert json.loads((tmp_path / "experiment.json").read_text())["identity"] == {"seed": 1}


@pytest.mark.parametrize("key", ["", "a/b", ".hidden"])
def test_a_cell_key_is_a_plain_folder_name(tmp_path, key) -> None:
    with pytest.raises(ValueError, match="a cell key must be a plain folder name"):
        CellFolder(tmp_path, "demo", {}).folder(key)
