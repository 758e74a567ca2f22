"""The record of a distillation run (:class:`History`), the same shape for every method.

Per iteration: the losses (one per class, or one), the seconds and any series the method adds
(``extras``: DC's inter-class loss and inner-loop counts, the unrolled run's learned rates ...).
Per run: the evaluations as typed :class:`Evaluation` records, where the run resumed, its peak
memory and its provenance. Everything is plain data that round-trips through JSON and checkpoints.
"""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from gmlib.fileio import atomic_write_text


@dataclass(frozen=True)
class Evaluation:
    """Test accuracies of fresh networks trained on the set after ``iteration`` completed
    iterations (0 = the initialisation); ``seconds`` the evaluation took, ``distill_seconds`` the
    run had spent distilling by then."""

    iteration: int
    accuracies: tuple[float, ...]
    seconds: float = 0.0
    distill_seconds: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "accuracies", tuple(float(a) for a in self.accuracies))

    @property
    def models(self) -> int:
        return len(self.accuracies)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies) if self.accuracies else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation over the models (0 for one model: see :meth:`__str__`)."""
        return statistics.pstdev(self.accuracies) if self.accuracies else math.nan

    def __str__(self) -> str:
        if self.models == 1:
            return f"{100 * self.mean:.2f}% (n = 1)"
        return f"{100 * self.mean:.2f} +- {100 * self.std:.2f}% ({self.models} models)"

    def to_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "mean": self.mean, "std": self.std, "accuracies": list(self.accuracies),
                "seconds": self.seconds, "distill_seconds": self.distill_seconds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Evaluation":
        return cls(data["iteration"], data["accuracies"], data.get("seconds", 0.0), data.get("distill_seconds", 0.0))


@dataclass
class History:
    """What happened during a run.

    ``losses[it]``: the method's loss in iteration ``it``, one value per class (DC: D_c averaged
    over the outer steps) or a single value; ``seconds[it]``: wall-clock seconds of iteration
    ``it`` (evaluations excluded); ``extras[name][it]``: a per-iteration series the method adds;
    ``evaluations``: :class:`Evaluation` records in order of iteration; ``resumed_at``: the
    iteration counts the run continued from; ``peak_mib``/``added_mib``/``memory_kind``: the peak
    memory over every session of the run and what the loop added to it
    (:func:`gmlib.memory.track_peak_memory`); ``provenance``: hardware,
    library versions and git commit of the sessions.
    """

    method: str
    config: dict[str, Any]
    seed: int
    device: str
    losses: list[list[float]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    extras: dict[str, list[Any]] = field(default_factory=dict)
    evaluations: list[Evaluation] = field(default_factory=list)
    resumed_at: list[int] = field(default_factory=list)
    peak_mib: float = math.nan
    added_mib: float = math.nan
    memory_kind: str = ""
    provenance: list[dict[str, Any]] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return len(self.losses)

    def append(self, losses: list[float], seconds: float, extras: Mapping[str, Any]) -> None:
        """Record one completed iteration."""
        self.losses.append([float(v) for v in losses])
        self.seconds.append(float(seconds))
        for name, value in extras.items():
            self.extras.setdefault(name, [None] * (self.completed - 1)).append(value)

    def mean_losses(self) -> list[float]:
        """Per iteration, the loss averaged over classes (what DC prints)."""
        return [sum(row) / len(row) for row in self.losses]

    def total(self, name: str) -> float:
        """The sum of the extra series ``name`` over the iterations (entries of None skipped)."""
        return sum(v for v in self.extras.get(name, []) if v is not None)

    def evaluation_at(self, iteration: int) -> Evaluation | None:
        return next((e for e in self.evaluations if e.iteration == iteration), None)

    def record_memory(self, report: Any) -> None:
        """Keep the larger of the recorded peak and a session's (a :class:`gmlib.memory.MemoryReport`);
        ``added_mib`` is what the loop added above the memory in use when it started."""
        if math.isnan(self.peak_mib) or report.peak_mib > self.peak_mib:
            self.peak_mib, self.memory_kind = float(report.peak_mib), report.kind
        if math.isnan(self.added_mib) or report.added_mib > self.added_mib:
            self.added_mib = float(report.added_mib)

    def to_dict(self, upto: int | None = None) -> dict[str, Any]:
        """Plain data; ``upto`` keeps only the first ``upto`` iterations (and their evaluations)."""
        n = self.completed if upto is None else upto
        return {
            "method": self.method, "config": copy.deepcopy(self.config), "seed": self.seed, "device": self.device,
            "losses": [list(row) for row in self.losses[:n]], "seconds": list(self.seconds[:n]),
            "extras": {name: copy.deepcopy(values[:n]) for name, values in self.extras.items()},
            "evaluations": [e.to_dict() for e in self.evaluations if e.iteration <= n],
            "resumed_at": list(self.resumed_at), "peak_mib": self.peak_mib, "added_mib": self.added_mib,
            "memory_kind": self.memory_kind,
            "provenance": copy.deepcopy(self.provenance),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "History":
        values = {name: copy.deepcopy(data[name]) for name in
                  ("method", "config", "seed", "device", "losses", "seconds", "extras", "resumed_at",
                   "peak_mib", "added_mib", "memory_kind", "provenance")}
        return cls(**values, evaluations=[Evaluation.from_dict(e) for e in data["evaluations"]])

    def save_json(self, path: str | os.PathLike) -> Path:
        """Write the history as JSON, atomically (:func:`gmlib.fileio.atomic_write_text`)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
