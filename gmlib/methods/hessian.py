"""Second-order terms for gradient matching: Hessian-vector products and curvature penalties.

Seed 000 (Cartwright, section 3.3) adds ``v^T H v`` to the matching loss, with
``v = g_real - g_syn`` (the gradient mismatch) and ``H`` the Hessian of the training loss
w.r.t. the network parameters ``theta``::

    L_match = D(g_syn, g_real) + w * v^T H v

``H`` of a neural network's loss is *indefinite*: ``v^T H v`` can be negative, so minimising
the sum over the images can push the term towards minus infinity instead of matching gradients.
This module therefore offers three curvatures ``C`` (:data:`HESSIAN_KINDS`):

* ``"exact"``: ``v^T H v``, seed 000's term, either sign;
* ``"abs"``: ``|v^T H v|`` (our extension), bounded below by 0;
* ``"gauss_newton"``: ``v^T J^T H_out J v`` (our extension), with ``J`` the Jacobian of the logits
  w.r.t. ``theta`` and ``H_out = diag(p) - p p^T`` the Hessian of softmax cross-entropy w.r.t. the
  logits: positive semi-definite, so the term is >= 0 and it is the curvature of the loss with
  the network linearised (Schraudolph 2002; Martens 2010).

Nothing here ever forms a Hessian or a Jacobian: ``H v`` is one more backward pass through the
gradient (Pearlmutter 1994) and ``J v`` two (the "double-backward" trick), so the cost is a few
backward passes whatever the number of parameters. Every result keeps its graph, so the matching
loop can backpropagate the term into the synthetic images (a third derivative).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmlib.checks import check_one_of

HESSIAN_KINDS = ("exact", "abs", "gauss_newton")
# Which loss's Hessian: the synthetic images' (cheap: ipc images) or the real batch's.
HESSIAN_LOSSES = ("synthetic", "real")


def _check_kind(kind: str) -> None:
    check_one_of("Hessian kind", kind, HESSIAN_KINDS)


def _check_aligned(name_a: str, a: Sequence[Tensor], name_b: str, b: Sequence[Tensor]) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} has {len(a)} tensors but {name_b} has {len(b)}")
    if len(a) == 0:
        raise ValueError(f"{name_a} and {name_b} are empty: nothing to differentiate")
    for i, (x, y) in enumerate(zip(a, b)):
        if x.shape != y.shape:
            raise ValueError(f"shapes differ at index {i}: {name_a} {tuple(x.shape)} vs {name_b} {tuple(y.shape)}")


def dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    """``sum_i <a_i, b_i>`` over two lists of same-shaped tensors (a scalar, differentiable)."""
    _check_aligned("a", a, "b", b)
    return sum((x * y).sum() for x, y in zip(a, b))


def hvp(
    loss_grads: Sequence[Tensor], params: Sequence[Tensor], v: Sequence[Tensor], *, create_graph: bool = True
) -> list[Tensor]:
    """``H v`` for the loss whose gradient ``loss_grads`` (w.r.t. ``params``) was taken with
    ``create_graph=True``; ``H`` is never formed.

    Pearlmutter's trick: ``H v = d/dtheta (g(theta) . v)`` with ``v`` held fixed. ``v`` is passed as
    the *weights* of the backward pass (``grad_outputs``), not multiplied into the output: in
    matching, ``v = g_real - g_syn`` itself depends on ``theta``, and differentiating ``g . v``
    naively would add the spurious term ``(dv/dtheta)^T g``. As ``grad_outputs``, ``v`` is a
    constant for this derivative yet, with ``create_graph``, the result stays differentiable
    w.r.t. ``v`` and everything upstream of it (the synthetic images). Parameters the gradient
    does not depend on get zeros.
    """
    _check_aligned("loss_grads", loss_grads, "params", params)
    _check_aligned("loss_grads", loss_grads, "v", v)
    live = [i for i, g in enumerate(loss_grads) if g.requires_grad]
    if not live:  # the loss is linear in theta (or the graph was not kept): H = 0
        return [torch.zeros_like(p) for p in params]
    products = torch.autograd.grad(
        [loss_grads[i] for i in live], list(params), grad_outputs=[v[i] for i in live],
        create_graph=create_graph, retain_graph=True, allow_unused=True,
    )
    return [torch.zeros_like(p) if h is None else h for h, p in zip(products, params)]


def jvp_logits(logits: Tensor, params: Sequence[Tensor], v: Sequence[Tensor]) -> Tensor:
    """``J v``: the change of ``logits`` along the parameter direction ``v``, without forming ``J``.

    Double-backward trick: ``J^T u`` is a backward pass with a dummy ``u`` (shaped like the
    logits); it is linear in ``u``, and differentiating ``(J^T u) . v`` w.r.t. ``u`` gives ``J v``.
    Only ``u`` is differentiated, so ``v``'s own dependence on ``theta`` never enters; the result
    keeps its graph (differentiable w.r.t. ``v`` and the inputs of ``logits``).
    """
    _check_aligned("params", params, "v", v)
    u = torch.zeros_like(logits, requires_grad=True)
    jtu = torch.autograd.grad(logits, list(params), grad_outputs=u, create_graph=True, allow_unused=True)
    live = [i for i, g in enumerate(jtu) if g is not None and g.requires_grad]
    if not live:  # logits do not depend on params
        return torch.zeros_like(logits)
    (jv,) = torch.autograd.grad([jtu[i] for i in live], u, grad_outputs=[v[i] for i in live], create_graph=True)
    return jv


def softmax_cross_entropy_curvature(logits: Tensor, directions: Tensor) -> Tensor:
    """``(1/B) sum_n d_n^T (diag(p_n) - p_n p_n^T) d_n`` with ``p_n = softmax(logits_n)``.

    That quadratic form is the variance of ``d_n`` under ``p_n``, written here as
    ``sum_k p_k (d_k - sum_j p_j d_j)^2`` so that it is >= 0 even after rounding. The ``1/B``
    makes it the curvature of the *mean* cross-entropy over the batch.
    """
    if logits.shape != directions.shape or logits.dim() != 2:
        raise ValueError(f"logits and directions must both be (batch, classes); got {tuple(logits.shape)} "
                         f"and {tuple(directions.shape)}")
    p = logits.softmax(dim=1)
    centred = directions - (p * directions).sum(dim=1, keepdim=True)
    return (p * centred.pow(2)).sum() / len(logits)


def gauss_newton_vector_product(logits: Tensor, params: Sequence[Tensor], v: Sequence[Tensor]) -> list[Tensor]:
    """``G v = J^T H_out J v`` for the mean softmax cross-entropy of ``logits``, detached.

    Three passes, no matrix: ``J v`` (:func:`jvp_logits`), ``H_out`` applied per sample
    (``(p * d - p (p . d)) / B``), then ``J^T`` as an ordinary backward pass.
    """
    jv = jvp_logits(logits, params, v).detach()
    p = logits.detach().softmax(dim=1)
    h_out_jv = (p * jv - p * (p * jv).sum(dim=1, keepdim=True)) / len(logits)
    products = torch.autograd.grad(logits, list(params), grad_outputs=h_out_jv, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(q) if g is None else g for g, q in zip(products, params)]


def curvature_term(
    kind: str,
    params: Sequence[Tensor],
    v: Sequence[Tensor],
    loss_grads: Sequence[Tensor],
    logits: Tensor,
    labels: Tensor,
    *,
    constant_curvature: bool = False,
) -> Tensor:
    """The scalar ``v^T C v`` for the mean ``cross_entropy(logits, labels)`` w.r.t. ``params``.

    ``kind`` (:data:`HESSIAN_KINDS`): ``"exact"`` C = H (seed 000; either sign), ``"abs"``
    ``|v^T H v|``, ``"gauss_newton"`` C = J^T H_out J (>= 0). ``loss_grads`` are that loss's
    gradients, taken with ``create_graph=True`` (used by the two Hessian kinds); ``logits`` and
    ``labels`` are the batch it was computed on (used by Gauss-Newton, which needs the logits'
    graph). The result is differentiable w.r.t. everything upstream (``v``, the images).

    ``constant_curvature=True`` is a shortcut for when ``C`` itself does not depend on what will
    be differentiated (the *real* batch's curvature, with the synthetic images as the variables):
    then ``d(v^T C v) = 2 (C v)^T dv``, so one product ``C v`` without a graph suffices, and the
    returned ``2 v.(Cv) - v.(Cv)`` (the second factor detached) has the exact value and the exact
    first derivative, for a fraction of the cost. Its second derivatives are not those of the term.
    """
    _check_kind(kind)
    _check_aligned("params", params, "v", v)
    _check_aligned("params", params, "loss_grads", loss_grads)
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (batch, classes) and labels (batch,); got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    if constant_curvature:
        if kind == "gauss_newton":
            cv = gauss_newton_vector_product(logits, params, v)
        else:
            cv = [h.detach() for h in hvp(loss_grads, params, v, create_graph=False)]
        value = dot([t.detach() for t in v], cv)
        linear = dot(v, cv)  # its gradient is (C v)^T dv: half the term's
        surrogate = 2 * linear - value  # value v^T C v, gradient 2 (C v)^T dv
        return torch.sign(value) * surrogate if kind == "abs" else surrogate
    if kind == "gauss_newton":
        return softmax_cross_entropy_curvature(logits, jvp_logits(logits, params, v))
    quadratic = dot(v, hvp(loss_grads, params, v))
    return quadratic.abs() if kind == "abs" else quadratic


def matching_objective_with_curvature(
    net: nn.Module,
    images: Tensor,
    labels: Tensor,
    g_real: Sequence[Tensor],
    distance: Callable[[Sequence[Tensor], Sequence[Tensor]], Tensor],
    weight: float,
    kind: str,
) -> Tensor:
    """One class's objective ``D(g_syn, g_real) + weight * v^T C v`` with ``v = g_real - g_syn``.

    The teaching form of the matching loop's step: ``images``/``labels`` are the synthetic images
    of the class (a tensor that requires grad), ``g_real`` the real batch's gradient (a constant,
    detached here), and the curvature is that of the synthetic loss (``hessian_loss="synthetic"``).
    The result is a scalar to call ``.backward()`` on.
    """
    _check_kind(kind)
    params = [p for p in net.parameters() if p.requires_grad]
    logits = net(images)
    loss = F.cross_entropy(logits, labels)
    g_syn = torch.autograd.grad(loss, params, create_graph=True)
    g_real = [g.detach() for g in g_real]
    objective = distance(g_syn, g_real)
    if weight == 0:
        return objective
    v = [r - s for r, s in zip(g_real, g_syn)]
    return objective + weight * curvature_term(kind, params, v, g_syn, logits, labels)
