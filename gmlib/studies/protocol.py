"""How much a reported accuracy depends on the evaluation protocol (chapters 00 and 12).

A committed synthetic set is evaluated under the protocol of the paper that made it (its
*reference*) and under named variants of it, each changing one detail a paper might report
differently:

- :data:`gmlib.eval_config.PROTOCOL_VARIANTS`: each single difference gmlib 0.1 had from DC's code,
  and gmlib 0.1's protocol as a whole;
- :data:`STUDY_VARIANTS` adds augmentation off, E = 300 instead of 1000, no momentum, no weight
  decay, the DC variants of LeNet and AlexNet and the originals, and ``best-of``: the reference's
  training reported as the best of the test accuracies measured after every tenth of its epochs
  (:data:`BEST_OF_POINTS` points) instead of the final one (a choice some code makes; it peeks at
  the test set).

Model ``k`` of seed ``s`` starts from the same initialisation and draws the same data order under
every variant that keeps its network, so each difference to the reference is *paired*, model by
model (``best-of`` trains exactly the reference's model and only reports differently).

Each (set, variant, model) is one cell of a :class:`gmlib.studies.cells.CellFolder`, saved as soon
as it is done: a study can be stopped and resumed, extended with more models, or shared by
several processes (``worker``/``workers``: every k-th cell). :func:`summarise` collects whatever
cells exist into per-variant statistics, the paired differences, and the mean and spread over the
first 5, 20 and 100 models.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gmlib.eval_config import PROTOCOL_VARIANTS, EvalConfig, ProtocolVariant
from gmlib.studies.cells import CellFolder, finished_records

_STUDY_KIND = "evaluation-protocol study"
BEST_OF = "best-of"
BEST_OF_POINTS = 10  # best-of tests after every tenth of the epochs (every 100 of DC's E = 1000)
# Subsets of the models over which the summary reports mean and spread (when that many exist).
SPREAD_MODELS = (5, 20, 100)

STUDY_VARIANTS: dict[str, ProtocolVariant] = {
    **PROTOCOL_VARIANTS,
    "no-augmentation": ProtocolVariant("no augmentation (E kept)", {"augment": "none"}),
    "300-epochs": ProtocolVariant("E = 300 epochs (augmentation kept)", {"epochs": 300}),
    "no-momentum": ProtocolVariant("SGD without momentum instead of 0.9", {"momentum": 0.0}),
    "no-weight-decay": ProtocolVariant("no weight decay instead of 5e-4", {"weight_decay": 0.0}),
    "lenet": ProtocolVariant("LeNet as DC's code builds it (ReLU, max pooling) instead of ConvNet",
                             {"network": "lenet", "network_kwargs": ()}),
    "lenet-original": ProtocolVariant("LeNet-5 as LeCun et al. built it (tanh, average subsampling)",
                                      {"network": "lenet_original", "network_kwargs": ()}),
    "alexnet": ProtocolVariant("AlexNet as DC's code builds it (five convolutions, one linear layer, no dropout)",
                               {"network": "alexnet", "network_kwargs": ()}),
    "alexnet-original": ProtocolVariant("AlexNet as Krizhevsky et al. built it (response normalisation, dropout, two 4096-unit layers)",
                                        {"network": "alexnet_original", "network_kwargs": ()}),
    BEST_OF: ProtocolVariant("the reference's training, reporting the best of the test accuracies after each "
                             "tenth of the epochs instead of the final one", {}),
}

# The variants chapter 12 measures (chapter 00 shows the others, gmlib 0.1's single differences).
CHAPTER_12_VARIANTS: tuple[str, ...] = tuple(name for name in STUDY_VARIANTS if name not in PROTOCOL_VARIANTS)


@dataclass(frozen=True)
class StudySet:
    """A synthetic set under study: its name in the tables, its file (relative to the working
    directory or absolute) and the reference protocol it is evaluated under."""

    name: str
    path: str
    reference: EvalConfig


def cell_key(set_name: str, variant: str, model: int) -> str:
    """The folder name of one cell: ``<set>--<variant>--model-NNN``."""
    return f"{set_name}--{variant}--model-{model:03d}"


def variant_config(reference: EvalConfig, variant: str) -> EvalConfig:
    """``reference`` under ``variant`` of :data:`STUDY_VARIANTS` (other fields kept). The
    reference's E is fixed first, so that switching the augmentation off does not also switch
    the default E from 1000 to 300."""
    if variant not in STUDY_VARIANTS:
        raise ValueError(f"unknown protocol variant {variant!r}; allowed: {', '.join(STUDY_VARIANTS)}")
    fixed = dataclasses.replace(reference, epochs=reference.protocol_epochs)
    return dataclasses.replace(fixed, **STUDY_VARIANTS[variant].changes)


def study_cells(out_dir: str | os.PathLike, seed: int) -> CellFolder:
    """The study's cells, one folder each in ``out_dir/cells``; ``seed`` seeds every evaluated model."""
    return CellFolder(Path(out_dir) / "cells", _STUDY_KIND, {"seed": seed})


def run_cell(cells: CellFolder, study_set: StudySet, variant: str, model: int, data: Any,
             device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train and test model ``model`` on ``study_set`` under ``variant``; returns the stored record."""
    from gmlib.evaluate import evaluate_set
    from gmlib.synthetic import load_synthetic

    synthetic = load_synthetic(study_set.path)
    config = variant_config(study_set.reference, variant)
    test_every = max(1, config.protocol_epochs // BEST_OF_POINTS) if variant == BEST_OF else None
    result = evaluate_set(synthetic.images, synthetic.labels, data.test_images, data.test_labels, config,
                          num_models=1, seed=cells.identity["seed"], first_model=model, device=device,
                          batched=False, test_every=test_every)  # one path for every variant: pairs stay exact
    accuracy = result.accuracies[0]
    record = {"set": study_set.name, "path": study_set.path, "variant": variant, "model": model,
              "seed": cells.identity["seed"], "accuracy": accuracy, "seconds": result.seconds_per_model,
              "config": config.as_dict(), "threads": torch.get_num_threads(),
              "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if test_every:
        record["final_accuracy"] = accuracy
        record["curve"] = result.curves[0]
        record["accuracy"] = max(a for _, a in result.curves[0])
    return cells.record(cell_key(study_set.name, variant, model), record)


def run_study(out_dir: str | os.PathLike, sets: Sequence[StudySet], plan: Sequence[tuple[str, str, int]], *,
              seed: int = 0, worker: int = 0, workers: int = 1, device: str | torch.device = "cpu",
              datasets: dict[str, Any] | None = None, log: Any = print) -> int:
    """Run the unfinished cells of ``plan`` ((set name, variant, model) in the order worth
    computing) that fall to ``worker`` of ``workers`` (cell i when i % workers == worker); returns
    how many ran. Each set's dataset (by its name) is taken from ``datasets`` or loaded once."""
    from gmlib.data import load_dataset
    from gmlib.synthetic import load_synthetic

    if not isinstance(workers, int) or workers < 1 or not isinstance(worker, int) or not 0 <= worker < workers:
        raise ValueError(f"worker must lie in [0, workers) with workers >= 1, got worker {worker!r} of {workers!r}")
    by_name = {s.name: s for s in sets}
    for set_name, variant, model in plan:
        if set_name not in by_name:
            raise ValueError(f"the plan names set {set_name!r}; sets: {', '.join(by_name)}")
        if variant not in STUDY_VARIANTS:
            raise ValueError(f"the plan names variant {variant!r}; allowed: {', '.join(STUDY_VARIANTS)}")
    cells = study_cells(out_dir, seed)
    datasets = dict(datasets or {})
    ran = 0
    for index, (set_name, variant, model) in enumerate(plan):
        if index % workers != worker or cells.finished(cell_key(set_name, variant, model)):
            continue
        study_set = by_name[set_name]
        dataset = load_synthetic(study_set.path).dataset
        if dataset not in datasets:
            datasets[dataset] = load_dataset(dataset, device="cpu")
        record = run_cell(cells, study_set, variant, model, datasets[dataset], device)
        log(f"{set_name} {variant} model {model}: {100 * record['accuracy']:.2f}% in {record['seconds']:.0f} s")
        ran += 1
    return ran


def _statistics(accuracies: Sequence[float]) -> dict[str, Any]:
    return {"n": len(accuracies), "mean": float(np.mean(accuracies)), "std": float(np.std(accuracies))}


def summarise(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Every set's variants from the finished cells: per-model accuracies, mean, std (over models,
    ddof 0), seconds per model, the paired difference to the reference (mean, std and standard
    error over the models both have), and for the reference the mean and spread over its first
    5, 20 and 100 models."""
    records = finished_records(Path(out_dir) / "cells")
    if not records:
        raise FileNotFoundError(f"no finished cells in {Path(out_dir) / 'cells'}: run the study first")
    summary: dict[str, Any] = {}
    for set_name in dict.fromkeys(r["set"] for r in records.values()):
        mine = [r for r in records.values() if r["set"] == set_name]
        by_variant = {variant: {r["model"]: r for r in mine if r["variant"] == variant}
                      for variant in STUDY_VARIANTS if any(r["variant"] == variant for r in mine)}
        reference = by_variant.get("reference", {})
        rows: dict[str, Any] = {}
        for variant, cells in by_variant.items():
            models = sorted(cells)
            accuracies = [cells[k]["accuracy"] for k in models]
            row = {"models": models, "accuracies": accuracies, **_statistics(accuracies),
                   "seconds_per_model": float(np.mean([cells[k]["seconds"] for k in models])),
                   "description": STUDY_VARIANTS[variant].description}
            paired = sorted(set(cells) & set(reference))
            if variant != "reference" and paired:
                differences = [cells[k]["accuracy"] - reference[k]["accuracy"] for k in paired]
                row["paired_difference"] = {
                    **_statistics(differences),
                    "standard_error": float(np.std(differences, ddof=1) / np.sqrt(len(paired))) if len(paired) > 1 else None}
            if variant == BEST_OF:  # the final accuracies and the curves the best was taken from
                row["final_accuracies"] = [cells[k]["final_accuracy"] for k in models]
                row["curves"] = [cells[k]["curve"] for k in models]
            if variant == "reference":
                row["first_models"] = {str(n): _statistics(accuracies[:n]) for n in SPREAD_MODELS if len(accuracies) >= n}
            rows[variant] = row
        summary[set_name] = {"path": mine[0]["path"], "variants": rows}
    return summary

