"""Stored runs: the outputs of named long runs in the repository's ``results/`` folder.

The book shows these beside its live runs, which are only as large as the profile allows. Each run
is a folder ``results/<name>/`` written by a script in ``experiments/`` (its README gives the
command); this module finds them from any working directory of a source checkout.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A source checkout keeps results/ beside the package; GMLIB_RESULTS_DIR points elsewhere.
RESULTS_DIR = Path(os.environ.get("GMLIB_RESULTS_DIR", Path(__file__).resolve().parents[2] / "results"))


def row_folder_name(label: str) -> str:
    """The folder an experiment keeps one table row's run in, named after the row's label:
    'unroll + DD (ic = 1)' -> 'unroll_dd_ic1', 'GM + GTN-lrn (k = 64)' -> 'gm_gtn_lrn_k64'."""
    return "_".join("".join(c if c.isalnum() else " " for c in label.lower().replace(" = ", "")).split())


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


def load_stored_benchmark(name: str) -> dict[str, Any]:
    """The stored result ``benchmarks/results/<name>.json`` of a script in ``benchmarks/`` (its
    command, date, hardware and versions are in it)."""
    path = RESULTS_DIR.parent / "benchmarks" / "results" / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"stored benchmark {path} not found; run the script in benchmarks/ that writes it")
    return json.loads(path.read_text())


@dataclass(frozen=True)
class StoredRun:
    """A stored distillation (written by ``experiments/stored_run.sh``): the synthetic set, how it was
    made (its provenance), its history and the accuracy of networks trained on it under the protocol."""

    name: str
    synthetic: Any  # gmlib.synthetic.SyntheticSet
    made: dict[str, Any]
    history: Any  # gmlib.run.history.History
    mean: float
    std: float
    models: int
    seconds_per_model: float

    @property
    def iterations(self) -> int:
        return self.made["iterations"]

    @property
    def distill_seconds(self) -> float:
        return self.made["extra"]["distill_seconds"]

    @property
    def config(self) -> dict[str, Any]:
        return self.made["extra"]["config"]

    def accuracy(self) -> str:
        """'mean ± std' in percent."""
        return f"{100 * self.mean:.1f} ± {100 * self.std:.1f}"

    def describe(self) -> str:
        """Two lines of provenance: what ran, where and how long; and its accuracy."""
        width = self.config.get("network_kwargs", {}).get("width")
        real = f"{self.config['batch_real']} real images per class, " if "batch_real" in self.config else ""
        return (f"stored {self.name}: {self.made['method']} on {self.synthetic.dataset}, {self.synthetic.ipc} image(s) "
                f"per class, profile {self.made['preset']}, {self.iterations} iterations, ConvNet width {width}, "
                f"{real}seed {self.made['seed']}, gmlib "
                f"{self.made['code_version']['gmlib']} (commit {str(self.made['code_version']['git_commit'])[:7]}), "
                f"{self.distill_seconds:.0f} s on {self.made['hardware']}\n"
                f"  accuracy under the protocol: {100 * self.mean:.2f} ± {100 * self.std:.2f} % over {self.models} "
                f"models ({self.seconds_per_model:.0f} s per model; results/{self.name})")


def load_stored_run(name: str) -> StoredRun:
    """Stored run ``name`` (``results/<name>/``: synthetic.pt, history.json and the evaluation of
    its final set, ``evaluation_<iterations>.json``)."""
    from gmlib.run.history import History
    from gmlib.synthetic import load_synthetic

    synthetic = load_synthetic(stored_path(name, "synthetic.pt"))
    made = synthetic.metadata["provenance"]
    history = History.from_dict(load_stored_json(name, "history.json"))
    report = load_stored_json(name, f"evaluation_{made['iterations']}.json")
    convnet = report["results"]["convnet"]
    return StoredRun(name, synthetic, made, history, convnet["mean"], convnet["std"], report["models"],
                     convnet["seconds_per_model"])
