"""What the tests share: small learnable datasets (no download, no disk), a tiny network and
tiny DC configurations, so every loop can be checked end to end in seconds."""

from __future__ import annotations

import torch

from gmlib.data import ImageDataset
from gmlib.methods.dc_config import MatchingConfig

CLASSES, SIZE = 3, 8  # the fake dataset: 3 classes of 1 x 8 x 8 images
TINY_NET = {"width": 8, "depth": 2}  # a ConvNet small enough for a CPU test
STRATEGY = "color_crop_cutout_scale_rotate"  # DSA's strategy for a dataset it does not know


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


def fake_dataset(per_class: int = 24, name: str = "fake") -> ImageDataset:
    """The tests' standard dataset: :func:`brightness_classes` with 5 test images per class."""
    return brightness_classes(per_class, 5, classes=CLASSES, size=SIZE, name=name)


def tiny_dc_config(**changes) -> MatchingConfig:
    """DC at a size a test runs in a fraction of a second (2 images per class, 2 outer steps), on
    the exact float32 path, which the tests compare with the reference and across engines
    (tests/test_first_order.py compares the default bfloat16 and compiled paths with it)."""
    values = dict(ipc=2, iterations=4, outer_loop=2, inner_loop=2, batch_real=8, batch_train=4,
                  network_kwargs=TINY_NET, eval_models=1, precision="fp32")
    values.update(changes)
    return MatchingConfig(**values)


def tiny_expert_config(**changes):
    """Experts at a size a test builds in well under a second: 2 tiny ConvNets x 3 epochs."""
    from gmlib.methods.mtt_experts import ExpertConfig

    values = dict(network_kwargs=TINY_NET, experts=2, epochs=3, batch_size=16, dsa_strategy=STRATEGY)
    values.update(changes)
    return ExpertConfig(**values)


def tiny_buffer(folder=None):
    """The tests' expert buffer of :func:`tiny_expert_config` on :func:`fake_dataset`, seed 0. Without
    ``folder`` it is kept in one temporary folder per user, built once and then reused (its
    training is deterministic, and train_experts verifies and keeps what is there)."""
    import getpass
    import tempfile
    from pathlib import Path

    from gmlib.methods.mtt_buffer import BUFFER_VERSION, load_buffer
    from gmlib.methods.mtt_experts import train_experts

    if folder is None:
        folder = Path(tempfile.gettempdir()) / f"gmlib-tests-{getpass.getuser()}" / f"tiny-buffer-v{BUFFER_VERSION}"
        try:
            return load_buffer(folder)
        except ValueError:
            pass
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same numbers in every process
    try:
        return train_experts(fake_dataset(), tiny_expert_config(), folder, seed=0, progress=False, device="cpu")
    finally:
        torch.set_num_threads(threads)
