"""Dataset distillation as a bi-level problem: unrolled and implicit hypergradients.

The outer problem learns a synthetic set ``S``; the inner problem trains a network on it:

    min_S  L_T(theta(S)),    theta(S) = argmin_theta  L_S(theta)   (or: N steps of SGD on L_S).

Two ways to get ``dL_T/dS``:

- **unroll** (Wang et al.): run the N inner steps with a differentiable graph and backpropagate
  through all of them; exact for the truncated problem, memory grows linearly with N.
- **implicit** (implicit function theorem): at a minimiser, ``grad_theta L_S(theta*(S), S) = 0``,
  so ``dtheta*/dS = -H^{-1} d^2 L_S / dtheta dS`` with ``H`` the inner Hessian and

      dL_T/dS = direct term - (d^2 L_S / dS dtheta) [H^{-1} dL_T/dtheta].

  ``H^{-1} v`` is approximated by a truncated Neumann series using Hessian-vector products only
  (:func:`neumann_inverse_hvp`), so the memory does not depend on how long the net was trained.

This module holds the two generic hypergradient tools and the neural-network distillation loops
(:func:`distill_unrolled`, :func:`distill_implicit`); the 2-D ridge-regression toy with an exact
answer lives in :mod:`gmlib.methods.toy_bilevel`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from gmlib.checks import check_bool, check_fraction, check_int, check_one_of, check_positive
from gmlib.data import ImageDataset
from gmlib.methods.hessian import hvp
from gmlib.networks import check_network_kwargs, filter_network_kwargs, get_network, has_batchnorm
from gmlib.randomness import draw_seed, iteration_generator
from gmlib.run.loop import PixelMethod, RunResult, Step, check_finite, distill_with
from gmlib.synthetic import INIT_NAMES, init_synthetic


def _check_neumann(alpha: float, terms: int) -> None:
    check_positive("Neumann scale alpha", alpha)
    check_int("Neumann terms", terms, 0)


def neumann_inverse_hvp(inner_grads: Sequence[Tensor], params: Sequence[Tensor], vector: Sequence[Tensor], *,
                        alpha: float, terms: int) -> list[Tensor]:
    """Approximate ``H^{-1} v`` by ``alpha * sum_{k=0}^{terms} (I - alpha H)^k v``.

    ``H`` is the Hessian of the inner loss w.r.t. ``params``; ``inner_grads`` is that loss's
    gradient, computed with ``create_graph=True`` so Hessian-vector products can be taken from it.
    ``H`` is never formed. The series converges when ``0 < alpha * eigenvalue < 2`` for every
    eigenvalue of ``H`` (H positive definite, alpha below 2 / largest eigenvalue); with ``terms=0``
    it is ``alpha * v`` (the Hessian replaced by ``I / alpha``). Results are detached.
    """
    _check_neumann(alpha, terms)
    inner_grads, params, vector = list(inner_grads), list(params), list(vector)
    if not (len(inner_grads) == len(params) == len(vector)):
        raise ValueError(f"inner_grads, params and vector must have one entry per parameter, got "
                         f"{len(inner_grads)}, {len(params)} and {len(vector)}")
    for g, p, v in zip(inner_grads, params, vector):
        if g.shape != p.shape or v.shape != p.shape:
            raise ValueError(f"shapes differ: gradient {tuple(g.shape)}, parameter {tuple(p.shape)}, "
                             f"vector {tuple(v.shape)}")
    term = [v.detach() for v in vector]  # (I - alpha H)^k v, starting at k = 0
    total = [t.clone() for t in term]
    for _ in range(terms):
        hv = hvp(inner_grads, params, term, create_graph=False)
        term = [t - alpha * h.detach() for t, h in zip(term, hv)]
        total = [s + t for s, t in zip(total, term)]
    return [alpha * s for s in total]


def implicit_hypergradient(inner_loss: Tensor, outer_loss: Tensor, params: Sequence[Tensor], hyper: Sequence[Tensor],
                           *, alpha: float, terms: int) -> list[Tensor]:
    """``dL_out/dhyper`` by the implicit function theorem, treating ``params`` as the inner optimum.

    ``direct - (d^2 L_in / d hyper d params) [H^{-1} dL_out/dparams]`` with ``H^{-1}`` from
    :func:`neumann_inverse_hvp`. ``inner_loss`` must depend on ``params`` and ``hyper`` through a
    graph that is still alive; ``outer_loss`` on ``params`` (and possibly directly on ``hyper``).
    Returns one detached tensor per ``hyper`` entry (zeros where a hyperparameter is unused).
    """
    _check_neumann(alpha, terms)
    params, hyper = list(params), list(hyper)
    if not params or not hyper:
        raise ValueError(f"need at least one parameter and one hyperparameter, got {len(params)} and {len(hyper)}")
    for name, loss in (("inner_loss", inner_loss), ("outer_loss", outer_loss)):
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(f"{name} must be a scalar tensor, got {type(loss).__name__} "
                             f"{tuple(loss.shape) if isinstance(loss, Tensor) else ''}")
    outer_grads = torch.autograd.grad(outer_loss, params + hyper, retain_graph=True, allow_unused=True)
    v = [torch.zeros_like(p) if g is None else g.detach() for g, p in zip(outer_grads[: len(params)], params)]
    direct = [torch.zeros_like(h) if g is None else g.detach() for g, h in zip(outer_grads[len(params):], hyper)]
    inner_grads = torch.autograd.grad(inner_loss, params, create_graph=True, allow_unused=True)
    if any(g is None for g in inner_grads):
        raise ValueError("inner_loss does not depend on every parameter in params; the inner Hessian is singular")
    inverse_v = neumann_inverse_hvp(inner_grads, params, v, alpha=alpha, terms=terms)
    # Mixed second derivative times a vector: d/dhyper <grad_params L_in, H^{-1} v>.
    mixed = torch.autograd.grad(inner_grads, hyper, grad_outputs=inverse_v, retain_graph=False, allow_unused=True)
    return [d if m is None else d - m.detach() for d, m in zip(direct, mixed)]


# ---------------------------------------------------------------------------------------------
# Distilling images for a neural network: configurations
# ---------------------------------------------------------------------------------------------

INIT_MODES = ("random", "fixed")  # a new student initialisation every outer step, or one for all
_NETWORKS_WITHOUT_BATCHNORM_NOTE = "networks with BatchNorm (running statistics) are not supported"





@dataclass(frozen=True)
class _DistillConfig:
    """Settings shared by both hypergradients (defaults: Wang et al. / seed 003 where they say)."""

    ipc: int = 10  # images per class in one synthetic batch
    iterations: int = 100  # outer steps (K in seed 003)
    batch_real: int = 256  # real images per outer step (|B^T| = 256 in seed 003)
    init_mode: str = "random"  # student initialisation: 'random' (new each step) or 'fixed'
    image_init: str = "noise"  # how the synthetic images start (gmlib.synthetic.INIT_NAMES)
    outer_lr: float = 0.01  # Adam on the synthetic set, as Wang et al.
    outer_beta1: float = 0.5
    network: str = "convnet"
    network_kwargs: tuple[tuple[str, Any], ...] | Mapping[str, Any] = (("width", 32),)
    # Stop early once this many seconds have passed (seed 003 gives every method ~15 minutes);
    # None runs all ``iterations``. A time limit makes the number of steps depend on the machine,
    # so it is a setting of the run, not of its identity (gmlib.run.loop.RUN_CONTROL_FIELDS).
    time_limit_s: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.network_kwargs, Mapping):
            object.__setattr__(self, "network_kwargs", tuple(sorted(self.network_kwargs.items())))
        check_int("ipc", self.ipc, 1)
        check_int("iterations", self.iterations, 0)
        check_int("batch_real", self.batch_real, 1)
        check_one_of("init_mode", self.init_mode, INIT_MODES)
        check_one_of("image_init", self.image_init, INIT_NAMES)
        check_positive("outer_lr", self.outer_lr)
        check_fraction("outer_beta1", self.outer_beta1)
        check_network_kwargs(self.network, filter_network_kwargs(self.network, dict(self.network_kwargs)))
        if self.time_limit_s is not None:
            check_positive("time_limit_s", self.time_limit_s)

    def as_dict(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields["network_kwargs"] = dict(self.network_kwargs)
        return fields


@dataclass(frozen=True)
class UnrollConfig(_DistillConfig):
    """Backpropagation through ``inner_steps * inner_epochs`` SGD steps (Wang et al.; seed 003 IV).

    ``synthetic_batches`` is seed 003's ``ic``: the set holds that many batches of ``ipc`` images
    per class, and inner step ``n`` trains on batch ``n % synthetic_batches`` (1 = the whole set at
    every step; ``inner_steps`` = a batch of its own per step, as Wang et al.). Each inner step has
    its own learning rate ``softplus(raw)``, started at ``lr_init`` and learned when ``learn_lr``.
    """

    ipc: int = 1
    synthetic_batches: int = 1
    inner_steps: int = 10  # N
    inner_epochs: int = 1  # passes over the N steps (Wang et al.: 3)
    lr_init: float = 0.02
    learn_lr: bool = True
    inner_momentum: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("inner_steps", self.inner_steps, 1)
        check_int("inner_epochs", self.inner_epochs, 1)
        check_int("synthetic_batches", self.synthetic_batches, 1)
        if self.inner_steps % self.synthetic_batches:
            raise ValueError(f"synthetic_batches (ic) must divide inner_steps; got {self.synthetic_batches} "
                             f"batches for {self.inner_steps} steps")
        check_positive("lr_init", self.lr_init)
        check_bool("learn_lr", self.learn_lr)
        check_fraction("inner_momentum", self.inner_momentum)

    @property
    def total_inner_steps(self) -> int:
        return self.inner_steps * self.inner_epochs


@dataclass(frozen=True)
class ImplicitConfig(_DistillConfig):
    """Train the student ``inner_steps`` SGD steps without a graph, then the IFT hypergradient.

    Seed 003 section V: zeta_theta = ``inner_steps`` student steps on the whole synthetic set, a
    Neumann series with ``neumann_terms`` terms and scale ``neumann_alpha`` (their code: 3, 0.1).
    """

    inner_steps: int = 50  # zeta_theta
    inner_lr: float = 0.01
    inner_momentum: float = 0.5
    neumann_terms: int = 3
    neumann_alpha: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("inner_steps", self.inner_steps, 0)
        check_positive("inner_lr", self.inner_lr)
        check_fraction("inner_momentum", self.inner_momentum)
        _check_neumann(self.neumann_alpha, self.neumann_terms)


# ---------------------------------------------------------------------------------------------
# Students as plain tensors
# ---------------------------------------------------------------------------------------------


def _student(dataset: ImageDataset, config: _DistillConfig, device: torch.device) -> nn.Module:
    kwargs = filter_network_kwargs(config.network, dict(config.network_kwargs))
    net = get_network(config.network, dataset.channels, dataset.num_classes, dataset.im_size, seed=0, **kwargs)
    if has_batchnorm(net):
        raise ValueError(f"network {config.network!r} has BatchNorm: {_NETWORKS_WITHOUT_BATCHNORM_NOTE}")
    return net.to(device)


def _initial_parameters(dataset: ImageDataset, config: _DistillConfig, seed: int,
                        device: torch.device) -> dict[str, Tensor]:
    """A fresh student initialisation from ``seed``, as detached leaf tensors by name."""
    kwargs = filter_network_kwargs(config.network, dict(config.network_kwargs))
    net = get_network(config.network, dataset.channels, dataset.num_classes, dataset.im_size, seed=seed, **kwargs)
    return {name: p.detach().to(device).requires_grad_(True) for name, p in net.named_parameters()}


def _loss(net: nn.Module, params: dict[str, Tensor], images: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(functional_call(net, params, (images,)), labels)


def batch_indices(num_classes: int, ipc: int, batches: int, device: torch.device | str = "cpu") -> list[Tensor]:
    """Indices into a class-ordered set of ``ipc * batches`` images per class, one tensor per batch.

    Batch ``b`` holds images ``b * ipc .. (b + 1) * ipc - 1`` of every class (all classes in each).
    """
    per_class = ipc * batches
    return [torch.cat([torch.arange(c * per_class + b * ipc, c * per_class + (b + 1) * ipc, device=device)
                       for c in range(num_classes)]) for b in range(batches)]


def lr_from_raw(raw: Tensor) -> Tensor:
    """Learning rates from their unconstrained parameters (softplus keeps them positive)."""
    return F.softplus(raw)


def raw_from_lr(lr: float, count: int) -> Tensor:
    """The unconstrained value whose softplus is ``lr`` (inverse softplus), repeated ``count`` times."""
    return torch.full((count,), math.log(math.expm1(lr)))


def unrolled_training(net: nn.Module, params: dict[str, Tensor], images: Tensor, labels: Tensor,
                      batches: Sequence[Tensor], lrs: Tensor, *, momentum: float = 0.0,
                      create_graph: bool = True) -> dict[str, Tensor]:
    """SGD (optionally with momentum) on the synthetic batches, step ``n`` on ``batches[n % len]``.

    ``lrs`` holds one learning rate per step (its length is the number of steps). With
    ``create_graph=True`` every step stays in the graph, so the returned parameters can be
    differentiated w.r.t. ``images`` and ``lrs``: the memory grows linearly with the steps.
    """
    velocity = {name: torch.zeros_like(p) for name, p in params.items()}
    for step in range(len(lrs)):
        batch = batches[step % len(batches)]
        loss = _loss(net, params, images[batch], labels[batch])
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        updated = {}
        for (name, p), g in zip(params.items(), grads):
            velocity[name] = momentum * velocity[name] + g if momentum else g
            updated[name] = p - lrs[step] * velocity[name]
        params = updated if create_graph else {n: p.detach().requires_grad_(True) for n, p in updated.items()}
    return params


# ---------------------------------------------------------------------------------------------
# The two outer loops, as methods on the run scaffold
# ---------------------------------------------------------------------------------------------


class _BilevelMethod(PixelMethod):
    """What both hypergradients share: the set, a student architecture to call functionally, the
    fixed student initialisation (``init_mode='fixed'``) and each outer step's draws."""

    divergence_hint = "outer_lr"

    def __init__(self, dataset: ImageDataset, config: _DistillConfig, seed: int, device: torch.device,
                 images_per_class: int) -> None:
        self.config, self.seed, self.device = config, seed, device
        self.dataset = dataset if dataset.device == device else dataset.to(device)
        self.synthetic = init_synthetic(self.dataset, images_per_class, config.image_init, seed=seed, device=device)
        self.net = _student(self.dataset, config, device)
        # The one student of init_mode 'fixed' comes from the stream before the first iteration.
        self.fixed_seed = draw_seed(iteration_generator(seed, -1))

    def student_and_real_batch(self, generator: torch.Generator) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """One outer step's student initialisation (fixed, or fresh) and real batch, in that order."""
        init_seed = self.fixed_seed if self.config.init_mode == "fixed" else draw_seed(generator)
        params = _initial_parameters(self.dataset, self.config, init_seed, self.device)
        real_x, real_y = self.dataset.mixed_batch(self.config.batch_real, generator)
        return params, real_x, real_y

    def outer_step(self, outer: Tensor, it: int) -> Step:
        check_finite(outer, "the outer loss", it, self.divergence_hint)
        self.optimizer.step()
        return Step([float(outer.detach())], {})


class UnrollMethod(_BilevelMethod):
    """Backpropagation through the student's training (Wang et al.; seed 003 Fig. 1-2)."""

    name = "unroll"

    def __init__(self, dataset: ImageDataset, config: UnrollConfig, seed: int, device: torch.device) -> None:
        super().__init__(dataset, config, seed, device, config.ipc * config.synthetic_batches)
        self.batches = batch_indices(self.dataset.num_classes, config.ipc, config.synthetic_batches, device)
        self.raw_lrs = raw_from_lr(config.lr_init, config.total_inner_steps).to(device).requires_grad_(config.learn_lr)
        learned = [self.synthetic.images] + ([self.raw_lrs] if config.learn_lr else [])
        self.optimizer = torch.optim.Adam(learned, lr=config.outer_lr, betas=(config.outer_beta1, 0.999))

    def iteration(self, it: int, generator: torch.Generator) -> Step:
        """A student, ``total_inner_steps`` differentiable SGD steps on the synthetic batches, the
        cross-entropy on the real batch, one Adam step on the images and the raw learning rates."""
        params, real_x, real_y = self.student_and_real_batch(generator)
        final = unrolled_training(self.net, params, self.synthetic.images, self.synthetic.labels, self.batches,
                                  lr_from_raw(self.raw_lrs), momentum=self.config.inner_momentum)
        outer = _loss(self.net, final, real_x, real_y)
        self.optimizer.zero_grad(set_to_none=True)
        outer.backward()
        return self.outer_step(outer, it)

    @property
    def learned_lrs(self) -> Tensor:
        """The per-step learning rates as they are now."""
        return lr_from_raw(self.raw_lrs.detach()).cpu()

    def learned_parameters(self) -> int:
        return self.synthetic.images.numel() + (self.raw_lrs.numel() if self.config.learn_lr else 0)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "raw_lrs": self.raw_lrs.detach()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.raw_lrs.copy_(state["raw_lrs"])


class ImplicitMethod(_BilevelMethod):
    """The implicit-function hypergradient after ordinary training (seed 003 Fig. 3-4)."""

    name = "implicit"

    def __init__(self, dataset: ImageDataset, config: ImplicitConfig, seed: int, device: torch.device) -> None:
        super().__init__(dataset, config, seed, device, config.ipc)
        self.whole_set = [torch.arange(len(self.synthetic.labels), device=device)]
        self.lrs = torch.full((config.inner_steps,), config.inner_lr, device=device)
        self.optimizer = torch.optim.Adam([self.synthetic.images], lr=config.outer_lr,
                                          betas=(config.outer_beta1, 0.999))

    def iteration(self, it: int, generator: torch.Generator) -> Step:
        """A student trained ``inner_steps`` SGD steps on the whole set with no graph kept, then
        :func:`implicit_hypergradient` at the trained student and one Adam step on the images."""
        config, syn = self.config, self.synthetic
        params, real_x, real_y = self.student_and_real_batch(generator)
        trained = unrolled_training(self.net, params, syn.images.detach(), syn.labels, self.whole_set, self.lrs,
                                    momentum=config.inner_momentum, create_graph=False)
        inner = _loss(self.net, trained, syn.images, syn.labels)
        outer = _loss(self.net, trained, real_x, real_y)
        (hypergradient,) = implicit_hypergradient(inner, outer, list(trained.values()), [syn.images],
                                                  alpha=config.neumann_alpha, terms=config.neumann_terms)
        self.optimizer.zero_grad(set_to_none=True)
        syn.images.grad = hypergradient
        return self.outer_step(outer, it)


def distill_unrolled(dataset: ImageDataset, config: UnrollConfig = UnrollConfig(), seed: int = 0,
                     device: str | torch.device = "auto", progress: bool = False,
                     out_dir: str | os.PathLike | None = None, resume: bool = True) -> RunResult:
    """Learn a synthetic set (and per-step learning rates) by backpropagating through training
    (:class:`UnrollMethod` on :func:`gmlib.run.loop.run`: resumable from ``out_dir``)."""
    return distill_with(UnrollMethod, UnrollConfig, dataset, config, seed=seed, device=device, out_dir=out_dir,
                        resume=resume, progress=progress)


def distill_implicit(dataset: ImageDataset, config: ImplicitConfig = ImplicitConfig(), seed: int = 0,
                     device: str | torch.device = "auto", progress: bool = False,
                     out_dir: str | os.PathLike | None = None, resume: bool = True) -> RunResult:
    """Learn a synthetic set with the implicit-function hypergradient (:class:`ImplicitMethod` on
    :func:`gmlib.run.loop.run`: resumable from ``out_dir``). Memory does not depend on ``inner_steps``."""
    return distill_with(ImplicitMethod, ImplicitConfig, dataset, config, seed=seed, device=device, out_dir=out_dir,
                        resume=resume, progress=progress)
