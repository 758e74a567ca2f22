"""Writing files so that a crash or Ctrl-C never leaves half of one behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, flushed to disk, then renamed over it.

    The rename is atomic, so readers see the old file or the new one, never a partial write; on
    any failure (including KeyboardInterrupt) the temporary file is removed and the error goes on.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def json_ready(value: Any) -> Any:
    """``value`` as plain JSON data (what json.dump writes and json.load gives back); anything
    JSON cannot hold (paths, devices, dtypes) becomes its string."""
    return json.loads(json.dumps(value, default=str))
