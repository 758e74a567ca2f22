"""Where every random number of gmlib comes from: one rule, used by every method, network and
evaluation.

* A run's iteration ``it`` draws from its own CPU generator seeded from ``(seed, it)``
  (:func:`iteration_generator`): the same numbers on every device, and a checkpoint needs no
  random state.
* Whatever must draw from torch's *global* generator (a network's initialisation, dropout) runs
  inside :func:`seeded` or :func:`global_rng_from`: the global state of the CPU and of every CUDA
  device is set for the block and restored afterwards, so gmlib never depends on, or disturbs,
  anyone else's random state.
"""

from __future__ import annotations

import contextlib
import hashlib
import numbers
from typing import Iterator

import torch


def iteration_seed(seed: int, iteration: int) -> int:
    """The seed of iteration ``iteration`` of a run with ``seed`` (hashed: unrelated streams).
    The text hashed predates this module; changing it would change every run's images."""
    digest = hashlib.sha256(f"gmlib.matching:{seed}:{iteration}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def iteration_generator(seed: int, iteration: int) -> torch.Generator:
    """The CPU generator every random draw of that iteration comes from (same on every device)."""
    return torch.Generator().manual_seed(iteration_seed(seed, iteration))


def draw_seed(generator: torch.Generator) -> int:
    """A seed for something built from ``generator`` (a network, a noise stream, a model)."""
    return int(torch.randint(2**62, (1,), generator=generator, device=generator.device).item())


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with the global RNG seeded by ``seed`` (None: leave it alone), restoring the
    state of the CPU and of every CUDA device afterwards (``manual_seed`` reseeds them all)."""
    if seed is None:
        yield
        return
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(int(seed))
        yield


def global_rng_from(generator: torch.Generator) -> contextlib.AbstractContextManager[None]:
    """:func:`seeded` with a seed drawn from ``generator`` (one draw, before the block's own)."""
    return seeded(draw_seed(generator))
