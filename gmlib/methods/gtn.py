"""Generative teaching networks trained by gradient matching or implicit differentiation (seed 003).

Instead of learning the pixels of the synthetic set, learn a small conditional *generator*
G(z, y) that produces them (Such et al.'s generative teaching network, GTN). Medvedev and
D'yakonov (seed 003, section VII) train it without backpropagating through a student's training:

* **GM** -- gradient matching (their Fig. 5): each step, the per-class distance between the
  gradients a student takes on generated and on real images is backpropagated through the images
  into the generator (and its learned inputs);
* **IFT** -- implicit differentiation (their Figs. 3-4): train a fresh student on the generated
  images for a few steps, take its loss on a real batch, and get the hypergradient with respect
  to the generator by the implicit function theorem with a truncated Neumann series
  (:func:`gmlib.methods.bilevel.implicit_hypergradient`).

The generator, its two input modes and the teacher that holds both are :mod:`gmlib.methods.gtn_generator`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmlib.checks import check_bool, check_int, check_one_of, check_positive, is_int
from gmlib.data import ImageDataset
from gmlib.distances import get_distance
from gmlib.methods.dc import freeze_batchnorm_on_real, matching_loss_backward
from gmlib.methods.dc_variants import mixed_step_backward
from gmlib.methods.gtn_generator import MIN_K, MODES, GenerativeTeacher, Generator
from gmlib.methods.inner_loop import train_inner
from gmlib.networks import has_batchnorm, network_info
from gmlib.randomness import draw_seed
from gmlib.run.loop import Method, RunResult, Step, check_finite, fresh_network, run
from gmlib.runinfo import resolve_device
from gmlib.synthetic import SyntheticSet

OBJECTIVES = ("gm", "ift")

__all__ = ["OBJECTIVES", "GTNConfig", "GTNMethod", "build_teacher", "generated_set", "gm_teacher_backward",
    "ift_teacher_backward", "train_gtn"]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GTNConfig:
    """Hyperparameters of a GTN distillation. Defaults: seed 003's MNIST settings where it gives them.

    * ``mode``: 'learned_input' (GTN-lrn) or 'random_input' (GTN-rnd); ``objective``: 'gm' or 'ift'.
    * ``k``: generator size; ``latent_dim``: d = 64 (Fig. 6); ``ipc``: images per class.
    * ``iterations``: K, each with a freshly initialised student.
    * GM: ``outer_loop`` (N) teacher updates per iteration, ``inner_steps`` (zeta_theta) student
      steps on the generated set between them; ``per_class`` False matches the gradients of all
      classes at once (Table II's "not per class" rows).
    * IFT: the student trains ``inner_steps`` steps on the generated set, then ONE teacher update
      with the implicit hypergradient (``neumann_terms`` terms of scale ``neumann_alpha``).
    * Student training is :func:`gmlib.methods.dc.train_inner` (plain SGD ``lr_net``; one epoch of
      batches of ``batch_train`` = one full-batch step when the set has at most that many images).
    * ``batch_real``: real images per class per step (GM: each class's batch; IFT: the outer loss
      takes that many images of every class).
    * Teacher optimiser: Adam(``lr_teacher``) on generator and latents -- our choice, seed 003
      only says "the same teacher optimizers as in the original papers". Adam ignores a constant
      scale of the loss, so summing the layer distances (DC, us) or averaging them (seed 003)
      makes no difference.
    """

    mode: str = "learned_input"
    objective: str = "gm"
    k: int = 64
    latent_dim: int = 64
    ipc: int = 10
    iterations: int = 110
    outer_loop: int = 10
    inner_steps: int = 10
    batch_real: int = 256
    batch_train: int = 256
    lr_teacher: float = 1e-3
    lr_net: float = 0.01
    neumann_alpha: float = 0.1
    neumann_terms: int = 10
    per_class: bool = True
    distance: str = "ours"
    network: str = "convnet"
    network_kwargs: tuple[tuple[str, Any], ...] | dict = ()
    batch_norm: bool = True
    bn_real_per_class: int = 16

    def __post_init__(self) -> None:
        if isinstance(self.network_kwargs, dict):
            object.__setattr__(self, "network_kwargs", tuple(sorted(self.network_kwargs.items())))
        check_one_of("mode", self.mode, MODES)
        check_one_of("objective", self.objective, OBJECTIVES)
        check_int("k (generator size)", self.k, MIN_K)
        check_int("latent_dim", self.latent_dim, 1)
        check_int("ipc (images per class)", self.ipc, 1)
        check_int("iterations", self.iterations, 0)
        for name in ("outer_loop", "batch_real", "batch_train", "neumann_terms", "bn_real_per_class"):
            check_int(name, getattr(self, name), 1)
        check_int("inner_steps", self.inner_steps, 0)
        for name in ("lr_teacher", "lr_net", "neumann_alpha"):
            check_positive(name, getattr(self, name))
        check_bool("per_class", self.per_class)
        check_bool("batch_norm", self.batch_norm)
        if self.objective == "ift" and not self.per_class:
            raise ValueError("per_class=False only applies to objective='gm'")
        get_distance(self.distance)  # raises a ValueError naming the known distances
        network_info(self.network)  # raises a ValueError naming the known networks

    @property
    def label(self) -> str:
        """Seed 003's name of the method, e.g. 'GM + GTN-lrn'."""
        return f"{self.objective.upper()} + GTN-{'lrn' if self.mode == 'learned_input' else 'rnd'}"

    def replace(self, **changes: Any) -> "GTNConfig":
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["network_kwargs"] = dict(self.network_kwargs)
        return data


# --------------------------------------------------------------------------------------------
# The two objectives: one teacher gradient each
# --------------------------------------------------------------------------------------------


def gm_teacher_backward(teacher: GenerativeTeacher, net: nn.Module, real_batches: Tensor, distance: Callable,
                        *, per_class: bool = True, noise_generator: torch.Generator | None = None) -> Tensor:
    """Accumulate grad_lambda of the gradient-matching loss into the teacher's ``.grad``; returns
    the detached per-class losses (or the single whole-batch loss when not ``per_class``).

    The generated images are not a leaf, and their graph through the generator must be walked
    only once. So: generate all classes' images once, cut them off as a leaf ``S``, let
    :func:`gmlib.methods.dc.matching_loss_backward` accumulate grad_S sum_c D_c class by class
    (freeing each class's double-backward graph at once), then push grad_S back through the
    generator in ONE backward pass -- the chain rule grad_lambda = (dS/dlambda)^T grad_S.
    """
    images = teacher.images(noise_generator)
    leaf = images.detach().requires_grad_(True)
    if per_class:
        losses = matching_loss_backward(net, leaf, teacher.ipc, real_batches, distance, engine="loop")
    else:
        # Table II's "not per class": one distance between the gradients of ALL generated images and
        # of all real batches together (the cosine's normalisation then couples classes).
        num_classes, batch = real_batches.shape[:2]
        real_labels = torch.arange(num_classes, device=real_batches.device).repeat_interleave(batch)
        losses = mixed_step_backward(net, leaf, teacher.labels, real_batches.flatten(0, 1), real_labels,
                                     distance).per_class
    images.backward(leaf.grad)
    return losses


def ift_teacher_backward(teacher: GenerativeTeacher, net: nn.Module, real_images: Tensor, real_labels: Tensor,
                         *, alpha: float, terms: int, noise_generator: torch.Generator | None = None) -> Tensor:
    """Set the teacher's ``.grad`` to the implicit hypergradient of the real-batch loss of the
    (already trained) student ``net``; returns that loss, detached.

    ``noise_generator`` must reproduce the inputs the student was trained on (random input):
    the hypergradient is taken at the images that determined theta*.
    """
    from gmlib.methods.bilevel import implicit_hypergradient  # the IFT machinery (chapter on bi-level distillation)

    params = [p for p in net.parameters() if p.requires_grad]
    hyper = [p for p in teacher.parameters() if p.requires_grad]
    inner_loss = F.cross_entropy(net(teacher.images(noise_generator)), teacher.labels)
    outer_loss = F.cross_entropy(net(real_images), real_labels)
    grads = implicit_hypergradient(inner_loss, outer_loss, params, hyper, alpha=alpha, terms=terms)
    for p, g in zip(hyper, grads):
        p.grad = g.detach().clone() if p.grad is None else p.grad + g.detach()
    return outer_loss.detach()


# --------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------


def _train_student(config: GTNConfig, net: nn.Module, teacher: GenerativeTeacher, generator: torch.Generator,
                   noise_generator: torch.Generator | None) -> None:
    with torch.no_grad():
        images = teacher.images(noise_generator)
    train_inner(net, images, teacher.labels, epochs=config.inner_steps, batch_size=config.batch_train,
                lr=config.lr_net, generator=generator)


def _noise_generator(generator: torch.Generator, mode: str) -> torch.Generator | None:
    """Random input: a generator for this step's latents, seeded from the iteration's stream."""
    return torch.Generator().manual_seed(draw_seed(generator)) if mode == "random_input" else None


def _gm_iteration(config: GTNConfig, dataset: ImageDataset, teacher: GenerativeTeacher,
                  optimizer: torch.optim.Optimizer,
                  distance: Callable, generator: torch.Generator, device: torch.device, it: int) -> float:
    """Seed 003 Fig. 5 for one k: a fresh student, N teacher updates, zeta_theta student steps between."""
    net = fresh_network(config.network, config.network_kwargs, dataset, generator, device)
    total = 0.0
    for t in range(config.outer_loop):
        if has_batchnorm(net):
            freeze_batchnorm_on_real(net, dataset, config.bn_real_per_class, generator)
        real_batches = dataset.class_batches(config.batch_real, generator)
        noise = _noise_generator(generator, config.mode)
        optimizer.zero_grad(set_to_none=True)
        losses = gm_teacher_backward(teacher, net, real_batches, distance, per_class=config.per_class,
                                     noise_generator=noise)
        check_finite(losses, "the matching loss", it, GTNMethod.divergence_hint)
        optimizer.step()
        total += float(losses.sum())
        if t < config.outer_loop - 1:  # the next iteration starts from a fresh student anyway
            _train_student(config, net, teacher, generator, _noise_generator(generator, config.mode))
    return total / config.outer_loop


def _ift_iteration(config: GTNConfig, dataset: ImageDataset, teacher: GenerativeTeacher,
                   optimizer: torch.optim.Optimizer,
                   generator: torch.Generator, device: torch.device, it: int) -> float:
    """Seed 003 Fig. 3: a fresh student trained zeta_theta steps, then one hypergradient step."""
    net = fresh_network(config.network, config.network_kwargs, dataset, generator, device)
    noise_seed = draw_seed(generator)

    def noise() -> torch.Generator | None:  # the same inputs for training and for the hypergradient
        return torch.Generator().manual_seed(noise_seed) if config.mode == "random_input" else None

    _train_student(config, net, teacher, generator, noise())
    if has_batchnorm(net):
        net.eval()  # differentiate the trained student with the statistics it learned
    real_batches = dataset.class_batches(config.batch_real, generator)
    num_classes, batch = real_batches.shape[:2]
    real_labels = torch.arange(num_classes, device=device).repeat_interleave(batch)
    optimizer.zero_grad(set_to_none=True)
    loss = float(ift_teacher_backward(teacher, net, real_batches.flatten(0, 1), real_labels,
                                      alpha=config.neumann_alpha, terms=config.neumann_terms, noise_generator=noise()))
    check_finite(loss, "the real loss", it, GTNMethod.divergence_hint)
    grads = [p.grad.reshape(-1) for p in teacher.parameters() if p.grad is not None]
    check_finite(torch.cat(grads), "the hypergradient", it, "neumann_alpha or lr_teacher")
    optimizer.step()
    return loss


def build_teacher(dataset: ImageDataset, config: GTNConfig, seed: int) -> GenerativeTeacher:
    """The untrained teacher of a run: generator weights and latents seeded from ``seed``."""
    generator = Generator(config.latent_dim, dataset.num_classes, dataset.channels, dataset.im_size, config.k,
                          batch_norm=config.batch_norm, seed=seed)
    return GenerativeTeacher(generator, config.mode, config.ipc, seed=seed + 1)


def generated_set(teacher: GenerativeTeacher, dataset: ImageDataset, seed: int = 0) -> SyntheticSet:
    """The teacher's images as a :class:`SyntheticSet` (random input: one sample drawn from ``seed``)."""
    noise = torch.Generator().manual_seed(seed) if teacher.mode == "random_input" else None
    with torch.no_grad():
        images = teacher.images(noise)
    return SyntheticSet(images.detach().clone(), teacher.labels.clone(), teacher.ipc, dataset.num_classes,
                        dataset.mean, dataset.std, list(dataset.class_names), dataset.name,
                        metadata={"method": "gtn", "mode": teacher.mode})


class GTNMethod(Method):
    """A generative teacher (its generator, latents and Adam) as :func:`gmlib.run.loop.run` drives it."""

    name = "gtn"
    divergence_hint = "lr_teacher"

    def __init__(self, dataset: ImageDataset, config: GTNConfig, seed: int, device: torch.device) -> None:
        if config.batch_norm and dataset.num_classes * config.ipc < 2:
            raise ValueError("a generator with batch_norm needs at least 2 images in a batch (num_classes * ipc >= 2)")
        self.config, self.seed, self.device = config, seed, device
        self.dataset = dataset if dataset.device == device else dataset.to(device)
        self.teacher = build_teacher(self.dataset, config, seed).to(device)
        self.optimizer = torch.optim.Adam(self.teacher.parameters(), lr=config.lr_teacher)
        self.distance = get_distance(config.distance)

    def iteration(self, it: int, generator: torch.Generator) -> Step:
        if self.config.objective == "gm":
            loss = _gm_iteration(self.config, self.dataset, self.teacher, self.optimizer, self.distance, generator,
                                 self.device, it)
        else:
            loss = _ift_iteration(self.config, self.dataset, self.teacher, self.optimizer, generator, self.device, it)
        return Step([loss], {})

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])

    def synthetic_set(self) -> SyntheticSet:
        # Generating runs the generator's BatchNorm in train mode, which moves its running
        # statistics: keep them as they were, so looking at the set does not change the run.
        buffers = {name: b.clone() for name, b in self.teacher.named_buffers()}
        synthetic = generated_set(self.teacher, self.dataset, self.seed)
        with torch.no_grad():
            for name, b in self.teacher.named_buffers():
                b.copy_(buffers[name])
        synthetic.metadata.update(objective=self.config.objective, k=self.config.k)
        return synthetic

    def learned_parameters(self) -> int:
        return self.teacher.parameter_counts()["total"]


def train_gtn(dataset: ImageDataset, config: GTNConfig = GTNConfig(), seed: int = 0,
              device: str | torch.device = "auto",
              progress: bool = True, out_dir: str | os.PathLike | None = None, resume: bool = True) -> RunResult:
    """Train a generative teacher on ``dataset`` (a :class:`gmlib.data.ImageDataset`) by GM or IFT.

    Determined by ``(config, seed)``: iteration ``it`` draws the student, the real batches, the
    random inputs and the inner-loop order from its generator (:func:`gmlib.run.loop.run`, which also
    resumes from ``out_dir`` and measures the peak memory). The teacher is ``result.method.teacher``.
    """
    if not isinstance(config, GTNConfig):
        raise ValueError(f"config must be a GTNConfig, got {type(config).__name__}")
    if not is_int(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    method = GTNMethod(dataset, config, seed, resolve_device(device))
    return run(method, out_dir=out_dir, resume=resume, progress=progress)
