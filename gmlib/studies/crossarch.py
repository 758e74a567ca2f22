"""Cross-architecture generalisation: distil with one network, evaluate on another.

* :func:`cross_architecture_matrix` -- DC's cross-architecture table (Zhao et al. 2021; seed 002
  Table 4, seed 004 Tables 2-3). Row ``s`` distils a synthetic set with network ``s`` (the
  *source*); column ``t`` trains fresh networks ``t`` (the *target*) on that set and tests them.
  Each cell is the mean +- std over the evaluation models. (The NAS proxy, the other
  use of one distilled set on many networks, is :mod:`gmlib.studies.nas_proxy`.)

Nothing here trains or distils by itself: distillation is :func:`gmlib.methods.dc.distill`, the
evaluation protocol :func:`gmlib.evaluate.evaluate_across_networks` and
:func:`gmlib.evaluate.train_on_whole_set`. This module only decides which runs make up the
experiment, in a fixed order and with fixed seeds, and keeps finished cells on disk so that a long
matrix can be resumed.

Seeding: every source distils from the same seed, so every row starts from the same initial
images; every cell evaluates with the same seed, so the cells of one column train the same network
initialisations (:func:`gmlib.evaluate.model_seeds`) and differ only in the set they learn from.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from gmlib.eval_config import EvalConfig
from gmlib.evaluate import evaluate_across_networks
from gmlib.fileio import json_ready
from gmlib.methods.dc import distill
from gmlib.methods.dc_config import MatchingConfig
from gmlib.networks import NETWORK_NAMES, filter_network_kwargs
from gmlib.progress import progress_bar
from gmlib.runinfo import describe_hardware, library_versions, resolve_device
from gmlib.studies.cells import CellFolder
from gmlib.synthetic import SyntheticSet, load_synthetic, save_synthetic

if TYPE_CHECKING:  # gmlib.book.presets imports this module (chapter 6's budget names its networks)
    from gmlib.book.presets import Profile

# The reference code distils with the MLP at lr_img 0.01 (every other network: DC's 0.1).
REFERENCE_LR_IMG: dict[str, float] = {"mlp": 0.01}
# The networks of DC's cross-architecture table, in its order.
DC_CROSS_ARCH_NETWORKS: tuple[str, ...] = ("mlp", "convnet", "lenet", "alexnet", "vgg11", "resnet18")
_CELLS_KIND = "gmlib.crossarch.cells"  # the experiment's kind on disk: kept when the module moved


# --------------------------------------------------------------------------------------------
# Checking names
# --------------------------------------------------------------------------------------------


def check_network_names(what: str, names: Any) -> tuple[str, ...]:
    """``names`` as a tuple of lower-case network names, or a ValueError that names the bad
    value and the allowed ones (also for an empty list, a bare string, or a repeated name)."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ValueError(f"{what} must be a list of network names such as ['convnet', 'mlp'], got {names!r}")
    if len(names) == 0:
        raise ValueError(f"{what} is empty; give at least one of {', '.join(map(repr, NETWORK_NAMES))}")
    checked = []
    for name in names:
        key = name.lower() if isinstance(name, str) else name
        if key not in NETWORK_NAMES:
            raise ValueError(f"unknown network {name!r} in {what}; allowed: {', '.join(map(repr, NETWORK_NAMES))}")
        if key in checked:
            raise ValueError(f"network {key!r} appears twice in {what}; each row/column must be distinct")
        checked.append(key)
    return tuple(checked)


# --------------------------------------------------------------------------------------------
# The matrix
# --------------------------------------------------------------------------------------------


@dataclass
class CellResult:
    """One cell: the set distilled with ``source``, evaluated on ``num_models`` fresh ``target``s.

    Accuracies are fractions in [0, 1]; ``std`` is the population std over models (as
    :class:`gmlib.evaluate.EvalResult`); ``seconds`` is the wall time of the evaluation.
    """

    source: str
    target: str
    accuracies: list[float]
    mean: float
    std: float
    seconds: float

    @property
    def num_models(self) -> int:
        return len(self.accuracies)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class CrossArchResult:
    """A cross-architecture matrix: rows = networks used to distil, columns = networks evaluated.

    ``mean``, ``std`` (fractions) and ``num_models`` are ``(len(sources), len(targets))`` arrays in
    the order of ``sources`` and ``targets``; ``cells[(source, target)]`` holds each cell's
    accuracies; ``synthetic[source]`` is the set distilled with that network;
    ``matching_configs[source]`` the configuration it was distilled with; ``distill_seconds``
    the wall time of each distillation (for a set loaded from a checkpoint directory, the time
    its distillation took when it ran);
    ``provenance`` plain data on what produced the numbers.
    """

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    num_models: np.ndarray
    cells: dict[tuple[str, str], CellResult]
    synthetic: dict[str, SyntheticSet] = field(repr=False)
    matching_configs: dict[str, MatchingConfig] = field(repr=False)
    eval_config: EvalConfig = field(repr=False)
    distill_seconds: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def cell(self, source: str, target: str) -> CellResult:
        """The cell of row ``source`` and column ``target`` (a ValueError names the rows/columns)."""
        key = (source.lower(), target.lower())
        if key not in self.cells:
            raise ValueError(f"no cell ({source!r}, {target!r}); rows are {list(self.sources)}, "
                             f"columns {list(self.targets)}")
        return self.cells[key]

    def percent_table(self, decimals: int = 1) -> list[list[str]]:
        """Rows of 'mean ± std' strings in percent, one row per source (for markdown tables)."""
        return [[f"{100 * self.mean[i, j]:.{decimals}f} ± {100 * self.std[i, j]:.{decimals}f}"
                 for j in range(len(self.targets))] for i in range(len(self.sources))]

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready data (fractions; no images: save those with save_synthetic)."""
        return {
            "sources": list(self.sources),
            "targets": list(self.targets),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "num_models": self.num_models.tolist(),
            "cells": [cell.to_dict() for cell in self.cells.values()],
            "matching_configs": {s: json_ready(c.as_dict()) for s, c in self.matching_configs.items()},
            "eval_config": json_ready(self.eval_config.as_dict()),
            "distill_seconds": dict(self.distill_seconds),
            "provenance": json_ready(self.provenance),
        }


def source_config(base: MatchingConfig, source: str,
                  per_network_lr_img: Mapping[str, float] | None = REFERENCE_LR_IMG) -> MatchingConfig:
    """The configuration that distils with network ``source``: ``base`` with the network replaced,
    those of its ``network_kwargs`` the network accepts (a width reaches the ConvNets only), the
    reference's per-network ``lr_img`` (``per_network_lr_img``; None or {} keeps ``base.lr_img``),
    and no evaluations during distillation (the matrix evaluates every set itself)."""
    source = check_network_names("sources", [source])[0]
    changes: dict[str, Any] = dict(
        network=source,
        network_kwargs=filter_network_kwargs(source, dict(base.network_kwargs)),
        eval_at=(),
    )
    if per_network_lr_img and source in per_network_lr_img:
        changes["lr_img"] = per_network_lr_img[source]
    return base.replace(**changes)


def configs_from_profile(profile: str | Profile, dataset_name: str, *, ipc: int = 1,
                         method: str = "dc") -> tuple[MatchingConfig, EvalConfig, int]:
    """(matching config, evaluation config, models per cell) that a compute profile affords.

    Distillation: :func:`gmlib.book.presets.dc_config` (the profile's iterations, batch_real and
    ConvNet width); evaluation: :func:`gmlib.book.presets.eval_config` (its epochs, test subset and
    ConvNet width, with the augmentation the papers used for the dataset and method: DC's MNIST
    augmentation on MNIST); models: the profile's.
    """
    from gmlib.book.presets import as_profile, dc_config, eval_config

    profile = as_profile(profile)
    return dc_config(profile, ipc, dataset_name, method=method), eval_config(profile, dataset_name, method), \
        profile.eval_models


def _cells_identity(dataset: Any, base: MatchingConfig, eval_config: EvalConfig, num_models: int, seed: int,
                    per_network_lr_img: Mapping[str, float] | None) -> dict[str, Any]:
    """What must match for finished cells on disk to belong to this matrix (rows and columns may
    differ: a resumed call can add networks and reuses what is there)."""
    base_dict = base.as_dict()
    for key in ("network", "eval_at", "eval_config", "eval_models", "checkpoint_every"):
        base_dict.pop(key, None)
    return json_ready({
        "dataset": dataset.name, "num_classes": dataset.num_classes,
        "image_shape": [dataset.channels, *dataset.im_size],
        "matching": base_dict, "per_network_lr_img": dict(per_network_lr_img or {}),
        "evaluation": eval_config.as_dict(), "num_models": num_models, "seed": seed,
    })


def cross_architecture_matrix(
    dataset: Any,
    sources: Sequence[str],
    targets: Sequence[str],
    *,
    matching_config: MatchingConfig | None = None,
    profile: str | Profile | None = None,
    ipc: int = 1,
    eval_config: EvalConfig | None = None,
    num_models: int | None = None,
    per_network_lr_img: Mapping[str, float] | None = REFERENCE_LR_IMG,
    seed: int = 0,
    device: str | torch.device = "auto",
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
) -> CrossArchResult:
    """Distil a set with every network of ``sources``; evaluate each set on every network of
    ``targets``.

    The settings come from ``matching_config`` (DC's reference settings when None) or, instead,
    from a compute ``profile`` (:func:`configs_from_profile`, at ``ipc`` images per class; give one
    of the two). Each source distils with :func:`source_config` of them (the reference lr_img 0.01
    for the MLP unless ``per_network_lr_img`` says otherwise). ``eval_config`` (default: the
    matching config's ``eval_config``, else the protocol's defaults) sets the evaluation;
    its ``network`` is replaced by each target and its ``network_kwargs`` filtered per target.
    ``num_models`` models per cell (default: the profile's, else ``matching_config.eval_models``).

    ``checkpoint_dir``: finished distillations and cells are kept there; with ``resume`` a second
    call skips them (and may add rows or columns); settings that differ from the stored ones raise
    :class:`gmlib.run.checkpoint.CheckpointError`. ``resume=False`` discards what is there.
    """
    sources = check_network_names("sources", sources)
    targets = check_network_names("targets", targets)
    if matching_config is not None and profile is not None:
        raise ValueError("give matching_config or profile, not both")
    if matching_config is not None and ipc != 1:
        raise ValueError(f"ipc={ipc!r} applies to a profile only; set the images per class in matching_config")
    if profile is not None:
        base, profile_eval, profile_models = configs_from_profile(profile, dataset.name, ipc=ipc)
        eval_config = profile_eval if eval_config is None else eval_config
        num_models = profile_models if num_models is None else num_models
    else:
        base = MatchingConfig() if matching_config is None else matching_config
        if not isinstance(base, MatchingConfig):
            raise ValueError(f"matching_config must be a gmlib.methods.dc.MatchingConfig, got {type(base).__name__}")
        if eval_config is None:
            eval_config = base.eval_config if base.eval_config is not None else EvalConfig()
        num_models = base.eval_models if num_models is None else num_models
    if not isinstance(eval_config, EvalConfig):
        raise ValueError(f"eval_config must be a gmlib.evaluate.EvalConfig, got {type(eval_config).__name__}")
    if isinstance(num_models, bool) or not isinstance(num_models, int) or num_models < 1:
        raise ValueError(f"num_models must be an integer >= 1, got {num_models!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    device = resolve_device(device)
    configs = {source: source_config(base, source, per_network_lr_img) for source in sources}
    # Finished distillations and cells on disk (one folder each), so an interrupted matrix resumes.
    store = None if checkpoint_dir is None else CellFolder(
        checkpoint_dir, _CELLS_KIND, _cells_identity(dataset, base, eval_config, num_models, seed, per_network_lr_img),
        resume=resume)
    started = time.perf_counter()

    bar = progress_bar(len(sources) * (1 + len(targets)), "cross-architecture", enabled=progress)
    synthetic: dict[str, SyntheticSet] = {}
    distill_seconds: dict[str, float] = {}
    cells: dict[tuple[str, str], CellResult] = {}
    for source in sources:
        bar.set_postfix(step=f"distil {source}")
        key = f"distill-{source}"
        done = None if store is None else store.finished(key)
        if done is not None:  # distilled by an earlier call: report the seconds it took then
            synthetic[source] = load_synthetic(store.folder(key) / "synthetic.pt", device=device)
            distill_seconds[source] = done["seconds"]
        else:
            begun = time.perf_counter()
            run = distill(dataset, configs[source], seed=seed, device=device,
                          out_dir=None if store is None else store.folder(key) / "run", resume=resume, progress=False)
            synthetic[source], distill_seconds[source] = run.synthetic, time.perf_counter() - begun
            if store is not None:
                made = {"matching_config": json_ready(configs[source].as_dict()), "seed": seed,
                        "seconds": distill_seconds[source]}
                save_synthetic(run.synthetic, store.folder(key) / "synthetic.pt", provenance=made)
                store.record(key, made)
        bar.update()
        images, labels = synthetic[source].detached()
        for target in targets:
            bar.set_postfix(step=f"{source} -> {target}")
            key = f"{source}-on-{target}"
            done = None if store is None else store.finished(key)
            cell = None if done is None else CellResult(**done)
            if cell is None:
                begun = time.perf_counter()
                result = evaluate_across_networks(
                    images, labels, dataset.test_images, dataset.test_labels, [target], eval_config, num_models, seed,
                    num_classes=dataset.num_classes, device=device,
                )[target]
                cell = CellResult(source, target, list(result.accuracies), result.mean, result.std,
                                  time.perf_counter() - begun)
                if store is not None:
                    store.record(key, cell.to_dict())
            cells[(source, target)] = cell
            bar.update()
    bar.close()

    shape = (len(sources), len(targets))
    mean, std, models = np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=int)
    for i, source in enumerate(sources):
        for j, target in enumerate(targets):
            cell = cells[(source, target)]
            mean[i, j], std[i, j], models[i, j] = cell.mean, cell.std, cell.num_models
    provenance = {
        "dataset": dataset.name, "seed": seed, "device": str(device), "hardware": describe_hardware(device),
        "versions": library_versions(), "profile": None if profile is None else getattr(profile, "name", profile),
        "seconds": time.perf_counter() - started,
    }
    return CrossArchResult(sources, targets, mean, std, models, cells, synthetic, configs, eval_config,
                           distill_seconds, provenance)
