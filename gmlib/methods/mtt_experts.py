"""Experts for trajectory matching (MTT): networks trained on the real data, kept as a buffer.

MTT (Cazenavette et al., 2022) distils by making a student, trained a few steps on the synthetic
set, land where an *expert* trained on the real data landed several epochs later. The experts are
trained once, before any distillation, and their parameters are kept after every (k-th) epoch: the
*buffer*. This module trains them, resumable expert by expert (a stop loses at most the expert
in training); :mod:`gmlib.methods.mtt_buffer` writes and verifies the buffer's files.

The reference code keeps no seeds and no metadata, and nothing stops a buffer of one network from
being used with another; networks with BatchNorm are refused here, because their running statistics
are not parameters and a parameter snapshot would not restore the expert.

Snapshot ``k`` of every expert is the parameters after epoch ``k * every`` (snapshot 0 is the
initialisation), so with ``every`` = 1 snapshot ``k`` is epoch ``k``, as in the paper.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmlib.checks import check_bool, check_int, check_nonnegative, check_one_of, check_positive
from gmlib.data import ImageDataset
from gmlib.dsa import dsa, dsa_strategy_for, parse_dsa_strategy
from gmlib.fileio import check_writable_folder, json_ready
from gmlib.methods.mtt_buffer import (ExpertBuffer, check_same_settings, expert_file_name, finished_expert, load_buffer,
                                      read_expert, save_expert, write_manifest)
from gmlib.networks import check_network_kwargs, filter_network_kwargs, get_network, has_batchnorm
from gmlib.progress import progress_bar
from gmlib.randomness import draw_seed, global_rng_from

__all__ = ["ExpertConfig", "check_no_batchnorm", "train_experts", "train_one_expert"]

STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


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
# Training all experts
# --------------------------------------------------------------------------------------------


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
    check_same_settings(folder, settings)
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
        write_manifest(folder, settings, records, config.experts)
    bar.close()
    write_manifest(folder, settings, records, config.experts)
    return load_buffer(folder)


