"""Argument checks shared by the configurations: each raises an error that names the argument, the
value it got and what is allowed: :class:`WrongTypeError` for a value of the wrong type (a string
where a number belongs), ValueError for a value out of range."""

from __future__ import annotations

import math
from typing import Any, Sequence


class WrongTypeError(TypeError, ValueError):
    """A value of the wrong type. A TypeError, and a ValueError too, so that callers who catch bad
    input as ValueError (the CLI, notebooks) catch it as well."""


def _type_name(value: Any) -> str:
    return type(value).__name__


def is_int(value: Any) -> bool:
    """True for ints, False for bools (``True`` is an int to Python, never a count to us)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, low: int) -> None:
    if not is_int(value):
        raise WrongTypeError(f"{name} must be an integer >= {low}, got {value!r} ({_type_name(value)})")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def is_number(value: Any) -> bool:
    """True for ints and floats, False for bools and everything else (strings included)."""
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _check_number(name: str, value: Any, allowed: str) -> None:
    if not is_number(value):
        raise WrongTypeError(f"{name} must be {allowed}, got {value!r} ({_type_name(value)})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def check_positive(name: str, value: Any) -> None:
    _check_number(name, value, "a finite number > 0")
    if not value > 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_nonnegative(name: str, value: Any) -> None:
    _check_number(name, value, "a finite number >= 0")
    if not value >= 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_fraction(name: str, value: Any) -> None:
    """A number in [0, 1), such as a momentum."""
    _check_number(name, value, "a number in [0, 1)")
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise WrongTypeError(f"{name} must be True or False, got {value!r} ({_type_name(value)})")


def check_one_of(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(repr(a) for a in allowed)}")
