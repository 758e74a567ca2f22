"""Provenance of a number: which hardware, which library versions, how long it took.

Every figure the book prints is followed by a line from :func:`provenance_line`, so a reader
whose result differs can see at once what differed.
"""

from __future__ import annotations

import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``'auto'`` -> CUDA when present, else CPU; anything else is checked and returned."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available; use 'cpu' or 'auto'")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from error


def cpu_model() -> str:
    """The CPU's marketing name (Linux), or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_hardware(device: str | torch.device = "auto") -> str:
    """A one-line description, e.g. ``'CPU: Intel Xeon ... (2 cores, 2 torch threads)'``."""
    device = resolve_device(device)
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"CPU: {cpu_model()} ({cores} cores, {torch.get_num_threads()} torch threads)"


def library_versions() -> dict[str, str]:
    """Versions of the packages that change results: python, torch, numpy, gmlib."""
    import numpy

    from gmlib import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "gmlib": __version__,
    }


@dataclass
class Stopwatch:
    """Accumulates wall-clock seconds over one or more ``with watch.running():`` blocks."""

    seconds: float = 0.0

    @contextmanager
    def running(self) -> Iterator["Stopwatch"]:
        start = time.perf_counter()
        try:
            yield self
        finally:
            self.seconds += time.perf_counter() - start


def provenance_line(profile: str, seed: int, seconds: float | None = None, device: str | torch.device = "auto") -> str:
    """``'profile ci, seed 0, CPU: ..., torch 2.13.0, 12.3 s'``: the line printed under each result."""
    parts = [f"profile {profile}", f"seed {seed}", describe_hardware(device), f"torch {torch.__version__}"]
    if seconds is not None:
        parts.append(f"{seconds:.1f} s")
    return ", ".join(parts)
