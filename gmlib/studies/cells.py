"""Experiments made of independent cells, kept on disk one folder per cell.

A long experiment -- a cross-architecture matrix (:mod:`gmlib.studies.crossarch`), a comparison
grid (:mod:`gmlib.studies.grid`) -- is a set of cells, each a distillation or an evaluation that
can run on its own. :class:`CellFolder` keeps them in one directory:

- ``experiment.json`` names the experiment: its kind and the settings all its cells share. A
  folder that holds another experiment is refused with the settings that differ.
- ``<key>/cell.json`` is a finished cell's record, written last and atomically: a cell is either
  finished or not, and a stop of any kind loses only the cells in progress. A cell's other files
  (its synthetic set, the checkpoint of a distillation in progress) live in the same folder.

Cells never share a file, so several processes (or the workers of a cluster) can fill one folder
at once, and a rerun skips what is finished.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from gmlib.fileio import atomic_write_text, json_ready
from gmlib.run.checkpoint import CheckpointError

_EXPERIMENT_FILE = "experiment.json"
_CELL_FILE = "cell.json"


class CellFolder:
    """The cells of one experiment of ``kind`` whose shared settings are ``identity`` (plain data)
    in ``directory``. With ``resume`` the finished cells there are kept (settings that differ
    raise :class:`gmlib.run.checkpoint.CheckpointError`); without it the folder is emptied."""

    def __init__(self, directory: str | os.PathLike, kind: str, identity: dict[str, Any], *,
                 resume: bool = True) -> None:
        self.directory = Path(directory)
        self.kind = kind
        self.identity = json_ready(identity)
        path = self.directory / _EXPERIMENT_FILE
        if resume and path.is_file():
            self._check_same_experiment(path)
            return
        if path.is_file() or (self.directory.is_dir() and not resume):
            for cell in self.directory.glob(f"*/{_CELL_FILE}"):  # a discarded experiment's cells
                shutil.rmtree(cell.parent)
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"kind": kind, "identity": self.identity}, indent=1))

    def _check_same_experiment(self, path: Path) -> None:
        try:
            stored = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CheckpointError(f"could not read {path}: {error}; delete it or start over") from error
        if not isinstance(stored, dict) or stored.get("kind") != self.kind:
            raise CheckpointError(f"{path} holds a {stored.get('kind') if isinstance(stored, dict) else None!r} "
                                  f"experiment, not a {self.kind!r} one; use another folder")
        saved = stored.get("identity", {})
        differences = [f"{key}: {saved.get(key)!r} there, {self.identity.get(key)!r} here"
                       for key in sorted(set(saved) | set(self.identity)) if saved.get(key) != self.identity.get(key)]
        if differences:
            raise CheckpointError(f"{self.directory} holds an experiment of other settings ({'; '.join(differences)}); "
                                  "use another folder, or start over")

    def folder(self, key: str) -> Path:
        """The folder of cell ``key`` (created), for its record and its own files."""
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"a cell key must be a plain folder name, got {key!r}")
        folder = self.directory / key
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def finished(self, key: str) -> dict[str, Any] | None:
        """The record of cell ``key``, or None while it is not finished."""
        path = self.directory / key / _CELL_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def record(self, key: str, record: dict[str, Any]) -> dict[str, Any]:
        """Mark cell ``key`` finished with ``record`` (written atomically); returns it as stored."""
        data = json_ready(record)
        atomic_write_text(self.folder(key) / _CELL_FILE, json.dumps(data, indent=1))
        return data

    def records(self) -> dict[str, dict[str, Any]]:
        """Every finished cell's record, by key (sorted)."""
        return finished_records(self.directory)


def finished_records(directory: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The records of the finished cells in ``directory``, by key (sorted), read without opening
    the experiment (for tables and summaries of whatever has finished)."""
    return {path.parent.name: json.loads(path.read_text()) for path in sorted(Path(directory).glob(f"*/{_CELL_FILE}"))}
