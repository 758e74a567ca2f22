"""Experts for trajectory matching (MTT): networks trained on the real data, and their buffer on disk.

MTT (Cazenavette et al., 2022) distils by making a student, trained a few steps on the synthetic
set, land where an *expert* trained on the real data landed several epochs later. The experts are
trained once, before any distillation, and their parameters are kept after every (k-th) epoch: the
*buffer*. This module trains them and keeps the buffer honest:

* **one file per expert** (``expert_000.pt``, ...): the snapshots as ONE ``(snapshots, P)`` flat
  tensor in the storage dtype (float32, or float16 for half the disk), the epochs they were taken
  at, the per-epoch test accuracy and a SHA-256 of the tensor. Written atomically when the expert
  is finished, so a stop loses at most the expert in training; rerunning :func:`train_experts`
  verifies and keeps every finished expert;
* **manifest.json**: everything a reader of the buffer needs to trust it (format and version,
  dataset, classes, image shape, network and keywords, the parameter names and shapes in
  ``parameters()`` order, epochs and the kept ones, optimiser, augmentation, seed, storage dtype,
  gmlib version and git commit, each expert's accuracies, file checksum and size);
* :func:`load_buffer` verifies every checksum and refuses a buffer made for another dataset,
  network, set of network keywords or image shape, naming both values.

The reference code keeps no seeds and no metadata, and nothing stops a buffer of one network from
being used with another; networks with BatchNorm are refused here, because their running statistics
are not parameters and a parameter snapshot would not restore the expert.

Snapshot ``k`` of every expert is the parameters after epoch ``k * every`` (snapshot 0 is the
initialisation), so with ``every`` = 1 snapshot ``k`` is epoch ``k``, as in the paper.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmlib.checks import check_bool, check_int, check_nonnegative, check_one_of, check_positive
from gmlib.data import ImageDataset
from gmlib.dsa import dsa, dsa_strategy_for, parse_dsa_strategy
from gmlib.fileio import atomic_torch_save, atomic_write_text, check_writable_folder, json_ready
from gmlib.networks import check_network_kwargs, filter_network_kwargs, get_network, has_batchnorm
from gmlib.progress import progress_bar
from gmlib.randomness import draw_seed, global_rng_from
from gmlib.synthetic import tensor_sha256

__all__ = ["BUFFER_FORMAT", "BUFFER_VERSION", "ExpertBuffer", "ExpertConfig", "check_no_batchnorm",
           "expert_file_name", "load_buffer", "train_experts", "train_one_expert"]

BUFFER_FORMAT = "gmlib.mtt.expert-buffer"
BUFFER_VERSION = 1
MANIFEST_NAME = "manifest.json"
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def expert_file_name(index: int) -> str:
    return f"expert_{index:03d}.pt"


@dataclass(frozen=True)
class ExpertConfig:
    """How the experts are trained and kept; the defaults are MTT's (100 experts x 50 epochs, SGD
    lr 0.01 without momentum or weight decay, batch 256, DSA on the real images).

    ``dsa_strategy`` None = the dataset's (no flip for digits). ``every``: keep the snapshot of
    every k-th epoch (``epochs`` must be a multiple of it). ``storage_dtype``: 'float32', or
    'float16' (half the disk; the snapshots are widened back to float32 when read).
    ``real_per_class``: train on that many real images per class (one fixed subset drawn from the
    seed, the same for every expert; None = all). ``test_size``: the per-epoch test accuracy on a
    fixed random subset of that many test images (None = all).
    """

    network: str = "convnet"
    network_kwargs: tuple[tuple[str, Any], ...] | Mapping[str, Any] = ()
    experts: int = 100
    epochs: int = 50
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 256
    dsa: bool = True
    dsa_strategy: str | None = None
    every: int = 1
    storage_dtype: str = "float32"
    real_per_class: int | None = None
    test_size: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.network_kwargs, Mapping):
            object.__setattr__(self, "network_kwargs", tuple(sorted(self.network_kwargs.items())))
        check_network_kwargs(self.network, dict(self.network_kwargs))
        check_int("experts", self.experts, 1)
        check_int("epochs", self.epochs, 1)
        check_positive("lr", self.lr)
        check_nonnegative("momentum", self.momentum)
        check_nonnegative("weight_decay", self.weight_decay)
        check_int("batch_size", self.batch_size, 1)
        check_bool("dsa", self.dsa)
        if self.dsa_strategy is not None:
            if not self.dsa:
                raise ValueError(f"dsa_strategy={self.dsa_strategy!r} needs dsa=True")
            parse_dsa_strategy(self.dsa_strategy)
        check_int("every", self.every, 1)
        if self.epochs % self.every:
            raise ValueError(f"epochs={self.epochs} is not a multiple of every={self.every}: the kept snapshots "
                             f"must be evenly spaced (epochs 0, {self.every}, {2 * self.every}, ...)")
        check_one_of("storage_dtype", self.storage_dtype, tuple(STORAGE_DTYPES))
        for name in ("real_per_class", "test_size"):
            if getattr(self, name) is not None:
                check_int(f"{name} (or None)", getattr(self, name), 1)

    @property
    def kept_epochs(self) -> list[int]:
        """The epochs whose parameters are kept: 0 (the initialisation), every, 2 * every, ..., epochs."""
        return list(range(0, self.epochs + 1, self.every))

    def replace(self, **changes: Any) -> "ExpertConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON and the manifest."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["network_kwargs"] = dict(self.network_kwargs)
        return data


# --------------------------------------------------------------------------------------------
# The network and its parameters as one flat vector
# --------------------------------------------------------------------------------------------


def check_no_batchnorm(net: nn.Module, network: str) -> None:
    """Refuse a network with BatchNorm: its running statistics are not parameters, so a snapshot of
    the parameters would not restore the expert (and a student could not start from it)."""
    if has_batchnorm(net):
        raise ValueError(f"network {network!r} has BatchNorm: its running statistics are not parameters, so "
                         f"parameter snapshots cannot restore an expert. Use a network without BatchNorm for "
                         f"trajectory matching (e.g. 'convnet' with instance norm)")


def build_network(config: ExpertConfig, dataset: ImageDataset, seed: int) -> nn.Module:
    """The expert network for ``dataset``, initialised from ``seed`` (BatchNorm refused)."""
    kwargs = filter_network_kwargs(config.network, dict(config.network_kwargs))
    net = get_network(config.network, dataset.channels, dataset.num_classes, dataset.im_size, seed=seed, **kwargs)
    check_no_batchnorm(net, config.network)
    return net


def flat_parameters(net: nn.Module) -> Tensor:
    """Every parameter of ``net`` in ``parameters()`` order, as one detached flat float32 vector."""
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).float()


def parameter_layout(net: nn.Module) -> list[dict[str, Any]]:
    """The names and shapes of ``net``'s parameters in ``parameters()`` order (the flat vector's layout)."""
    return [{"name": name, "shape": list(p.shape)} for name, p in net.named_parameters()]


# --------------------------------------------------------------------------------------------
# Training one expert
# --------------------------------------------------------------------------------------------


def expert_generator(seed: int, index: int) -> torch.Generator:
    """The CPU generator of expert ``index`` of a buffer with ``seed`` (hashed: unrelated streams)."""
    digest = hashlib.sha256(f"gmlib.mtt.expert:{seed}:{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def real_training_data(dataset: ImageDataset, config: ExpertConfig, seed: int) -> tuple[Tensor, Tensor]:
    """The real images (and labels) every expert trains on: all, or a fixed per-class subset."""
    if config.real_per_class is None:
        return dataset.train_images, dataset.train_labels
    smallest = min(len(dataset.class_indices(c)) for c in range(dataset.num_classes))
    return dataset.subset(min(config.real_per_class, smallest), seed=seed)


def test_subset(dataset: ImageDataset, test_size: int | None) -> tuple[Tensor, Tensor]:
    """The test images the per-epoch accuracy is measured on: all, or a fixed random subset."""
    images, labels = dataset.test_images, dataset.test_labels
    if test_size is None or test_size >= len(labels):
        return images, labels
    keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:test_size].sort().values
    keep = keep.to(labels.device)
    return images[keep], labels[keep]


test_subset.__test__ = False  # a library function, not a test


def accuracy(net: nn.Module, images: Tensor, labels: Tensor, chunk: int = 512) -> float:
    """The fraction of ``images`` that ``net`` classifies correctly (no graph)."""
    with torch.no_grad():
        correct = sum(int((net(x).argmax(1) == y).sum()) for x, y in zip(images.split(chunk), labels.split(chunk)))
    return correct / len(labels)


def train_epoch(net: nn.Module, optimizer: torch.optim.Optimizer, images: Tensor, labels: Tensor,
                config: ExpertConfig, strategy: str | None, generator: torch.Generator) -> None:
    """One epoch of SGD over ``images`` in a random order, each batch augmented by per-image DSA."""
    order = torch.randperm(len(labels), generator=generator).to(labels.device)
    for batch in order.split(config.batch_size):
        x = images[batch]
        if strategy is not None:
            x = dsa(x, strategy, generator)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), labels[batch]).backward()
        optimizer.step()


def train_one_expert(dataset: ImageDataset, config: ExpertConfig, seed: int, index: int, device: torch.device,
                     data: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], bar: Any = None) -> dict[str, Any]:
    """Train expert ``index`` and return its record: snapshots (storage dtype), kept epochs and the
    test accuracy after every epoch. Everything random comes from :func:`expert_generator`."""
    generator = expert_generator(seed, index)
    net = build_network(config, dataset, draw_seed(generator)).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    strategy = (config.dsa_strategy or dsa_strategy_for(dataset.name)) if config.dsa else None
    snapshots, accuracies = [flat_parameters(net)], []
    net.train()
    with global_rng_from(generator):  # layers that draw from the global RNG (dropout)
        for epoch in range(1, config.epochs + 1):
            train_epoch(net, optimizer, *data, config, strategy, generator)
            accuracies.append(accuracy(net, *test))
            if epoch % config.every == 0:
                snapshots.append(flat_parameters(net))
            if bar is not None:
                bar.update()
                bar.set_postfix(expert=index, acc=f"{accuracies[-1]:.3f}")
    stacked = torch.stack(snapshots).to("cpu", STORAGE_DTYPES[config.storage_dtype]).contiguous()
    return {"snapshots": stacked, "epochs": config.kept_epochs, "test_accuracy": accuracies}


# --------------------------------------------------------------------------------------------
# The files: one per expert, and the manifest
# --------------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def buffer_settings(dataset: ImageDataset, config: ExpertConfig, seed: int, layout: list[dict]) -> dict[str, Any]:
    """What makes two buffers the same buffer: the data, the network, the training and the seed."""
    return json_ready({
        "dataset": dataset.name, "num_classes": dataset.num_classes,
        "image_shape": [dataset.channels, *dataset.im_size],
        "network": config.network,
        "network_kwargs": filter_network_kwargs(config.network, dict(config.network_kwargs)), "parameters": layout,
        "epochs": config.epochs, "every": config.every, "kept_epochs": config.kept_epochs,
        "lr": config.lr, "momentum": config.momentum, "weight_decay": config.weight_decay,
        "batch_size": config.batch_size,
        "augmentation": {"dsa": config.dsa,
                         "strategy": (config.dsa_strategy or dsa_strategy_for(dataset.name)) if config.dsa else None},
        "real_per_class": config.real_per_class, "test_size": config.test_size,
        "seed": seed, "storage_dtype": config.storage_dtype,
    })


def save_expert(path: Path, record: dict[str, Any], index: int, settings: dict[str, Any]) -> None:
    """Write one expert's file atomically (with a checksum of its snapshots and the buffer's settings)."""
    atomic_torch_save({"format": BUFFER_FORMAT + ".expert", "version": BUFFER_VERSION, "index": index,
                       "settings": settings, "snapshots_sha256": tensor_sha256(record["snapshots"]), **record}, path)


def read_expert(path: Path) -> dict[str, Any]:
    """An expert file's contents, its snapshots checked against their stored checksum."""
    if not path.is_file():
        raise ValueError(f"the expert file {path} is missing; the buffer is incomplete (rerun train_experts "
                         f"with the same settings to finish it)")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, not a zip archive, foreign pickle
        raise ValueError(f"the expert file {path} is corrupt: {type(error).__name__}: {error}") from error
    if not isinstance(record, dict) or record.get("format") != BUFFER_FORMAT + ".expert":
        raise ValueError(f"{path} is not a gmlib expert file")
    if tensor_sha256(record["snapshots"]) != record["snapshots_sha256"]:
        raise ValueError(f"the snapshots in {path} do not match their stored checksum: the file is corrupt")
    return record


def finished_expert(path: Path, index: int, settings: dict[str, Any]) -> bool:
    """Whether ``path`` holds expert ``index`` of a buffer with ``settings``, intact."""
    try:
        record = read_expert(path)
    except ValueError:
        return False
    return record["index"] == index and record["settings"] == settings


def write_manifest(folder: Path, settings: dict[str, Any], config: ExpertConfig, records: Sequence[dict]) -> dict:
    """Write ``manifest.json`` for the experts finished so far (``complete`` once all are)."""
    from gmlib import __version__
    from gmlib.runinfo import git_commit

    commit, dirty = git_commit()
    experts = []
    for index, record in enumerate(records):
        path = folder / expert_file_name(index)
        experts.append({"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size,
                        "test_accuracy": record["test_accuracy"]})
    manifest = json_ready({
        "format": BUFFER_FORMAT, "version": BUFFER_VERSION, **settings,
        "experts_planned": config.experts, "complete": len(experts) == config.experts,
        "snapshots_per_expert": len(config.kept_epochs),
        "num_parameters": sum(_numel(p["shape"]) for p in settings["parameters"]),
        "gmlib_version": __version__, "git_commit": commit, "git_dirty": dirty,
        "experts": experts, "size_bytes": sum(e["bytes"] for e in experts),
    })
    atomic_write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
    return manifest


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ValueError(f"{folder} is not an expert buffer: it has no {MANIFEST_NAME} (build one with "
                         f"train_experts or `python -m gmlib experts`)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is corrupt: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != BUFFER_FORMAT:
        raise ValueError(f"{path} is not a gmlib expert-buffer manifest")
    if manifest.get("version") != BUFFER_VERSION:
        raise ValueError(f"{path} has buffer format version {manifest.get('version')!r}; this gmlib reads version "
                         f"{BUFFER_VERSION}: rebuild the buffer")
    return manifest


# --------------------------------------------------------------------------------------------
# Training all experts
# --------------------------------------------------------------------------------------------


def _check_same_settings(folder: Path, settings: dict[str, Any]) -> None:
    """Refuse to continue a buffer in ``folder`` made with other settings, naming them."""
    if not (folder / MANIFEST_NAME).is_file():
        return
    saved = read_manifest(folder)
    differences = [f"{key}={saved.get(key)!r} there, {settings[key]!r} here"
                   for key in settings if saved.get(key) != settings[key]]
    if differences:
        raise ValueError(f"{folder} holds a buffer of other settings: " + "; ".join(differences)
                         + ". Use the same settings and seed, or another folder.")


def train_experts(dataset: ImageDataset, config: ExpertConfig = ExpertConfig(), out_dir: str | os.PathLike = "buffer",
                  seed: int = 0, progress: bool = True, device: str | torch.device = "auto") -> "ExpertBuffer":
    """Train ``config.experts`` experts on ``dataset`` one after another into ``out_dir`` and return
    the verified buffer (:func:`load_buffer`).

    Resumable expert by expert: a finished expert file of the same settings is verified and kept,
    so a stop of any kind loses at most the expert in training; a folder holding a buffer of other
    settings is refused. The manifest is rewritten after every expert.
    """
    from gmlib.runinfo import resolve_device

    if not isinstance(config, ExpertConfig):
        raise ValueError(f"config must be an ExpertConfig, got {type(config).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    device = resolve_device(device)
    folder = check_writable_folder(out_dir)
    with torch.device("meta"):  # a clear error for a bad network, image size or BatchNorm, before any work
        layout = parameter_layout(build_network(config, dataset, seed=0))
    settings = buffer_settings(dataset, config, seed, layout)
    _check_same_settings(folder, settings)
    data = dataset if dataset.device == device else dataset.to(device)
    real, test = real_training_data(data, config, seed), test_subset(data, config.test_size)
    bar = progress_bar(config.experts * config.epochs, "experts", enabled=progress, leave=True)
    records = []
    for index in range(config.experts):
        path = folder / expert_file_name(index)
        if finished_expert(path, index, settings):
            records.append(read_expert(path))
            bar.update(config.epochs)
            continue
        record = train_one_expert(data, config, seed, index, device, real, test, bar)
        save_expert(path, record, index, settings)
        records.append(record)
        write_manifest(folder, settings, config, records)
    bar.close()
    write_manifest(folder, settings, config, records)
    return load_buffer(folder)


# --------------------------------------------------------------------------------------------
# Reading a buffer
# --------------------------------------------------------------------------------------------


class ExpertBuffer:
    """A verified buffer: its manifest, and each expert's snapshots (read on first use, then kept in
    memory: the whole buffer's :attr:`size_bytes` at most)."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder, self.manifest = folder, manifest
        self._experts: dict[int, Tensor] = {}

    @property
    def num_experts(self) -> int:
        return len(self.manifest["experts"])

    @property
    def kept_epochs(self) -> list[int]:
        """The epoch of each snapshot: snapshot k is the parameters after epoch ``kept_epochs[k]``."""
        return list(self.manifest["kept_epochs"])

    @property
    def num_snapshots(self) -> int:
        return len(self.manifest["kept_epochs"])

    @property
    def num_parameters(self) -> int:
        return int(self.manifest["num_parameters"])

    @property
    def parameter_names(self) -> list[str]:
        return [p["name"] for p in self.manifest["parameters"]]

    @property
    def parameter_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(p["shape"]) for p in self.manifest["parameters"]]

    @property
    def network_kwargs(self) -> dict[str, Any]:
        return dict(self.manifest["network_kwargs"])

    @property
    def size_bytes(self) -> int:
        """The experts' files on disk, in bytes."""
        return int(self.manifest["size_bytes"])

    @property
    def identity(self) -> str:
        """A SHA-256 over the buffer's settings and its experts' checksums: equal for equal buffers
        (a checkpoint of a run on another buffer is refused by it)."""
        content = {"settings": {k: self.manifest[k] for k in ("dataset", "network", "network_kwargs", "parameters",
                                                              "kept_epochs", "seed", "storage_dtype")},
                   "experts": [e["sha256"] for e in self.manifest["experts"]]}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def describe(self) -> str:
        """One line: experts, snapshots, parameters, storage dtype and the size on disk."""
        m = self.manifest
        return (f"{self.num_experts} experts x {self.num_snapshots} snapshots (epochs {self.kept_epochs[0]}.."
                f"{self.kept_epochs[-1]} every {m['every']}) x {self.num_parameters:,} parameters of "
                f"{m['network']} {self.network_kwargs} in {m['storage_dtype']}: {self.size_bytes / 2**20:.2f} MiB "
                f"on disk ({self.size_bytes / max(self.num_experts, 1) / 2**20:.2f} MiB per expert)")

    def print_size(self) -> None:
        """Print :meth:`describe`."""
        print(self.describe())

    def __repr__(self) -> str:
        return f"ExpertBuffer({str(self.folder)!r}: {self.describe()})"

    def test_accuracy(self, expert: int) -> list[float]:
        """Expert ``expert``'s test accuracy after each epoch."""
        return list(self.manifest["experts"][expert]["test_accuracy"])

    def expert(self, index: int) -> Tensor:
        """All snapshots of expert ``index``: a (snapshots, P) tensor in the storage dtype, on the CPU."""
        check_int("expert index", index, 0)
        if index >= self.num_experts:
            raise ValueError(f"expert {index} does not exist; the buffer has experts 0..{self.num_experts - 1}")
        if index not in self._experts:
            self._experts[index] = read_expert(self.folder / expert_file_name(index))["snapshots"]
        return self._experts[index]

    def snapshot(self, expert: int, k: int, device: str | torch.device = "cpu") -> Tensor:
        """Snapshot ``k`` (the parameters after epoch ``kept_epochs[k]``) of ``expert``: a flat
        float32 vector on ``device``."""
        snapshots = self.expert(expert)
        if not 0 <= k < len(snapshots):
            raise ValueError(f"snapshot {k} does not exist; experts have snapshots 0..{len(snapshots) - 1}")
        return snapshots[k].to(device, torch.float32)

    def check_matches(self, dataset: ImageDataset | None = None, network: str | None = None,
                      network_kwargs: Mapping[str, Any] | None = None) -> None:
        """Refuse (ValueError naming both values) a dataset (name, classes, image shape), network or
        network keywords other than the buffer's; None skips a check."""
        m, folder = self.manifest, self.folder
        if dataset is not None:
            _refuse_mismatch(folder, "dataset", m["dataset"], dataset.name)
            _refuse_mismatch(folder, "number of classes", m["num_classes"], dataset.num_classes)
            _refuse_mismatch(folder, "image shape", m["image_shape"], [dataset.channels, *dataset.im_size])
        if network is not None:
            _refuse_mismatch(folder, "network", m["network"], network)
        if network_kwargs is not None:
            wanted = json_ready(filter_network_kwargs(network or m["network"], dict(network_kwargs)))
            _refuse_mismatch(folder, "network keywords", m["network_kwargs"], wanted)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """The parameters by name, as views of ``flat`` (gradients flow through them)."""
        sizes = [_numel(shape) for shape in self.parameter_shapes]
        return {name: piece.view(shape) for name, piece, shape
                in zip(self.parameter_names, flat.split(sizes), self.parameter_shapes)}


def _refuse_mismatch(folder: Path, what: str, stored: Any, wanted: Any) -> None:
    if stored != wanted:
        raise ValueError(f"the buffer {folder} was trained for {what} {stored!r}, not {wanted!r}: use a buffer "
                         f"built for {wanted!r} (or the settings the buffer was built with)")


def load_buffer(path: str | os.PathLike, dataset: ImageDataset | None = None, network: str | None = None,
                network_kwargs: Mapping[str, Any] | None = None) -> ExpertBuffer:
    """The buffer in ``path``, every expert file verified against the manifest's SHA-256.

    With ``dataset`` (its name, classes and image shape), ``network`` and ``network_kwargs``, a
    buffer made for anything else is refused with a ValueError naming both values. A missing or
    corrupt file, or an unfinished buffer, is a ValueError naming the file.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"no expert buffer at {folder}: build one with train_experts or `python -m gmlib experts`")
    manifest = read_manifest(folder)
    if not manifest["complete"]:
        raise ValueError(f"the buffer {folder} is unfinished ({len(manifest['experts'])} of "
                         f"{manifest['experts_planned']} experts): rerun train_experts with the same settings")
    for entry in manifest["experts"]:
        file = folder / entry["file"]
        if not file.is_file():
            raise ValueError(f"the expert file {file} listed in the manifest is missing")
        if file_sha256(file) != entry["sha256"]:
            raise ValueError(f"the expert file {file} does not match its checksum in the manifest: it is corrupt "
                             f"or was modified")
    buffer = ExpertBuffer(folder, manifest)
    buffer.check_matches(dataset, network, network_kwargs)
    return buffer
