"""Coreset baselines: pick real images instead of learning synthetic ones.

*Random* takes ``ipc`` random training images per class.  *Herding* (Welling 2009; Chen et al.
2010) picks them greedily so that the running mean of the chosen images' features stays as close
as possible to the class mean; it is the "Herding" column of the distillation papers' tables.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

FeatureFn = Callable[[Tensor], Tensor]


def _check_ipc(ipc: int) -> None:
    if not isinstance(ipc, int) or ipc < 1:
        raise ValueError(f"images per class must be an integer >= 1, got {ipc!r}")


def pixel_features(images: Tensor) -> Tensor:
    """The default feature map: the flattened (normalised) pixels."""
    return images.flatten(1)


@torch.no_grad()
def compute_features(images: Tensor, feature_fn: FeatureFn, batch_size: int = 1024) -> Tensor:
    """``feature_fn`` applied in batches (keeps memory flat for whole classes of images)."""
    return torch.cat([feature_fn(images[i : i + batch_size]).flatten(1) for i in range(0, len(images), batch_size)])


def herding_order(features: Tensor, k: int) -> Tensor:
    """Indices of ``k`` rows of ``features`` chosen greedily by herding.

    Step j picks the unchosen row x minimising ||mu - (s + x) / j||, where mu is the mean of all
    rows and s the sum of the rows chosen so far: one vectorised distance per step, no inner loop.
    """
    n = features.shape[0]
    if k > n:
        raise ValueError(f"cannot pick {k} images by herding from a class of {n}")
    features = features.double()  # the running sums are compared to many digits
    mean = features.mean(0)
    chosen_sum = torch.zeros_like(mean)
    available = torch.ones(n, dtype=torch.bool, device=features.device)
    order = []
    for step in range(1, k + 1):
        candidate_means = (chosen_sum + features) / step
        distances = (candidate_means - mean).norm(dim=1)
        distances[~available] = float("inf")
        pick = int(distances.argmin())
        order.append(pick)
        available[pick] = False
        chosen_sum += features[pick]
    return torch.tensor(order, dtype=torch.long, device=features.device)


def random_coreset(dataset, ipc: int, seed: int) -> tuple[Tensor, Tensor]:
    """``ipc`` random training images per class (deterministic for a seed), class-ordered."""
    _check_ipc(ipc)
    return dataset.subset(ipc, seed)


def herding_coreset(dataset, ipc: int, feature_fn: FeatureFn = pixel_features) -> tuple[Tensor, Tensor]:
    """``ipc`` images per class chosen by herding in the space of ``feature_fn`` (deterministic)."""
    _check_ipc(ipc)
    images, labels = [], []
    for c in range(dataset.num_classes):
        class_images = dataset.train_images[dataset.class_indices(c)]
        picks = herding_order(compute_features(class_images, feature_fn), ipc)
        images.append(class_images[picks])
        labels.append(torch.full((ipc,), c, dtype=torch.long, device=class_images.device))
    return torch.cat(images), torch.cat(labels)
