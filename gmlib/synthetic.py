"""The synthetic set: learnable images and their labels, how they start, and how they are kept.

Gradient matching learns a handful of images per class. :class:`SyntheticSet` holds them in the
dataset's *normalised* space (the space the networks see), as one leaf tensor with
``requires_grad=True`` that an optimiser updates directly; labels are fixed and class-ordered
(``ipc`` copies of class 0, then of class 1, ...), so class ``c`` is the contiguous slice
``images[c * ipc : (c + 1) * ipc]``.

:func:`init_synthetic` starts a set from one of :data:`INIT_NAMES`; :func:`save_synthetic` and
:func:`load_synthetic` keep it as one verified file, with the provenance from
:func:`gmlib.runinfo.make_provenance` (method, preset, seed, code and library versions, hardware, time).
"""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from gmlib.checks import check_int
from gmlib.data.container import ImageDataset, denormalise
from gmlib.fileio import atomic_torch_save, plain_data
from gmlib.memory import available_bytes
from gmlib.runinfo import resolve_device

INIT_NAMES = ("noise", "real", "black", "white", "gray", "class-mean")

# Pixel value of each constant initialisation, in pixel space [0, 1] (normalised afterwards).
CONSTANT_PIXELS = {"black": 0.0, "white": 1.0, "gray": 0.5}

# Std of the noise added to 'class-mean' copies when ipc > 1 (normalised units). Identical copies
# of an image receive identical gradients, so without it they would stay identical forever.
CLASS_MEAN_JITTER = 1e-3

# Version of the file layout written by save_synthetic; bump it when the layout changes.
FORMAT_VERSION = 1
_FORMAT_NAME = "gmlib.synthetic"


class SyntheticFileError(ValueError):
    """A file is not a synthetic set this gmlib can read: wrong kind, wrong version, or corrupt."""


# ---------------------------------------------------------------------------------------------
# The container
# ---------------------------------------------------------------------------------------------


def _check_ipc(ipc: object) -> int:
    check_int("images per class", ipc, 1)
    return ipc


def class_ordered_labels(num_classes: int, ipc: int, device: str | torch.device = "cpu") -> Tensor:
    """``ipc`` copies of label 0, then of label 1, ... (int64): the labels of every synthetic set."""
    return torch.arange(num_classes, dtype=torch.long, device=device).repeat_interleave(ipc)


@dataclass(eq=False)
class SyntheticSet:
    """Learnable images (normalised space, a leaf with ``requires_grad``) and class-ordered labels.

    ``images`` has shape ``(num_classes * ipc, C, H, W)``; ``labels`` is ``ipc`` copies of 0, then
    of 1, ...; ``mean``/``std`` are the dataset's normalisation, so :meth:`pixels` can show the
    images; ``metadata`` holds plain provenance (how the set was initialised and produced).
    An image tensor that is not a grad-requiring leaf is copied into one.
    """

    images: Tensor = field(repr=False)
    labels: Tensor = field(repr=False)
    ipc: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]
    dataset: str
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_ipc(self.ipc)
        self.mean, self.std, self.class_names = tuple(self.mean), tuple(self.std), list(self.class_names)
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names given for {self.num_classes} classes")
        expected = self.num_classes * self.ipc
        if self.images.dim() != 4 or len(self.images) != expected or not self.images.is_floating_point():
            raise ValueError(f"images must be a float tensor ({expected}, C, H, W) for {self.num_classes} "
                             f"classes x {self.ipc} per class; got {self.images.dtype} {tuple(self.images.shape)}")
        if not len(self.mean) == len(self.std) == self.images.shape[1]:
            raise ValueError(f"mean {self.mean} and std {self.std} need one value per channel "
                             f"({self.images.shape[1]})")
        wanted_labels = class_ordered_labels(self.num_classes, self.ipc, self.labels.device)
        if self.labels.dtype != torch.long or not torch.equal(self.labels, wanted_labels):
            raise ValueError("labels must be int64 and class-ordered (ipc copies of 0, then of 1, ...)")
        if self.labels.device != self.images.device:
            raise ValueError(f"images are on {self.images.device} but labels on {self.labels.device}")
        if not (self.images.is_leaf and self.images.requires_grad):
            # A fresh leaf, not a view of the caller's tensor: the optimiser owns these pixels.
            self.images = self.images.detach().clone().requires_grad_(True)

    def __repr__(self) -> str:
        c, h, w = self.images.shape[1:]
        return (f"SyntheticSet({self.dataset!r}: {self.num_classes} classes x {self.ipc} images, "
                f"{c}x{h}x{w}, on {self.device})")

    @property
    def device(self) -> torch.device:
        return self.images.device

    def class_images(self, c: int) -> Tensor:
        """The learnable images of class ``c``: a slice of :attr:`images`, so gradients reach them."""
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < self.num_classes:
            raise ValueError(f"class index {c!r} is out of range; classes are 0..{self.num_classes - 1}")
        return self.images[c * self.ipc : (c + 1) * self.ipc]

    def detached(self) -> tuple[Tensor, Tensor]:
        """Copies of (images, labels) cut from the graph: what evaluation trains on."""
        return self.images.detach().clone(), self.labels.clone()

    def pixels(self) -> Tensor:
        """The images in pixel space, clamped to [0, 1] (for display; learning may leave the range)."""
        images = self.images.detach()
        return denormalise(images, self.mean, self.std).clamp(0.0, 1.0)

    def to(self, device: str | torch.device) -> "SyntheticSet":
        """A copy on ``device`` ('auto' picks CUDA); its images are a new leaf, so build optimisers after."""
        device = resolve_device(device)
        return self._with(self.images.detach().to(device, copy=True), self.labels.to(device, copy=True))

    def clone(self) -> "SyntheticSet":
        """An independent copy (images, labels and metadata), e.g. a snapshot during learning."""
        return self._with(self.images.detach().clone(), self.labels.clone())

    def _with(self, images: Tensor, labels: Tensor) -> "SyntheticSet":
        return SyntheticSet(images.requires_grad_(True), labels, self.ipc, self.num_classes, self.mean, self.std,
                            list(self.class_names), self.dataset, copy.deepcopy(self.metadata))


# ---------------------------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------------------------


def _make_generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator:
    """The generator every random choice draws from: the one given, or a CPU one from ``seed``.

    Neither given means seed 0: an initialisation never depends on hidden global RNG state.
    """
    if generator is not None and seed is not None:
        raise ValueError("give either generator or seed, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    seed = 0 if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return torch.Generator().manual_seed(seed)


def _class_images(dataset: ImageDataset, c: int, init: str) -> Tensor:
    indices = dataset.class_indices(c)
    if len(indices) == 0:
        raise ValueError(f"init {init!r} needs training images of class {c} ({dataset.class_names[c]!r}), "
                         f"but {dataset.name} has none")
    return dataset.train_images[indices]


def _real_images(dataset: ImageDataset, ipc: int, generator: torch.Generator) -> Tensor:
    """``ipc`` distinct random training images of every class, class-ordered."""
    return torch.cat([dataset.sample(c, ipc, generator) for c in range(dataset.num_classes)])


def _class_means(dataset: ImageDataset, ipc: int) -> Tensor:
    """The mean training image of every class, each repeated ``ipc`` times."""
    means = torch.stack([_class_images(dataset, c, "class-mean").mean(0) for c in range(dataset.num_classes)])
    return means.repeat_interleave(ipc, dim=0)


def _constant_images(dataset: ImageDataset, ipc: int, pixel: float) -> Tensor:
    """Every pixel ``pixel`` in pixel space, mapped to normalised space channel by channel."""
    c, (h, w) = dataset.channels, dataset.im_size
    template = torch.full((c, h, w), pixel, dtype=dataset.train_images.dtype, device=dataset.device)
    return dataset.normalise(template).expand(dataset.num_classes * ipc, c, h, w).clone()


def _noise(shape: Sequence[int], generator: torch.Generator, like: Tensor) -> Tensor:
    # Drawn on the generator's device, then moved: a CPU generator gives the same images anywhere.
    return torch.randn(*shape, generator=generator, device=generator.device).to(like.device, like.dtype)


def check_fits_dataset(syn: SyntheticSet, dataset: ImageDataset) -> None:
    """Refuse a set that does not fit ``dataset`` (an ImageDataset, or the DatasetInfo of the
    dataset the set names): other image shapes (channels, height, width) or another number of
    classes. The message names both sides."""
    expected, got = (dataset.channels, *dataset.im_size), tuple(syn.images.shape[1:])
    if got != expected:
        raise ValueError(f"the set's images are {'x'.join(map(str, got))} (channels x height x width) but "
                         f"{dataset.name} images are {'x'.join(map(str, expected))}")
    if syn.num_classes != dataset.num_classes:
        raise ValueError(f"the set has {syn.num_classes} classes but {dataset.name} has {dataset.num_classes}")


# A set being learned costs its images, their gradient and the optimiser's momentum: 3 copies.
COPIES_WHILE_LEARNED = 3


def check_init(dataset: ImageDataset, ipc: int, init: str, device: str | torch.device | None = None) -> None:
    """Refuse, before allocating anything, a set that cannot be made: an unknown init, ``'real'``
    with more images per class than the smallest class has, or a set whose images (learned:
    with their gradient and momentum) do not fit in the device's available memory."""
    _check_ipc(ipc)
    if init not in INIT_NAMES:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INIT_NAMES)}")
    if init == "real":
        counts = [len(dataset.class_indices(c)) for c in range(dataset.num_classes)]
        smallest = min(range(dataset.num_classes), key=counts.__getitem__)
        if ipc > counts[smallest]:
            raise ValueError(f"init 'real' needs {ipc} images per class, but class {smallest} "
                             f"({dataset.class_names[smallest]!r}) of {dataset.name} has only {counts[smallest]}; "
                             f"use ipc <= {counts[smallest]} or another init")
    device = dataset.device if device is None else resolve_device(device)
    images = dataset.num_classes * ipc
    needed = COPIES_WHILE_LEARNED * images * dataset.channels * dataset.im_size[0] * dataset.im_size[1] * 4
    available = available_bytes(device)
    if available is not None and needed > available:
        raise ValueError(f"ipc {ipc} makes {images:,} synthetic images of {dataset.channels}x{dataset.im_size[0]}x"
                         f"{dataset.im_size[1]}, which need at least {needed / 2**30:.1f} GiB while learned (images, "
                         f"gradient, momentum); {device} has {available / 2**30:.1f} GiB available")


def init_synthetic(dataset: ImageDataset, ipc: int, init: str = "noise", *, generator: torch.Generator | None = None,
                   seed: int | None = None, device: str | torch.device | None = None,
                   jitter: float | None = None) -> SyntheticSet:
    """A synthetic set of ``ipc`` images per class of ``dataset``, started by ``init``.

    ``init`` is one of :data:`INIT_NAMES`:

    - ``'noise'``: N(0, 1) in normalised space (DC's default);
    - ``'real'``: ``ipc`` distinct random training images of each class (DSA/DM/MTT's default);
    - ``'black'`` / ``'white'`` / ``'gray'``: every pixel 0, 1 or 0.5 in pixel space, normalised
      with the dataset's mean/std (so black is ``-mean / std`` per channel);
    - ``'class-mean'``: the mean training image of each class, repeated ``ipc`` times.

    Randomness comes from ``generator`` or a fresh CPU generator seeded with ``seed`` (0 when
    neither is given), so a seed fixes the set. ``jitter`` adds N(0, jitter^2) noise to every
    image; by default it is :data:`CLASS_MEAN_JITTER` for 'class-mean' with ipc > 1 (so that copies
    differ and can separate) and 0 otherwise; constant inits with ipc > 1 keep identical copies
    unless a jitter is given. ``device`` defaults to the dataset's.
    """
    check_init(dataset, ipc, init, device)
    if jitter is None:
        jitter = CLASS_MEAN_JITTER if init == "class-mean" and ipc > 1 else 0.0
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or jitter < 0:
        raise ValueError(f"jitter must be a number >= 0, got {jitter!r}")
    gen = _make_generator(generator, seed)
    device = dataset.device if device is None else resolve_device(device)
    c, (h, w) = dataset.channels, dataset.im_size
    shape = (dataset.num_classes * ipc, c, h, w)

    if init == "noise":
        images = _noise(shape, gen, dataset.train_images)
    elif init == "real":
        images = _real_images(dataset, ipc, gen)
    elif init == "class-mean":
        images = _class_means(dataset, ipc)
    else:
        images = _constant_images(dataset, ipc, CONSTANT_PIXELS[init])
    if jitter > 0:
        images = images + jitter * _noise(shape, gen, images)

    metadata = {"init": init, "seed": seed, "jitter": float(jitter)}
    return SyntheticSet(images.to(device).detach().clone().requires_grad_(True),
                        class_ordered_labels(dataset.num_classes, ipc, device), ipc, dataset.num_classes,
                        dataset.mean, dataset.std, dataset.class_names, dataset.name, metadata)


# ---------------------------------------------------------------------------------------------
# Save and load
# ---------------------------------------------------------------------------------------------


def tensor_sha256(tensor: Tensor) -> str:
    """SHA-256 of a tensor's raw bytes (C order), whatever its dtype or device."""
    flat = tensor.detach().cpu().contiguous().view(-1)
    return hashlib.sha256(flat.view(torch.uint8).numpy().tobytes()).hexdigest()


def save_synthetic(syn: SyntheticSet, path: str | os.PathLike, *, provenance: dict | None = None) -> Path:
    """Write ``syn`` (and ``provenance``, stored as ``metadata['provenance']``) to one file, atomically.

    The file is a ``torch.save`` of plain data only (tensors, lists, dicts, strings, numbers), so
    :func:`load_synthetic` reads it with ``weights_only=True``; it carries SHA-256 digests of the
    images and labels that loading verifies. Returns the path written.
    """
    path = Path(path)
    metadata = dict(syn.metadata)
    if provenance is not None:
        metadata["provenance"] = provenance
    metadata = plain_data(metadata, "metadata")
    images, labels = syn.images.detach().cpu().contiguous(), syn.labels.cpu()
    payload = {
        "format": _FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "images": images,
        "labels": labels,
        "images_sha256": tensor_sha256(images),
        "labels_sha256": tensor_sha256(labels),
        "ipc": syn.ipc,
        "num_classes": syn.num_classes,
        "mean": list(syn.mean),
        "std": list(syn.std),
        "class_names": list(syn.class_names),
        "dataset": syn.dataset,
        "metadata": metadata,
    }
    return atomic_torch_save(payload, path)


_PAYLOAD_KEYS = ("images", "labels", "images_sha256", "labels_sha256", "ipc", "num_classes", "mean", "std",
                 "class_names", "dataset", "metadata")


def load_synthetic(path: str | os.PathLike, device: str | torch.device = "cpu") -> SyntheticSet:
    """Read a file written by :func:`save_synthetic`, verify it, and return the set on ``device``.

    Raises :class:`SyntheticFileError` (a ValueError) when the file is not a synthetic set, was
    written by another format version, or its images or labels do not match the stored digests.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no synthetic-set file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors vary: truncated file, foreign objects, not a zip
        raise SyntheticFileError(f"could not read {path} as a synthetic set: {type(error).__name__}: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT_NAME:
        raise SyntheticFileError(f"{path} is not a gmlib synthetic-set file (save it with save_synthetic)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise SyntheticFileError(f"{path} was saved in synthetic-set format version {version!r}, but this gmlib "
                                 f"reads format version {FORMAT_VERSION}; load it with a gmlib of that format "
                                 f"version, or re-create it")
    missing = [key for key in _PAYLOAD_KEYS if key not in payload]
    if missing:
        raise SyntheticFileError(f"{path} lacks {', '.join(missing)}; the file is incomplete")
    for key in ("images", "labels"):
        if not isinstance(payload[key], Tensor):
            raise SyntheticFileError(f"{path} holds {type(payload[key]).__name__} {key}, not a tensor")
        actual = tensor_sha256(payload[key])
        if actual != payload[f"{key}_sha256"]:
            raise SyntheticFileError(f"checksum mismatch for the {key} in {path}: stored sha256 "
                                     f"{payload[f'{key}_sha256']}, computed {actual}; the file is corrupt or "
                                     f"was modified")
    device = resolve_device(device)
    return SyntheticSet(payload["images"].to(device).requires_grad_(True), payload["labels"].to(device),
                        payload["ipc"], payload["num_classes"], payload["mean"], payload["std"],
                        payload["class_names"], payload["dataset"], payload["metadata"])
