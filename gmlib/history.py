"""The record of a gradient-matching run (:class:`History`): losses, timings, evaluations and the
inner-loop update counts, as plain data that round-trips through JSON and checkpoints."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


@dataclass
class History:
    """What happened during a run, as plain data (JSON-ready through :meth:`to_dict`).

    ``losses[it][c]``: class ``c``'s matching loss D_c in iteration ``it``, averaged over the
    outer steps; ``seconds[it]``: wall-clock seconds of iteration ``it`` (evaluation excluded);
    ``evaluations``: one dict per evaluation (``iteration`` = completed iterations, ``mean``,
    ``std``, ``accuracies``, ``seconds``); ``resumed_at``: iteration counts a run resumed from.

    Per iteration, for the seed 002 options: ``inter_losses`` the unweighted inter-class distance
    averaged over outer steps (None where the level did not compute it); ``curvature`` the
    curvature term v^T C v summed over classes and averaged over outer steps (None without it);
    ``inner_epochs`` the epochs of network training after each outer step; ``inner_updates`` the
    SGD steps the network took; ``inner_updates_saved`` how many fewer than the fixed policy
    (``inner_loop`` epochs after every outer step but the last) would have taken (negative = more).
    With ``per_class=False``, ``losses[it]`` has one entry: the whole-set distance.
    """

    config: dict[str, Any]
    seed: int
    device: str
    losses: list[list[float]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    resumed_at: list[int] = field(default_factory=list)
    inter_losses: list[float | None] = field(default_factory=list)
    curvature: list[float | None] = field(default_factory=list)
    inner_epochs: list[list[int]] = field(default_factory=list)
    inner_updates: list[int] = field(default_factory=list)
    inner_updates_saved: list[int] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return len(self.losses)

    @property
    def total_inner_updates(self) -> int:
        """Network SGD steps taken over the whole run."""
        return sum(self.inner_updates)

    @property
    def total_inner_updates_saved(self) -> int:
        """Network SGD steps saved over the whole run, relative to the fixed policy."""
        return sum(self.inner_updates_saved)

    def mean_losses(self) -> list[float]:
        """Per iteration, the loss averaged over classes and outer steps (what DC prints)."""
        return [sum(row) / len(row) for row in self.losses]

    def to_dict(self, upto: int | None = None) -> dict[str, Any]:
        """Plain data; ``upto`` keeps only the first ``upto`` iterations (and their evaluations)."""
        n = self.completed if upto is None else upto
        return {
            "config": copy.deepcopy(self.config), "seed": self.seed, "device": self.device,
            "losses": [list(row) for row in self.losses[:n]], "seconds": list(self.seconds[:n]),
            "evaluations": [copy.deepcopy(e) for e in self.evaluations if e["iteration"] <= n],
            "resumed_at": list(self.resumed_at),
            "inter_losses": list(self.inter_losses[:n]), "curvature": list(self.curvature[:n]),
            "inner_epochs": [list(row) for row in self.inner_epochs[:n]],
            "inner_updates": list(self.inner_updates[:n]), "inner_updates_saved": list(self.inner_updates_saved[:n]),
            "total_inner_updates": sum(self.inner_updates[:n]),
            "total_inner_updates_saved": sum(self.inner_updates_saved[:n]),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "History":
        # Fields added later (the seed 002 counters) may be missing from older files: start them empty.
        return cls(**{f.name: copy.deepcopy(data[f.name]) for f in dataclasses.fields(cls) if f.name in data})

    def save_json(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path
