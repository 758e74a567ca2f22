"""Dataset condensation by gradient matching: DC (Zhao et al., 2021) and DSA (Zhao & Bilen, 2021).

DC's Algorithm 1, line by line, and where each line is (function: the names it uses there;
tests/test_matching.py checks this map against the code)::

    initialise the synthetic set S                         DCMethod.__init__: init_synthetic
    for k = 0 .. K-1:                                      gmlib.run.loop._run_in: method.iteration
        theta_0 <- a freshly initialised network           dc_iteration: fresh_network
        for t = 0 .. T-1:                                  dc_iteration: outer_loop
            (BatchNorm nets) real statistics, frozen       dc_iteration: freeze_batchnorm_on_real
            B_c <- a batch of real images of each class c  dc_iteration: sample_real
            (DSA) one Siamese augmentation A_c per class   class_augmentation: sample_dsa
            for each class c:                              dc_iteration: for c in range
                D_c = D(grad L(A_c(S_c)), grad L(A_c(B_c)))    dc_iteration: real_gradient, synthetic_gradient
                grad_S += dD_c/dS                              dc_iteration: d_c.backward
            S <- S - lr_img * momentum-SGD(grad_S)         dc_iteration: optimizer.step
            theta_{t+1} <- theta_t trained on S            DCMethod.train_network: train_inner

DSA changes two things: during matching the real batch and the synthetic images of a class go
through ONE shared random augmentation (Siamese), and the inner training augments every image
with its own draw. ``MatchingConfig.dsa_siamese=False`` is the ablation that gives the real and
the synthetic batch of a class a draw each (:func:`class_augmentation`).

The variants of the matching step are chosen once per run (:func:`choose_variant`), never as
flags inside the class loop: the inter-class and multi-level objectives and the curvature term,
which keep several classes' graphs until one backward (:func:`gmlib.methods.dc_variants.loop_step_backward`);
not-per-class matching against one mixed batch (:func:`gmlib.methods.dc_variants.mixed_step_backward`);
and the vmap engine that computes all classes at once on a GPU (:mod:`gmlib.methods.dc_vmap`).
Where to match (the inner training) is :mod:`gmlib.methods.inner_loop`'s policy, also chosen once.
How the first-order passes (the real gradients, the inner training) run, in bfloat16 or compiled,
is :mod:`gmlib.first_order`'s, resolved once per run (``DCMethod.passes``); the synthetic side
always runs in float32.

The loop around the iteration (randomness, checkpoints, resume, evaluations, the History) is
:mod:`gmlib.run.loop`, shared with every other method. :mod:`gmlib.methods.dc_reference` writes one
outer step as plainly as possible; the tests check that this module computes the same numbers.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmlib.checks import check_one_of
from gmlib.data import ImageDataset
from gmlib.distances import get_distance
from gmlib.dsa import dsa, dsa_strategy_for, sample_dsa
from gmlib.first_order import EXACT, FirstOrder, first_order_for
from gmlib.methods.dc_config import ENGINES, MatchingConfig
from gmlib.methods.dc_variants import (
    CurvatureSpec,
    StepLosses,
    level_of_iteration,
    loop_step_backward,
    mixed_step_backward,
    real_gradient,
)
from gmlib.methods.dc_vmap import MAX_BATCHED_IMAGES, batched_losses
from gmlib.methods.inner_loop import inner_epochs, steps_per_epoch, train_inner, train_inner_until_overfit
from gmlib.networks import has_batchnorm
from gmlib.run.loop import PixelMethod, RunResult, Step, check_finite, distill_with, fresh_network
from gmlib.synthetic import init_synthetic
from gmlib.training import CPU_CHUNK_SIZE

__all__ = ["DCMethod", "RealBatch", "batched_step", "choose_variant", "class_augmentation", "dc_iteration", "distill",
    "freeze_batchnorm_on_real", "levels_step", "matching_loss_backward", "matching_step_backward", "mixed_step",
    "resolve_engine", "sample_real", "synthetic_gradient"]



# --------------------------------------------------------------------------------------------
# The pieces of one outer step
# --------------------------------------------------------------------------------------------


def freeze_batchnorm_on_real(net: nn.Module, dataset: ImageDataset, per_class: int, generator: torch.Generator) -> None:
    """Set BatchNorm statistics from real data, then freeze them for matching (DC's BN handling).

    A BatchNorm net in train mode would mix the statistics of whatever batch it sees into the
    gradients; DC instead passes ``per_class`` real images of every class through it in train mode
    (updating the running statistics), then puts the BN layers in eval mode, so the real and the
    synthetic gradients are taken under the same, real-data normalisation.
    """
    images = dataset.warmup_batch(per_class, generator)
    net.train()
    with torch.no_grad():
        net(images)
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def synthetic_gradient(net: nn.Module, params: Sequence[Tensor], images: Tensor, c: int) -> tuple[Tensor, ...]:
    """grad_theta of the mean cross-entropy of synthetic ``images`` of class ``c``, WITH its graph:
    the distance to the real gradient is then differentiable with respect to the images."""
    labels = torch.full((len(images),), c, dtype=torch.long, device=images.device)
    return torch.autograd.grad(F.cross_entropy(net(images), labels), params, create_graph=True)


@dataclass
class RealBatch:
    """The real images of one outer step: per class (``batches``: classes x B) or one mixed batch,
    as flat ``images``/``labels``; ``siamese``: DSA's augmentation per class (one for a mixed
    batch), applied to the real and the synthetic images (:func:`class_augmentation`); None for DC."""

    images: Tensor
    labels: Tensor
    batches: Tensor | None = None
    siamese: Sequence[Callable[[Tensor], Tensor]] | Callable[[Tensor], Tensor] | None = None


def class_augmentation(shape: torch.Size, strategy: str, generator: torch.Generator,
                       siamese: bool = True) -> Callable[[Tensor], Tensor]:
    """DSA's augmentation A_c of one class (or of a mixed batch) for one matching step.

    ``siamese`` (DSA): ONE draw, made now, that every call applies, so the real and the synthetic
    batch go through the same transform. Otherwise (the ablation ``dsa_siamese=False``) a NEW draw
    from ``generator`` at every call, shared by the images of that one batch: the real and the
    synthetic batch each get their own transform."""
    if siamese:
        return sample_dsa(shape, strategy, generator, siamese=True)
    return lambda x: dsa(x, strategy, generator, siamese=True)


def sample_real(dataset: ImageDataset, config: MatchingConfig, dsa_strategy: str | None,
                generator: torch.Generator) -> RealBatch:
    """B_c for every class (or, not per class, one mixed batch of batch_real x classes images),
    then DSA's augmentations: one per class (one for the mixed batch), Siamese unless
    ``config.dsa_siamese`` is False."""
    if not config.per_class:
        images, labels = dataset.mixed_batch(config.batch_real * dataset.num_classes, generator)
        siamese = None
        if dsa_strategy is not None:
            siamese = class_augmentation(images.shape, dsa_strategy, generator, config.dsa_siamese)
        return RealBatch(images, labels, None, siamese)
    batches = dataset.class_batches(config.batch_real, generator)
    siamese = None
    if dsa_strategy is not None:
        siamese = [class_augmentation(batches.shape[1:], dsa_strategy, generator, config.dsa_siamese)
                   for _ in range(dataset.num_classes)]
    labels = torch.arange(dataset.num_classes, device=batches.device).repeat_interleave(batches.shape[1])
    return RealBatch(batches.flatten(0, 1), labels, batches, siamese)


# --------------------------------------------------------------------------------------------
# Algorithm 1
# --------------------------------------------------------------------------------------------


def dc_iteration(dc: "DCMethod", it: int, generator: torch.Generator) -> Step:
    """One outer iteration of DC's Algorithm 1 (DSA: with Siamese augmentation); every random
    draw comes from ``generator``. Returns each class's D_c averaged over the outer steps."""
    config, data, syn = dc.config, dc.dataset, dc.synthetic
    net = fresh_network(config.network, config.network_kwargs, data, generator, dc.device)  # theta_0
    params = [p for p in net.parameters() if p.requires_grad]
    outer_loop, inner_loop = config.loops
    variant = dc.variant(level_of_iteration(config.match_level, it))
    totals, log = 0, InnerLog()
    for t in range(outer_loop):
        if has_batchnorm(net):
            freeze_batchnorm_on_real(net, data, config.bn_real_per_class, generator)
        real = sample_real(data, config, dc.dsa_strategy, generator)  # B_c (and A_c)
        dc.optimizer.zero_grad(set_to_none=True)
        if variant is None:  # DC: class by class
            losses = torch.zeros(data.num_classes, device=dc.device)
            for c in range(data.num_classes):
                real_c, syn_c = real.batches[c], syn.images[c * syn.ipc:(c + 1) * syn.ipc]
                if real.siamese is not None:  # DSA: the SAME draw for both (unless dsa_siamese=False)
                    real_c, syn_c = real.siamese[c](real_c), real.siamese[c](syn_c)
                g_real = real_gradient(net, params, real_c, c, dc.chunk_size, dc.passes)  # a constant target
                g_syn = synthetic_gradient(net, params, syn_c, c)
                d_c = dc.distance(g_syn, g_real)
                d_c.backward()  # D_c depends only on S_c (BN frozen): free its graph now
                losses[c] = d_c.detach()
            step = StepLosses(losses, None, None, losses.sum())
        else:
            step = variant(dc, net, real)
        check_finite(step.per_class, f"the matching loss (outer step {t})", it, dc.divergence_hint, "class")
        check_finite(step.values(), f"the matching objective (outer step {t})", it, dc.divergence_hint)
        dc.optimizer.step()  # S <- S - lr_img * momentum-SGD(grad_S)
        totals = totals + step.per_class
        log.add_step(step)
        if t < outer_loop - 1:  # the next iteration starts from a fresh network anyway
            dc.train_network(net, t, real, generator, log)
    expected = (outer_loop - 1) * inner_loop * steps_per_epoch(len(syn.labels), config.batch_train)
    return Step(totals / outer_loop, log.extras(outer_loop, expected))


class InnerLog:
    """Per iteration: the extra loss terms of the variants, and the inner training done."""

    def __init__(self) -> None:
        self.inter: float | None = None
        self.curvature: float | None = None
        self.epochs: list[int] = []
        self.updates = 0

    def add_step(self, step: StepLosses) -> None:
        if step.inter is not None:
            self.inter = (self.inter or 0.0) + float(step.inter)
        if step.curvature is not None:
            self.curvature = (self.curvature or 0.0) + float(step.curvature.sum())

    def extras(self, outer_loop: int, expected_updates: int) -> dict[str, Any]:
        mean = (lambda v: None if v is None else v / outer_loop)
        return {"inter_loss": mean(self.inter), "curvature": mean(self.curvature), "inner_epochs": self.epochs,
                "inner_updates": self.updates, "inner_updates_saved": expected_updates - self.updates}


# --------------------------------------------------------------------------------------------
# The variants of the matching step, chosen once
# --------------------------------------------------------------------------------------------

Variant = Callable[["DCMethod", nn.Module, RealBatch], StepLosses]


def levels_step(dc: "DCMethod", net: nn.Module, real: RealBatch, level: str) -> StepLosses:
    """Seed 002's inter-class and multi-level objectives and seed 000's curvature term."""
    return loop_step_backward(net, dc.synthetic.images, dc.synthetic.ipc, real.batches, dc.distance,
                              augmentations=real.siamese, chunk_size=dc.chunk_size, passes=dc.passes,
                              level=level, level_weight=dc.config.level_weight, curvature=dc.curvature)


def mixed_step(dc: "DCMethod", net: nn.Module, real: RealBatch) -> StepLosses:
    """Seed 003's not-per-class matching: the whole set against one mixed real batch."""
    syn = dc.synthetic
    return mixed_step_backward(net, syn.images, syn.labels, real.images, real.labels, dc.distance,
                               augmentation=real.siamese, chunk_size=dc.chunk_size, passes=dc.passes,
                               curvature=dc.curvature)


def batched_step(dc: "DCMethod", net: nn.Module, real: RealBatch) -> StepLosses:
    """DC's objective for all classes at once (vmap). Out of GPU memory, the step is redone class by
    class (same inputs, same result up to rounding), and the run keeps the class loop."""
    syn = dc.synthetic
    try:
        losses = batched_losses(net, syn.images, syn.ipc, real.batches, dc.distance, real.siamese, MAX_BATCHED_IMAGES,
                                dc.passes)
    except torch.cuda.OutOfMemoryError:
        warnings.warn("the batched matching engine ran out of GPU memory; continuing with engine='loop'",
                      RuntimeWarning, stacklevel=2)
        dc.engine = "loop"
        torch.cuda.empty_cache()
        dc.optimizer.zero_grad(set_to_none=True)
        return levels_step(dc, net, real, "intra")
    return StepLosses(losses, None, None, losses.sum())


def choose_variant(config: MatchingConfig, engine: str, level: str) -> Variant | None:
    """The matching step for ``level`` (None = DC's class loop in :func:`dc_iteration`)."""
    if not config.per_class:
        return mixed_step
    if level != "intra" or config.hessian_weight > 0:
        return lambda dc, net, real: levels_step(dc, net, real, level)
    return batched_step if engine == "batched" else None


# --------------------------------------------------------------------------------------------
# The method on the run scaffold
# --------------------------------------------------------------------------------------------


def first_order_images(config: MatchingConfig, dataset: ImageDataset) -> int:
    """Images a run passes through its first-order passes: the real batches of every outer step
    and the synthetic set of every inner epoch (what 'auto' weighs against compiling's cost)."""
    outer_loop, inner_loop = config.loops
    per_iteration = outer_loop * dataset.num_classes * config.batch_real
    per_iteration += (outer_loop - 1) * inner_loop * dataset.num_classes * config.ipc
    return config.iterations * per_iteration


def resolve_engine(engine: str, device: torch.device, dc_options: bool = True) -> str:
    """'auto' -> 'batched' on CUDA, 'loop' elsewhere (vmap measured slower on CPU) and for any
    objective other than DC's (``dc_options`` False), which only the loop engine computes."""
    check_one_of("engine", engine, ENGINES)
    if engine != "auto":
        return engine
    return "batched" if device.type == "cuda" and dc_options else "loop"


class DCMethod(PixelMethod):
    """DC or DSA (``config.method``) as :func:`gmlib.run.loop.run` drives it: the synthetic set, its
    momentum-SGD optimiser, and everything every iteration shares."""

    divergence_hint = "lr_img, or another distance"

    def __init__(self, dataset: ImageDataset, config: MatchingConfig, seed: int, device: torch.device) -> None:
        self.name, self.config, self.seed, self.device = config.method, config, seed, device
        self.dataset = dataset if dataset.device == device else dataset.to(device)  # real batches drawn there
        self.dsa_strategy = None
        if config.method == "dsa":
            self.dsa_strategy = config.dsa_strategy or dsa_strategy_for(dataset.name)
        self.synthetic = init_synthetic(self.dataset, config.ipc, config.init, seed=seed, device=device)
        self.optimizer = torch.optim.SGD([self.synthetic.images], lr=config.lr_img, momentum=config.momentum_img)
        self.distance = get_distance(config.distance)
        self.engine = resolve_engine(config.engine, device, config.dc_options)
        self.chunk_size = CPU_CHUNK_SIZE if device.type == "cpu" else None
        # How the first-order passes run ('auto' resolved for this device, network and budget).
        template = fresh_network(config.network, config.network_kwargs, self.dataset, torch.Generator(), device)
        self.passes = first_order_for(config.precision, config.compile, device, template,
                                      first_order_images(config, dataset))
        self.curvature = None
        if config.hessian_weight > 0:
            self.curvature = CurvatureSpec(float(config.hessian_weight), config.hessian_loss, config.hessian_kind)

    def identity(self) -> dict[str, Any]:
        """The run's identity with the precision it computes in ('auto' resolved); float32, the
        only arithmetic before the option existed, is left out, so that those runs still resume.
        Compiling changes only the rounding, like the chunk sizes: a run may continue either way."""
        data = super().identity()
        del data["precision"], data["compile"]
        if self.passes.precision != "fp32":
            data["precision"] = self.passes.precision
        return data

    def variant(self, level: str) -> Variant | None:
        return choose_variant(self.config, self.engine, level)

    def iteration(self, it: int, generator: torch.Generator) -> Step:
        return dc_iteration(self, it, generator)

    def train_network(self, net: nn.Module, t: int, real: RealBatch, generator: torch.Generator, log: InnerLog) -> None:
        """theta_{t+1}: train on the detached set (DSA: each image augmented on its own draw), for
        the inner-loop policy's epochs; 'overfit' stops once the loss on the step's real batch rises."""
        config = self.config
        images, labels = self.synthetic.detached()
        augment = None if self.dsa_strategy is None else (lambda x: dsa(x, self.dsa_strategy, generator))
        epochs = inner_epochs(config.inner_steps, t, config.loops[1], config.inner_schedule)
        if config.inner_steps == "overfit":
            trained = train_inner_until_overfit(net, images, labels, real.images, real.labels, max_epochs=epochs,
                                                batch_size=config.batch_train, lr=config.lr_net, generator=generator,
                                                augment=augment, chunk_size=self.chunk_size,
                                                passes=self.passes)
            log.epochs.append(trained.epochs)
            log.updates += trained.steps
        else:
            log.updates += train_inner(net, images, labels, epochs=epochs, batch_size=config.batch_train,
                                       lr=config.lr_net, generator=generator, augment=augment,
                                       chunk_size=self.chunk_size, passes=self.passes)
            log.epochs.append(epochs)


def distill(
    dataset: ImageDataset,
    config: MatchingConfig = MatchingConfig(),
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    stop_at: int | None = None,
    checkpoint_seconds: float | None = None,
) -> RunResult:
    """Learn a synthetic set of ``config.ipc`` images per class of ``dataset`` by DC or DSA.

    ``dataset`` is a :class:`gmlib.data.ImageDataset` (moved to ``device`` once if needed). The
    run is determined by ``(config, seed)``: the same call gives the same images. ``out_dir``,
    ``resume``, ``stop_at`` and ``checkpoint_seconds`` are :func:`gmlib.run.loop.run`'s: checkpoints
    every minute and every ``config.checkpoint_every`` iterations, resume and extend bit-identically.
    ``config.eval_at`` evaluates the set under ``config.eval_config`` (None = the protocol's
    defaults for the distillation network) with ``config.eval_models`` models.
    """
    return distill_with(DCMethod, MatchingConfig, dataset, config, seed=seed, device=device, out_dir=out_dir,
                        resume=resume, progress=progress, stop_at=stop_at, checkpoint_seconds=checkpoint_seconds)


# --------------------------------------------------------------------------------------------
# One matching step on its own (chapters, tests and the generative teacher call these)
# --------------------------------------------------------------------------------------------


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
    passes: FirstOrder = EXACT,
    max_batched_images: int = MAX_BATCHED_IMAGES,
    level: str = "intra",
    level_weight: float | None = None,
    curvature: CurvatureSpec | None = None,
) -> StepLosses:
    """One per-class matching step: accumulates grad_S of the objective into ``syn_images.grad``
    and returns its detached terms (:class:`gmlib.methods.dc_variants.StepLosses`).

    ``syn_images``: the class-ordered leaf tensor (classes * ipc, C, H, W); ``real_batches``:
    (classes, B, C, H, W); ``augmentations[c]`` (DSA) is applied to both sides of class ``c``;
    ``level`` 'intra', 'inter' or 'multi' (lambda = ``level_weight``, None = classes) with an
    optional ``curvature`` term; ``engine`` 'loop' or 'batched' (DC's objective only); ``passes``:
    how the real gradients' passes run (:mod:`gmlib.first_order`).
    """
    check_one_of("engine", engine, ENGINES[1:])
    if real_batches.dim() != 5 or syn_images.shape[0] != len(real_batches) * ipc:
        raise ValueError(f"expected real_batches (classes, B, C, H, W) and {len(real_batches)} x ipc={ipc} synthetic "
                         f"images; got {tuple(real_batches.shape)} and {tuple(syn_images.shape)}")
    if engine == "loop":
        return loop_step_backward(net, syn_images, ipc, real_batches, distance, augmentations=augmentations,
                                  chunk_size=chunk_size, passes=passes, level=level, level_weight=level_weight, curvature=curvature)
    if level != "intra" or curvature is not None:
        raise ValueError(f"engine='batched' computes only the intra-class objective without a curvature term "
                         f"(got level={level!r}, curvature={curvature!r}); use engine='loop'")
    losses = batched_losses(net, syn_images, ipc, real_batches, distance, augmentations, max_batched_images, passes)
    return StepLosses(losses, None, None, losses.sum())


def matching_loss_backward(net: nn.Module, syn_images: Tensor, ipc: int, real_batches: Tensor,
                           distance: Callable, **options: Any) -> Tensor:
    """DC's per-class losses D_c, with grad_S sum_c D_c accumulated into ``syn_images.grad``
    (options as :func:`matching_step_backward`)."""
    return matching_step_backward(net, syn_images, ipc, real_batches, distance, **options).per_class
