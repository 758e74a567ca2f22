"""Checking constructor arguments and following feature-map sizes through a network.

Every kernel in these networks is square, so the two image axes are independent: the size
helpers work on one side at a time and :func:`_final_hw` applies them to (height, width).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

from gmlib.checks import check_int, check_one_of

ImageSize = int | Sequence[int]


# --------------------------------------------------------------------------------------------
# Input checking
# --------------------------------------------------------------------------------------------


def _positive_int(what: str, value: object) -> int:
    """``value`` as an int (:func:`gmlib.checks.check_int`: bools are not sizes)."""
    check_int(what, value, 1)
    return int(value)


def _one_of(what: str, value: object, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed`` (:func:`gmlib.checks.check_one_of`)."""
    check_one_of(what, value, allowed)
    return value  # type: ignore[return-value]


def _as_hw(im_size: ImageSize) -> tuple[int, int]:
    """(height, width) from an int or a pair of positive ints."""
    if isinstance(im_size, numbers.Integral) and not isinstance(im_size, bool):
        side = _positive_int("im_size", im_size)
        return side, side
    if isinstance(im_size, Sequence) and len(im_size) == 2:
        try:
            return _positive_int("im_size height", im_size[0]), _positive_int("im_size width", im_size[1])
        except ValueError:
            pass
    raise ValueError(f"im_size must be a positive int or a (height, width) pair, got {im_size!r}")


# --------------------------------------------------------------------------------------------
# Feature-map sizes, one axis at a time
# --------------------------------------------------------------------------------------------


def _window_out(side: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output side of a convolution or pooling window; 0 once the feature map has vanished."""
    padded = side + 2 * padding
    if side < 1 or padded < kernel:
        return 0
    return (padded - kernel) // stride + 1


def _first_padding(side: int, base: int) -> int:
    """Padding of a first layer: 28-pixel inputs get 2 more so they follow the 32-pixel path."""
    return base + 2 if side == 28 else base


def _first_conv_padding(hw: tuple[int, int], base: int) -> int | tuple[int, int]:
    """Conv2d padding for the first layer on an (h, w) image (an int when both are equal)."""
    pad_h, pad_w = _first_padding(hw[0], base), _first_padding(hw[1], base)
    return pad_h if pad_h == pad_w else (pad_h, pad_w)


def _smallest_sides_hint(side_ok: Callable[[int], bool]) -> str:
    """Describe the square sizes a network takes, e.g. 'sides of at least 32, or exactly 28'."""
    scanned = range(1, 4097)
    too_small = [side for side in scanned if not side_ok(side)]
    if not too_small:
        return "any side"
    if too_small[-1] == scanned[-1]:
        return f"sides larger than {scanned[-1]}"
    smallest = too_small[-1] + 1
    hint = f"sides of at least {smallest}"
    if side_ok(28) and 28 < smallest:
        hint += " (or exactly 28, padded like 32)"
    return hint


def _final_hw(
    network: str, hw: tuple[int, int], side_fn: Callable[[int], int], minimum: int = 1
) -> tuple[int, int]:
    """Final feature-map size (h, w), or a ValueError when the input is too small for it."""
    final = (side_fn(hw[0]), side_fn(hw[1]))
    if min(final) < minimum:
        hint = _smallest_sides_hint(lambda side: side_fn(side) >= minimum)
        raise ValueError(
            f"{network} cannot take images of size {hw[0]}x{hw[1]}: its feature map would shrink "
            f"to {final[0]}x{final[1]} (it needs at least {minimum}x{minimum}); use {hint}"
        )
    return final
