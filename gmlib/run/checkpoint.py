"""Checkpoint files of long runs: written atomically, read back only as plain data.

A checkpoint is one ``torch.save`` of a dict of plain values (tensors, numbers, strings, lists,
dicts), so :func:`load_checkpoint` reads it with ``weights_only=True`` and never runs code from the
file. Writing goes to a temporary file beside the target and then ``os.replace``: a crash or a
Ctrl-C in the middle of a write leaves the previous checkpoint intact, never half a file.

The matching loop (:mod:`gmlib.methods.dc`) decides what goes into its checkpoints; this module only
knows how to keep a dict safely on disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gmlib.fileio import atomic_torch_save

CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, of another kind, or from another run."""


def checkpoint_path(directory: str | os.PathLike) -> Path:
    """Where a run keeps its checkpoint inside ``directory``."""
    return Path(directory) / CHECKPOINT_NAME


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + ``os.replace``); returns the path."""
    return atomic_torch_save(state, path)


def load_checkpoint(path: str | os.PathLike, kind: str) -> dict[str, Any] | None:
    """The state saved at ``path``, or None when there is no file.

    ``kind`` is the value the writer stored under ``"format"``; a file of another kind, or one
    that cannot be read, raises :class:`CheckpointError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated file, foreign pickle, not a zip archive, ...
        raise CheckpointError(f"could not read the checkpoint {path}: {type(error).__name__}: {error}; "
                              f"delete it or start over without resuming") from error
    if not isinstance(state, dict) or state.get("format") != kind:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a {kind!r} checkpoint (found {found!r})")
    return state
