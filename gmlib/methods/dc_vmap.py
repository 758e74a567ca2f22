"""The 'batched' engine of the matching step: per-class gradients for all classes at once with
``torch.func.vmap``, which keeps a GPU busy (on CPU the class loop is faster; see
:func:`gmlib.methods.dc.resolve_engine`). Same losses as the loop engine up to rounding."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from gmlib.first_order import EXACT, FirstOrder

# At most this many images go through one vmap call: 10 classes x 256 real images (MNIST,
# CIFAR-10 in one pass, about 8 GB for DC's ConvNet); more classes go in groups.
MAX_BATCHED_IMAGES = 2560


def per_class_distances(distance: Callable, g_syn: list[Tensor], g_real: list[Tensor]) -> Tensor:
    if hasattr(distance, "per_class"):
        return distance.per_class(g_syn, g_real)
    return torch.stack([distance([g[c] for g in g_syn], [g[c] for g in g_real]) for c in range(len(g_syn[0]))])


def batched_losses(net, syn_images, ipc, real_batches, distance, augmentations, max_images,
                   passes: FirstOrder = EXACT) -> Tensor:
    """The same losses, vectorised over classes with torch.func (per-class gradients via vmap);
    the real gradients at the precision of ``passes`` (:mod:`gmlib.first_order`; vmap is never
    compiled), the synthetic ones in float32."""
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
        if augmentations is not None:  # each class has its own family: augment class by class (cheap),
            # real then synthetic as the class loop does (the order of the draws when dsa_siamese=False)
            pairs = [(aug(r), aug(s)) for aug, r, s in zip(augmentations[k], real, syn)]
            real, syn = torch.stack([r for r, _ in pairs]), torch.stack([s for _, s in pairs])
        y_real = classes[k, None].expand(-1, batch)
        y_syn = classes[k, None].expand(-1, ipc)
        with passes.context(real.device):
            g_real = per_class_grad(params, real, y_real)
        g_syn = per_class_grad(params, syn, y_syn)  # differentiable w.r.t. the images
        loss = per_class_distances(distance, [g_syn[n] for n in names], [g_real[n].detach() for n in names])
        loss.sum().backward()
        losses.append(loss.detach())
    return torch.cat(losses)
