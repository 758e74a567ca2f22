"""The hyperparameters of the gradient-matching loop (:class:`MatchingConfig`), validated once, and
DC's published settings (:class:`DCSettings`, :func:`dc_loops`), written down once.

Kept apart from :mod:`gmlib.methods.dc` so that the loop reads next to the algorithm box while every
knob, its default (DC's reference value) and its allowed values are listed in one place. What a
compute profile affords is not decided here: :func:`gmlib.book.presets.dc_config` builds a
:class:`MatchingConfig` from a profile.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from gmlib.checks import check_fraction, check_int, check_nonnegative, check_one_of, check_positive
from gmlib.distances import get_distance
from gmlib.dsa import parse_dsa_strategy
from gmlib.methods.dc_variants import MATCH_LEVELS
from gmlib.methods.hessian import HESSIAN_KINDS, HESSIAN_LOSSES
from gmlib.methods.inner_loop import INNER_STEP_POLICIES, custom_schedule
from gmlib.first_order import PRECISIONS, check_compile
from gmlib.run.settings import RunSettings
from gmlib.synthetic import INIT_NAMES

METHODS = ("dc", "dsa")
ENGINES = ("auto", "loop", "batched")

# --------------------------------------------------------------------------------------------
# DC's published settings
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


# lr_img above this multiple of DC's 0.1 warns (see MatchingConfig).
LR_IMG_WARN_FACTOR = 10


@dataclass(frozen=True)
class MatchingConfig(RunSettings):
    """Hyperparameters of DC/DSA. The defaults are DC's reference settings.

    ``outer_loop``/``inner_loop`` None take DC's values for ``ipc`` (:func:`dc_loops`):
    ``outer_loop`` image updates per iteration, ``inner_loop`` epochs of network training on the
    synthetic set between them. ``dsa_strategy`` None = the dataset's DSA strategy (method 'dsa'
    only). ``dsa_siamese`` (method 'dsa' only) True = DSA: the real and the synthetic batch of a
    class share one draw; False = the ablation in which each gets its own draw. ``network_kwargs`` go to :func:`gmlib.networks.get_network` (a dict is stored as sorted
    pairs so the config stays hashable). ``eval_at`` lists numbers of completed iterations after
    which to evaluate the current set (0 = the initialisation) with ``eval_config`` (None = the
    protocol's defaults for the distillation network) and ``eval_models`` models. ``engine`` only
    changes speed and rounding (see the module docstring). ``precision`` ('auto', 'fp32': the exact
    path, 'bf16') and ``compile`` ('auto', True, False) say how the first-order passes run (real
    gradients, inner loop; :mod:`gmlib.first_order`): 'auto' is bfloat16 on CPUs that compute it
    natively and compiles runs long enough to pay for it; the synthetic images' second-order pass
    is always float32 and eager. The reference uses lr_img 0.01 for the
    MLP; set it explicitly.

    Out-of-range values are refused. One in-range value only warns: an ``lr_img`` more than
    :data:`LR_IMG_WARN_FACTOR` times DC's 0.1, because it is a legitimate experiment but its images
    saturate towards two values while the matching loss can still fall, which looks like success.

    Seed 002/003 options (:mod:`gmlib.methods.dc_variants`, :mod:`gmlib.methods.inner_loop`): ``match_level``
    (:data:`MATCH_LEVELS`) with ``level_weight`` lambda (None = number of classes);
    ``per_class`` False matches one mixed real batch of batch_real * classes images against the
    whole synthetic set; ``inner_steps`` (:data:`INNER_STEP_POLICIES`) with ``inner_schedule``
    (epochs after outer step t = ``inner_schedule[t]``, the last value repeating; None = seed 002
    eq. 12). ``hessian_weight`` > 0 adds ``hessian_weight * v^T C v`` per class, v = g_real -
    g_syn, C of the ``hessian_loss`` ('synthetic' or 'real') of kind ``hessian_kind``. The batched
    engine supports only the DC options (intra, per class, no curvature term); 'auto' then picks
    the loop engine.
    """

    ipc: int = 1
    method: str = "dc"
    iterations: int = 1000
    outer_loop: int | None = None
    inner_loop: int | None = None
    batch_real: int = 256
    batch_train: int = 256
    lr_img: float = 0.1
    momentum_img: float = 0.5
    lr_net: float = 0.01
    distance: str = "ours"
    init: str = "noise"
    dsa_strategy: str | None = None
    bn_real_per_class: int = 16
    engine: str = "auto"
    precision: str = "auto"
    compile: bool | str = "auto"
    match_level: str = "intra"
    level_weight: float | None = None
    per_class: bool = True
    inner_steps: str = "fixed"
    inner_schedule: tuple[int, ...] | None = None
    hessian_weight: float = 0.0
    hessian_loss: str = "synthetic"
    hessian_kind: str = "exact"
    dsa_siamese: bool = True

    def __post_init__(self) -> None:
        self.check_run_settings()
        check_int("ipc (images per class)", self.ipc, 1)
        check_one_of("method", self.method, METHODS)
        if self.outer_loop is not None:
            check_int("outer_loop", self.outer_loop, 1)
        if self.inner_loop is not None:
            check_int("inner_loop", self.inner_loop, 0)
        for name in ("batch_real", "batch_train", "bn_real_per_class"):
            check_int(name, getattr(self, name), 1)
        for name in ("lr_img", "lr_net"):
            check_positive(name, getattr(self, name))
        dc_lr_img = DCSettings().lr_img
        if self.lr_img > LR_IMG_WARN_FACTOR * dc_lr_img:
            warnings.warn(f"lr_img={self.lr_img!r} is {self.lr_img / dc_lr_img:g} times DC's {dc_lr_img}: image steps "
                          "this large drive the pixels to extremes, and the matching loss can fall while the images "
                          "saturate", UserWarning, stacklevel=3)
        check_fraction("momentum_img", self.momentum_img)
        get_distance(self.distance)  # raises a ValueError naming the known distances
        check_one_of("init", self.init, INIT_NAMES)
        check_one_of("engine", self.engine, ENGINES)
        check_one_of("precision", self.precision, PRECISIONS)
        check_compile(self.compile)
        if self.dsa_strategy is not None:
            if self.method != "dsa":
                raise ValueError(f"dsa_strategy={self.dsa_strategy!r} needs method='dsa' (got method={self.method!r})")
            parse_dsa_strategy(self.dsa_strategy)
        if not isinstance(self.dsa_siamese, bool):
            raise ValueError(f"dsa_siamese must be True or False, got {self.dsa_siamese!r}")
        if not self.dsa_siamese and self.method != "dsa":
            raise ValueError(f"dsa_siamese={self.dsa_siamese!r} (independent draws for the real and the synthetic "
                             f"batch) needs method='dsa' (got method={self.method!r}): DC does not augment")
        self._check_matching_options()

    def _check_matching_options(self) -> None:
        check_one_of("match_level", self.match_level, MATCH_LEVELS)
        if self.level_weight is not None:
            check_nonnegative("level_weight", self.level_weight)
            if self.match_level == "intra":
                raise ValueError(f"level_weight={self.level_weight!r} weighs the inter-class term, which "
                                 f"match_level='intra' does not use; allowed levels for it: 'inter', 'multi', 'interleaved'")
        if not isinstance(self.per_class, bool):
            raise ValueError(f"per_class must be True or False, got {self.per_class!r}")
        if not self.per_class and self.match_level != "intra":
            raise ValueError(f"match_level={self.match_level!r} needs per-class gradients; with per_class=False "
                             f"the one mixed-batch gradient is matched: use match_level='intra' (the default)")
        check_one_of("inner_steps", self.inner_steps, INNER_STEP_POLICIES)
        if self.inner_schedule is not None:
            if self.inner_steps != "schedule":
                raise ValueError(f"inner_schedule needs inner_steps='schedule' (got inner_steps={self.inner_steps!r})")
            custom_schedule(self.inner_schedule)  # raises a ValueError for a bad list
            object.__setattr__(self, "inner_schedule", tuple(self.inner_schedule))
        check_nonnegative("hessian_weight", self.hessian_weight)
        check_one_of("hessian_loss", self.hessian_loss, HESSIAN_LOSSES)
        check_one_of("hessian_kind", self.hessian_kind, HESSIAN_KINDS)
        if self.engine == "batched" and not self.dc_options:
            raise ValueError("engine='batched' supports only match_level='intra', per_class=True and "
                             "hessian_weight=0; use engine='loop' or 'auto' for the other options")

    @property
    def dc_options(self) -> bool:
        """Whether the per-step objective is DC's (intra-class, per class, no curvature term)."""
        return self.match_level == "intra" and self.per_class and self.hessian_weight == 0

    @property
    def loops(self) -> tuple[int, int]:
        """(outer_loop, inner_loop) with None resolved from ``ipc``."""
        outer, inner = dc_loops(self.ipc)
        return (outer if self.outer_loop is None else self.outer_loop,
                inner if self.inner_loop is None else self.inner_loop)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON, checkpoints and provenance (loops resolved, eval_config as a dict;
        ``dsa_siamese`` only when it is False)."""
        data = super().as_dict()
        data["inner_schedule"] = None if self.inner_schedule is None else list(self.inner_schedule)
        data["resolved_loops"] = list(self.loops)
        if self.dsa_siamese:  # the default: left out, so that runs written before the option still resume
            del data["dsa_siamese"]
        return data

