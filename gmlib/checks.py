"""Argument checks shared by the configurations: each raises a ValueError that names the argument,
the value it got and what is allowed."""

from __future__ import annotations

import math
from typing import Any, Sequence


def is_int(value: Any) -> bool:
    """True for ints, False for bools (``True`` is an int to Python, never a count to us)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, low: int) -> None:
    if not is_int(value) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _is_finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_positive(name: str, value: Any) -> None:
    if not _is_finite_number(value) or not value > 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_nonnegative(name: str, value: Any) -> None:
    if not _is_finite_number(value) or not value >= 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_one_of(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(repr(a) for a in allowed)}")
