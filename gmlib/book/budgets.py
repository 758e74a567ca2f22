"""Each chapter's budget per profile: a chapter that runs many distillations cannot afford its
profile's budget for each of them, so it has its own, as a frozen dataclass whose methods return the
chapter's ready configurations (built through :mod:`gmlib.book.presets`, the one path from a
profile to a configuration). :func:`chapter_budget` looks them up by chapter number."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gmlib.book.presets import Profile, as_profile, dc_config, dm_config, eval_config, expert_config, mtt_config
from gmlib.book.published import DISTANCES_SEED002_TABLE2
from gmlib.checks import check_int, check_one_of
from gmlib.eval_config import EvalConfig
from gmlib.methods.bilevel import ImplicitConfig, UnrollConfig
from gmlib.methods.dc_config import MatchingConfig
from gmlib.methods.dm import DMConfig
from gmlib.methods.gtn import GTNConfig
from gmlib.methods.mtt import MTTConfig
from gmlib.methods.mtt_experts import ExpertConfig
from gmlib.studies.crossarch import DC_CROSS_ARCH_NETWORKS
from gmlib.studies.grid import GRID_METHODS, GridBudget
from gmlib.studies.protocol import CHAPTER_12_VARIANTS, STUDY_VARIANTS

# --------------------------------------------------------------------------------------------
# The chapters' budgets
# --------------------------------------------------------------------------------------------
#
# A chapter that runs many distillations cannot afford its profile's budget for each of them, so
# it has its own per profile. Each is a frozen dataclass: ``profile`` is the profile the chapter
# runs at (with the chapter's cuts applied where it makes them), the other fields are the chapter's
# numbers, and the methods return the chapter's ready configurations. The values live in the
# ``_..._BUDGETS`` tables below. A profile missing from a table keeps what its class's
# ``for_profile`` says: chapters 0, 3, 5, 6, 7, 8 and 9 then run the profile's own budget, chapter 4 the gpu row.

# The distances of seed 002's Table 2 and the settings (columns) of its Table 3.
SEED002_DISTANCES: tuple[str, ...] = tuple(DISTANCES_SEED002_TABLE2)  # d1, d2, d3, 100*d4, d1+d2, d1+d3, d1+100*d4
SEED002_SETTINGS: tuple[str, ...] = ("dc", "M", "MD", "MDO", "MDA")


def _loops(loops: tuple[int, int] | None) -> dict[str, int]:
    """MatchingConfig fields for (outer_loop, inner_loop); None keeps DC's for the ipc."""
    return {} if loops is None else dict(outer_loop=loops[0], inner_loop=loops[1])


def _check_loops(name: str, loops: Any) -> None:
    if loops is None:
        return
    if not isinstance(loops, tuple) or len(loops) != 2:
        raise ValueError(f"{name} must be None or a pair (outer_loop, inner_loop), got {loops!r}")
    check_int(f"{name}[0] (outer_loop)", loops[0], 1)
    check_int(f"{name}[1] (inner_loop)", loops[1], 0)


def _check_names(name: str, values: Any) -> None:
    if not isinstance(values, tuple) or not values or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name} must be a non-empty tuple of names, got {values!r}")


@dataclass(frozen=True)
class ChapterBudget:
    """What the chapter budgets share: the profile they belong to, a printable view, a checked copy."""

    chapter: ClassVar[str] = ""
    profile: Profile = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.profile, Profile):
            raise ValueError(f"profile must be a gmlib.book.presets.Profile, got {self.profile!r}")

    def _check_counts(self, low: int, *names: str) -> None:
        for name in names:
            check_int(name, getattr(self, name), low)

    def _check_optional_counts(self, *names: str) -> None:
        for name in names:
            if getattr(self, name) is not None:
                check_int(f"{name} (or None)", getattr(self, name), 1)

    @staticmethod
    def _profile_and_values(profile: Profile, defaults: dict[str, Any], table: dict[str, dict[str, Any]],
                            iterations: int | None = None) -> tuple[Profile, dict[str, Any]]:
        """The chapter's profile and numbers at ``profile``: ``defaults`` updated by the profile's row
        of the chapter's ``table``, whose ``profile_changes`` (if any) cut the profile itself;
        ``iterations`` (the chapter's parameter) then replaces the profile's iterations."""
        values = {"profile_changes": {}, **defaults, **table.get(profile.name, {})}
        profile = profile.replace(**values.pop("profile_changes"))
        if iterations is not None:
            profile = profile.replace(iterations=iterations)
        return profile, values

    def as_dict(self) -> dict[str, Any]:
        """The chapter's numbers (every field but ``profile``), in field order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "profile"}

    def replace(self, **changes: Any) -> "ChapterBudget":
        """A copy with some fields changed (checked again); unknown field names raise a clear error."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown field(s) {unknown} of {type(self).__name__}; allowed: {sorted(known)}")
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TenImageRunBudget(ChapterBudget):
    """A chapter budget with a DC-style run at ten images per class: its ``ipc10_iterations`` and
    its (outer, inner) ``ipc10_loops`` (None: the method's own, DC's (10, 50)). One such iteration
    costs about fifty of one image per class, so the small profiles cut both."""

    ipc10_iterations: int
    ipc10_loops: tuple[int, int] | None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_counts(0, "ipc10_iterations")
        _check_loops("ipc10_loops", self.ipc10_loops)

    def _ipc10_config(self, dataset: str, values: dict[str, Any], overrides: dict[str, Any]) -> MatchingConfig:
        """The ten-image run's configuration: this budget's iterations and loops, then the
        chapter's ``values`` (e.g. when to evaluate), then the caller's ``overrides``."""
        base = dict(iterations=self.ipc10_iterations, **_loops(self.ipc10_loops))
        return dc_config(self.profile, 10, dataset, **{**base, **values, **overrides})


_PROBLEM_BUDGETS: dict[str, dict[str, Any]] = {
    # At cpu the coreset sweep (2 methods x 1, 10, 50 images per class) trains 18 networks, those
    # of 50 images per class for most of the chapter's time.
    "cpu": dict(profile_changes=dict(eval_models=2, eval_test_size=2000)),
}


@dataclass(frozen=True)
class ProblemBudget(ChapterBudget):
    """Chapter 0 (the problem, the protocol and the coreset baselines). It evaluates two protocols,
    three networks on a real subset and six coresets, so cpu cuts the profile's evaluation to two
    models and a fixed 2,000-image test subset; the other profiles run their own."""

    chapter: ClassVar[str] = "00"

    @classmethod
    def for_profile(cls, profile: str | Profile) -> "ProblemBudget":
        """The budget at ``profile``."""
        profile, values = cls._profile_and_values(as_profile(profile), {}, _PROBLEM_BUDGETS)
        return cls(profile=profile, **values)


_BILEVEL_BUDGETS: dict[str, dict[str, Any]] = {
    "ci": dict(steps=(1, 3, 6), iterations=2, width=16, batch_real=32, eval_models=1, eval_epochs=30),
    "cpu": dict(steps=(1, 2, 5, 10), iterations=30, width=16, batch_real=128, eval_models=2, eval_epochs=100),
    "gpu": dict(steps=(1, 2, 5, 10, 20), iterations=200, width=128, batch_real=256, eval_models=5, eval_epochs=None),
    "paper": dict(steps=(1, 2, 5, 10, 20), iterations=1000, width=128, batch_real=256, eval_models=15,
                  eval_epochs=None),
}


@dataclass(frozen=True)
class BilevelBudget(ChapterBudget):
    """Chapter 1 (bi-level: unroll vs IFT on MNIST). Unrolling is expensive, so every profile has
    its own: the step counts N swept (``steps``), outer steps per point, the distillation ConvNet's
    width and real batch, and the evaluation (models, epochs; the profile's test subset)."""

    chapter: ClassVar[str] = "01"
    IPC: ClassVar[int] = 10  # the chapter distils ten images per class
    steps: tuple[int, ...]
    iterations: int
    width: int
    batch_real: int
    eval_models: int
    eval_epochs: int | None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.steps, tuple) or not self.steps:
            raise ValueError(f"steps must be a non-empty tuple of step counts, got {self.steps!r}")
        for n in self.steps:
            check_int("each of steps", n, 1)
        self._check_counts(0, "iterations")
        self._check_counts(1, "width", "batch_real", "eval_models")
        self._check_optional_counts("eval_epochs")

    @classmethod
    def for_profile(cls, profile: str | Profile) -> "BilevelBudget":
        profile = as_profile(profile)
        return cls(profile=profile, **_BILEVEL_BUDGETS[profile.name])

    def _distill_values(self) -> dict[str, Any]:
        return dict(ipc=self.IPC, iterations=self.iterations, batch_real=self.batch_real,
                    network_kwargs={"width": self.width})

    def unroll_config(self, inner_steps: int, **overrides: Any) -> UnrollConfig:
        """Unroll through ``inner_steps`` steps at this budget; ``overrides`` (e.g. image_init,
        init_mode) win."""
        return UnrollConfig(**{**self._distill_values(), "inner_steps": inner_steps, **overrides})

    def implicit_config(self, inner_steps: int, **overrides: Any) -> ImplicitConfig:
        """IFT after ``inner_steps`` student steps at this budget; ``overrides`` win."""
        return ImplicitConfig(**{**self._distill_values(), "inner_steps": inner_steps, **overrides})

    def eval_config(self) -> EvalConfig:
        """The chapter's evaluation: ConvNets of the distillation's width, no augmentation."""
        return eval_config(self.profile, "mnist", width=self.width, epochs=self.eval_epochs, augment="none")


_GRADIENT_MATCHING_BUDGETS: dict[str, dict[str, Any]] = {
    "ci": dict(ipc10_iterations=1),
    # At DC's loops one ten-image iteration took about 80 s here: ten of them were 80 % of the chapter.
    "cpu": dict(ipc10_iterations=5, ipc10_loops=(10, 10)),
}


@dataclass(frozen=True)
class GradientMatchingBudget(TenImageRunBudget):
    """Chapter 2 (gradient matching). DC at one image per class with the profile's budget, and at
    ten images per class with ``ipc10_iterations`` and ``ipc10_loops``, evaluated at its start and
    end. ci and cpu cut the ten-image run (cpu: five iterations, 10 network epochs between outer
    steps instead of 50); gpu and paper run the profile's iterations with DC's loops."""

    chapter: ClassVar[str] = "02"

    @classmethod
    def for_profile(cls, profile: str | Profile) -> "GradientMatchingBudget":
        """The budget at ``profile``."""
        profile = as_profile(profile)
        defaults = dict(ipc10_iterations=profile.iterations, ipc10_loops=None)
        profile, values = cls._profile_and_values(profile, defaults, _GRADIENT_MATCHING_BUDGETS)
        return cls(profile=profile, **values)

    def ipc10_config(self, dataset: str, **overrides: Any) -> MatchingConfig:
        """DC at ten images per class with this budget's iterations and loops, evaluated at its start
        and end."""
        return self._ipc10_config(dataset, dict(eval_at=(0, self.ipc10_iterations)), overrides)


_WHAT_HOW_WHERE_BUDGETS: dict[str, dict[str, Any]] = {
    "ci": dict(profile_changes=dict(iterations=2, eval_models=2), ipc10_iterations=1, ipc10_loops=(3, 50),
               distances=("d1", "d1+d2"), settings=("MDA",), per_class_ipc=1, probe_per_class=10),
    # At cpu one ten-image iteration at DC's loops (which Table 3 compares) takes about two minutes:
    # the two ends of Table 3 run there, and the per-class comparison at one image per class.
    "cpu": dict(profile_changes=dict(iterations=10, eval_models=2, eval_test_size=2000), ipc10_iterations=1,
                ipc10_loops=(10, 50), distances=("d1", "d2", "d1+d2"), settings=("dc", "MDA"), per_class_ipc=1),
}


@dataclass(frozen=True)
class WhatHowWhereBudget(TenImageRunBudget):
    """Chapter 3 (what, how and where to match). The chapter runs many distillations, so the small
    profiles cut the profile itself (fewer iterations and models; at ``ci`` 3 outer steps instead
    of DC's 10 at ten images per class, so the schedule zeta(t) only reaches t = 1; at ``cpu`` only
    the two ends of Table 3, DC and MDA). ``distances``
    and ``settings`` are the rows of seed 002's Tables 2 and 3 that are run; ``per_class_ipc`` the
    images per class of the per-class-vs-not comparison (Medvedev and D'yakonov used 10);
    ``probe_per_class`` the real images per class of the gradient-norm and real-loss demonstrations
    (None: the whole real batch). gpu and paper: the profile's whole budget for every cell."""

    chapter: ClassVar[str] = "03"
    distances: tuple[str, ...]
    settings: tuple[str, ...]
    per_class_ipc: int
    probe_per_class: int | None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_counts(1, "per_class_ipc")
        self._check_optional_counts("probe_per_class")
        _check_names("distances", self.distances)
        _check_names("settings", self.settings)
        for name in self.settings:
            check_one_of("each of settings", name, SEED002_SETTINGS)

    @classmethod
    def for_profile(cls, profile: str | Profile, *, iterations: int | None = None) -> "WhatHowWhereBudget":
        """The budget at ``profile``; ``iterations`` (the chapter's parameter) replaces the
        iterations of the one-image-per-class runs."""
        profile = as_profile(profile)
        defaults = dict(ipc10_iterations=profile.iterations, ipc10_loops=None, distances=SEED002_DISTANCES,
                        settings=SEED002_SETTINGS, per_class_ipc=10, probe_per_class=None)
        profile, values = cls._profile_and_values(profile, defaults, _WHAT_HOW_WHERE_BUDGETS, iterations)
        return cls(profile=profile, **values)

    def ipc10_config(self, dataset: str, **overrides: Any) -> MatchingConfig:
        """DC at ten images per class with this budget's iterations and loops, evaluated at its end."""
        return self._ipc10_config(dataset, dict(eval_at=(self.ipc10_iterations,)), overrides)


_HESSIAN_BUDGETS: dict[str, dict[str, Any]] = {
    "ci": dict(iterations=1, outer_loop=2, batch_real=16, convnet_width=16, eval_models=1, test_size=500,
               sign_iterations=3, sign_outer=4),
    "cpu": dict(iterations=10, outer_loop=10, batch_real=32, convnet_width=32, eval_models=3, test_size=2000,
                sign_iterations=10, sign_outer=10),
    "gpu": dict(iterations=25, outer_loop=10, batch_real=256, convnet_width=128, eval_models=10, test_size=None,
                sign_iterations=25, sign_outer=10),
}


@dataclass(frozen=True)
class HessianBudget(ChapterBudget):
    """Chapter 4 (Hessian terms). Seed 000's loop: a fresh network every iteration, ``outer_loop``
    image updates on it, no network training in between; ``sign_iterations`` x ``sign_outer``
    steps of the curvature-sign measurement; ``eval_models`` models of seed 000's own evaluation on
    ``test_size`` test images (None: all). The small profiles shorten it; gpu (and paper, which
    falls back to gpu) run seed 000's own budget."""

    chapter: ClassVar[str] = "04"
    FALLBACK: ClassVar[str] = "gpu"
    iterations: int
    outer_loop: int
    batch_real: int
    convnet_width: int
    eval_models: int
    test_size: int | None
    sign_iterations: int
    sign_outer: int

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_counts(0, "iterations")
        self._check_counts(1, "outer_loop", "batch_real", "convnet_width", "eval_models", "sign_iterations",
                           "sign_outer")
        self._check_optional_counts("test_size")

    @classmethod
    def for_profile(cls, profile: str | Profile) -> "HessianBudget":
        profile = as_profile(profile)
        return cls(profile=profile, **_HESSIAN_BUDGETS.get(profile.name, _HESSIAN_BUDGETS[cls.FALLBACK]))

    def network_kwargs(self, network: str) -> dict[str, Any]:
        """The keywords of ``network``: the budget's width for the ConvNet, none for the others."""
        return {"width": self.convnet_width} if network == "convnet" else {}

    def matching_config(self, network: str, **overrides: Any) -> MatchingConfig:
        """Seed 000's loop on ``network`` at one image per class (the loop engine, which every
        curvature term runs on); ``overrides`` (distance, hessian_weight, ...) win."""
        values = dict(ipc=1, iterations=self.iterations, outer_loop=self.outer_loop, inner_loop=0,
                      batch_real=self.batch_real, network=network, network_kwargs=self.network_kwargs(network),
                      engine="loop")
        return MatchingConfig(**{**values, **overrides})


_INITIALISATION_BUDGETS: dict[str, dict[str, Any]] = {
    "ci": dict(profile_changes=dict(iterations=2, eval_models=1), ipc10_iterations=1, ipc10_loops=(1, 1),
               ipc10_eval_start=False),
    "cpu": dict(profile_changes=dict(iterations=20, eval_models=2, eval_test_size=2000), ipc10_iterations=2,
                ipc10_loops=(10, 10)),
}


@dataclass(frozen=True)
class InitialisationBudget(TenImageRunBudget):
    """Chapter 5 (initialisation). The chapter runs eight distillations, so the small profiles cut
    the profile itself (fewer iterations, cpu: the 20 of seed 000; fewer evaluation models; a fixed
    2,000-image test subset at cpu) and the run at ten images per class (``ipc10_eval_start``:
    whether that run is also evaluated at its start)."""

    chapter: ClassVar[str] = "05"
    ipc10_eval_start: bool

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.ipc10_eval_start, bool):
            raise ValueError(f"ipc10_eval_start must be True or False, got {self.ipc10_eval_start!r}")

    @classmethod
    def for_profile(cls, profile: str | Profile, *, iterations: int | None = None) -> "InitialisationBudget":
        """The budget at ``profile``; ``iterations`` (the chapter's parameter) replaces the
        iterations of the one-image-per-class runs."""
        profile = as_profile(profile)
        defaults = dict(ipc10_iterations=profile.iterations, ipc10_loops=None, ipc10_eval_start=True)
        profile, values = cls._profile_and_values(profile, defaults, _INITIALISATION_BUDGETS, iterations)
        return cls(profile=profile, **values)

    def ipc10_config(self, dataset: str, **overrides: Any) -> MatchingConfig:
        """DC at ten images per class with this budget's iterations and loops, evaluated at its end
        (and at its start when ``ipc10_eval_start``)."""
        n = self.ipc10_iterations
        return self._ipc10_config(dataset, dict(eval_at=(0, n) if self.ipc10_eval_start else (n,)), overrides)


_CROSS_ARCHITECTURE_BUDGETS: dict[str, dict[str, Any]] = {
    "ci": dict(profile_changes=dict(iterations=2, eval_models=1), networks=("mlp", "convnet", "lenet"),
               variants=("lenet_original",), ipc10_iterations=1, ipc10_loops=(1, 1),
               nas_real_per_class=20, nas_real_epochs=2, nas_models=1),
    "cpu": dict(profile_changes=dict(iterations=20, eval_models=2, eval_test_size=2000),
                networks=("mlp", "convnet", "lenet"), variants=("lenet_original",), ipc10_iterations=2,
                ipc10_loops=(10, 10), nas_real_per_class=200, nas_real_epochs=4, nas_models=2),
}


@dataclass(frozen=True)
class CrossArchitectureBudget(TenImageRunBudget):
    """Chapter 6 (networks and cross-architecture generalisation). A whole matrix of distillations
    and evaluations, so the small profiles cut the profile itself and run a 3x3 corner
    (``networks``), one of the original-style ``variants``, a cut-down run at ten images per class
    and a small NAS search (real images per class, None: all; epochs and models of the real
    training). gpu and paper: DC's six networks and the profile's budget."""

    chapter: ClassVar[str] = "06"
    networks: tuple[str, ...]
    variants: tuple[str, ...]
    nas_real_per_class: int | None
    nas_real_epochs: int
    nas_models: int

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_names("networks", self.networks)
        _check_names("variants", self.variants)
        self._check_counts(1, "nas_real_epochs", "nas_models")
        self._check_optional_counts("nas_real_per_class")

    @classmethod
    def for_profile(cls, profile: str | Profile, *, iterations: int | None = None,
                    networks: Any = None) -> "CrossArchitectureBudget":
        """The budget at ``profile``; the chapter's parameters ``iterations`` (distillation
        iterations per network) and ``networks`` (the matrix's rows and columns) replace the
        budget's when given."""
        profile = as_profile(profile)
        defaults = dict(
            networks=DC_CROSS_ARCH_NETWORKS, variants=("lenet_original", "alexnet_original"),
            ipc10_iterations=profile.iterations, ipc10_loops=None, nas_real_per_class=profile.whole_set_per_class,
            nas_real_epochs=profile.whole_set_epochs, nas_models=profile.eval_models,
        )
        profile, values = cls._profile_and_values(profile, defaults, _CROSS_ARCHITECTURE_BUDGETS, iterations)
        if networks is not None:
            values["networks"] = tuple(networks)
        return cls(profile=profile, **values)

    def ipc10_config(self, dataset: str, **overrides: Any) -> MatchingConfig:
        """DC at ten images per class with this budget's iterations and loops (the matrix
        evaluates the sets itself)."""
        return self._ipc10_config(dataset, {}, overrides)



_DIFFERENTIABLE_AUGMENTATION_BUDGETS: dict[str, dict[str, Any]] = {
    "ci": dict(profile_changes={}, family_iterations=10, ipc10_iterations=1, ipc10_loops=(2, 5)),
    "cpu": dict(profile_changes=dict(iterations=30, eval_models=2, eval_test_size=2000), family_iterations=20,
                ipc10_iterations=1, ipc10_loops=(5, 10)),
}


@dataclass(frozen=True)
class DifferentiableAugmentationBudget(TenImageRunBudget):
    """Chapter 7 (differentiable Siamese augmentation). Three distillations at one image per class
    with the profile's iterations (DSA with Siamese draws, DSA with independent draws, DC), one per
    DSA family with ``family_iterations``, and a DSA run at ten images per class from real samples
    with ``ipc10_iterations`` and ``ipc10_loops`` (None: DC's). The small profiles cut the profile
    itself (cpu: 30 iterations, fewer models, a fixed 2,000-image test subset) and the ten-image run;
    gpu and paper run the profile's budget for every run."""

    chapter: ClassVar[str] = "07"
    family_iterations: int

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_counts(1, "family_iterations", "ipc10_iterations")

    @classmethod
    def for_profile(cls, profile: str | Profile, *,
                    iterations: int | None = None) -> "DifferentiableAugmentationBudget":
        """The budget at ``profile``; ``iterations`` (the chapter's parameter) replaces the
        iterations of every one-image-per-class run (the families' too)."""
        profile = as_profile(profile)
        defaults = dict(family_iterations=profile.iterations, ipc10_iterations=profile.iterations, ipc10_loops=None)
        profile, values = cls._profile_and_values(profile, defaults, _DIFFERENTIABLE_AUGMENTATION_BUDGETS, iterations)
        if iterations is not None:
            values["family_iterations"] = iterations
        return cls(profile=profile, **values)

    def dsa_config(self, dataset: str, **overrides: Any) -> MatchingConfig:
        """DSA at one image per class with the profile's iterations, evaluated at its end under
        DSA's protocol (``dsa_siamese=False`` among ``overrides``: the independent-draws ablation)."""
        n = self.profile.iterations
        return dc_config(self.profile, 1, dataset, **{"method": "dsa", "eval_at": (n,), **overrides})

    def dc_config(self, dataset: str, **overrides: Any) -> MatchingConfig:
        """DC (no augmentation while distilling) at one image per class with the same iterations;
        not evaluated by the run (the chapter evaluates it with and without augmentation)."""
        return dc_config(self.profile, 1, dataset, **{"method": "dc", "eval_at": (), **overrides})

    def family_config(self, dataset: str, family: str, **overrides: Any) -> MatchingConfig:
        """DSA restricted to one ``family`` ('color', 'crop', ...) for ``family_iterations``, evaluated
        at its end under DSA's protocol with the dataset's whole strategy (the same for every family)."""
        n = self.family_iterations
        return self.dsa_config(dataset, **{"dsa_strategy": family, "iterations": n, "eval_at": (n,), **overrides})

    def ipc10_config(self, dataset: str, **overrides: Any) -> MatchingConfig:
        """DSA at ten images per class from real samples (as the DSA paper starts) with this budget's
        iterations and loops, evaluated at its end."""
        n = self.ipc10_iterations
        return self._ipc10_config(dataset, dict(method="dsa", init="real", eval_at=(n,)), overrides)

    def eval_config(self, dataset: str, augment: str) -> EvalConfig:
        """The protocol at this profile for a set of ``dataset``, training with ``augment`` ('none' or
        'dsa': DSA's per-image draws with the dataset's strategy), whatever distilled the set."""
        return eval_config(self.profile, dataset, "dsa", augment=augment)


_GENERATIVE_TEACHING_BUDGETS: dict[str, dict[str, Any]] = {
    "ci": dict(width=8, batch_real=8, gm_iterations=1, outer_loop=2, gm_inner=2, ift_iterations=2,
               ift_inner=5, terms=2, eval_models=1, eval_epochs=10, eval_width=8, test_size=500,
               ks=(16, 64), cross=("mlp",)),
    "cpu": dict(width=32, batch_real=32, gm_iterations=6, outer_loop=5, gm_inner=5, ift_iterations=25,
                ift_inner=20, terms=5, eval_models=3, eval_epochs=100, eval_width=32, test_size=2000,
                ks=(16, 64), cross=("lenet", "mlp")),
    "gpu": dict(width=128, batch_real=256, gm_iterations=110, outer_loop=10, gm_inner=10, ift_iterations=500,
                ift_inner=10, terms=10, eval_models=5, eval_epochs=None, eval_width=128, test_size=None,
                ks=(16, 32, 64, 128), cross=("lenet", "alexnet", "vgg11", "mlp")),
    "paper": dict(width=128, batch_real=256, gm_iterations=110, outer_loop=10, gm_inner=10, ift_iterations=1080,
                  ift_inner=10, terms=10, eval_models=15, eval_epochs=None, eval_width=128, test_size=None,
                  ks=(16, 32, 64, 128), cross=("lenet", "alexnet", "vgg11", "mlp")),
}


@dataclass(frozen=True)
class GenerativeTeachingBudget(ChapterBudget):
    """Chapter 10 (generative teaching networks). Eight teachers, so every profile has its own:
    the students' ConvNet width and real batch, GM iterations x (``outer_loop`` teacher updates,
    ``gm_inner`` student steps), IFT iterations x (``ift_inner`` student steps, ``terms`` Neumann
    terms), the evaluation (models, epochs, ConvNet width, test images; None: all), the generator
    sizes ``ks`` of the k sweep and the networks ``cross`` of the cross-architecture table.
    gpu and paper take seed 003's values."""

    chapter: ClassVar[str] = "10"
    width: int
    batch_real: int
    gm_iterations: int
    outer_loop: int
    gm_inner: int
    ift_iterations: int
    ift_inner: int
    terms: int
    eval_models: int
    eval_epochs: int | None
    eval_width: int
    test_size: int | None
    ks: tuple[int, ...]
    cross: tuple[str, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_counts(0, "gm_iterations", "ift_iterations", "gm_inner", "ift_inner", "terms")
        self._check_counts(1, "width", "batch_real", "outer_loop", "eval_models", "eval_width")
        self._check_optional_counts("eval_epochs", "test_size")
        if not isinstance(self.ks, tuple) or not self.ks:
            raise ValueError(f"ks must be a non-empty tuple of generator sizes, got {self.ks!r}")
        for k in self.ks:
            check_int("each of ks", k, 1)
        _check_names("cross", self.cross)

    @classmethod
    def for_profile(cls, profile: str | Profile, *, gm_iterations: int | None = None,
                    ift_iterations: int | None = None) -> "GenerativeTeachingBudget":
        """The budget at ``profile``; the chapter's parameters ``gm_iterations`` and
        ``ift_iterations`` replace the budget's when given."""
        profile = as_profile(profile)
        values = dict(_GENERATIVE_TEACHING_BUDGETS[profile.name])
        if gm_iterations is not None:
            values["gm_iterations"] = gm_iterations
        if ift_iterations is not None:
            values["ift_iterations"] = ift_iterations
        return cls(profile=profile, **values)

    def gm_config(self, k: int, ipc: int, **overrides: Any) -> GTNConfig:
        """A generator of size ``k`` trained by gradient matching at ``ipc`` images per class."""
        values = dict(objective="gm", k=k, ipc=ipc, iterations=self.gm_iterations, outer_loop=self.outer_loop,
                      inner_steps=self.gm_inner, batch_real=self.batch_real, network_kwargs={"width": self.width})
        return GTNConfig(**{**values, **overrides})

    def ift_config(self, k: int, ipc: int, **overrides: Any) -> GTNConfig:
        """The same generator trained by implicit differentiation (one teacher update per iteration)."""
        changes = dict(objective="ift", iterations=self.ift_iterations, inner_steps=self.ift_inner,
                       neumann_terms=self.terms)
        return self.gm_config(k, ipc).replace(**{**changes, **overrides})

    def dd_config(self, ipc: int, **overrides: Any) -> MatchingConfig:
        """Free pixels (GM + DD, DC's own loop) with the GM teachers' budget."""
        values = dict(ipc=ipc, iterations=self.gm_iterations, outer_loop=self.outer_loop, inner_loop=self.gm_inner,
                      batch_real=self.batch_real, network_kwargs={"width": self.width})
        return MatchingConfig(**{**values, **overrides})

    def eval_config(self, network: str = "convnet") -> EvalConfig:
        """Students ``network`` (the ConvNet at ``eval_width``) trained with DC's MNIST augmentation,
        which Medvedev and D'yakonov's Tables II-IV use."""
        return eval_config(self.profile, "mnist", network=network, width=self.eval_width, epochs=self.eval_epochs,
                           test_size=self.test_size, augment="mnist")


_DISTRIBUTION_MATCHING_BUDGETS: dict[str, dict[str, Any]] = {
    "ci": dict(dm_iterations=30, dc_iterations=5, ipc10_iterations=20, timed_iterations=2),
    # cpu: the chapter evaluates ten sets; with the profile's evaluation (3 models, the whole test
    # set) they took 470 of its 841 s on 2 idle cores.
    "cpu": dict(profile_changes=dict(eval_models=2, eval_test_size=2000), dm_iterations=300, dc_iterations=40,
                ipc10_iterations=100, timed_iterations=3),
}


@dataclass(frozen=True)
class DistributionMatchingBudget(ChapterBudget):
    """Chapter 8 (distribution matching). ``dm_iterations`` of DM and ``dc_iterations`` of DC at one
    image per class (the comparison at equal iterations and equal time), ``ipc10_iterations`` of DM
    per start at ten images per class (real against noise), and ``timed_iterations`` per method and
    for the table of seconds per iteration (DC at ten images per class: one). cpu also evaluates with
    two models and a fixed 2,000-image test subset; gpu and paper: the profile's iterations."""

    chapter: ClassVar[str] = "08"
    dm_iterations: int
    dc_iterations: int
    ipc10_iterations: int
    timed_iterations: int

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_counts(1, "dm_iterations", "dc_iterations", "ipc10_iterations", "timed_iterations")

    @classmethod
    def for_profile(cls, profile: str | Profile, *, iterations: int | None = None) -> "DistributionMatchingBudget":
        """The budget at ``profile``; ``iterations`` (the chapter's parameter) replaces DM's iterations
        at one image per class."""
        profile = as_profile(profile)
        defaults = dict(dm_iterations=profile.dm_iterations, dc_iterations=profile.iterations,
                        ipc10_iterations=profile.dm_iterations, timed_iterations=3)
        profile, values = cls._profile_and_values(profile, defaults, _DISTRIBUTION_MATCHING_BUDGETS)
        if iterations is not None:
            values["dm_iterations"] = iterations
        return cls(profile=profile, **values)

    def dm_config(self, dataset: str, ipc: int = 1, **overrides: Any) -> DMConfig:
        """DM at ``ipc`` images per class with this budget's iterations (one or ten images per class)."""
        iterations = self.dm_iterations if ipc == 1 else self.ipc10_iterations
        return dm_config(self.profile, ipc, dataset, **{"iterations": iterations, **overrides})

    def dc_config(self, dataset: str, ipc: int = 1, **overrides: Any) -> MatchingConfig:
        """DC at ``ipc`` images per class with this budget's iterations."""
        return dc_config(self.profile, ipc, dataset, **{"iterations": self.dc_iterations, **overrides})


_TRAJECTORY_MATCHING_BUDGETS: dict[str, dict[str, Any]] = {
    # ci: two buffers of the ci experts cut to 3 epochs (2 experts on 200 real images per class, about
    # 25 s each on a busy CPU core); the ci MTT preset (10 student steps matching 2 epochs, that is 16
    # of the experts' SGD steps, from a start before epoch 2).
    "ci": dict(profile_changes={}, mtt_iterations=10, dc_iterations=5, memory_steps=(2, 5, 10, 20),
               expert_changes=(("epochs", 3),)),
    # cpu: the profile's ConvNet at width 32 for the experts, MTT and DC (the experts of two datasets
    # at width 64 would take most of the ten minutes), fewer evaluation models, a 2,000-image test subset.
    "cpu": dict(profile_changes=dict(net_width=32, eval_models=2, eval_test_size=2000), mtt_iterations=40,
                dc_iterations=40, memory_steps=(5, 10, 20, 40),
                expert_changes=(("experts", 2), ("epochs", 6), ("real_per_class", 300), ("test_size", 1000)),
                mtt_changes=(("syn_steps", 12), ("max_start_epoch", 4))),
}


def _check_changes(name: str, changes: Any) -> None:
    if not isinstance(changes, tuple) or not all(isinstance(c, tuple) and len(c) == 2 and isinstance(c[0], str)
                                                 for c in changes):
        raise ValueError(f"{name} must be a tuple of (field name, value) pairs, got {changes!r}")


@dataclass(frozen=True)
class TrajectoryMatchingBudget(ChapterBudget):
    """Chapter 9 (matching training trajectories). One expert buffer per dataset
    (:func:`gmlib.book.presets.expert_config` with ``expert_changes``), MTT for ``mtt_iterations``
    (:func:`gmlib.book.presets.mtt_config` with ``mtt_changes``) and DC for ``dc_iterations`` at one
    image per class, from real images and from noise on both datasets, and one MTT iteration per
    value of ``memory_steps`` (student steps) and gradient mode for the memory table. The small
    profiles cut the experts, the iterations and (cpu) the ConvNet's width and the evaluation; gpu
    and paper run the profile's experts and iterations."""

    chapter: ClassVar[str] = "09"
    mtt_iterations: int
    dc_iterations: int
    memory_steps: tuple[int, ...]
    expert_changes: tuple[tuple[str, Any], ...] = ()
    mtt_changes: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_counts(1, "mtt_iterations", "dc_iterations")
        if not isinstance(self.memory_steps, tuple) or not self.memory_steps:
            raise ValueError(f"memory_steps must be a non-empty tuple of student step counts, got {self.memory_steps!r}")
        for n in self.memory_steps:
            check_int("each of memory_steps", n, 1)
        _check_changes("expert_changes", self.expert_changes)
        _check_changes("mtt_changes", self.mtt_changes)

    @classmethod
    def for_profile(cls, profile: str | Profile, *, iterations: int | None = None) -> "TrajectoryMatchingBudget":
        """The budget at ``profile``; ``iterations`` (the chapter's parameter) replaces MTT's iterations."""
        profile = as_profile(profile)
        defaults = dict(mtt_iterations=profile.mtt_iterations, dc_iterations=profile.iterations,
                        memory_steps=(10, 20, 30, 50))
        profile, values = cls._profile_and_values(profile, defaults, _TRAJECTORY_MATCHING_BUDGETS)
        if iterations is not None:
            values["mtt_iterations"] = iterations
        return cls(profile=profile, **values)

    def expert_config(self, dataset: str, **overrides: Any) -> ExpertConfig:
        """The experts of ``dataset`` (a name): the profile's, with this budget's changes."""
        return expert_config(self.profile, dataset, **{**dict(self.expert_changes), **overrides})

    def mtt_config(self, dataset: str, ipc: int = 1, **overrides: Any) -> MTTConfig:
        """MTT at ``ipc`` images per class with this budget's iterations, evaluated at the end under
        MTT's paper's protocol (DSA's augmentation; the standard learning rate: see
        :func:`gmlib.methods.mtt.learned_lr_protocol` for MTT's own)."""
        n = self.mtt_iterations
        values = {"iterations": n, "eval_at": (n,), **dict(self.mtt_changes)}
        return mtt_config(self.profile, ipc, dataset, **{**values, **overrides})

    def dc_config(self, dataset: str, ipc: int = 1, **overrides: Any) -> MatchingConfig:
        """DC at ``ipc`` images per class with this budget's iterations, evaluated at the end."""
        n = self.dc_iterations
        return dc_config(self.profile, ipc, dataset, **{"iterations": n, "eval_at": (n,), **overrides})


_COMPARISON_GPU = dict(seconds=60.0, ipcs=(1, 10), networks=("convnet", "mlp", "lenet", "alexnet"), models=5)
_COMPARISON_BUDGETS: dict[str, dict[str, Any]] = {
    # ci: every method for two seconds each on two small networks, one model (near chance: it only
    # shows the grid runs); cpu: fifteen seconds each, two models of each of two networks, and one
    # of the profile's four experts for MTT (each takes about three minutes on 2 CPU cores).
    "ci": dict(seconds=2.0, ipcs=(1,), networks=("convnet", "mlp"), models=1),
    "cpu": dict(seconds=15.0, ipcs=(1,), networks=("convnet", "mlp"), models=2, expert_changes=(("experts", 1),)),
    "gpu": _COMPARISON_GPU,
    # paper: seed 003's time limit (about fifteen minutes a set) and its fifteen students per method.
    "paper": {**_COMPARISON_GPU, "seconds": 900.0, "models": 15},
}


@dataclass(frozen=True)
class ComparisonBudget(ChapterBudget):
    """Chapter 11 (every method side by side). The live grid: ``methods`` on the chapter's dataset
    at each of ``ipcs`` images per class, ``seconds`` of distillation each (equal wall-clock),
    evaluated on ``networks`` with ``models`` networks each, all at the profile's configuration of
    each method (:class:`gmlib.studies.grid.GridBudget`), MTT's experts with ``expert_changes``.
    The training-time comparison trains on the whole set with the profile's ``whole_set_per_class``
    and ``whole_set_epochs``."""

    chapter: ClassVar[str] = "11"
    methods: tuple[str, ...]
    seconds: float
    ipcs: tuple[int, ...]
    networks: tuple[str, ...]
    models: int
    expert_changes: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_names("methods", self.methods)
        _check_names("networks", self.networks)
        self._check_counts(1, "models")
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, (int, float)) or not self.seconds > 0:
            raise ValueError(f"seconds must be a positive number of seconds, got {self.seconds!r}")
        if not isinstance(self.ipcs, tuple) or not self.ipcs:
            raise ValueError(f"ipcs must be a non-empty tuple of images per class, got {self.ipcs!r}")
        for ipc in self.ipcs:
            check_int("each of ipcs", ipc, 1)
        _check_changes("expert_changes", self.expert_changes)

    @classmethod
    def for_profile(cls, profile: str | Profile, *, seconds: float | None = None,
                    methods: list[str] | tuple[str, ...] | None = None) -> "ComparisonBudget":
        """The budget at ``profile``; the chapter's parameters ``seconds`` (per cell) and ``methods``
        replace the budget's when given."""
        profile = as_profile(profile)
        defaults = dict(methods=GRID_METHODS)
        profile, values = cls._profile_and_values(profile, defaults, _COMPARISON_BUDGETS)
        if seconds is not None:
            values["seconds"] = float(seconds)
        if methods is not None:
            values["methods"] = tuple(methods)
        return cls(profile=profile, **values)

    def grid_budget(self) -> GridBudget:
        """The live grid's :class:`gmlib.studies.grid.GridBudget` (equal wall-clock)."""
        return GridBudget(profile=self.profile.name, seconds=self.seconds, networks=self.networks, models=self.models,
                          expert_changes=self.expert_changes)


_REPRODUCIBILITY_BUDGETS: dict[str, dict[str, Any]] = {
    # ci: four variants, two models each, at the ci protocol's few epochs; cpu: every variant but
    # the original AlexNet (minutes a network on a CPU) with three models.
    "ci": dict(variants=("reference", "no-augmentation", "no-momentum", "lenet"), models=2),
    "cpu": dict(variants=("reference", "no-augmentation", "300-epochs", "no-momentum", "no-weight-decay", "lenet",
                          "lenet-original", "alexnet", "best-of"), models=3),
    "gpu": dict(models=10),
    "paper": dict(models=20),
}


@dataclass(frozen=True)
class ReproducibilityBudget(ChapterBudget):
    """Chapter 12 (reproducibility). The live protocol study evaluates one stored synthetic set
    under each of ``variants`` (names of :data:`gmlib.studies.protocol.STUDY_VARIANTS`) with
    ``models`` networks each, under the profile's evaluation protocol (:meth:`reference_config`).
    gpu and paper run the reference and every chapter-12 variant."""

    chapter: ClassVar[str] = "12"
    variants: tuple[str, ...]
    models: int

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_names("variants", self.variants)
        for variant in self.variants:
            check_one_of("each of variants", variant, tuple(STUDY_VARIANTS))
        self._check_counts(1, "models")

    @classmethod
    def for_profile(cls, profile: str | Profile) -> "ReproducibilityBudget":
        """The budget at ``profile``."""
        profile = as_profile(profile)
        defaults = dict(variants=("reference",) + CHAPTER_12_VARIANTS)
        profile, values = cls._profile_and_values(profile, defaults, _REPRODUCIBILITY_BUDGETS)
        return cls(profile=profile, **values)

    def reference_config(self, dataset: str = "mnist") -> EvalConfig:
        """The reference protocol of the live study: DC's (its augmentation on MNIST) at the
        profile's epochs, test subset and ConvNet width."""
        return eval_config(self.profile, dataset, "dc")


CHAPTER_BUDGETS: dict[str, type[ChapterBudget]] = {
    budget.chapter: budget
    for budget in (ProblemBudget, BilevelBudget, GradientMatchingBudget, WhatHowWhereBudget, HessianBudget,
                   InitialisationBudget, CrossArchitectureBudget, DifferentiableAugmentationBudget,
                   DistributionMatchingBudget, TrajectoryMatchingBudget, GenerativeTeachingBudget,
                   ComparisonBudget, ReproducibilityBudget)
}


def chapter_budget(chapter: str, profile: str | Profile = "auto", **parameters: Any) -> Any:
    """The budget of ``chapter`` ('00' to '12') at ``profile`` (a name or
    a :class:`Profile`), as that chapter's frozen dataclass (:data:`CHAPTER_BUDGETS`).

    ``parameters`` are the chapter's own papermill parameters that change its budget (03, 05 and 07:
    ``iterations``; 06: ``iterations``, ``networks``; 08: ``iterations`` (DM's); 09: ``iterations``
    (MTT's); 10: ``gm_iterations``, ``ift_iterations``; 11: ``seconds``, ``methods``);
    None keeps the budget's value.
    """
    check_one_of("chapter", chapter, tuple(CHAPTER_BUDGETS))
    budget = CHAPTER_BUDGETS[chapter]
    allowed = [p.name for p in inspect.signature(budget.for_profile).parameters.values() if p.kind == p.KEYWORD_ONLY]
    unknown = sorted(set(parameters) - set(allowed))
    if unknown:
        raise ValueError(f"chapter {chapter}'s budget takes no parameter {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(map(repr, allowed)) or 'none'}")
    return budget.for_profile(profile, **parameters)
