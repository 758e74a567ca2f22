"""Provenance of a number: which hardware, which library versions, how long it took.

Every figure the book prints is followed by a line from :func:`provenance_line`, so a reader
whose result differs can see at once what differed; every stored set carries the record of
:func:`make_provenance` (method, preset, seed, code version and git commit, libraries, hardware,
time).
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from gmlib.fileio import plain_data


def available_devices() -> list[str]:
    """The device names this machine can run on: 'cpu', then 'cuda:N' and 'mps' where present."""
    devices = ["cpu"] + [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``'auto'`` -> CUDA when present, else CPU; anything else is checked against what this
    machine has (a ValueError names the device and the ones available). A ``torch.device`` is
    taken as given: code that builds one (the meta device, say) means it."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r}; use 'auto' or one of: {', '.join(available_devices())}") from error
    named = f"{resolved.type}:{resolved.index}" if resolved.type == "cuda" and resolved.index is not None else resolved.type
    if resolved.type == "cuda" and torch.cuda.is_available() and resolved.index is None:
        return resolved
    if named not in available_devices():
        raise ValueError(f"device {str(device)!r} is not available on this machine; use 'auto' or one of: "
                         f"{', '.join(available_devices())}")
    return resolved


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



GIT_TIMEOUT_S = 2.0


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the gmlib checkout this code runs from; (None, None) when not in one.

    Only a repository whose top level holds this very ``gmlib`` package counts: an installed gmlib
    inside someone else's repository must not report that repository's commit.
    """
    package_root = Path(__file__).resolve().parent.parent
    out = _git(["rev-parse", "--show-toplevel", "HEAD"], package_root)
    if out is None or len(out.splitlines()) != 2:
        return None, None
    top, commit = out.splitlines()
    if Path(top).resolve() != package_root:
        return None, None
    status = _git(["status", "--porcelain", "--untracked-files=no"], package_root)
    return commit, (None if status is None else bool(status))


def make_provenance(method: str, preset: str, seed: int | None, iterations: int | None,
                    wall_time_s: float | None, extra: dict | None = None, *,
                    device: str | torch.device = "auto") -> dict:
    """What produced a synthetic set, as plain data to store with it.

    Keys: method, preset (the named preset or profile), seed, iterations, wall_time_s,
    code_version (gmlib version, git commit and whether the checkout had local changes; commit None
    outside a git checkout), library_versions, hardware (of ``device``), date (UTC, ISO 8601),
    and extra (any further plain values, e.g. the distance used).
    """
    from gmlib import __version__

    commit, dirty = git_commit()
    provenance = {
        "method": method,
        "preset": preset,
        "seed": seed,
        "iterations": iterations,
        "wall_time_s": None if wall_time_s is None else float(wall_time_s),
        "code_version": {"gmlib": __version__, "git_commit": commit, "git_dirty": dirty},
        "library_versions": library_versions(),
        "hardware": describe_hardware(device),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "extra": dict(extra or {}),
    }
    return plain_data(provenance, "provenance")
