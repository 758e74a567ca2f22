"""Stored runs: the outputs of named long runs in the repository's ``results/`` folder.

The book shows these beside its live runs, which are only as large as the profile allows. Each run
is a folder ``results/<name>/`` written by a script in ``experiments/`` (its README gives the
command); this module finds them from any working directory of a source checkout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# A source checkout keeps results/ beside the package; GMLIB_RESULTS_DIR points elsewhere.
RESULTS_DIR = Path(os.environ.get("GMLIB_RESULTS_DIR", Path(__file__).resolve().parents[2] / "results"))


def stored_path(run: str, filename: str) -> Path:
    """The path of ``filename`` in stored run ``run``; a clear error when it is not there."""
    path = RESULTS_DIR / run / filename
    if not path.is_file():
        available = sorted(p.name for p in RESULTS_DIR.iterdir() if p.is_dir()) if RESULTS_DIR.is_dir() else []
        raise FileNotFoundError(
            f"stored run file {path} not found; stored runs in {RESULTS_DIR}: {', '.join(available) or 'none'} "
            "(a pip-installed gmlib has no results/: use a clone of the repository or set GMLIB_RESULTS_DIR)"
        )
    return path


def load_stored_json(run: str, filename: str = "summary.json") -> Any:
    """The JSON file ``filename`` of stored run ``run``."""
    return json.loads(stored_path(run, filename).read_text())
