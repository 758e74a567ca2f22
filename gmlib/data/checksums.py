"""Checksums: expected digests, verifying files against them, and verified atomic copies."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from gmlib.data.errors import DataError
from gmlib.fileio import with_user_permissions


class ChecksumError(DataError):
    """A file's checksum differs from the published one.

    ``path`` is the corrupt file left on disk, or None when the corrupt bytes were not kept
    (a download or an extraction that failed verification).
    """

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


_DIGEST_LENGTHS = {"sha256": 64, "md5": 32}


@dataclass(frozen=True)
class Checksum:
    """An expected digest: ``Checksum("sha256", "ab12...")`` or ``Checksum("md5", ...)``.

    md5 only where upstream publishes nothing stronger (it still catches corruption).
    """

    algorithm: str
    hexdigest: str

    def __post_init__(self) -> None:
        if self.algorithm not in _DIGEST_LENGTHS:
            raise ValueError(f"unknown checksum algorithm {self.algorithm!r}; use one of {sorted(_DIGEST_LENGTHS)}")
        digits = self.hexdigest.lower()
        if len(digits) != _DIGEST_LENGTHS[self.algorithm] or any(c not in "0123456789abcdef" for c in digits):
            raise ValueError(f"{self.hexdigest!r} is not a {self.algorithm} hex digest "
                             f"({_DIGEST_LENGTHS[self.algorithm]} hex digits)")
        object.__setattr__(self, "hexdigest", digits)

    @classmethod
    def of_file(cls, path: str | Path, algorithm: str = "sha256") -> "Checksum":
        """The checksum a file has now (to pin a file of your own)."""
        return cls(algorithm, _file_digest(Path(path), algorithm))

    def check(self, actual: str, what: str, path: Path | None = None) -> None:
        """Raise :class:`ChecksumError` naming ``what`` unless ``actual`` matches.

        ``path``: the file on disk that holds the bytes, if it stays there.
        """
        if actual != self.hexdigest:
            advice = "delete it so that it is fetched again" if path is not None else "it was not kept"
            raise ChecksumError(f"checksum mismatch for {what}: expected {self.algorithm} {self.hexdigest}, "
                                f"got {actual}. The file is corrupt or incomplete (e.g. an interrupted "
                                f"download); {advice}", path)

    def verify(self, path: Path) -> None:
        """Raise :class:`ChecksumError` unless the file at ``path`` has this checksum."""
        self.check(_file_digest(path, self.algorithm), str(path), path)


def _hasher(algorithm: str):  # -> a hashlib object
    # usedforsecurity=False keeps md5 usable on FIPS machines: here it guards integrity only.
    return hashlib.new(algorithm, usedforsecurity=False)


def _file_digest(path: Path, algorithm: str) -> str:
    hasher = _hasher(algorithm)
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def _copy_verified(stream: BinaryIO, target: Path, checksum: Checksum, origin: str,
                   progress: Callable[[int], object] | None = None, kept: Path | None = None) -> None:
    """Copy ``stream`` to ``target`` atomically, only if its checksum matches.

    The bytes go to a temporary file next to ``target`` that is renamed only after
    verification, so an interrupted or corrupt transfer never leaves a file in the cache.
    ``kept``: the file ``stream`` is read from, if it stays on disk (a mismatch then names it).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    hasher = _hasher(checksum.algorithm)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=target.name + ".", suffix=".part",
                                     delete=False) as partial:
        try:
            while chunk := stream.read(1 << 20):
                hasher.update(chunk)
                partial.write(chunk)
                if progress is not None:
                    progress(len(chunk))
            partial.close()
            checksum.check(hasher.hexdigest(), origin, kept)
            _publish(Path(partial.name), target)
        finally:
            Path(partial.name).unlink(missing_ok=True)


def _publish(partial: Path, target: Path) -> None:
    """Atomically move a finished temporary file into place, readable by everyone like a normal file."""
    with_user_permissions(partial)  # temporary files start private (0600); a shared cache must not
    os.replace(partial, target)
