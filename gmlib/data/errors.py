"""The data layer's error type: every failure to obtain or read a dataset raises it."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator


class DataError(RuntimeError):
    """A dataset could not be obtained or a file is corrupt; the message says how to fix it."""


@contextlib.contextmanager
def _parsing(path: Path) -> Iterator[None]:
    """Turn any failure while decoding a (checksum-verified) file into a clear DataError."""
    try:
        yield
    except DataError:
        raise
    except Exception as error:  # a decoder's own exception types vary: gzip, tar, pickle, scipy
        raise DataError(f"could not parse {path}: {type(error).__name__}: {error}") from error
