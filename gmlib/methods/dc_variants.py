"""What to match: the per-step objective of gradient matching at its different levels.

DC matches, class by class, the gradient of the synthetic images of class c with the gradient of a
real batch of class c, and sums the distances (the *intra-class* loss). Jiang et al. (seed 002,
section 3.1) add the *inter-class* gradient, the gradient of the union of all classes' batches,
which is what a network sees when it trains on mixed batches. Their eq. 6, the *multi-level* loss:

    loss = sum_c D(g_c^S, g_c^T) + lambda * D( (1/C) sum_c g_c^S, (1/C) sum_c g_c^T )

Why the mean of the class gradients is the union-batch gradient: the loss of a batch is the MEAN
cross-entropy over its images, so the gradient of the union B = B_0 u ... u B_{C-1} is
(1/|B|) sum_c |B_c| g_c (eq. 5); when every class contributes a batch of the same size
(ipc synthetic images, batch_real real ones) this is (1/C) sum_c g_c. The inter-class gradient
therefore costs no extra forward or backward pass: it reuses the per-class gradients.

:data:`MATCH_LEVELS` (``MatchingConfig.match_level``):

* ``'intra'``  -- DC: sum_c D_c.
* ``'inter'``  -- lambda * D(mean_c g_c^S, mean_c g_c^T) only.
* ``'multi'``  -- eq. 6: intra + lambda * inter.
* ``'interleaved'`` -- seed 002's footnote 3: "we match intra-class gradients in one iteration, and
  match inter-class gradients in the next iteration": intra in even iterations, inter in odd ones.

lambda (``level_weight``) defaults to the number of classes C, the paper's choice; we apply it
wherever the inter term appears (also 'inter' and the inter iterations of 'interleaved'), so that
an inter step has the scale of an intra step (a sum of C distances) and ``lr_img`` means the same.

*Per-class or not* (seed 003, Table II; ``MatchingConfig.per_class``): without per-class matching
the step takes ONE gradient of a mixed real batch and ONE gradient of the whole synthetic set
(:func:`mixed_step_backward`). We draw the mixed real batch uniformly, without replacement, from the
whole training set, batch_real * C images, so the class proportions vary from step to step as in
a plain training batch. (Had we drawn exactly batch_real images per class, this gradient would be
the inter-class gradient above, and not-per-class matching would be the 'inter' level with
lambda = 1: the only difference between the two is how the real batch is drawn.)

The optional curvature term (seed 000, section 3.3; :mod:`gmlib.methods.hessian`) adds, per class,
``hessian_weight * v^T C v`` with v = g_real - g_syn, C the Hessian (or its absolute value, or the
Gauss-Newton matrix) of the synthetic or the real loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmlib.methods.hessian import curvature_term
from gmlib.first_order import EXACT, FirstOrder

MATCH_LEVELS = ("intra", "inter", "multi", "interleaved")

Distance = Callable[[Sequence[Tensor], Sequence[Tensor]], Tensor]


def level_of_iteration(level: str, iteration: int) -> str:
    """The level matched in ``iteration``: 'interleaved' alternates intra (even) and inter (odd)."""
    if level not in MATCH_LEVELS:
        raise ValueError(f"unknown match_level {level!r}; allowed: " + ", ".join(repr(m) for m in MATCH_LEVELS))
    if level == "interleaved":
        return "intra" if iteration % 2 == 0 else "inter"
    return level


def union_gradient(per_class: Sequence[Sequence[Tensor]]) -> list[Tensor]:
    """The gradient of the union of equally sized class batches: the mean of the class gradients
    (``per_class[c][k]`` = class c's gradient w.r.t. parameter k). Differentiable."""
    return [torch.stack(grads).mean(0) for grads in zip(*per_class)]


@dataclass(frozen=True)
class CurvatureSpec:
    """The curvature term of the objective (:mod:`gmlib.methods.hessian`): weight, whose loss, which matrix."""

    weight: float
    loss: str = "synthetic"
    kind: str = "exact"


@dataclass
class StepLosses:
    """The detached losses of one matching step.

    ``per_class``: D_c per class (logged even where the level does not optimise them, e.g. 'inter');
    one entry when matching is not per class. ``inter``: the unweighted D of the union gradients
    (None where not computed). ``curvature``: v^T C v per class (None without the term).
    ``objective``: the number whose gradient w.r.t. the images was accumulated.
    """

    per_class: Tensor
    inter: Tensor | None
    curvature: Tensor | None
    objective: Tensor

    def values(self) -> Tensor:
        """Every loss as one tensor, to check them all for NaN/inf with one host sync."""
        parts = [self.per_class.reshape(-1), self.objective.reshape(1)]
        parts += [t.reshape(-1) for t in (self.inter, self.curvature) if t is not None]
        return torch.cat(parts)


def _labels(c: int, n: int, device: torch.device) -> Tensor:
    return torch.full((n,), c, dtype=torch.long, device=device)


def mean_loss_gradient(net: nn.Module, params: Sequence[Tensor], images: Tensor, labels: Tensor,
                       chunk_size: int | None = None, passes: FirstOrder = EXACT) -> list[Tensor]:
    """grad_theta of the mean cross-entropy of (images, labels), detached (a constant target).

    With ``chunk_size`` the batch goes through in chunks whose gradients add up to the same mean
    (up to rounding): faster on CPU, where small chunks stay in cache. BatchNorm must be frozen
    (eval) for chunks to be exact. ``passes`` says how the forward passes run (bfloat16, compiled:
    :mod:`gmlib.first_order`; the gradients stay float32).
    """
    if chunk_size is None:
        chunks, label_chunks = [images], [labels]
    else:
        chunks, label_chunks = images.split(chunk_size), labels.split(chunk_size)
    total: list[Tensor] | None = None
    for chunk, y in zip(chunks, label_chunks):
        loss = F.cross_entropy(passes.logits(net, chunk), y, reduction="sum") / len(images)
        grads = torch.autograd.grad(loss, params)
        if total is None:
            total = list(grads)
        else:
            for t, g in zip(total, grads):
                t.add_(g)
    return total


def real_gradient(net: nn.Module, params: Sequence[Tensor], images: Tensor, c: int,
                  chunk_size: int | None = None, passes: FirstOrder = EXACT) -> list[Tensor]:
    """grad_theta of the mean cross-entropy of ``images`` (all of class ``c``), detached.

    The real gradient is a constant target, so no graph is kept (see :func:`mean_loss_gradient`
    for ``chunk_size`` and ``passes``).
    """
    return mean_loss_gradient(net, params, images, _labels(c, len(images), images.device), chunk_size, passes)


def _curvature(spec: CurvatureSpec, params, g_real, g_syn, syn_logits, syn_labels, real_side) -> Tensor:
    """v^T C v with v = g_real - g_syn; C from the synthetic loss or, with ``real_side`` =
    (loss_grads, logits, labels) of the real batch, from the real loss."""
    v = [gr - gs for gr, gs in zip(g_real, g_syn)]
    if spec.loss == "synthetic":
        return curvature_term(spec.kind, params, v, g_syn, syn_logits, syn_labels)
    loss_grads, logits, labels = real_side
    # The real batch's curvature does not depend on the images: the cheaper constant form gives
    # the same value and the same image gradient (tests/test_hessian.py).
    return curvature_term(spec.kind, params, v, loss_grads, logits, labels, constant_curvature=True)


def _real_side(net, params, real, labels, chunk_size, passes, curvature):
    """The real gradient (detached) and, for a curvature term of the real loss, what that term
    needs: its gradients WITH their graph, its logits and labels (in one float32 pass: no
    chunking, since that term is differentiated again)."""
    if curvature is None or curvature.loss != "real":
        return mean_loss_gradient(net, params, real, labels, chunk_size, passes), None
    logits = net(real)
    loss_grads = torch.autograd.grad(F.cross_entropy(logits, labels), params, create_graph=True)
    return [g.detach() for g in loss_grads], (loss_grads, logits, labels)


def loop_step_backward(
    net: nn.Module,
    syn_images: Tensor,
    ipc: int,
    real_batches: Tensor,
    distance: Distance,
    *,
    augmentations: Sequence[Callable[[Tensor], Tensor]] | None = None,
    chunk_size: int | None = None,
    passes: FirstOrder = EXACT,
    level: str = "intra",
    level_weight: float | None = None,
    curvature: CurvatureSpec | None = None,
) -> StepLosses:
    """One matching step class by class (the algorithm box's loop), accumulating grad_S of the
    objective into ``syn_images.grad``. ``level`` is 'intra', 'inter' or 'multi' (resolve
    'interleaved' with :func:`level_of_iteration` first); ``level_weight`` None = C; ``chunk_size``
    and ``passes``: the real gradients' (:func:`mean_loss_gradient`)."""
    if level not in ("intra", "inter", "multi"):
        raise ValueError(f"level must be 'intra', 'inter' or 'multi' here (resolve 'interleaved' per iteration "
                         f"with level_of_iteration), got {level!r}")
    params = [p for p in net.parameters() if p.requires_grad]
    num_classes = len(real_batches)
    weight = float(num_classes if level_weight is None else level_weight)
    # The inter term couples every class, so the classes can no longer backpropagate one by one:
    # all C double-backward graphs (each as large as one class's intra graph) stay in memory until
    # the single backward at the end, about C times the memory of the intra loop.
    joint = level in ("inter", "multi")
    per_class, curvatures, syn_grads, real_grads, joint_terms = [], [], [], [], []
    objective = torch.zeros((), device=syn_images.device)
    for c in range(num_classes):
        real, syn = real_batches[c], syn_images[c * ipc:(c + 1) * ipc]
        if augmentations is not None:  # DSA: the SAME draw for the real and the synthetic batch
            real, syn = augmentations[c](real), augmentations[c](syn)
        g_real, real_side = _real_side(net, params, real, _labels(c, len(real), real.device), chunk_size, passes,
                                          curvature)
        syn_labels = _labels(c, ipc, syn.device)
        syn_logits = net(syn)
        g_syn = torch.autograd.grad(F.cross_entropy(syn_logits, syn_labels), params,
                                    create_graph=True)  # keep the graph: D_c -> S_c
        if level == "inter":  # D_c is only logged
            with torch.no_grad():
                d_c = distance([g.detach() for g in g_syn], g_real)
            term = None
        else:
            d_c = term = distance(g_syn, g_real)
        if curvature is not None:
            value = _curvature(curvature, params, g_real, g_syn, syn_logits, syn_labels, real_side)
            curvatures.append(value.detach())
            term = curvature.weight * value if term is None else term + curvature.weight * value
        per_class.append(d_c.detach())
        if joint:
            syn_grads.append(g_syn)
            real_grads.append(g_real)
            if term is not None:
                joint_terms.append(term)
        elif term is not None:
            # grad_S sum_c D_c = sum_c grad_S D_c, and D_c depends only on S_c (BN is frozen): so each
            # class can backpropagate at once, freeing its double-backward graph before the next one.
            term.backward()
            objective = objective + term.detach()
    inter = None
    if joint:
        inter_distance = distance(union_gradient(syn_grads), union_gradient(real_grads))
        total = weight * inter_distance
        for term in joint_terms:
            total = total + term
        total.backward()
        inter, objective = inter_distance.detach(), total.detach()
    return StepLosses(torch.stack(per_class), inter, None if curvature is None else torch.stack(curvatures), objective)


def mixed_step_backward(
    net: nn.Module,
    syn_images: Tensor,
    syn_labels: Tensor,
    real_images: Tensor,
    real_labels: Tensor,
    distance: Distance,
    *,
    augmentation: Callable[[Tensor], Tensor] | None = None,
    chunk_size: int | None = None,
    passes: FirstOrder = EXACT,
    curvature: CurvatureSpec | None = None,
) -> StepLosses:
    """Not-per-class matching (seed 003, Table II): D(grad of the whole synthetic set, grad of one
    mixed real batch), plus the optional curvature term; grad_S accumulated into ``syn_images.grad``.
    ``augmentation`` (DSA) is one Siamese draw applied to both sides."""
    params = [p for p in net.parameters() if p.requires_grad]
    real, syn = real_images, syn_images
    if augmentation is not None:
        real, syn = augmentation(real), augmentation(syn)
    g_real, real_side = _real_side(net, params, real, real_labels, chunk_size, passes, curvature)
    syn_logits = net(syn)
    g_syn = torch.autograd.grad(F.cross_entropy(syn_logits, syn_labels), params, create_graph=True)
    distance_value = objective = distance(g_syn, g_real)
    curvature_value = None
    if curvature is not None:
        curvature_value = _curvature(curvature, params, g_real, g_syn, syn_logits, syn_labels, real_side)
        objective = objective + curvature.weight * curvature_value
        curvature_value = curvature_value.detach().reshape(1)
    objective.backward()
    return StepLosses(distance_value.detach().reshape(1), None, curvature_value, objective.detach())
