"""Dataset condensation by gradient matching: DC (Zhao et al., 2021) and DSA (Zhao & Bilen, 2021).

The algorithm box of DC, line by line, and where each line lives in this module::

    initialise the synthetic set S                              distill -> init_synthetic
    for it = 0 .. iterations-1:                                 distill
        theta <- a freshly initialised network                  _fresh_network
        for t = 0 .. outer_loop-1:                              _run_iteration
            (BatchNorm nets) real statistics, then freeze BN    freeze_batchnorm_on_real
            for each class c:                                   matching_loss_backward
                B_c ~ batch_real real images of class c         sample_real_batches
                D_c = D( grad_theta L(S_c), grad_theta L(B_c) ) (real side: real_gradient)
            S <- S - lr_img * momentum-SGD( grad_S sum_c D_c )  _run_iteration
            if t < outer_loop-1:
                train theta on S for inner_loop epochs          train_inner

DSA changes two things: during matching the real batch and the synthetic images of a class go
through ONE shared random augmentation (Siamese), and the inner-loop training augments every
image with its own draw.

Options of the same loop (seed 002's "what, how and where to match"; defaults = DC, bit-identical):

* what: ``match_level`` intra (DC) / inter / multi (intra + lambda * inter) / interleaved, and
  ``per_class`` matching or one mixed batch (:mod:`gmlib.match_levels`);
* how: ``distance``, any of :mod:`gmlib.distances` (seed 002's d1..d4 and their sums);
* where: ``inner_steps`` fixed (DC) / overfit / schedule (:mod:`gmlib.inner_loop`);
* a curvature term ``hessian_weight * v^T C v`` per class (:mod:`gmlib.hessian`, seed 000).

Design notes:

* Every random choice of iteration ``it`` (the network's initialisation, the real batches, the
  augmentations, the inner-loop shuffles) comes from one CPU generator seeded from
  ``(seed, it)`` (:func:`iteration_generator`). So a run is reproducible on any device, and a
  checkpoint needs nothing but the images, the image optimiser's momentum and the iteration
  index to resume bit-identically.
* Two interchangeable engines compute the per-class matching losses (same numbers up to
  rounding): ``'loop'`` goes class by class like the algorithm box (and, on CPU, computes the
  real-batch gradient in cache-sized chunks, which is faster there); ``'batched'`` vectorises
  over classes with ``torch.func.vmap``, which keeps a GPU busy. ``'auto'`` picks batched on CUDA
  and loop on CPU, where benchmarks/bench_matching.py measured vmap 2.3-2.7x slower.
* :mod:`gmlib.matching_reference` holds the same outer step written as plainly as possible; the
  tests assert that this module computes the same numbers.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmlib.augment import dsa, dsa_strategy_for, parse_dsa_strategy, sample_dsa
from gmlib.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, save_checkpoint
from gmlib.distances import get_distance
from gmlib.evaluate import EvalConfig, evaluate_set
from gmlib.hessian import HESSIAN_KINDS, HESSIAN_LOSSES
from gmlib.inner_loop import (
    INNER_STEP_POLICIES,
    custom_schedule,
    inner_epochs,
    scheduled_inner_steps,
    steps_per_epoch,
    train_inner,
    train_inner_until_overfit,
)
from gmlib.match_levels import (
    MATCH_LEVELS,
    CurvatureSpec,
    StepLosses,
    level_of_iteration,
    loop_step_backward,
    mixed_step_backward,
    real_gradient,
    sample_mixed_real_batch,
)
from gmlib.networks import filter_network_kwargs, get_network, has_batchnorm, network_info
from gmlib.presets import dc_loops
from gmlib.runinfo import resolve_device
from gmlib.synthetic import INIT_NAMES, SyntheticSet, init_synthetic

METHODS = ("dc", "dsa")
ENGINES = ("auto", "loop", "batched")
# Images per forward pass for the real-batch gradients and the inner loop on CPU: a ConvNet's
# activations for 32 images stay in cache, which measured 1.5x faster than whole batches of 256
# (benchmarks/bench_matching.py; bench_evaluate.py for training). On GPUs whole batches are best. On a CPU
# shared with other busy jobs, torch.set_num_threads(1) can be several times faster than
# threads that wait for each other (bench_matching.py, "threads").
CPU_CHUNK_SIZE = 32
# The batched engine vmaps over at most this many images at once: 10 classes x 256 real images
# (MNIST, CIFAR-10 in one pass, about 8 GB for DC's ConvNet); more classes go in groups.
MAX_BATCHED_IMAGES = 2560
_CHECKPOINT_FORMAT = "gmlib.matching.checkpoint"
_CHECKPOINT_VERSION = 1


class NonFiniteLossError(RuntimeError):
    """The matching loss became NaN or infinite; the synthetic set would be ruined by the step."""

    def __init__(self, iteration: int, outer_step: int, class_index: int | None, value: float) -> None:
        self.iteration, self.outer_step, self.class_index, self.value = iteration, outer_step, class_index, value
        what = "the matching objective" if class_index is None else f"the matching loss of class {class_index}"
        super().__init__(
            f"{what} is {value} at iteration {iteration} (outer step "
            f"{outer_step}); stopped before updating the images. The last checkpoint (if any) is untouched. "
            f"Try a smaller lr_img or another distance."
        )


# --------------------------------------------------------------------------------------------
# Configuration, history and result
# --------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value: Any, low: int) -> None:
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _one_of(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(repr(a) for a in allowed)}")


@dataclass(frozen=True)
class MatchingConfig:
    """Hyperparameters of DC/DSA. The defaults are DC's reference settings.

    ``outer_loop``/``inner_loop`` None take DC's values for ``ipc`` (:func:`gmlib.presets.dc_loops`):
    ``outer_loop`` image updates per iteration, ``inner_loop`` epochs of network training on the
    synthetic set between them. ``dsa_strategy`` None = the dataset's DSA strategy (method 'dsa'
    only). ``network_kwargs`` go to :func:`gmlib.networks.get_network` (a dict is stored as sorted
    pairs so the config stays hashable). ``eval_at`` lists numbers of completed iterations after
    which to evaluate the current set (0 = the initialisation) with ``eval_config`` (None = the
    protocol's defaults for the distillation network) and ``eval_models`` models. ``engine`` only
    changes speed and rounding (see the module docstring). The reference uses lr_img 0.01 for the
    MLP; set it explicitly.

    Seed 002/003 options (:mod:`gmlib.match_levels`, :mod:`gmlib.inner_loop`): ``match_level``
    (:data:`MATCH_LEVELS`) with ``level_weight`` lambda (None = number of classes);
    ``per_class`` False matches one mixed real batch of batch_real * classes images against the
    whole synthetic set; ``inner_steps`` (:data:`INNER_STEP_POLICIES`) with ``inner_schedule``
    (epochs after outer step t = ``inner_schedule[t]``, the last value repeating; None = seed 002
    eq. 12). ``hessian_weight`` > 0 adds ``hessian_weight * v^T C v`` per class, v = g_real -
    g_syn, C of the ``hessian_loss`` ('synthetic' or 'real') of kind ``hessian_kind``. The batched
    engine supports only the DC options (intra, per class, no curvature term); 'auto' then picks
    the loop engine.
    """

    ipc: int = 1
    method: str = "dc"
    iterations: int = 1000
    outer_loop: int | None = None
    inner_loop: int | None = None
    batch_real: int = 256
    batch_train: int = 256
    lr_img: float = 0.1
    momentum_img: float = 0.5
    lr_net: float = 0.01
    distance: str = "ours"
    init: str = "noise"
    dsa_strategy: str | None = None
    network: str = "convnet"
    network_kwargs: tuple[tuple[str, Any], ...] | Mapping[str, Any] = ()
    bn_real_per_class: int = 16
    checkpoint_every: int = 0
    eval_at: tuple[int, ...] = ()
    eval_config: EvalConfig | None = None
    eval_models: int = 20
    engine: str = "auto"
    match_level: str = "intra"
    level_weight: float | None = None
    per_class: bool = True
    inner_steps: str = "fixed"
    inner_schedule: tuple[int, ...] | None = None
    hessian_weight: float = 0.0
    hessian_loss: str = "synthetic"
    hessian_kind: str = "exact"

    def __post_init__(self) -> None:
        if isinstance(self.network_kwargs, Mapping):
            object.__setattr__(self, "network_kwargs", tuple(sorted(self.network_kwargs.items())))
        _check_int("ipc (images per class)", self.ipc, 1)
        _one_of("method", self.method, METHODS)
        _check_int("iterations", self.iterations, 0)
        if self.outer_loop is not None:
            _check_int("outer_loop", self.outer_loop, 1)
        if self.inner_loop is not None:
            _check_int("inner_loop", self.inner_loop, 0)
        for name in ("batch_real", "batch_train", "bn_real_per_class", "eval_models"):
            _check_int(name, getattr(self, name), 1)
        _check_int("checkpoint_every", self.checkpoint_every, 0)
        for name in ("lr_img", "lr_net"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not 0 <= self.momentum_img < 1:
            raise ValueError(f"momentum_img must be in [0, 1), got {self.momentum_img!r}")
        get_distance(self.distance)  # raises a ValueError naming the known distances
        _one_of("init", self.init, INIT_NAMES)
        network_info(self.network)  # raises a ValueError naming the known networks
        _one_of("engine", self.engine, ENGINES)
        if self.dsa_strategy is not None:
            if self.method != "dsa":
                raise ValueError(f"dsa_strategy={self.dsa_strategy!r} needs method='dsa' (got method={self.method!r})")
            parse_dsa_strategy(self.dsa_strategy)
        if isinstance(self.eval_at, int) or not all(_is_int(i) for i in self.eval_at):
            raise ValueError(f"eval_at must be a sequence of iteration counts, got {self.eval_at!r}")
        outside = [i for i in self.eval_at if not 0 <= i <= self.iterations]
        if outside:
            raise ValueError(f"eval_at values {outside} lie outside [0, iterations={self.iterations}]")
        object.__setattr__(self, "eval_at", tuple(sorted(set(self.eval_at))))
        if self.eval_config is not None and not isinstance(self.eval_config, EvalConfig):
            raise ValueError(f"eval_config must be a gmlib.evaluate.EvalConfig or None, got {type(self.eval_config).__name__}")
        self._check_matching_options()

    def _check_matching_options(self) -> None:
        _one_of("match_level", self.match_level, MATCH_LEVELS)
        if self.level_weight is not None:
            _check_number("level_weight", self.level_weight)
            if self.match_level == "intra":
                raise ValueError(f"level_weight={self.level_weight!r} weighs the inter-class term, which "
                                 f"match_level='intra' does not use; allowed levels for it: 'inter', 'multi', 'interleaved'")
        if not isinstance(self.per_class, bool):
            raise ValueError(f"per_class must be True or False, got {self.per_class!r}")
        if not self.per_class and self.match_level != "intra":
            raise ValueError(f"match_level={self.match_level!r} needs per-class gradients; with per_class=False "
                             f"the one mixed-batch gradient is matched: use match_level='intra' (the default)")
        _one_of("inner_steps", self.inner_steps, INNER_STEP_POLICIES)
        if self.inner_schedule is not None:
            if self.inner_steps != "schedule":
                raise ValueError(f"inner_schedule needs inner_steps='schedule' (got inner_steps={self.inner_steps!r})")
            custom_schedule(self.inner_schedule)  # raises a ValueError for a bad list
            object.__setattr__(self, "inner_schedule", tuple(self.inner_schedule))
        _check_number("hessian_weight", self.hessian_weight)
        _one_of("hessian_loss", self.hessian_loss, HESSIAN_LOSSES)
        _one_of("hessian_kind", self.hessian_kind, HESSIAN_KINDS)
        if self.engine == "batched" and not self.dc_options:
            raise ValueError("engine='batched' supports only match_level='intra', per_class=True and "
                             "hessian_weight=0; use engine='loop' or 'auto' for the other options")

    @property
    def dc_options(self) -> bool:
        """Whether the per-step objective is DC's (intra-class, per class, no curvature term)."""
        return self.match_level == "intra" and self.per_class and self.hessian_weight == 0

    @property
    def loops(self) -> tuple[int, int]:
        """(outer_loop, inner_loop) with None resolved from ``ipc``."""
        outer, inner = dc_loops(self.ipc)
        return (outer if self.outer_loop is None else self.outer_loop,
                inner if self.inner_loop is None else self.inner_loop)

    def replace(self, **changes: Any) -> "MatchingConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON, checkpoints and provenance (loops resolved, eval_config as a dict)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["network_kwargs"] = dict(self.network_kwargs)
        data["eval_at"] = list(self.eval_at)
        data["inner_schedule"] = None if self.inner_schedule is None else list(self.inner_schedule)
        data["eval_config"] = None if self.eval_config is None else self.eval_config.as_dict()
        data["resolved_loops"] = list(self.loops)
        return data

    @classmethod
    def from_profile(cls, profile: Any, *, ipc: int, dataset: str | None = None, **overrides: Any) -> "MatchingConfig":
        """The configuration a compute profile (:func:`gmlib.presets.get_profile`) affords.

        The profile sets iterations, batch_real, the ConvNet width and the evaluation budget
        (models, epochs, test images, width); ``dataset`` (a name) picks the evaluation
        augmentation (:func:`evaluation_augment`). Keyword ``overrides`` win over everything.
        """
        method = overrides.get("method", "dc")
        network = overrides.get("network", "convnet")
        augment = "none" if dataset is None else evaluation_augment(dataset, method)
        strategy = {"dsa_strategy": dsa_strategy_for(dataset)} if augment == "dsa" else {}
        eval_config = EvalConfig(network=network, network_kwargs=filter_network_kwargs(network, {"width": profile.eval_width}),
                                 epochs=profile.eval_epochs, test_size=profile.eval_test_size, augment=augment, **strategy)
        values: dict[str, Any] = dict(
            ipc=ipc, iterations=profile.iterations, batch_real=profile.batch_real,
            network_kwargs=filter_network_kwargs(network, {"width": profile.net_width}),
            eval_config=eval_config, eval_models=profile.eval_models,
        )
        values.update(overrides)
        return cls(**values)


def evaluation_augment(dataset: str, method: str) -> str:
    """The evaluation augmentation the papers used: 'dsa' after DSA, DC's classic 'mnist'
    augmentation for MNIST after DC, none otherwise."""
    _one_of("method", method, METHODS)
    if method == "dsa":
        return "dsa"
    return "mnist" if dataset.lower() == "mnist" else "none"


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


@dataclass
class MatchingResult:
    """The learned synthetic set and the history of the run that produced it."""

    synthetic: SyntheticSet
    history: History


# --------------------------------------------------------------------------------------------
# Randomness: one generator per iteration
# --------------------------------------------------------------------------------------------


def iteration_seed(seed: int, iteration: int) -> int:
    """The seed of iteration ``iteration`` of a run with ``seed`` (hashed: unrelated streams)."""
    digest = hashlib.sha256(f"gmlib.matching:{seed}:{iteration}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def iteration_generator(seed: int, iteration: int) -> torch.Generator:
    """The CPU generator every random draw of that iteration comes from (same on every device)."""
    return torch.Generator().manual_seed(iteration_seed(seed, iteration))


def _draw_seed(generator: torch.Generator) -> int:
    return int(torch.randint(2**62, (1,), generator=generator).item())


# --------------------------------------------------------------------------------------------
# The pieces of one outer step
# --------------------------------------------------------------------------------------------


def sample_real_batches(dataset: Any, batch_real: int, generator: torch.Generator) -> Tensor:
    """One random batch of real images per class, stacked: (num_classes, B, C, H, W).

    B = ``batch_real``, or the smallest class size when a class has fewer images (the reference
    code silently takes what there is; a shared B keeps the batches stackable).
    """
    n = min(batch_real, min(len(dataset.class_indices(c)) for c in range(dataset.num_classes)))
    return torch.stack([dataset.sample(c, n, generator) for c in range(dataset.num_classes)])


def freeze_batchnorm_on_real(net: nn.Module, dataset: Any, per_class: int, generator: torch.Generator) -> None:
    """Set BatchNorm statistics from real data, then freeze them for matching (DC's BN handling).

    A BatchNorm net in train mode would mix the statistics of whatever batch it sees into the
    gradients; DC instead passes ``per_class`` real images of every class through it in train mode
    (updating the running statistics), then puts the BN layers in eval mode, so the real and the
    synthetic gradients are taken under the same, real-data normalisation.
    """
    n = min(per_class, min(len(dataset.class_indices(c)) for c in range(dataset.num_classes)))
    images = torch.cat([dataset.sample(c, n, generator) for c in range(dataset.num_classes)])
    net.train()
    with torch.no_grad():
        net(images)
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _per_class(distance: Callable, g_syn: list[Tensor], g_real: list[Tensor]) -> Tensor:
    if hasattr(distance, "per_class"):
        return distance.per_class(g_syn, g_real)
    return torch.stack([distance([g[c] for g in g_syn], [g[c] for g in g_real]) for c in range(len(g_syn[0]))])


def _batched_losses(net, syn_images, ipc, real_batches, distance, augmentations, max_images) -> Tensor:
    """The same losses, vectorised over classes with torch.func (per-class gradients via vmap)."""
    from torch.func import functional_call, grad, vmap

    num_classes, batch = real_batches.shape[:2]
    syn_by_class = syn_images.view(num_classes, ipc, *syn_images.shape[1:])
    names = [name for name, p in net.named_parameters() if p.requires_grad]
    params = {name: p.detach() for name, p in net.named_parameters() if p.requires_grad}
    frozen = {name: p.detach() for name, p in net.named_parameters() if not p.requires_grad}
    buffers = dict(net.named_buffers())

    def class_loss(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(net, ({**p, **frozen}, buffers), (x,)), y)

    per_class_grad = vmap(grad(class_loss), in_dims=(None, 0, 0))
    classes = torch.arange(num_classes, device=syn_images.device)
    group = max(1, max_images // max(batch, ipc))
    losses = []
    for first in range(0, num_classes, group):
        k = slice(first, first + group)
        real, syn = real_batches[k], syn_by_class[k]
        if augmentations is not None:  # each class has its own family: augment class by class (cheap)
            real = torch.stack([aug(r) for aug, r in zip(augmentations[k], real)])
            syn = torch.stack([aug(s) for aug, s in zip(augmentations[k], syn)])
        y_real = classes[k, None].expand(-1, batch)
        y_syn = classes[k, None].expand(-1, ipc)
        g_real = per_class_grad(params, real, y_real)
        g_syn = per_class_grad(params, syn, y_syn)  # differentiable w.r.t. the images
        loss = _per_class(distance, [g_syn[n] for n in names], [g_real[n].detach() for n in names])
        loss.sum().backward()
        losses.append(loss.detach())
    return torch.cat(losses)


def matching_loss_backward(
    net: nn.Module,
    syn_images: Tensor,
    ipc: int,
    real_batches: Tensor,
    distance: Callable[[Sequence[Tensor], Sequence[Tensor]], Tensor],
    *,
    augmentations: Sequence[Callable[[Tensor], Tensor]] | None = None,
    engine: str = "loop",
    chunk_size: int | None = None,
    max_batched_images: int = MAX_BATCHED_IMAGES,
    level: str = "intra",
    level_weight: float | None = None,
    curvature: CurvatureSpec | None = None,
) -> Tensor:
    """The per-class matching losses D_c, with grad_S sum_c D_c accumulated into ``syn_images.grad``.
    (With ``level``/``curvature`` the gradient of that objective is accumulated instead; the
    returned D_c are the same; :func:`matching_step_backward` returns every term.)

    ``syn_images``: the class-ordered leaf tensor (num_classes * ipc, C, H, W); ``real_batches``:
    (num_classes, B, C, H, W); ``distance(g_syn, g_real)`` a gradient distance;
    ``augmentations[c]`` (DSA) is applied to both the real batch and the synthetic images of class
    ``c``. ``engine`` 'loop' or 'batched' (same result up to rounding); ``chunk_size`` splits the
    real batches of the loop engine. Returns the detached ``(num_classes,)`` losses; the caller
    zeroes the gradient before and steps the optimiser after.
    """
    return matching_step_backward(net, syn_images, ipc, real_batches, distance, augmentations=augmentations,
                                  engine=engine, chunk_size=chunk_size, max_batched_images=max_batched_images,
                                  level=level, level_weight=level_weight, curvature=curvature).per_class


def matching_step_backward(
    net: nn.Module,
    syn_images: Tensor,
    ipc: int,
    real_batches: Tensor,
    distance: Callable[[Sequence[Tensor], Sequence[Tensor]], Tensor],
    *,
    augmentations: Sequence[Callable[[Tensor], Tensor]] | None = None,
    engine: str = "loop",
    chunk_size: int | None = None,
    max_batched_images: int = MAX_BATCHED_IMAGES,
    level: str = "intra",
    level_weight: float | None = None,
    curvature: CurvatureSpec | None = None,
) -> StepLosses:
    """One per-class matching step at ``level`` ('intra', 'inter' or 'multi'; lambda =
    ``level_weight``, None = number of classes) with an optional ``curvature`` term: accumulates
    grad_S of the objective into ``syn_images.grad`` and returns the detached terms
    (:class:`gmlib.match_levels.StepLosses`). Arguments as :func:`matching_loss_backward`; the
    batched engine computes only DC's objective (intra, no curvature term).
    """
    _one_of("engine", engine, ENGINES[1:])
    if real_batches.dim() != 5 or syn_images.shape[0] != len(real_batches) * ipc:
        raise ValueError(f"expected real_batches (classes, B, C, H, W) and {len(real_batches)} x ipc={ipc} synthetic "
                         f"images; got {tuple(real_batches.shape)} and {tuple(syn_images.shape)}")
    if engine == "loop":
        return loop_step_backward(net, syn_images, ipc, real_batches, distance, augmentations=augmentations,
                                  chunk_size=chunk_size, level=level, level_weight=level_weight, curvature=curvature)
    if level != "intra" or curvature is not None:
        raise ValueError(f"engine='batched' computes only the intra-class objective without a curvature term "
                         f"(got level={level!r}, curvature={curvature!r}); use engine='loop'")
    losses = _batched_losses(net, syn_images, ipc, real_batches, distance, augmentations, max_batched_images)
    return StepLosses(losses, None, None, losses.sum())


# --------------------------------------------------------------------------------------------
# One iteration, and the loop around it
# --------------------------------------------------------------------------------------------


def resolve_engine(engine: str, device: torch.device, dc_options: bool = True) -> str:
    """'auto' -> 'batched' on CUDA, 'loop' elsewhere (vmap measured slower on CPU) and for any
    objective other than DC's (``dc_options`` False), which only the loop engine computes."""
    _one_of("engine", engine, ENGINES)
    if engine != "auto":
        return engine
    return "batched" if device.type == "cuda" and dc_options else "loop"


def _fresh_network(config: MatchingConfig, dataset: Any, generator: torch.Generator, device: torch.device) -> nn.Module:
    net = get_network(config.network, dataset.channels, dataset.num_classes, dataset.im_size,
                      seed=_draw_seed(generator), **dict(config.network_kwargs))
    return net.to(device)


@dataclass
class _Run:
    """What every iteration of one run shares (built once by :func:`distill`)."""

    config: MatchingConfig
    dataset: Any
    synthetic: SyntheticSet
    optimizer: torch.optim.Optimizer
    distance: Callable
    device: torch.device
    engine: str
    chunk_size: int | None
    dsa_strategy: str | None
    seed: int
    curvature: CurvatureSpec | None = None


def _matching_step_gradient(run: _Run, net: nn.Module, real_batches: Tensor, augmentations: Any,
                            level: str = "intra") -> StepLosses:
    """Zero the images' gradient and accumulate grad_S of the step's objective; returns its terms.

    The batched engine holds every class's activations at once; if the GPU runs out of memory,
    the step is redone with the loop engine (same inputs, same result up to rounding), which the
    rest of the run then keeps.
    """
    def attempt() -> StepLosses:
        run.optimizer.zero_grad(set_to_none=True)
        return matching_step_backward(net, run.synthetic.images, run.synthetic.ipc, real_batches, run.distance,
                                      augmentations=augmentations, engine=run.engine, chunk_size=run.chunk_size,
                                      level=level, level_weight=run.config.level_weight, curvature=run.curvature)

    try:
        return attempt()
    except torch.cuda.OutOfMemoryError:
        if run.engine != "batched":
            raise
        warnings.warn("the batched matching engine ran out of GPU memory; continuing with engine='loop'",
                      RuntimeWarning, stacklevel=2)
        run.engine = "loop"
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return attempt()


@contextlib.contextmanager
def _global_rng_from(generator: torch.Generator) -> Iterator[None]:
    """Seed the global RNG from ``generator`` for the block, restoring it afterwards: layers such
    as dropout draw from it, and a run must not depend on (or disturb) anyone else's random state."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(_draw_seed(generator))
        yield


@dataclass
class _IterationRecord:
    """What one iteration adds to the History (losses averaged over its outer steps)."""

    losses: list[float]
    inter_loss: float | None
    curvature: float | None
    inner_epochs: list[int]
    inner_updates: int
    inner_updates_saved: int


def _run_iteration(run: _Run, it: int) -> _IterationRecord:
    """One outer iteration of the algorithm box."""
    generator = iteration_generator(run.seed, it)
    with _global_rng_from(generator):
        return _iteration_body(run, it, generator)


def _check_finite(step: StepLosses, it: int, t: int) -> None:
    values = step.values()
    if not torch.isfinite(values).all():  # one host sync per outer step: cheap next to the step
        bad = int((~torch.isfinite(values)).nonzero()[0])
        raise NonFiniteLossError(it, t, bad if bad < len(step.per_class) else None, float(values[bad]))


def _iteration_body(run: _Run, it: int, generator: torch.Generator) -> _IterationRecord:
    config, dataset, syn = run.config, run.dataset, run.synthetic
    net = _fresh_network(config, dataset, generator, run.device)
    batchnorm = has_batchnorm(net)
    outer_loop, inner_loop = config.loops
    level = level_of_iteration(config.match_level, it)
    totals = torch.zeros(dataset.num_classes if config.per_class else 1, device=run.device)
    inter_total = curvature_total = 0.0
    epochs_done: list[int] = []
    updates = 0
    for t in range(outer_loop):
        if batchnorm:
            freeze_batchnorm_on_real(net, dataset, config.bn_real_per_class, generator)
        if config.per_class:
            real_batches = sample_real_batches(dataset, config.batch_real, generator)
            augmentations = None
            if run.dsa_strategy is not None:  # Siamese: one draw per class, shared by real and synthetic
                augmentations = [sample_dsa(real_batches.shape[1:], run.dsa_strategy, generator, siamese=True)
                                 for _ in range(dataset.num_classes)]
            step = _matching_step_gradient(run, net, real_batches, augmentations, level)
            # the step's own real images, class-ordered, are the overfit policy's validation batch
            real_images = real_batches.flatten(0, 1)
            real_labels = torch.arange(dataset.num_classes, device=run.device).repeat_interleave(real_batches.shape[1])
        else:  # one mixed real batch against the whole synthetic set (seed 003, "not per class")
            real_images, real_labels = sample_mixed_real_batch(dataset, config.batch_real * dataset.num_classes,
                                                               generator)
            augmentation = None
            if run.dsa_strategy is not None:
                augmentation = sample_dsa(real_images.shape, run.dsa_strategy, generator, siamese=True)
            run.optimizer.zero_grad(set_to_none=True)
            step = mixed_step_backward(net, syn.images, syn.labels, real_images, real_labels, run.distance,
                                       augmentation=augmentation, chunk_size=run.chunk_size, curvature=run.curvature)
        _check_finite(step, it, t)
        run.optimizer.step()  # S <- S - lr_img * momentum-SGD(grad_S objective)
        totals += step.per_class
        if step.inter is not None:
            inter_total += float(step.inter)
        if step.curvature is not None:
            curvature_total += float(step.curvature.sum())

        if t == outer_loop - 1:
            break  # the next iteration starts from a fresh network: no point training this one
        images, labels = syn.detached()
        augment = None if run.dsa_strategy is None else (lambda x: dsa(x, run.dsa_strategy, generator))
        epochs = inner_epochs(config.inner_steps, t, inner_loop, config.inner_schedule)
        if config.inner_steps == "overfit":
            log = train_inner_until_overfit(net, images, labels, real_images, real_labels, max_epochs=epochs,
                                            batch_size=config.batch_train, lr=config.lr_net, generator=generator,
                                            augment=augment, chunk_size=run.chunk_size)
            epochs_done.append(log.epochs)
            updates += log.steps
        else:
            updates += train_inner(net, images, labels, epochs=epochs, batch_size=config.batch_train,
                                   lr=config.lr_net, generator=generator, augment=augment,
                                   chunk_size=run.chunk_size) or 0
            epochs_done.append(epochs)
    fixed = (outer_loop - 1) * inner_loop * steps_per_epoch(len(syn.labels), config.batch_train)
    return _IterationRecord(
        losses=(totals / outer_loop).tolist(),
        inter_loss=inter_total / outer_loop if level in ("inter", "multi") else None,
        curvature=curvature_total / outer_loop if run.curvature is not None else None,
        inner_epochs=epochs_done, inner_updates=updates, inner_updates_saved=fixed - updates,
    )


def _evaluate(run: _Run, completed: int, seconds_before: float) -> dict[str, Any]:
    config = run.config
    eval_config = config.eval_config
    if eval_config is None:
        eval_config = EvalConfig(network=config.network,
                                 network_kwargs=filter_network_kwargs(config.network, dict(config.network_kwargs)))
    images, labels = run.synthetic.detached()
    start = time.perf_counter()
    result = evaluate_set(images, labels, run.dataset.test_images, run.dataset.test_labels, eval_config,
                          config.eval_models, seed=run.seed, num_classes=run.dataset.num_classes, device=run.device)
    return {"iteration": completed, "mean": result.mean, "std": result.std, "accuracies": list(result.accuracies),
            "seconds": time.perf_counter() - start, "distill_seconds": seconds_before}


def _identity(config: MatchingConfig, seed: int, dataset: Any) -> dict[str, Any]:
    """What must match for a checkpoint to continue this run (checkpoint_every only affects I/O)."""
    data = config.as_dict()
    del data["checkpoint_every"]
    # Options added after checkpoints existed are left out at their defaults, so those still resume.
    for name in _LATER_OPTIONS:
        if getattr(config, name) == _DEFAULT_OPTIONS[name]:
            del data[name]
    data.update(seed=seed, dataset=dataset.name, num_classes=dataset.num_classes,
                image_shape=[dataset.channels, *dataset.im_size])
    return json.loads(json.dumps(data))  # tuples -> lists, as they come back from a file


_LATER_OPTIONS = ("match_level", "level_weight", "per_class", "inner_steps", "inner_schedule",
                  "hessian_weight", "hessian_loss", "hessian_kind")
_DEFAULT_OPTIONS = {f.name: f.default for f in dataclasses.fields(MatchingConfig) if f.name in _LATER_OPTIONS}


def _to_cpu(value: Any) -> Any:
    """A deep copy with every tensor cloned to the CPU (a snapshot no later step can change)."""
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return copy.deepcopy(value)


def _load_compatible(path: Path, identity: dict) -> dict | None:
    state = load_checkpoint(path, _CHECKPOINT_FORMAT)
    if state is None:
        return None
    if state.get("version") != _CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')!r}; this gmlib writes "
                              f"version {_CHECKPOINT_VERSION}. Start over with resume=False (--no-resume).")
    saved = state["identity"]
    differences = [f"{key}={saved.get(key)!r} there, {identity.get(key)!r} here"
                   for key in sorted(set(saved) | set(identity)) if saved.get(key) != identity.get(key)]
    if differences:
        raise CheckpointError(f"the checkpoint {path} belongs to another run: " + "; ".join(differences)
                              + ". Use the same settings and seed, another checkpoint directory, or "
                                "resume=False (--no-resume) to start over.")
    return state


def distill(
    dataset: Any,
    config: MatchingConfig = MatchingConfig(),
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    stop_at: int | None = None,
) -> MatchingResult:
    """Learn a synthetic set of ``config.ipc`` images per class of ``dataset`` by DC or DSA.

    ``dataset`` is a :class:`gmlib.data.ImageDataset` (moved to ``device`` once if needed). The
    run is determined by ``(config, seed)``: the same call gives the same images.

    Checkpoints (``checkpoint_dir``): every ``config.checkpoint_every`` iterations, at the end,
    at ``stop_at``, and on Ctrl-C (the last completed iteration, then the KeyboardInterrupt goes
    on), the state is written atomically to ``checkpoint_dir/checkpoint.pt``. With ``resume``
    a run continues from it and ends bit-identical to an uninterrupted run; a checkpoint of
    another config, seed or dataset is refused with a :class:`gmlib.checkpoint.CheckpointError`.
    ``stop_at`` ends this call after that many completed iterations (a time slice).

    Raises :class:`NonFiniteLossError` if a matching loss becomes NaN/inf (no checkpoint is
    written then, so the last good one survives).
    """
    if not isinstance(config, MatchingConfig):
        raise ValueError(f"config must be a MatchingConfig, got {type(config).__name__}")
    if not _is_int(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if stop_at is not None:
        _check_int("stop_at", stop_at, 0)
    device = resolve_device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # 'cuda' and 'cuda:0' are one device
    if dataset.device != device:
        dataset = dataset.to(device)  # once: every real batch is then drawn on the device
    dsa_strategy = None
    if config.method == "dsa":
        dsa_strategy = config.dsa_strategy or dsa_strategy_for(dataset.name)
    # Check the network takes this data before any work (clear error for a bad size or keyword).
    with torch.device("meta"):
        get_network(config.network, dataset.channels, dataset.num_classes, dataset.im_size, **dict(config.network_kwargs))

    synthetic = init_synthetic(dataset, config.ipc, config.init, seed=seed, device=device)
    optimizer = torch.optim.SGD([synthetic.images], lr=config.lr_img, momentum=config.momentum_img)
    history = History(config=config.as_dict(), seed=seed, device=str(device))
    identity = _identity(config, seed, dataset)
    path = None if checkpoint_dir is None else checkpoint_path(checkpoint_dir)
    start = 0
    if path is not None and resume:
        state = _load_compatible(path, identity)
        if state is not None:
            start = state["completed"]
            with torch.no_grad():
                synthetic.images.copy_(state["images"])
            optimizer.load_state_dict(state["optimizer"])
            history = History.from_dict(state["history"])
            history.device = str(device)
            history.resumed_at.append(start)
    chunk_size = CPU_CHUNK_SIZE if device.type == "cpu" else None
    curvature = None
    if config.hessian_weight > 0:
        curvature = CurvatureSpec(float(config.hessian_weight), config.hessian_loss, config.hessian_kind)
    run = _Run(config, dataset, synthetic, optimizer, get_distance(config.distance), device,
               resolve_engine(config.engine, device, config.dc_options), chunk_size, dsa_strategy, seed, curvature)
    end = config.iterations if stop_at is None else min(stop_at, config.iterations)

    def snapshot(completed: int) -> dict:
        # Tensors are copied now (later steps change them in place); the history only grows,
        # so save() cuts it to `completed` when it writes.
        return {"completed": completed, "images": synthetic.images.detach().cpu().clone(),
                "optimizer": _to_cpu(optimizer.state_dict())}

    def save(snap: dict) -> None:
        save_checkpoint(path, {"format": _CHECKPOINT_FORMAT, "version": _CHECKPOINT_VERSION, "identity": identity,
                               **snap, "history": history.to_dict(upto=snap["completed"])})

    def maybe_evaluate(completed: int) -> None:
        if completed in config.eval_at and all(e["iteration"] != completed for e in history.evaluations):
            history.evaluations.append(_evaluate(run, completed, sum(history.seconds)))

    from tqdm.auto import tqdm

    bar = tqdm(total=config.iterations, initial=start, desc=f"{config.method} ipc {config.ipc}",
               disable=not progress, leave=True)
    last_good = snapshot(start) if path is not None else None
    try:
        maybe_evaluate(start)
        for it in range(start, end):
            began = time.perf_counter()
            record = _run_iteration(run, it)
            history.seconds.append(time.perf_counter() - began)
            history.losses.append(record.losses)
            history.inter_losses.append(record.inter_loss)
            history.curvature.append(record.curvature)
            history.inner_epochs.append(record.inner_epochs)
            history.inner_updates.append(record.inner_updates)
            history.inner_updates_saved.append(record.inner_updates_saved)
            completed = it + 1
            maybe_evaluate(completed)
            if path is not None:
                last_good = snapshot(completed)
                if config.checkpoint_every and completed % config.checkpoint_every == 0:
                    save(last_good)
            bar.update()
            postfix = {"loss": f"{sum(history.losses[-1]) / dataset.num_classes:.4f}"}
            if history.evaluations:
                postfix["acc"] = f"{history.evaluations[-1]['mean']:.3f}"
            bar.set_postfix(postfix)
    except KeyboardInterrupt:
        if last_good is not None:
            save(last_good)
            bar.write(f"interrupted: saved the state after {last_good['completed']} iterations to {path}")
        raise
    finally:
        bar.close()
    if path is not None:
        save(last_good)
    synthetic.metadata.update(method=config.method, iterations=history.completed, seed=seed)
    return MatchingResult(synthetic, history)
