"""The cache directory and the processed file: one file of uint8 tensors per dataset, with a SHA-256 sidecar.

Layout of the cache (``$GMLIB_DATA_DIR``, default ``~/.cache/gmlib``)::

    <cache>/<dataset>/<official file names>        raw files, verified on every read
    <cache>/<dataset>/<dataset>-uint8-v1.pt        processed tensors
    <cache>/<dataset>/<dataset>-uint8-v1.pt.sha256 its checksum (``sha256sum -c`` format)
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import torch

from gmlib.data.catalogue import DatasetInfo, dataset_info
from gmlib.data.checksums import Checksum, _file_digest
from gmlib.data.errors import DataError, _parsing
from gmlib.data.formats import RawSplits
from gmlib.fileio import atomic_torch_save, atomic_write_text

_PROCESSED_VERSION = 1  # bump when the processed file's layout changes, so old caches are rebuilt


def default_cache_dir() -> Path:
    """``$GMLIB_DATA_DIR`` if set, else ``~/.cache/gmlib``."""
    configured = os.environ.get("GMLIB_DATA_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "gmlib"


def processed_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where the processed uint8 tensors of dataset ``name`` are cached."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / dataset_info(name).name / f"{name}-uint8-v{_PROCESSED_VERSION}.pt"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _save_processed(path: Path, raw: RawSplits, source: str, name: str) -> None:
    """Write the processed file of dataset ``name``, then its SHA-256 sidecar (each atomically)."""
    # The name makes the file say what it holds: a valid file of another dataset must not pass.
    payload = {**dataclasses.asdict(raw), "name": name, "source": source, "version": _PROCESSED_VERSION}
    atomic_torch_save(payload, path)
    atomic_write_text(_sidecar(path), f"{_file_digest(path, 'sha256')}  {path.name}\n")


def _load_processed(path: Path, info: DatasetInfo) -> tuple[RawSplits, str] | None:
    """The verified processed file, or None (with a warning if it exists but fails a check).

    The checksum proves the bytes are the ones written; the recorded name, split sizes and
    class counts prove they are dataset ``info.name``.
    """
    if not path.exists():
        return None
    try:
        _recorded_checksum(path).verify(path)
        with _parsing(path):
            payload = torch.load(path, map_location="cpu", weights_only=True)
            raw = RawSplits(*(payload[key] for key in ("train_images", "train_labels", "test_images", "test_labels")))
            recorded = payload.get("name")
        # Files written before the name was recorded have none. They are kept, not rebuilt (which
        # may need a download): sizes and class counts, checked next, already tell every catalogue
        # dataset apart.
        if recorded is not None and recorded != info.name:
            raise DataError(f"it holds dataset {recorded!r}, expected {info.name!r}")
        raw.check(info, str(path))
        return raw, str(payload.get("source", "unknown source"))
    except (DataError, OSError) as error:
        warnings.warn(f"ignoring the processed cache file {path} ({error}); rebuilding it from the sources",
                      stacklevel=3)
        return None


def _recorded_checksum(path: Path) -> Checksum:
    """The checksum that the sidecar of ``path`` recorded when the file was written."""
    sidecar = _sidecar(path)
    if not sidecar.exists():
        raise DataError(f"its checksum file {sidecar} is missing")
    words = sidecar.read_text(errors="replace").split()  # garbage bytes must give the DataError below
    try:
        checksum = Checksum("sha256", words[0] if words else "")
    except ValueError as error:
        raise DataError(f"{sidecar} does not hold a SHA-256 digest") from error
    # ``sha256sum`` format names the file: a sidecar copied from another file's would verify its copy.
    if len(words) > 1 and words[1].lstrip("*") != path.name:  # '*': sha256sum's binary mode
        raise DataError(f"its checksum file {sidecar} records the digest of {words[1]}, not of {path.name}: "
                        f"it was copied from another file")
    return checksum
