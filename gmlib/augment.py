"""Image augmentation during training: the one entry point the evaluation protocol calls.

Two augmentations, each in its own module: DSA (:mod:`gmlib.dsa`) and DC's classic MNIST
augmentation (:mod:`gmlib.classic_augment`); their shared warps are :mod:`gmlib.image_warp`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gmlib.classic_augment import MNIST_REFERENCE, ClassicRecipe, classic_augment
from gmlib.dsa import DEFAULT_DSA_STRATEGY, dsa

AUGMENT_KINDS = ("none", "mnist", "dsa")


def check_augment_kind(kind: str) -> str:
    if kind not in AUGMENT_KINDS:
        raise ValueError(f"unknown augmentation {kind!r}; allowed: {', '.join(repr(k) for k in AUGMENT_KINDS)}")
    return kind


def augment(
    x: Tensor,
    kind: str,
    generator: torch.Generator,
    *,
    dsa_strategy: str = DEFAULT_DSA_STRATEGY,
    classic: ClassicRecipe = MNIST_REFERENCE,
) -> Tensor:
    """Augment a training batch: ``'none'`` (x unchanged), ``'mnist'`` (DC's classic MNIST
    augmentation done as ``classic`` says, per-image ops) or ``'dsa'`` (one DSA family per call,
    per-image draws)."""
    check_augment_kind(kind)
    if kind == "none":
        return x
    if kind == "mnist":
        return classic_augment(x, generator, classic)
    return dsa(x, dsa_strategy, generator)
