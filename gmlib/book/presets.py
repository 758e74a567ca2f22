"""Named configurations shared by the notebooks, the CLI and the benchmarks.

Two kinds of thing live here:

* the compute *profiles* ``ci``, ``cpu``, ``gpu`` and ``paper``: how much of the papers' budget a
  run can afford.  ``auto`` resolves to ``gpu`` when CUDA is present and to ``cpu`` otherwise;
* the one path from a profile to a configuration: :func:`eval_config` (the evaluation protocol a
  profile affords, with the augmentation the papers used for the dataset and method),
  :func:`dc_config` (DC's or DSA's :class:`~gmlib.methods.dc.MatchingConfig`, evaluated with it),
  :func:`dm_config` (distribution matching's :class:`~gmlib.methods.dm.DMConfig`), and for
  trajectory matching :func:`expert_config` (the experts' buffer) and :func:`mtt_config`;
and each chapter's budget per profile is :mod:`gmlib.book.budgets`.

A chapter's ``parameters`` cell holds only ``profile = "auto"`` (and friends); the next cell calls
:func:`get_profile` or :func:`gmlib.book.budgets.chapter_budget` and reads every budget from the returned frozen
dataclass, so a number printed in the book can always name the profile that produced it.

The papers' own settings belong to their methods (DC's: :class:`gmlib.methods.dc_config.DCSettings`
and :func:`gmlib.methods.dc_config.dc_loops`): this module imports the method modules, never the
other way round.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from gmlib.checks import check_int, check_one_of
from gmlib.dsa import dsa_strategy_for
from gmlib.eval_config import EvalConfig, evaluation_augment
from gmlib.methods.dc_config import MatchingConfig
from gmlib.methods.dm import DMConfig
from gmlib.methods.mtt import MTTConfig
from gmlib.methods.mtt_experts import ExpertConfig
from gmlib.networks import filter_network_kwargs

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
    # Distribution matching's iterations: each costs a fraction of a gradient-matching one (one
    # forward pass per side, no inner loop), and the paper runs 20,000.
    dm_iterations: int
    # Trajectory matching's iterations (the paper runs 5,000; each unrolls syn_steps student steps).
    mtt_iterations: int

    def __post_init__(self) -> None:
        # Every budget is refused, not warned about, when it is out of range: a profile with
        # negative iterations or zero models has no meaning, and would fail (or print nothing)
        # only deep inside a chapter.
        check_one_of("device", self.device, ("cpu", "cuda"))
        for name in ("eval_models", "eval_width", "whole_set_epochs", "batch_real", "net_width"):
            check_int(name, getattr(self, name), 1)
        check_int("iterations", self.iterations, 0)
        check_int("dm_iterations", self.dm_iterations, 0)
        check_int("mtt_iterations", self.mtt_iterations, 0)
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
        dm_iterations=50,
        mtt_iterations=20,
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
        dm_iterations=500,
        mtt_iterations=200,
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
        dm_iterations=5_000,
        mtt_iterations=1_000,
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
        dm_iterations=20_000,
        mtt_iterations=5_000,
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



def as_profile(profile: str | Profile) -> Profile:
    """``profile`` itself, or the profile of that name (:func:`get_profile`)."""
    if isinstance(profile, Profile):
        return profile
    if isinstance(profile, str):
        return get_profile(profile)
    raise ValueError(f"profile must be a profile name ('auto', {', '.join(map(repr, PROFILE_NAMES))}) or a "
                     f"gmlib.book.presets.Profile, got {profile!r}")


# --------------------------------------------------------------------------------------------
# From a profile to a configuration
# --------------------------------------------------------------------------------------------


def eval_config(profile: str | Profile, dataset: str, method: str = "dc", network: str = "convnet", *,
                width: int | None = None, **overrides: Any) -> EvalConfig:
    """The evaluation protocol a compute profile affords, for sets of ``dataset`` (a name) distilled
    by ``method`` ('dc', 'dsa', 'dm' or 'mtt'), trained on ``network``.

    The profile sets the epochs (None: the protocol's 300, or 1000 with augmentation), the test
    subset and the ConvNet width (``width`` replaces it; a network without a width ignores it).
    The augmentation is the one the papers used (:func:`gmlib.eval_config.evaluation_augment`):
    DSA's after DSA, DM and MTT, with the dataset's strategy (:func:`gmlib.dsa.dsa_strategy_for`: no flip
    for digits), DC's classic one after DC on MNIST, none otherwise. Keyword ``overrides`` (any
    :class:`~gmlib.eval_config.EvalConfig` field) win; ``augment='dsa'`` among them also takes
    the dataset's strategy unless ``dsa_strategy`` is given too.
    """
    profile = as_profile(profile)
    augment = overrides.pop("augment", None)
    if augment is None:
        augment = evaluation_augment(dataset, method)
    values: dict[str, Any] = dict(
        network=network,
        network_kwargs=filter_network_kwargs(network, {"width": profile.eval_width if width is None else width}),
        epochs=profile.eval_epochs, test_size=profile.eval_test_size, augment=augment,
    )
    if augment == "dsa":
        values["dsa_strategy"] = dsa_strategy_for(dataset)
    values.update(overrides)
    return EvalConfig(**values)


def dc_config(profile: str | Profile, ipc: int, dataset: str, **overrides: Any) -> MatchingConfig:
    """DC's configuration (or DSA's, with ``method='dsa'``) at ``ipc`` images per class of
    ``dataset`` (a name), as a compute profile affords it.

    The profile sets iterations, batch_real, the width of the distillation ConvNet and the
    evaluation: :func:`eval_config` for the dataset, method and network, with the profile's number
    of models. Everything else is DC's reference setting (:class:`~gmlib.methods.dc.MatchingConfig`'s
    defaults). Keyword ``overrides`` (any MatchingConfig field) win over everything.
    """
    profile = as_profile(profile)
    method = overrides.get("method", "dc")
    network = overrides.get("network", "convnet")
    values: dict[str, Any] = dict(
        ipc=ipc, iterations=profile.iterations, batch_real=profile.batch_real,
        network_kwargs=filter_network_kwargs(network, {"width": profile.net_width}),
        eval_config=eval_config(profile, dataset, method, network), eval_models=profile.eval_models,
    )
    values.update(overrides)
    return MatchingConfig(**values)


def dm_config(profile: str | Profile, ipc: int, dataset: str, **overrides: Any) -> DMConfig:
    """DM's configuration at ``ipc`` images per class of ``dataset`` (a name), as a compute profile
    affords it: the profile's ``dm_iterations``, batch_real and network width, evaluated as DM's
    paper does (DSA's augmentation, :func:`eval_config`) with the profile's number of models.
    Everything else is DM's published setting (:class:`~gmlib.methods.dm.DMConfig`'s defaults);
    keyword ``overrides`` (any DMConfig field) win."""
    profile = as_profile(profile)
    network = overrides.get("network", "convnet")
    values: dict[str, Any] = dict(
        ipc=ipc, iterations=profile.dm_iterations, batch_real=profile.batch_real,
        network_kwargs=filter_network_kwargs(network, {"width": profile.net_width}),
        eval_config=eval_config(profile, dataset, "dm", network), eval_models=profile.eval_models,
    )
    values.update(overrides)
    return DMConfig(**values)


# The experts' budget per profile: how many, how long, on how many real images, stored how.
# ci: a buffer in well under a minute on 2 CPU cores; paper: MTT's 100 experts x 50 epochs.
_EXPERT_BUDGETS: dict[str, dict[str, Any]] = {
    "ci": dict(experts=2, epochs=4, real_per_class=200, test_size=500, storage_dtype="float16"),
    "cpu": dict(experts=4, epochs=10, real_per_class=1000, test_size=2000, storage_dtype="float16"),
    "gpu": dict(experts=20, epochs=30),
    "paper": dict(experts=100, epochs=50),
}
# Trajectory matching's settings per profile where they depart from MTTConfig's defaults (the
# paper's general ones): short trajectories for the short experts of the small profiles. At cpu,
# lr_img and expert_epochs are, per dataset, the best of a 3 x 3 grid on a validation split
# (held-out train images, never the test set: experiments/mtt_search.py,
# results/mtt_search_<dataset>/); ci's experts (4 epochs) are too short for that expert_epochs.
_MTT_BUDGETS: dict[str, dict[str, Any]] = {
    "ci": dict(syn_steps=10, expert_epochs=2, max_start_epoch=2),
    "cpu": dict(syn_steps=20, expert_epochs=3, max_start_epoch=6),
    "gpu": dict(max_start_epoch=20),
    "paper": {},
}
_MTT_CPU_LR_IMG = {"mnist": 10_000.0, "fashion-mnist": 1_000.0}


def expert_config(profile: str | Profile, dataset: str, **overrides: Any) -> ExpertConfig:
    """The experts of trajectory matching for ``dataset`` (a name), as a compute profile affords
    them: ci 2 experts x 4 epochs on 200 real images per class, kept in float16 (well under a
    minute on 2 CPU cores); cpu 4 x 10 on 1000 per class; gpu 20 x 30; paper MTT's 100 x 50 on all
    images (SGD lr 0.01, no momentum, batch 256, DSA with the dataset's strategy). The network is
    the profile's ConvNet width. Keyword ``overrides`` (any ExpertConfig field) win."""
    profile = as_profile(profile)
    network = overrides.get("network", "convnet")
    values: dict[str, Any] = dict(network_kwargs=filter_network_kwargs(network, {"width": profile.net_width}),
                                  dsa_strategy=dsa_strategy_for(dataset), **_EXPERT_BUDGETS[profile.name])
    values.update(overrides)
    return ExpertConfig(**values)


def mtt_config(profile: str | Profile, ipc: int, dataset: str, **overrides: Any) -> MTTConfig:
    """Trajectory matching's configuration at ``ipc`` images per class of ``dataset`` (a name), as a
    compute profile affords it: the profile's ``mtt_iterations`` and ConvNet width (the experts' of
    :func:`expert_config`), start and target epochs that fit the profile's experts, evaluated as
    MTT's paper does (DSA's augmentation, :func:`eval_config`) with the profile's number of models.

    At ``cpu`` the pixels' rate and the expert epochs matched were chosen on a validation split of
    each dataset (``experiments/mtt_search.py``: MNIST lr_img 10,000, FashionMNIST 1000, both
    expert_epochs 3). At ``paper`` everything else
    is MTTConfig's defaults, the paper's general values (5000
    iterations, syn_steps 20, expert_epochs 3, max_start_epoch 25, lr_img 1000, lr_lr 1e-5,
    lr_teacher 0.01). MTT's authors published per-setting values only for CIFAR-10, CIFAR-100 and
    larger sets; none for MNIST or FashionMNIST (their code cannot load them), so for those
    datasets ``paper`` is these reference defaults, not a published setting. Keyword
    ``overrides`` (any MTTConfig field) win."""
    profile = as_profile(profile)
    network = overrides.get("network", "convnet")
    values: dict[str, Any] = dict(
        ipc=ipc, iterations=profile.mtt_iterations,
        network_kwargs=filter_network_kwargs(network, {"width": profile.net_width}),
        eval_config=eval_config(profile, dataset, "mtt", network), eval_models=profile.eval_models,
        **_MTT_BUDGETS[profile.name],
    )
    if profile.name == "cpu" and dataset in _MTT_CPU_LR_IMG:
        values["lr_img"] = _MTT_CPU_LR_IMG[dataset]
    values.update(overrides)
    return MTTConfig(**values)
