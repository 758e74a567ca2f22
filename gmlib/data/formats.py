"""The official file formats (IDX, the MNIST pickle, CIFAR archives, SVHN ``.mat``) parsed into uint8 tensors.

Every parser takes the verified files by name and returns :class:`RawSplits`. scipy is
imported only inside :func:`parse_svhn_mats`.
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from gmlib.data.errors import DataError, _parsing

if TYPE_CHECKING:  # only for annotations: the catalogue itself imports these parsers
    from gmlib.data.catalogue import DatasetInfo


@dataclass
class RawSplits:
    """Both splits as uint8 images (N, C, H, W) and int64 labels: what the cache stores."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor

    @classmethod
    def from_numpy(cls, train_images: np.ndarray, train_labels: np.ndarray,
                   test_images: np.ndarray, test_labels: np.ndarray) -> "RawSplits":
        def tensor(array: np.ndarray, dtype: np.dtype) -> Tensor:
            # A private contiguous copy: torch refuses read-only buffers such as np.frombuffer's.
            return torch.from_numpy(np.array(array, dtype=dtype, order="C", copy=True))

        return cls(tensor(train_images, np.uint8), tensor(train_labels, np.int64),
                   tensor(test_images, np.uint8), tensor(test_labels, np.int64))

    def check(self, info: DatasetInfo, origin: str) -> None:
        """Raise :class:`DataError` unless shapes, dtypes, labels, split sizes and class counts fit ``info``.

        Sizes and per-class counts check identity, not only form: FashionMNIST has MNIST's
        shapes and classes but not its counts. The message names a catalogue dataset the
        splits fit instead, if any.
        """
        problem = self._problem(info)
        if problem is None:
            return
        # Imported here: the catalogue imports this module's parsers.
        from gmlib.data.catalogue import DATASET_NAMES, dataset_info
        alike = [name for name in DATASET_NAMES if name != info.name and self._problem(dataset_info(name)) is None]
        hint = f"; it looks like {' or '.join(alike)}, not {info.name}" if alike else ""
        raise DataError(f"{origin}: {problem}{hint}")

    def _problem(self, info: DatasetInfo) -> str | None:
        """The first way these splits differ from what ``info`` says, or None if they fit."""
        shape = (info.channels, *info.im_size)
        for split, images, labels, size, counts in (
                ("train", self.train_images, self.train_labels, info.train_size, info.train_class_counts),
                ("test", self.test_images, self.test_labels, info.test_size, info.test_class_counts)):
            if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != shape:
                return (f"{split} images are {images.dtype} {tuple(images.shape)}, "
                        f"expected uint8 (N, {', '.join(map(str, shape))})")
            if labels.dtype != torch.int64 or tuple(labels.shape) != (len(images),):
                return f"{split} labels are {labels.dtype} {tuple(labels.shape)}, expected int64 ({len(images)},)"
            if len(labels) == 0:
                return f"the {split} split is empty"
            if labels.min() < 0 or labels.max() >= info.num_classes:
                return (f"{split} labels range over [{int(labels.min())}, {int(labels.max())}], "
                        f"expected [0, {info.num_classes - 1}]")
            if len(images) != size:
                return f"the {split} split has {len(images)} images, expected {size} ({info.name}'s official split)"
            if counts is not None:
                found = torch.bincount(labels, minlength=info.num_classes).tolist()
                wrong = [c for c in range(info.num_classes) if found[c] != counts[c]]
                if wrong:
                    shown = "; ".join(f"class {c} {info.class_names[c]!r} has {found[c]} images, expected {counts[c]}"
                                      for c in wrong[:3])  # a few are enough to see the pattern
                    return (f"the {split} split's images per class differ from {info.name}'s: {shown} "
                            f"({len(wrong)} of {info.num_classes} classes differ)")
        return None


_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, H, W)
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Read a gzipped IDX file: a big-endian header (magic, one uint32 size per axis), then bytes."""
    with _parsing(path), gzip.open(path, "rb") as stream:
        data = stream.read()
    ndim = magic & 0xFF
    header_length = 4 + 4 * ndim
    if len(data) < header_length:
        raise DataError(f"{path} is truncated: {len(data)} bytes, shorter than its {header_length}-byte IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{path} has IDX magic number {found:#010x}, expected {magic:#010x}: "
                        f"not the right IDX file")
    sizes = struct.unpack(f">{ndim}I", data[4:header_length])
    promised, present = math.prod(sizes), len(data) - header_length
    if present != promised:
        raise DataError(f"{path} holds {present} data bytes but its header promises {promised} "
                        f"({' x '.join(map(str, sizes))}): the file is truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8, offset=header_length).reshape(sizes)


def parse_idx_files(files: Mapping[str, Path]) -> RawSplits:
    """MNIST/FashionMNIST: the four ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` files."""
    def split(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        images = _read_idx(files[f"{prefix}-images-idx3-ubyte.gz"], _IDX_IMAGES_MAGIC)
        labels = _read_idx(files[f"{prefix}-labels-idx1-ubyte.gz"], _IDX_LABELS_MAGIC)
        if len(images) != len(labels):
            raise DataError(f"{prefix} split: {len(images)} images but {len(labels)} labels")
        return images[:, None], labels  # add the channel axis

    return RawSplits.from_numpy(*split("train"), *split("t10k"))


def _pixels_from_256ths(x: np.ndarray, path: Path) -> np.ndarray:
    """Exactly invert the pickle's ``pixel / 256`` scaling (refusing anything that is not)."""
    scaled = x.astype(np.float32) * np.float32(256)
    pixels = np.rint(scaled)
    if pixels.min() < 0 or pixels.max() > 255 or np.abs(scaled - pixels).max() > 1e-3:
        raise DataError(f"{path}: values are not pixel/256 for pixels in 0..255")
    return pixels.astype(np.uint8).reshape(-1, 1, 28, 28)


def parse_mnist_pickle(files: Mapping[str, Path]) -> RawSplits:
    """MNIST from ``mnist.pkl.gz``: (train, valid, test) pairs; train + valid is the official train split."""
    path = files["mnist.pkl.gz"]
    # Unpickling can run code: this only ever sees files whose checksum was verified first.
    with _parsing(path), gzip.open(path, "rb") as stream:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pickle.load(stream, encoding="latin1")
    return RawSplits.from_numpy(_pixels_from_256ths(np.concatenate([train_x, valid_x]), path),
                                np.concatenate([train_y, valid_y]),
                                _pixels_from_256ths(test_x, path), test_y)


def _str_keys(batch: Mapping) -> dict[str, object]:
    # Batches pickled under Python 2 may come back with bytes keys.
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}


def parse_cifar_archive(files: Mapping[str, Path], *, archive: str, folder: str,
                        train_batches: Sequence[str], test_batches: Sequence[str],
                        label_key: str, meta: str, names_key: str,
                        class_names: Sequence[str]) -> RawSplits:
    """CIFAR-10/100 'python version': a tar.gz of pickled dicts ``data`` (N, 3072) uint8 + labels."""
    path = files[archive]
    # Unpickling can run code: this only ever sees files whose checksum was verified first.
    with _parsing(path), tarfile.open(path, "r:gz") as tar:
        def unpickle(member: str) -> dict[str, object]:
            stream = tar.extractfile(f"{folder}/{member}")  # KeyError names a missing member
            if stream is None:
                raise DataError(f"{path}: {folder}/{member} is not a regular file")
            return _str_keys(pickle.load(stream, encoding="latin1"))

        train = [unpickle(member) for member in train_batches]
        test = [unpickle(member) for member in test_batches]
        names = [str(name) for name in unpickle(meta)[names_key]]
    if names != list(class_names):
        raise DataError(f"{path}: the meta file lists classes {names}, expected {list(class_names)}")

    def join(batches: list[dict[str, object]]) -> tuple[np.ndarray, np.ndarray]:
        with _parsing(path):
            images = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
            labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
            return images.reshape(-1, 3, 32, 32), labels  # rows are R plane, G plane, B plane

    return RawSplits.from_numpy(*join(train), *join(test))


def parse_svhn_mats(files: Mapping[str, Path]) -> RawSplits:
    """SVHN cropped digits: ``X`` (32, 32, 3, N) uint8 and ``y`` (N, 1) with 10 meaning digit 0."""
    from scipy.io import loadmat  # lazy: only SVHN needs scipy

    def split(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = files[name]
        with _parsing(path):
            mat = loadmat(path)
            images, labels = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
        if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.shape[3] != len(labels):
            raise DataError(f"{path}: X is {images.shape} and y has {len(labels)} labels, "
                            f"expected X (32, 32, 3, N) with N labels")
        labels = labels.astype(np.int64)
        labels[labels == 10] = 0
        return images.transpose(3, 2, 0, 1), labels  # (H, W, C, N) -> (N, C, H, W)

    return RawSplits.from_numpy(*split("train_32x32.mat"), *split("test_32x32.mat"))
