"""Gradient matching written as plainly as possible: the version chapter 02 derives by hand.

Two functions, with no engines, no chunking and no checkpoints:

* :func:`reference_outer_step`: one outer step of DC. For each class, the gradient of the
  cross-entropy on a real batch (a constant target) and on the class's synthetic images (kept
  differentiable with ``create_graph=True``), their distance, summed over classes; then one
  momentum-SGD step on the images, written out by hand.
* :func:`reference_train_network`: the inner loop, plain SGD on shuffled batches.

:mod:`gmlib.methods.dc` must compute the same numbers (tests/test_matching.py checks it with
``torch.testing.assert_close``); benchmarks/bench_matching.py times both.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ReferenceStep(NamedTuple):
    """What one outer step produced."""

    loss: Tensor  # sum over classes of the distances (scalar, detached)
    class_losses: Tensor  # (num_classes,) the distance of each class
    grad: Tensor  # d loss / d images
    images: Tensor  # the images after the step
    momentum_buffer: Tensor  # the optimiser's momentum after the step


def reference_outer_step(
    net: nn.Module,
    synthetic_images: Tensor,
    labels: Tensor,
    real_batches: Sequence[Tensor],
    distance: Callable[[Sequence[Tensor], Sequence[Tensor]], Tensor],
    *,
    lr_img: float = 0.1,
    momentum: float = 0.5,
    momentum_buffer: Tensor | None = None,
    augmentations: Sequence[Callable[[Tensor], Tensor]] | None = None,
) -> ReferenceStep:
    """One outer step of DC on ``synthetic_images`` (labels ``labels``), real batch ``real_batches[c]``
    for class ``c``; ``augmentations[c]`` (DSA) transforms both batches of class ``c`` alike.

    ``momentum_buffer`` is the buffer after the previous step (None before the first one).
    """
    images = synthetic_images.detach().clone().requires_grad_(True)
    params = list(net.parameters())

    total = torch.zeros((), device=images.device)
    class_losses = []
    for c, real in enumerate(real_batches):
        syn = images[labels == c]
        if augmentations is not None:
            real, syn = augmentations[c](real), augmentations[c](syn)

        real_loss = F.cross_entropy(net(real), torch.full((len(real),), c, device=real.device))
        g_real = torch.autograd.grad(real_loss, params)
        g_real = [g.detach() for g in g_real]  # the target: a constant

        syn_loss = F.cross_entropy(net(syn), labels[labels == c])
        g_syn = torch.autograd.grad(syn_loss, params, create_graph=True)  # differentiable in the images

        loss_c = distance(g_syn, g_real)
        class_losses.append(loss_c.detach())
        total = total + loss_c

    (grad,) = torch.autograd.grad(total, images)
    # SGD with momentum, as torch.optim.SGD does it: the first buffer is the gradient itself.
    buffer = grad if momentum_buffer is None else momentum * momentum_buffer + grad
    new_images = images.detach() - lr_img * buffer
    return ReferenceStep(total.detach(), torch.stack(class_losses), grad, new_images, buffer)


def reference_train_network(
    net: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    augment: Callable[[Tensor], Tensor] | None = None,
) -> None:
    """The inner loop: ``epochs`` epochs of plain SGD (no momentum, no weight decay) on shuffled
    batches of (images, labels), mean cross-entropy, ``augment`` applied to every batch."""
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator).to(images.device)
        for start in range(0, len(images), batch_size):
            batch = order[start:start + batch_size]
            x, y = images[batch], labels[batch]
            if augment is not None:
                x = augment(x)
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
