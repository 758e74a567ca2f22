"""ImageDataset: train and test images (normalised float32) and labels, indexed by class."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from gmlib.runinfo import resolve_device


def _per_channel(values: Sequence[float], like: Tensor) -> Tensor:
    """``values`` shaped to broadcast over the channel axis of ``like`` (..., C, H, W)."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)


def _normalise(pixels: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    return (pixels - _per_channel(mean, pixels)) / _per_channel(std, pixels)


def denormalise(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """From the normalised space the networks see back to pixel space (values outside [0, 1]
    are kept; clamp for display). The one inverse of the datasets' normalisation."""
    return x * _per_channel(std, x) + _per_channel(mean, x)


def _check_count(n: object, what: str, largest: int | None = None) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {n!r}")
    if largest is not None and n > largest:
        raise ValueError(f"{what} is {n} but at most {largest} are available")
    return n


@dataclass(eq=False)
class ImageDataset:
    """Train and test images (normalised float32, N x C x H x W) and labels, indexed by class."""

    name: str
    train_images: Tensor = field(repr=False)
    train_labels: Tensor = field(repr=False)
    test_images: Tensor = field(repr=False)
    test_labels: Tensor = field(repr=False)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]
    source: str = ""  # where the data came from (provenance)
    _by_class: list[Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.mean, self.std, self.class_names = tuple(self.mean), tuple(self.std), list(self.class_names)
        for split, images, labels in (("train", self.train_images, self.train_labels),
                                      ("test", self.test_images, self.test_labels)):
            if images.dim() != 4 or labels.shape != (len(images),):
                raise ValueError(f"{split} images must be (N, C, H, W) with N labels; got "
                                 f"{tuple(images.shape)} and {tuple(labels.shape)}")
            if images.device != self.train_images.device or labels.device != self.train_images.device:
                raise ValueError(f"all tensors must be on one device; {split} split is on {images.device}")
        if not len(self.mean) == len(self.std) == self.channels:
            raise ValueError(f"mean {self.mean} and std {self.std} need one value per channel ({self.channels})")
        low, high = int(self.train_labels.min()), int(self.train_labels.max())
        if low < 0 or high >= self.num_classes:
            raise ValueError(f"train labels range over [{low}, {high}] but there are {self.num_classes} "
                             f"class names (labels 0..{self.num_classes - 1})")
        # One stable sort gives every class's indices in dataset order, on the data's device.
        counts = torch.bincount(self.train_labels, minlength=self.num_classes)
        order = torch.argsort(self.train_labels, stable=True)
        self._by_class = list(torch.split(order, counts.tolist()))

    def __repr__(self) -> str:
        c, (h, w) = self.channels, self.im_size
        return (f"ImageDataset({self.name!r}: {len(self.train_labels)} train / {len(self.test_labels)} test images, "
                f"{c}x{h}x{w}, {self.num_classes} classes, on {self.device})")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def im_size(self) -> tuple[int, int]:
        return tuple(self.train_images.shape[2:])

    @property
    def device(self) -> torch.device:
        return self.train_images.device

    def _check_class(self, c: object) -> int:
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < self.num_classes:
            raise ValueError(f"class index {c!r} is out of range; {self.name} has classes 0..{self.num_classes - 1}")
        return c

    def class_indices(self, c: int) -> Tensor:
        """Indices into the train split of every image of class ``c`` (in dataset order)."""
        return self._by_class[self._check_class(c)]

    def sample(self, c: int, n: int, generator: torch.Generator | int) -> Tensor:
        """``n`` distinct random train images of class ``c``, on the dataset's device.

        ``generator`` (or an int seed) makes the draw reproducible; a CPU generator gives the
        same images whatever the dataset's device.
        """
        indices = self.class_indices(c)
        _check_count(n, f"the number of images to sample from class {c}", len(indices))
        if isinstance(generator, int):
            generator = torch.Generator().manual_seed(generator)
        picks = torch.randperm(len(indices), generator=generator, device=generator.device)[:n]
        return self.train_images[indices[picks.to(indices.device)]]

    def class_batches(self, batch: int, generator: torch.Generator) -> Tensor:
        """One random batch of distinct train images per class, stacked: (classes, B, C, H, W).

        B = ``batch``, or the smallest class's size when a class has fewer images (the reference
        code takes what there is; one B for all keeps the batches stackable). DC's B_c^T.
        """
        _check_count(batch, "the batch size per class")
        n = min(batch, min(len(indices) for indices in self._by_class))
        return torch.stack([self.sample(c, n, generator) for c in range(self.num_classes)])

    def warmup_batch(self, per_class: int, generator: torch.Generator) -> Tensor:
        """``per_class`` random train images of every class (fewer if a class is smaller),
        class-ordered: what sets a BatchNorm network's statistics before matching."""
        return self.class_batches(per_class, generator).flatten(0, 1)

    def mixed_batch(self, size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``size`` distinct train images drawn uniformly from the whole train split (any classes,
        so the class proportions vary from draw to draw, as in a plain training batch), with labels."""
        total = len(self.train_labels)
        _check_count(size, "the mixed batch size", total)
        picks = torch.randperm(total, generator=generator)[:size].to(self.device)
        return self.train_images[picks], self.train_labels[picks]

    def subset(self, n_per_class: int, seed: int = 0) -> tuple[Tensor, Tensor]:
        """``n_per_class`` random train images of every class, class-ordered, with their labels."""
        smallest = min(len(indices) for indices in self._by_class)
        _check_count(n_per_class, "n_per_class", smallest)
        generator = torch.Generator().manual_seed(seed)
        images = torch.cat([self.sample(c, n_per_class, generator) for c in range(self.num_classes)])
        labels = torch.arange(self.num_classes, device=self.device).repeat_interleave(n_per_class)
        return images, labels

    def holdout(self, per_class: int, seed: int = 0) -> "ImageDataset":
        """A copy for choosing hyperparameters without the test set: ``per_class`` random train
        images of every class become its test split (the validation images) and the rest its train
        split. The real test images are not in it at all, so nothing tuned on it can peek at them."""
        smallest = min(len(indices) for indices in self._by_class)
        _check_count(per_class, "the validation images per class", smallest - 1)
        generator = torch.Generator().manual_seed(seed)
        held = torch.cat([indices[torch.randperm(len(indices), generator=generator)[:per_class].to(indices.device)]
                          for indices in self._by_class])
        keep = torch.ones(len(self.train_labels), dtype=torch.bool, device=self.device)
        keep[held] = False
        return dataclasses.replace(
            self, train_images=self.train_images[keep], train_labels=self.train_labels[keep],
            test_images=self.train_images[held], test_labels=self.train_labels[held],
            source=f"{self.source}; validation split: {per_class} train images per class held out (seed {seed})")

    def to(self, device: str | torch.device) -> "ImageDataset":
        """A copy with every tensor on ``device`` ('auto' picks CUDA when available)."""
        device = resolve_device(device)
        return dataclasses.replace(self, train_images=self.train_images.to(device),
                                   train_labels=self.train_labels.to(device),
                                   test_images=self.test_images.to(device), test_labels=self.test_labels.to(device))

    def normalise(self, pixels: Tensor) -> Tensor:
        """From pixel space [0, 1] to the normalised space the networks see."""
        self._check_channels(pixels)
        return _normalise(pixels, self.mean, self.std)

    def denormalise(self, x: Tensor) -> Tensor:
        """From normalised space back to pixel space (values outside [0, 1] are kept)."""
        self._check_channels(x)
        return denormalise(x, self.mean, self.std)

    def _check_channels(self, x: Tensor) -> None:
        if x.dim() < 3 or x.shape[-3] != self.channels:
            raise ValueError(f"expected images (..., {self.channels}, H, W) for {self.name}, "
                             f"got shape {tuple(x.shape)}")
