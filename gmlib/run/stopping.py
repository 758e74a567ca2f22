"""How a run stops and owns its output folder: SIGTERM handled like Ctrl-C, and one run per folder.

:func:`gmlib.run.loop.run` turns either signal into a last checkpoint (:class:`Terminated` is a
``KeyboardInterrupt``), and holds :func:`folder_lock` while it writes, so two runs can never
interleave their checkpoints in one folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

__all__ = ["FolderInUseError", "LOCK_NAME", "Terminated", "folder_lock", "sigterm_as_interrupt"]

LOCK_NAME = "run.lock"


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (``timeout``, a batch scheduler, a container stop)."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM raises :class:`Terminated` (handled like Ctrl-C) instead of
    killing the process at once; only the main thread can install signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise Terminated(f"received signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class FolderInUseError(RuntimeError):
    """Another run holds the output folder."""


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/run.lock`` for the block; a second run on the folder is refused, naming the
    first. The operating system releases the lock when a process dies, even by SIGKILL."""
    path = folder / LOCK_NAME
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise FolderInUseError(f"{folder} is in use by a running run ({holder}); wait for it to end, stop it, "
                               f"or choose another output folder") from None
    handle.seek(0)
    handle.truncate()
    command = " ".join(sys.argv) if sys.argv and sys.argv[0] else "python"
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                 f"{command}\n")
    handle.flush()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        handle.close()  # closing releases the lock
