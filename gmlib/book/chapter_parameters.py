"""The chapters' papermill parameters: what each may be.

Every chapter calls :func:`check_chapter_parameters` with all its parameters in the cell right after
its ``parameters`` cell (papermill injects ``-p`` values between the two), so that a bad value
stops the run there, before any data is loaded or network trained, with an error that names the
parameter, the value and what is allowed: :class:`gmlib.checks.WrongTypeError` (a TypeError) for a
value of the wrong type, ValueError for a value out of range. One rule per parameter name serves
every chapter that uses the name.
"""

from __future__ import annotations

from typing import Any, Callable

from gmlib.book.presets import PROFILE_NAMES
from gmlib.checks import WrongTypeError, check_int, check_nonnegative, check_one_of
from gmlib.methods.bilevel import INIT_MODES
from gmlib.methods.gtn_generator import MIN_K
from gmlib.methods.hessian import HESSIAN_LOSSES
from gmlib.networks import NETWORK_NAMES
from gmlib.studies.grid import GRID_METHODS

__all__ = ["CHAPTER_DATASETS", "PARAMETER_NAMES", "check_chapter_parameters"]

Rule = Callable[[str, Any], None]  # rule(name, value) returns None or raises

# Of gmlib.data.DATASET_NAMES, the 28x28 grayscale ones: the chapters' budgets, networks and
# published tables assume them.
CHAPTER_DATASETS = ("mnist", "fashion-mnist")
# A ConvNet deeper than this shrinks a 28x28 image below 1x1 (chapter 06's NAS proxy).
MAX_CONVNET_DEPTH = 5


def _choice(*allowed: str) -> Rule:
    """One of the strings ``allowed``; a non-string (papermill's ``-p x 1`` or ``None``) is a wrong type."""
    def rule(name: str, value: Any) -> None:
        if not isinstance(value, str):
            raise WrongTypeError(f"{name} must be one of {', '.join(map(repr, allowed))}, "
                                 f"got {value!r} ({type(value).__name__})")
        check_one_of(name, value, allowed)
    return rule


def _count(low: int) -> Rule:
    """An integer >= ``low``; a bool or a float such as 5.0 is a wrong type."""
    return lambda name, value: check_int(name, value, low)


def _or_none(rule: Rule) -> Rule:
    """``rule``, or None: the chapter's own budget."""
    def or_none(name: str, value: Any) -> None:
        if value is None:
            return
        try:
            rule(name, value)
        except ValueError as error:  # WrongTypeError is one too; keep its class
            raise type(error)(f"{error} ({name} may also be None: the chapter's budget)") from None
    return or_none


def _distinct_list(item_rule: Rule, what: str) -> Rule:
    """A non-empty list or tuple of distinct items, each passing ``item_rule``."""
    def rule(name: str, value: Any) -> None:
        # A bare string is a sequence too, of letters; papermill's -p passes "(1, 2)" as one.
        if not isinstance(value, (list, tuple)):
            raise WrongTypeError(f"{name} must be a list of {what}, got {value!r} ({type(value).__name__})")
        if not value:
            raise ValueError(f"{name} must be a non-empty list of {what}, got {value!r}")
        for item in value:
            item_rule(f"{name} entry", item)
        if len(set(value)) != len(value):
            raise ValueError(f"{name} must be a list of distinct {what}, got {value!r}")
    return rule


def _convnet_depth(name: str, value: Any) -> None:
    check_int(name, value, 1)
    if value > MAX_CONVNET_DEPTH:
        raise ValueError(f"{name} must be a ConvNet depth from 1 to {MAX_CONVNET_DEPTH} (a deeper one shrinks a "
                         f"28x28 image below 1x1), got {value!r}")


def _positive_seconds(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WrongTypeError(f"{name} must be a number of seconds, got {value!r} ({type(value).__name__})")
    if not 0 < value < float("inf"):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


_RULES: dict[str, Rule] = {
    # shared by several chapters
    "profile": _choice("auto", *PROFILE_NAMES),
    "seed": _count(0),
    "dataset": _choice(*CHAPTER_DATASETS),
    "iterations": _or_none(_count(1)),
    # chapter 01
    "toy_points": _count(1),
    "image_init": _choice("noise", "real"),  # the two starts chapter 01 offers, of gmlib.synthetic.INIT_NAMES
    "init_mode": _choice(*INIT_MODES),
    # chapter 03
    "inner_epochs_shown": _count(1),
    # chapter 04
    "hessian_loss": _choice(*HESSIAN_LOSSES),
    "hessian_weight": check_nonnegative,  # 0 turns the curvature term off
    # chapter 05
    "outer_loop": _or_none(_count(1)),
    "probe_networks": _count(1),
    # chapter 06
    "networks": _or_none(_distinct_list(_choice(*NETWORK_NAMES), "network names")),
    "nas_depths": _distinct_list(_convnet_depth, f"ConvNet depths 1 to {MAX_CONVNET_DEPTH}"),
    # chapter 10
    "ipc": _count(1),
    "k": _count(MIN_K),
    "gm_iterations": _or_none(_count(1)),
    "ift_iterations": _or_none(_count(1)),
    # chapter 11
    "seconds": _or_none(_positive_seconds),
    "methods": _or_none(_distinct_list(_choice(*GRID_METHODS), "method names")),
}
PARAMETER_NAMES = tuple(_RULES)


def check_chapter_parameters(**values: Any) -> None:
    """Check each chapter parameter given by keyword against its rule; raise at the first bad one."""
    # A name without a rule is a chapter's bug, not a user's: report it before any value.
    missing = [name for name in values if name not in _RULES]
    if missing:
        raise ValueError(f"no rule for chapter parameter(s) {', '.join(map(repr, missing))}: add one to "
                         f"gmlib.book.chapter_parameters._RULES (rules exist for {', '.join(PARAMETER_NAMES)})")
    for name, value in values.items():
        _RULES[name](name, value)
