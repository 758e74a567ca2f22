"""Peak memory and wall time of a block of code, on CUDA or on the CPU.

Unrolled differentiation keeps every inner step's activations alive until the backward pass, so
its memory grows with the number of steps; the implicit hypergradient does not. To show that, a
chapter wraps each method in :func:`track_peak_memory` and reads ``.peak_mib`` and ``.seconds``.

- CUDA: ``torch.cuda.reset_peak_memory_stats`` before, ``torch.cuda.max_memory_allocated`` after
  (tensors allocated by PyTorch on that device; ``kind = "cuda allocated"``).
- CPU: the peak resident set of the whole process during the block (``kind = "cpu resident"``).
  On Linux the high-water mark ``VmHWM`` is reset by writing ``5`` to ``/proc/self/clear_refs``
  and read from ``/proc/self/status`` at exit. Where the reset is impossible the lifetime peak
  (``resource.getrusage``) is reported instead and ``note`` says so: it is then an upper bound
  that includes whatever ran before the block. Before the reset, free heap pages are handed back
  to the kernel (glibc ``malloc_trim``), so memory freed by earlier code does not hide the block's.

CPU numbers include the interpreter, the libraries and every tensor alive in the process, so
compare them between blocks of one process rather than reading them as absolute costs.
"""

from __future__ import annotations

import ctypes
import gc
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from gmlib.runinfo import resolve_device

MEMORY_KINDS = ("cuda allocated", "cpu resident")
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass
class MemoryReport:
    """What :func:`track_peak_memory` measured; the fields are filled when the block exits."""

    kind: str
    peak_mib: float = float("nan")
    # Memory in use when the block started (same kind), so ``peak_mib - start_mib`` is what the block added.
    start_mib: float = float("nan")
    seconds: float = float("nan")
    note: str = ""

    @property
    def added_mib(self) -> float:
        """Peak during the block minus what was in use when it started."""
        return self.peak_mib - self.start_mib

    def __str__(self) -> str:
        extra = f" ({self.note})" if self.note else ""
        return f"peak {self.peak_mib:.1f} MiB {self.kind}, {self.seconds:.2f} s{extra}"


def available_bytes(device: str | torch.device = "cpu") -> int | None:
    """Memory a new allocation can still get on ``device``: free GPU memory on CUDA, the kernel's
    MemAvailable on a Linux CPU; None where it cannot be read."""
    device = resolve_device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _status_mib(field_name: str) -> float | None:
    """A ``kB`` field of /proc/self/status (e.g. VmHWM, VmRSS) in MiB, or None where unavailable."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def _release_free_heap() -> None:
    """Hand freed heap pages back to the kernel (glibc ``malloc_trim``), where that exists.

    Without it, memory freed by an earlier block stays resident, the next block's starting RSS
    includes it, and that block can reuse it without raising the peak: its growth would read 0.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_high_water_mark() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where that is impossible."""
    _release_free_heap()
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    hwm, rss = _status_mib("VmHWM"), _status_mib("VmRSS")
    # After a successful reset the high-water mark equals the current resident set (give or take a page).
    return hwm is not None and rss is not None and hwm <= rss + 1.0


def _lifetime_peak_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


@contextmanager
def track_peak_memory(device: str | torch.device = "cpu") -> Iterator[MemoryReport]:
    """Measure the peak memory and the wall time of the ``with`` block on ``device``.

    Yields a :class:`MemoryReport` whose ``peak_mib``, ``start_mib``, ``seconds`` (and ``note``)
    are filled at exit, also when the block raises.
    """
    device = resolve_device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        report = MemoryReport(kind="cuda allocated", start_mib=torch.cuda.memory_allocated(device) / 2**20)
        start = time.perf_counter()
        try:
            yield report
        finally:
            torch.cuda.synchronize(device)
            report.seconds = time.perf_counter() - start
            report.peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
        return
    if device.type != "cpu":
        raise ValueError(f"track_peak_memory supports devices 'cpu' and 'cuda', got {str(device)!r}")
    gc.collect()  # tensors kept alive only by reference cycles would otherwise count against the block
    resettable = _reset_high_water_mark()
    start_rss = _status_mib("VmRSS")
    report = MemoryReport(kind="cpu resident", start_mib=start_rss if start_rss is not None else float("nan"))
    if not resettable:
        report.note = "peak-RSS reset impossible here: lifetime peak of the process (an upper bound)"
    start = time.perf_counter()
    try:
        yield report
    finally:
        report.seconds = time.perf_counter() - start
        hwm = _status_mib("VmHWM") if resettable else None
        report.peak_mib = hwm if hwm is not None else _lifetime_peak_mib()
