"""Small learnable datasets for fast tests of the loops (no download, no disk)."""

from __future__ import annotations

import torch

from gmlib.data import ImageDataset


def brightness_classes(per_class: int = 24, test_per_class: int = 5, *, classes: int = 3, size: int = 8,
                       name: str = "fake") -> ImageDataset:
    """``classes`` classes of 1 x size x size images that differ in brightness (class c has mean c),
    plus unit noise: learnable in a few steps, so loops can be checked end to end in seconds."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(classes).repeat(per_class)
    images = torch.randn(len(labels), 1, size, size, generator=g) + labels.view(-1, 1, 1, 1).float()
    test_labels = torch.arange(classes).repeat(test_per_class)
    test_images = torch.randn(len(test_labels), 1, size, size, generator=g) + test_labels.view(-1, 1, 1, 1).float()
    class_names = [chr(ord("a") + c) for c in range(classes)]
    return ImageDataset(name, images, labels, test_images, test_labels, (0.0,), (1.0,), class_names)
