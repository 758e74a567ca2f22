"""Named configurations shared by the notebooks, the CLI and the benchmarks.

Two kinds of thing live here:

* the papers' settings (:class:`DCSettings`, :func:`dc_loops`), written down once, and
* the compute *profiles* ``ci``, ``cpu``, ``gpu`` and ``paper``: how much of the papers' budget a
  run can afford.  ``auto`` resolves to ``gpu`` when CUDA is present and to ``cpu`` otherwise.

A chapter's ``parameters`` cell holds only ``profile = "auto"`` (and friends); the next cell calls
:func:`get_profile` and reads every budget from the returned frozen dataclass, so a number printed
in the book can always name the profile that produced it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from gmlib.checks import check_int, check_one_of

PROFILE_NAMES = ("ci", "cpu", "gpu", "paper")


@dataclass(frozen=True)
class Profile:
    """A compute budget. Every field is a plain literal so that it prints and serialises."""

    name: str
    description: str
    device: str
    # Evaluation protocol (see gmlib.evaluate): models trained per image set, epochs
    # (None = the protocol's own 300, or 1000 with augmentation), test images (None = all)
    # and the ConvNet width of the evaluated networks (128 in the papers).
    eval_models: int
    eval_epochs: int | None
    eval_test_size: int | None
    eval_width: int
    # Training on real data ("whole set" rows): images per class (None = all) and epochs.
    whole_set_per_class: int | None
    whole_set_epochs: int
    # Distillation budget: outer iterations, real images per class per step, ConvNet width.
    iterations: int
    batch_real: int
    net_width: int
    # Images-per-class values a chapter sweeps over.
    ipcs: tuple[int, ...]

    def __post_init__(self) -> None:
        # Every budget is refused, not warned about, when it is out of range: a profile with
        # negative iterations or zero models has no meaning, and would fail (or print nothing)
        # only deep inside a chapter.
        check_one_of("device", self.device, ("cpu", "cuda"))
        for name in ("eval_models", "eval_width", "whole_set_epochs", "batch_real", "net_width"):
            check_int(name, getattr(self, name), 1)
        check_int("iterations", self.iterations, 0)
        for name in ("eval_epochs", "eval_test_size", "whole_set_per_class"):
            if getattr(self, name) is not None:
                check_int(f"{name} (or None)", getattr(self, name), 1)
        if not isinstance(self.ipcs, tuple) or not self.ipcs:
            raise ValueError(f"ipcs must be a non-empty tuple of images-per-class values, got {self.ipcs!r}")
        for ipc in self.ipcs:
            check_int("each of ipcs", ipc, 1)

    def replace(self, **changes: Any) -> "Profile":
        """A copy with some fields changed; unknown field names raise a clear error."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown profile field(s) {unknown}; allowed: {sorted(known)}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_PROFILES = {
    "ci": Profile(
        name="ci",
        description="smallest budget: real data subsets, each notebook well under a minute on 2 CPU cores",
        device="cpu",
        eval_models=2,
        eval_epochs=30,
        eval_test_size=1000,
        eval_width=32,
        whole_set_per_class=100,
        whole_set_epochs=10,
        iterations=10,
        batch_real=32,
        net_width=32,
        ipcs=(1, 10),
    ),
    "cpu": Profile(
        name="cpu",
        description="a reader's laptop: a few minutes per chapter on a CPU",
        device="cpu",
        eval_models=3,
        eval_epochs=100,
        eval_test_size=None,
        eval_width=64,
        whole_set_per_class=600,
        whole_set_epochs=4,
        iterations=100,
        batch_real=64,
        net_width=64,
        ipcs=(1, 10, 50),
    ),
    "gpu": Profile(
        name="gpu",
        description="one GPU (Colab T4 or better): the papers' networks, fewer models and iterations",
        device="cuda",
        eval_models=10,
        eval_epochs=None,
        eval_test_size=None,
        eval_width=128,
        whole_set_per_class=None,
        whole_set_epochs=20,
        iterations=200,
        batch_real=256,
        net_width=128,
        ipcs=(1, 10, 50),
    ),
    "paper": Profile(
        name="paper",
        description="the papers' settings (GPU hours): 1000 iterations, 100 evaluation models",
        device="cuda",
        eval_models=100,
        eval_epochs=None,
        eval_test_size=None,
        eval_width=128,
        whole_set_per_class=None,
        whole_set_epochs=20,
        iterations=1000,
        batch_real=256,
        net_width=128,
        ipcs=(1, 10, 50),
    ),
}


def resolve_profile_name(name: str) -> str:
    """Map ``auto`` to ``gpu``/``cpu`` and check the name."""
    if name == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if name not in _PROFILES:
        raise ValueError(f"unknown profile {name!r}; allowed: 'auto', " + ", ".join(repr(p) for p in PROFILE_NAMES))
    return name


def get_profile(name: str = "auto", **overrides: Any) -> Profile:
    """The profile called ``name`` ('auto', 'ci', 'cpu', 'gpu', 'paper'), with optional overrides.

    A GPU profile asked for on a machine without CUDA still resolves (so a reader can inspect it),
    but keeps ``device='cuda'``; code that runs it will then fail loudly rather than crawl on a CPU.
    """
    profile = _PROFILES[resolve_profile_name(name)]
    return profile.replace(**overrides) if overrides else profile


# --------------------------------------------------------------------------------------------
# The papers' settings
# --------------------------------------------------------------------------------------------

# (outer_loop, inner_loop) of DC by images per class.
_DC_LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


def dc_loops(ipc: int) -> tuple[int, int]:
    """DC's (outer_loop, inner_loop) for ``ipc`` images per class.

    Values between the published ones take the next published row up; above 50 the literature
    uses (50, 10).
    """
    if not isinstance(ipc, int) or ipc < 1:
        raise ValueError(f"images per class must be an integer >= 1, got {ipc!r}")
    for published in sorted(_DC_LOOPS):
        if ipc <= published:
            return _DC_LOOPS[published]
    return (50, 10)


@dataclass(frozen=True)
class DCSettings:
    """Hyperparameters of DC (Zhao et al.) as the reference description gives them."""

    iterations: int = 1000
    batch_real: int = 256
    lr_img: float = 0.1
    momentum_img: float = 0.5
    lr_net: float = 0.01
    batch_train: int = 256
    init: str = "noise"
    distance: str = "ours"
    bn_real_per_class: int = 16

