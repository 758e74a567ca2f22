"""DSA: differentiable Siamese augmentation (Zhao & Bilen 2021), batched.

Each call picks ONE family from the strategy (``color``, ``crop``, ``cutout``, ``flip``,
``scale``, ``rotate``) and draws its parameters either per image (evaluation, inner-loop
training) or once for the whole batch (*Siamese*: during matching the real and the synthetic
batch of a class share one draw). :func:`sample_dsa` returns a :class:`DSATransform` that can be
applied to any batch, so the same draw reaches both batches. Every operation is differentiable
with respect to the images, which is what lets the matching loss reach the synthetic pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor

from gmlib.image_warp import (
    as_batch_param,
    check_images,
    per_image,
    rotation_theta,
    scale_theta,
    shift_with_zeros,
    uniform,
    warp,
)

DSA_FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")
DEFAULT_DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"

# DSA's parameter ranges (reference-defaults.md, "Evaluation protocol").
DSA_SCALE_RATIO = 1.2  # sx, sy ~ U(1/1.2, 1.2)
DSA_MAX_DEGREES = 15.0  # rotation angle ~ U(-15, 15) degrees
DSA_CROP_FRACTION = 0.125  # shift up to +-1/8 of the side (4 px at 32 px)
DSA_CUTOUT_FRACTION = 0.5  # cutout square side = half the image side
DSA_FLIP_PROBABILITY = 0.5

# The parameters each family's transform takes (see DSATransform).
DSA_PARAMETERS = {
    "color": ("brightness", "saturation", "contrast"),
    "crop": ("shift_y", "shift_x"),
    "cutout": ("center_y", "center_x"),
    "flip": ("flip",),
    "scale": ("sx", "sy"),
    "rotate": ("degrees",),
}

# Digits change meaning when mirrored, so their DSA strategy drops "flip".
_DIGIT_DATASETS = ("mnist", "svhn")
_OTHER_DATASETS = ("fashionmnist", "cifar10", "cifar100")


# --------------------------------------------------------------------------------------------
# DSA: the operations, each differentiable in x and taking (n,) parameters, n = 1 or N
# --------------------------------------------------------------------------------------------


def _dsa_color(x: Tensor, brightness: Tensor, saturation: Tensor, contrast: Tensor) -> Tensor:
    """Brightness (add), then saturation (scale away from the per-pixel channel mean), then
    contrast (scale away from the per-image mean), as in DSA."""
    x = x + per_image(brightness)
    pixel_mean = x.mean(dim=1, keepdim=True)
    x = (x - pixel_mean) * per_image(saturation) + pixel_mean
    image_mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - image_mean) * per_image(contrast) + image_mean


def _dsa_cutout(x: Tensor, center_y: Tensor, center_x: Tensor) -> Tensor:
    """Zero a square of half the image side centred on (center_y, center_x), clipped at the border."""
    _, _, height, width = x.shape
    size_y = int(height * DSA_CUTOUT_FRACTION + 0.5)
    size_x = int(width * DSA_CUTOUT_FRACTION + 0.5)
    top = (center_y - size_y // 2).view(-1, 1)
    left = (center_x - size_x // 2).view(-1, 1)
    rows = torch.arange(height, device=x.device).view(1, -1)
    cols = torch.arange(width, device=x.device).view(1, -1)
    in_rows = (rows >= top) & (rows < top + size_y)  # (n, H)
    in_cols = (cols >= left) & (cols < left + size_x)  # (n, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # (n, H, W)
    return x * keep.unsqueeze(1).to(x.dtype)


def _dsa_flip(x: Tensor, flip: Tensor) -> Tensor:
    """Mirror left-right the images whose ``flip`` flag is set."""
    return torch.where(per_image(flip), x.flip(3), x)


def _apply_family(x: Tensor, family: str, params: Mapping[str, Tensor]) -> Tensor:
    p = {name: as_batch_param(value, x) for name, value in params.items()}
    _, _, height, width = x.shape
    if family == "color":
        return _dsa_color(x, p["brightness"], p["saturation"], p["contrast"])
    if family == "crop":
        return shift_with_zeros(x, p["shift_y"], p["shift_x"])
    if family == "cutout":
        return _dsa_cutout(x, p["center_y"], p["center_x"])
    if family == "flip":
        return _dsa_flip(x, p["flip"])
    if family == "scale":
        return warp(x, scale_theta(p["sx"], p["sy"]))
    if family == "rotate":
        return warp(x, rotation_theta(p["degrees"], height, width))
    raise ValueError(f"unknown DSA family {family!r}; allowed: {', '.join(DSA_FAMILIES)}")


# --------------------------------------------------------------------------------------------
# DSA: strategies, parameter draws and the public transform object
# --------------------------------------------------------------------------------------------


def parse_dsa_strategy(strategy: str) -> tuple[str, ...]:
    """``'color_crop_cutout'`` -> ``('color', 'crop', 'cutout')``, checking every family name."""
    if not isinstance(strategy, str) or not strategy:
        raise ValueError(f"DSA strategy must be a non-empty string such as {DEFAULT_DSA_STRATEGY!r}, got {strategy!r}")
    families = tuple(strategy.split("_"))
    for family in families:
        if family not in DSA_FAMILIES:
            raise ValueError(
                f"unknown DSA family {family!r} in strategy {strategy!r}; allowed families: {', '.join(DSA_FAMILIES)}"
            )
    return families


def check_dsa_option(dsa: object, strategy: str | None) -> None:
    """A method's "augment with DSA" switch and its optional strategy (None = the dataset's)."""
    if not isinstance(dsa, bool):
        raise ValueError(f"dsa must be True or False, got {dsa!r}")
    if strategy is not None:
        if not dsa:
            raise ValueError(f"dsa_strategy={strategy!r} needs dsa=True")
        parse_dsa_strategy(strategy)


def dsa_strategy_for(dataset: str) -> str:
    """The DSA strategy for a dataset: the default, minus ``flip`` for digits (mnist, svhn).

    FashionMNIST keeps flip: a mirrored shirt is still a shirt.
    """
    key = dataset.lower().replace("-", "").replace("_", "")
    if key in _DIGIT_DATASETS:
        return DEFAULT_DSA_STRATEGY.replace("_flip", "")
    if key in _OTHER_DATASETS:
        return DEFAULT_DSA_STRATEGY
    raise ValueError(
        f"unknown dataset {dataset!r}; allowed: mnist, fashion-mnist, cifar10, cifar100, svhn"
    )


def _draw_family_params(family: str, n: int, height: int, width: int, generator: torch.Generator) -> dict[str, Tensor]:
    """n independent draws of one family's parameters, in the units :func:`_apply_family` takes."""
    if family == "color":
        return {
            "brightness": uniform((n,), -0.5, 0.5, generator),
            "saturation": uniform((n,), 0.0, 2.0, generator),
            "contrast": uniform((n,), 0.5, 1.5, generator),
        }
    if family == "crop":
        max_y = int(height * DSA_CROP_FRACTION + 0.5)
        max_x = int(width * DSA_CROP_FRACTION + 0.5)
        device = generator.device
        return {
            "shift_y": torch.randint(-max_y, max_y + 1, (n,), generator=generator, device=device),
            "shift_x": torch.randint(-max_x, max_x + 1, (n,), generator=generator, device=device),
        }
    if family == "cutout":
        device = generator.device
        return {
            "center_y": torch.randint(0, height, (n,), generator=generator, device=device),
            "center_x": torch.randint(0, width, (n,), generator=generator, device=device),
        }
    if family == "flip":
        return {"flip": torch.rand((n,), generator=generator, device=generator.device) < DSA_FLIP_PROBABILITY}
    if family == "scale":
        return {
            "sx": uniform((n,), 1.0 / DSA_SCALE_RATIO, DSA_SCALE_RATIO, generator),
            "sy": uniform((n,), 1.0 / DSA_SCALE_RATIO, DSA_SCALE_RATIO, generator),
        }
    if family == "rotate":
        return {"degrees": uniform((n,), -DSA_MAX_DEGREES, DSA_MAX_DEGREES, generator)}
    raise ValueError(f"unknown DSA family {family!r}; allowed: {', '.join(DSA_FAMILIES)}")


@dataclass(frozen=True, eq=False)
class DSATransform:
    """One DSA draw: a family and its parameters, applicable to any batch of the same image size.

    ``params`` maps names to tensors of shape ``(n,)``: n = 1 means one draw shared by every
    image (Siamese), n = N one draw per image of an N-image batch. Parameters by family:
    color: brightness (added), saturation, contrast (factors); crop: shift_y, shift_x (whole
    pixels, down/right, zero fill); cutout: center_y, center_x (pixel of the square's centre);
    flip: flip (bool); scale: sx, sy (sampling-grid factors); rotate: degrees.
    """

    family: str
    params: Mapping[str, Tensor]
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        if self.family not in DSA_FAMILIES:
            raise ValueError(f"unknown DSA family {self.family!r}; allowed: {', '.join(DSA_FAMILIES)}")
        expected = set(DSA_PARAMETERS[self.family])
        if set(self.params) != expected:
            raise ValueError(f"DSA family {self.family!r} takes parameters {sorted(expected)}, got {sorted(self.params)}")
        sizes = {value.shape for value in self.params.values()}
        if len(sizes) != 1 or len(next(iter(sizes))) != 1:
            raise ValueError(f"DSA parameters must be 1-D tensors of one common length, got shapes {sorted(sizes)}")

    @property
    def num_draws(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def __call__(self, x: Tensor) -> Tensor:
        check_images(x)
        if tuple(x.shape[-2:]) != tuple(self.image_size):
            raise ValueError(f"this DSA draw was made for {self.image_size} images, got {tuple(x.shape[-2:])}")
        if self.num_draws not in (1, x.shape[0]):
            raise ValueError(
                f"this DSA draw holds {self.num_draws} per-image parameters but the batch has {x.shape[0]} images; "
                "draw with siamese=True to share one draw across batches"
            )
        return _apply_family(x, self.family, self.params)


def sample_dsa(
    shape: tuple[int, ...] | torch.Size,
    strategy: str,
    generator: torch.Generator,
    *,
    siamese: bool = False,
) -> DSATransform:
    """Draw one DSA transform for batches of ``shape`` = (N, C, H, W).

    One family is picked uniformly from ``strategy``; its parameters are drawn once
    (``siamese=True``: the returned transform applies the same augmentation to every image of
    every batch it is called on, e.g. the real and the synthetic batch of a class) or once per
    image (``siamese=False``: for batches of exactly N images).
    """
    families = parse_dsa_strategy(strategy)
    if len(shape) != 4:
        raise ValueError(f"shape must be (N, C, H, W), got {tuple(shape)}")
    n, _, height, width = (int(s) for s in shape)
    choice = torch.randint(len(families), (1,), generator=generator, device=generator.device).item()
    family = families[choice]
    params = _draw_family_params(family, 1 if siamese else n, height, width, generator)
    return DSATransform(family=family, params=params, image_size=(height, width))


def dsa(x: Tensor, strategy: str, generator: torch.Generator, *, siamese: bool = False) -> Tensor:
    """Apply one random DSA transform to ``x`` (per-image draws unless ``siamese``)."""
    check_images(x)
    return sample_dsa(x.shape, strategy, generator, siamese=siamese)(x)


def apply_per_class(transforms: Sequence[DSATransform], x: Tensor) -> Tensor:
    """Apply ``transforms[c]`` (Siamese draws) to the c-th of ``len(transforms)`` equal, contiguous
    blocks of ``x``: every class's own draw on its own images, as a loop over the classes would,
    but with one call per family drawn instead of one per class."""
    check_images(x)
    classes = len(transforms)
    if classes == 0 or x.shape[0] % classes:
        raise ValueError(f"a batch of {x.shape[0]} images does not split into {classes} equal class blocks")
    if any(t.num_draws != 1 for t in transforms):
        raise ValueError("apply_per_class takes Siamese draws (sample_dsa(..., siamese=True)), one per class")
    per_class = x.shape[0] // classes
    blocks = x.reshape(classes, per_class, *x.shape[1:])
    by_family: dict[str, list[int]] = {}
    for c, transform in enumerate(transforms):
        by_family.setdefault(transform.family, []).append(c)
    order, pieces = [], []
    for family, members in by_family.items():
        params = {name: torch.cat([transforms[c].params[name] for c in members]).repeat_interleave(per_class)
                  for name in DSA_PARAMETERS[family]}
        pieces.append(_apply_family(blocks[members].flatten(0, 1), family, params))
        order += members
    inverse = torch.argsort(torch.tensor(order, device=x.device))
    return torch.cat(pieces).reshape(classes, per_class, *x.shape[1:])[inverse].flatten(0, 1)
