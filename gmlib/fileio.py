"""Writing files so that a crash or Ctrl-C never leaves half of one behind."""

from __future__ import annotations

import json
import numbers
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

import torch


def with_user_permissions(path: str | os.PathLike) -> None:
    """Give a file made by ``tempfile`` (always 0600) the permissions a plain ``open`` would give
    it under the user's umask (typically 0644), so outputs are as readable as any other file."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def check_writable_folder(folder: str | os.PathLike) -> Path:
    """Make ``folder`` (and its parents) and prove a file can be written in it, or raise a
    ValueError saying why not: checked before a long run, not after it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder: choose another output folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(f"cannot write into {folder}: {error.strerror or error}") from None
    return folder


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(handle)`` into a temporary file beside it, flushed to disk,
    then renamed over it: readers see the old file or the new one, never a partial write. On any
    failure (including KeyboardInterrupt) the temporary file is removed and the error goes on.
    The file gets the user's normal permissions. Every writer of results in gmlib uses this."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        with_user_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` of ``obj`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda handle: handle.write(text.encode()))


def json_ready(value: Any) -> Any:
    """``value`` as plain JSON data (what json.dump writes and json.load gives back); anything
    JSON cannot hold (paths, devices, dtypes) becomes its string."""
    return json.loads(json.dumps(value, default=str))


def plain_data(value: Any, where: str) -> Any:
    """A copy of ``value`` made of only what ``torch.load(weights_only=True)`` reads back.

    Subclasses are converted to their base type (torch.__version__ is a str subclass that the safe
    loader refuses; numpy scalars become Python numbers); anything else is a clear ValueError.
    """
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, str):
        return str(value)
    if isinstance(value, numbers.Integral):  # bool was handled above; numpy integers land here
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        items = [plain_data(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items  # named tuples become plain ones
    if isinstance(value, dict):
        for key in value:
            if type(key) is not str:
                raise ValueError(f"{where} has key {key!r}; metadata keys must be strings")
        return {key: plain_data(item, f"{where}[{key!r}]") for key, item in value.items()}
    raise ValueError(f"{where} is a {type(value).__name__}; metadata may hold only None, bool, int, float, "
                     f"str, tensors, lists, tuples and dicts")
