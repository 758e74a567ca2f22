"""Loading a dataset by name: the processed cache if it verifies, else the first source that works."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from gmlib.data.cache import _load_processed, _save_processed, processed_path
from gmlib.data.catalogue import DatasetInfo, dataset_info, default_sources
from gmlib.data.checksums import ChecksumError
from gmlib.data.container import ImageDataset, _normalise
from gmlib.data.errors import DataError
from gmlib.data.formats import RawSplits
from gmlib.data.sources import Source
from gmlib.runinfo import resolve_device


def load_dataset(name: str, device: str | torch.device = "cpu", cache_dir: str | Path | None = None, *,
                 download: bool = True, sources: Sequence[Source] | None = None) -> ImageDataset:
    """Load dataset ``name`` (one of :data:`DATASET_NAMES`) as a normalised, class-indexed container.

    The processed cache is used when present and verified; otherwise ``sources`` (default:
    :func:`default_sources`) are tried in order and the first that works is cached.
    ``download=False`` reads only what is already on this machine. Raises :class:`DataError`.
    """
    info = dataset_info(name)
    target_device = resolve_device(device)
    processed = processed_path(name, cache_dir)
    loaded = _load_processed(processed, info)
    if loaded is None:
        chosen = default_sources(name) if sources is None else tuple(sources)
        loaded = _load_from_sources(info, chosen, processed.parent, download)
        try:
            _save_processed(processed, *loaded, name)
        except OSError as error:  # a read-only cache only costs speed
            warnings.warn(f"could not write the processed cache {processed}: {error}", stacklevel=2)
    raw, source = loaded

    def prepare(pixels: Tensor) -> Tensor:
        # Move uint8 (4x smaller than float) to the device first, then convert there.
        return _normalise(pixels.to(target_device).float().div_(255), info.mean, info.std)

    return ImageDataset(name, prepare(raw.train_images), raw.train_labels.to(target_device),
                        prepare(raw.test_images), raw.test_labels.to(target_device),
                        info.mean, info.std, list(info.class_names), source)


def _load_from_sources(info: DatasetInfo, sources: Sequence[Source], dataset_dir: Path,
                       download: bool) -> tuple[RawSplits, str]:
    """The first source that yields valid splits, or a DataError that reports every failure."""
    failures: list[tuple[Source, Exception]] = []
    for source in sources:
        try:
            raw = source.load(dataset_dir, download)
            raw.check(info, source.description)
        except (DataError, OSError) as error:
            failures.append((source, error))
            continue
        corrupt = [f"{s.description}: {e}" for s, e in failures if isinstance(e, ChecksumError)]
        if corrupt:  # corruption deserves attention even when a later source worked
            warnings.warn(f"{info.name} loaded from {source.description}, but earlier sources had corrupt files: "
                          + "; ".join(corrupt), stacklevel=3)
        return raw, source.description
    raise DataError(_every_source_failed(info.name, failures, dataset_dir, download))


def _every_source_failed(name: str, failures: list[tuple[Source, Exception]], dataset_dir: Path,
                         download: bool) -> str:
    lines = [f"could not load dataset {name!r}: every source failed."]
    for number, (source, error) in enumerate(failures, start=1):
        lines += [f"  {number}. {source.description}",
                  f"     failed: {error}",
                  f"     fix: {_how_to_fix(source, error, dataset_dir)}"]
    if not failures:
        lines.append("  (no sources were given)")
    if not download:
        lines.append("download=False was given: nothing was downloaded; try download=True.")
    lines.append(f"Cache directory: {dataset_dir.parent} (set GMLIB_DATA_DIR or pass cache_dir= to use another).")
    return "\n".join(lines)


def _how_to_fix(source: Source, error: Exception, dataset_dir: Path) -> str:
    """The fix for this failure: a corrupt file needs replacing, whatever the source's usual fix."""
    if not isinstance(error, ChecksumError):
        return source.how_to_fix(dataset_dir)
    if error.path is None:  # the corrupt bytes were never kept
        return (f"nothing corrupt was kept: rerun to fetch it again; if it is corrupt again, put a good copy "
                f"in {dataset_dir}")
    if error.path.parent == dataset_dir:  # in the cache: a rerun fetches it again
        return (f"delete the corrupt file {error.path} and rerun so that it is fetched again "
                f"(or copy a good copy of it there)")
    # Outside the cache (a package's files): nothing here refetches it.
    return (f"replace the corrupt file {error.path} with a good copy, e.g. by reinstalling what installed it "
            f"({source.how_to_fix(dataset_dir)})")
