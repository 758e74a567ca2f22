"""Image augmentation on batched tensors: DSA and the classic evaluation augmentation of DC.

Everything here works on a batch ``x`` of shape ``(N, C, H, W)`` in *normalised* space, stays on
``x``'s device, and has no Python loop over images. Randomness comes only from the
``torch.Generator`` passed in: parameters are drawn on the generator's device (a CPU generator
gives the same draws on every device) and then moved to ``x``'s device.

Two augmentations:

* **DSA** (differentiable Siamese augmentation, Zhao & Bilen 2021). Each call picks ONE family
  from the strategy (``color``, ``crop``, ``cutout``, ``flip``, ``scale``, ``rotate``) and draws
  its parameters either per image (evaluation, inner-loop training) or once for the whole batch
  (*Siamese*: during matching the real and the synthetic batch of a class share one draw).
  :func:`sample_dsa` returns a :class:`DSATransform` that can be applied to any batch, so the same
  draw reaches both batches. Every operation is differentiable with respect to the images, which
  is what lets the matching loss reach the synthetic pixels.
* **classic** (kind ``"mnist"``): DC's evaluation augmentation for MNIST. Every image gets one
  random op among crop, scale and rotate, done exactly as the reference code does them
  (mean-padded crop, nearest-neighbour resize on a zero canvas, cubic-spline rotation), but for
  the whole batch at once; :class:`ClassicRecipe` describes the op set and each detail, so that
  variants (such as gmlib's earlier affine approximation) can be measured against it.

:func:`augment` is the one entry point the evaluation protocol calls.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

AUGMENT_KINDS = ("none", "mnist", "dsa")
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
# Small helpers shared by both augmentations
# --------------------------------------------------------------------------------------------


def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"images must be a tensor of shape (N, C, H, W), got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"images must be floating point, got dtype {x.dtype}")


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator) -> Tensor:
    """U(low, high) draws on the generator's device."""
    return low + (high - low) * torch.rand(shape, generator=generator, device=generator.device)


def _as_batch_param(value: Tensor, x: Tensor) -> Tensor:
    """A per-image parameter of shape (n,) on x's device and dtype, n = 1 or N."""
    return value.to(device=x.device, dtype=x.dtype if value.is_floating_point() else value.dtype)


def _per_image(value: Tensor) -> Tensor:
    """(n,) -> (n, 1, 1, 1), to broadcast one number per image over (C, H, W)."""
    return value.view(-1, 1, 1, 1)


def _warp(x: Tensor, theta: Tensor) -> Tensor:
    """Resample every image with its own 2x3 affine matrix; pixels from outside become 0.

    ``theta`` maps output coordinates to sampling coordinates in grid_sample's normalised
    [-1, 1] frame (align_corners=False, so pixel centres map to pixel centres under integer
    shifts and quarter turns). A single (1, 2, 3) matrix is shared by the whole batch.
    """
    theta = theta.expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _identity_theta(n: int, like: Tensor) -> Tensor:
    theta = torch.zeros(n, 2, 3, device=like.device, dtype=like.dtype)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    return theta


def _scale_theta(sx: Tensor, sy: Tensor) -> Tensor:
    """Sampling-grid scale: sx > 1 samples a wider region, so the content shrinks."""
    theta = _identity_theta(sx.shape[0], sx)
    theta[:, 0, 0] = sx
    theta[:, 1, 1] = sy
    return theta


def _rotation_theta(degrees: Tensor, height: int, width: int) -> Tensor:
    """Rotate the content by ``degrees`` about the image centre (positive = counter-clockwise
    as displayed, i.e. with rows growing downwards).

    The rotation acts in pixel units; the H/W factors convert it into grid_sample's normalised
    frame so that non-square images are not sheared.
    """
    radians = degrees * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    theta = _identity_theta(degrees.shape[0], degrees)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin * (height / width)
    theta[:, 1, 0] = sin * (width / height)
    theta[:, 1, 1] = cos
    return theta


# --------------------------------------------------------------------------------------------
# DSA: the operations, each differentiable in x and taking (n,) parameters, n = 1 or N
# --------------------------------------------------------------------------------------------


def _dsa_color(x: Tensor, brightness: Tensor, saturation: Tensor, contrast: Tensor) -> Tensor:
    """Brightness (add), then saturation (scale away from the per-pixel channel mean), then
    contrast (scale away from the per-image mean), as in DSA."""
    x = x + _per_image(brightness)
    pixel_mean = x.mean(dim=1, keepdim=True)
    x = (x - pixel_mean) * _per_image(saturation) + pixel_mean
    image_mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - image_mean) * _per_image(contrast) + image_mean


def _gather_pixels(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """out[n, :, i, j] = x[n, :, rows[n, i], cols[n, j]], and 0 where that index falls outside
    the image. ``rows``: (N, H_out), ``cols``: (N, W_out) integer tensors."""
    n, _, height, width = x.shape
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    rows, cols = rows.clamp(0, height - 1), cols.clamp(0, width - 1)
    batch = torch.arange(n, device=x.device).view(-1, 1, 1)
    # Advanced indices on dims 0, 2, 3 broadcast to (N, H, W) and come first: result (N, H, W, C).
    gathered = x[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    return gathered * inside.unsqueeze(1).to(x.dtype)


def _shift_with_zeros(x: Tensor, shift_y: Tensor, shift_x: Tensor) -> Tensor:
    """Move each image by whole pixels (down, right), filling uncovered pixels with 0: exact
    (no interpolation), differentiable in x, and no host-device synchronisation."""
    _, _, height, width = x.shape
    rows = torch.arange(height, device=x.device) - shift_y.view(-1, 1)  # (n, H) source rows
    cols = torch.arange(width, device=x.device) - shift_x.view(-1, 1)  # (n, W) source cols
    return _gather_pixels(x, rows, cols)


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
    return torch.where(_per_image(flip), x.flip(3), x)


def _apply_family(x: Tensor, family: str, params: Mapping[str, Tensor]) -> Tensor:
    p = {name: _as_batch_param(value, x) for name, value in params.items()}
    _, _, height, width = x.shape
    if family == "color":
        return _dsa_color(x, p["brightness"], p["saturation"], p["contrast"])
    if family == "crop":
        return _shift_with_zeros(x, p["shift_y"], p["shift_x"])
    if family == "cutout":
        return _dsa_cutout(x, p["center_y"], p["center_x"])
    if family == "flip":
        return _dsa_flip(x, p["flip"])
    if family == "scale":
        return _warp(x, _scale_theta(p["sx"], p["sy"]))
    if family == "rotate":
        return _warp(x, _rotation_theta(p["degrees"], height, width))
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
            "brightness": _uniform((n,), -0.5, 0.5, generator),
            "saturation": _uniform((n,), 0.0, 2.0, generator),
            "contrast": _uniform((n,), 0.5, 1.5, generator),
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
            "sx": _uniform((n,), 1.0 / DSA_SCALE_RATIO, DSA_SCALE_RATIO, generator),
            "sy": _uniform((n,), 1.0 / DSA_SCALE_RATIO, DSA_SCALE_RATIO, generator),
        }
    if family == "rotate":
        return {"degrees": _uniform((n,), -DSA_MAX_DEGREES, DSA_MAX_DEGREES, generator)}
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
        _check_images(x)
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
    _check_images(x)
    return sample_dsa(x.shape, strategy, generator, siamese=siamese)(x)


# --------------------------------------------------------------------------------------------
# The classic DC evaluation augmentation for MNIST
# --------------------------------------------------------------------------------------------

CLASSIC_OPS = ("crop", "scale", "rotate", "noise")
CLASSIC_FILLS = ("zero", "mean")
CLASSIC_RESAMPLINGS = ("reference", "affine")


@dataclass(frozen=True)
class ClassicRecipe:
    """How the classic augmentation transforms an image; the defaults are exactly what DC's
    reference code does for MNIST (its strategy ``crop_scale_rotate``).

    Every image gets ONE op drawn uniformly from ``ops``:

    * crop: pad 4 pixels with the channel mean and cut a window at a random offset ``o`` in
      0..7, so the content moves by ``4 - o``, a whole number of pixels in ``shift_range``
      (-3..4, down/right), per axis;
    * scale: height and width each become ``int(U(scale_range) * side)`` pixels; the resized
      image is centred on a canvas filled with ``scale_fill`` and the centre cut out;
    * rotate: an integer angle in ``[-max_degrees, max_degrees)``, the output grown to hold the
      whole rotated image, uncovered pixels filled with the mean of the channel means, the
      centre cut out;
    * noise (not among the reference's MNIST ops): add ``noise_std * N(0, 1)``.

    ``resample='reference'`` resizes by nearest neighbour (as ``F.interpolate`` does) and rotates
    with cubic-spline interpolation (as ``scipy.ndimage.rotate`` does); both are reproduced
    exactly, batched. ``'affine'`` does scale and rotate as one bilinear affine warp about the
    centre with a continuous magnification, gmlib's earlier approximation.
    """

    ops: tuple[str, ...] = ("crop", "scale", "rotate")
    shift_range: tuple[int, int] = (-3, 4)
    scale_range: tuple[float, float] = (0.8, 1.2)
    max_degrees: int = 45
    scale_fill: str = "zero"
    resample: str = "reference"
    noise_std: float = 0.001

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        object.__setattr__(self, "shift_range", tuple(self.shift_range))
        object.__setattr__(self, "scale_range", tuple(self.scale_range))
        if not self.ops or any(op not in CLASSIC_OPS for op in self.ops) or len(set(self.ops)) != len(self.ops):
            raise ValueError(f"ops must be distinct names among {', '.join(CLASSIC_OPS)}, got {self.ops!r}")
        low, high = self.shift_range
        if not (isinstance(low, int) and isinstance(high, int) and low <= high):
            raise ValueError(f"shift_range must be two integers (low, high) with low <= high, got {self.shift_range!r}")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range!r}")
        if not isinstance(self.max_degrees, int) or self.max_degrees < 1:
            raise ValueError(f"max_degrees must be an integer >= 1, got {self.max_degrees!r}")
        if self.scale_fill not in CLASSIC_FILLS:
            raise ValueError(f"scale_fill must be one of {', '.join(CLASSIC_FILLS)}, got {self.scale_fill!r}")
        if self.resample not in CLASSIC_RESAMPLINGS:
            raise ValueError(f"resample must be one of {', '.join(CLASSIC_RESAMPLINGS)}, got {self.resample!r}")
        if not self.noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std!r}")


# The reference's MNIST augmentation, and gmlib's earlier approximation of it (four ops with
# noise, shifts -4..4, every fill the mean, bilinear affine warps), kept for the comparison.
MNIST_REFERENCE = ClassicRecipe()
MNIST_AFFINE = ClassicRecipe(ops=CLASSIC_OPS, shift_range=(-4, 4), scale_fill="mean", resample="affine")


@dataclass(frozen=True, eq=False)
class ClassicParams:
    """Per-image draws of the classic augmentation (all tensors have N rows).

    op: index into :data:`CLASSIC_OPS`; shift: (N, 2) whole pixels (down, right) for crop;
    scale: (N, 2) size factors (y, x) for scale; degrees: (N,) whole degrees for rotate;
    noise: (N, C, H, W) standard normal for noise, or None when the recipe has no noise op.
    """

    op: Tensor
    shift: Tensor
    scale: Tensor
    degrees: Tensor
    noise: Tensor | None = None


def sample_classic(
    shape: tuple[int, ...] | torch.Size, generator: torch.Generator, recipe: ClassicRecipe = MNIST_REFERENCE
) -> ClassicParams:
    """Draw the classic augmentation for a batch of ``shape``: one op per image, uniformly
    among ``recipe.ops``, and every op's parameters for every image (see :class:`ClassicRecipe`)."""
    if len(shape) != 4:
        raise ValueError(f"shape must be (N, C, H, W), got {tuple(shape)}")
    n = int(shape[0])
    device = generator.device
    choice = torch.randint(len(recipe.ops), (n,), generator=generator, device=device)
    op = torch.tensor([CLASSIC_OPS.index(name) for name in recipe.ops], device=device)[choice]
    low, high = recipe.shift_range
    return ClassicParams(
        op=op,
        shift=torch.randint(low, high + 1, (n, 2), generator=generator, device=device),
        scale=_uniform((n, 2), recipe.scale_range[0], recipe.scale_range[1], generator),
        degrees=torch.randint(-recipe.max_degrees, recipe.max_degrees, (n,), generator=generator, device=device),
        noise=torch.randn(tuple(int(s) for s in shape), generator=generator, device=device)
        if "noise" in recipe.ops else None,
    )


def _resize_nearest_centred(x: Tensor, sizes: Tensor) -> Tensor:
    """Resize image n to ``sizes[n] = (h, w)`` pixels by nearest neighbour (``F.interpolate``'s
    default: source index floor(i * side / size)), centre it on a zero canvas of side max(h, w,
    H, W) and cut out the centre H x W; the reference's scale op, for all images at once."""
    _, _, height, width = x.shape

    def source_index(side: int, size: Tensor, canvas: Tensor) -> Tensor:
        out = torch.arange(side, device=x.device) + torch.div(canvas - side, 2, rounding_mode="floor")
        resized = out - torch.div(canvas - size, 2, rounding_mode="floor")  # index in the resized image
        ratio = torch.tensor(float(side), dtype=torch.float32, device=x.device) / size.to(torch.float32)
        source = torch.floor(resized.to(torch.float32) * ratio).long().clamp(max=side - 1)
        return torch.where((resized >= 0) & (resized < size), source, -1)  # -1: outside = zero

    h, w = sizes[:, :1], sizes[:, 1:]
    canvas = torch.maximum(torch.maximum(h, w), torch.tensor(max(height, width), device=x.device))
    return _gather_pixels(x, source_index(height, h, canvas), source_index(width, w, canvas))


@functools.lru_cache(maxsize=8)
def _spline_prefilter(side: int) -> Tensor:
    """The (side, side) matrix that turns samples into cubic B-spline coefficients under
    mirror boundaries: the inverse of c -> (c[i-1] + 4 c[i] + c[i+1]) / 6 (scipy's prefilter)."""
    samples = torch.zeros(side, side, dtype=torch.float64)
    for i in range(side):
        for j, weight in ((i - 1, 1 / 6), (i, 4 / 6), (i + 1, 1 / 6)):
            samples[i, _mirror_index(torch.tensor(j), side)] += weight
    return torch.linalg.inv(samples)


def _mirror_index(index: Tensor, side: int) -> Tensor:
    """Reflect indices about the first and last pixel (..., 2, 1, 0, 1, 2, ..., side-1, side-2, ...)."""
    if side == 1:
        return torch.zeros_like(index)
    period = 2 * (side - 1)
    index = index.abs() % period
    return torch.where(index > side - 1, period - index, index)


def _spline_sample_points(position: Tensor, side: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Cubic B-spline interpolation along one axis as two linear interpolations.

    At ``position`` the spline weighs the four coefficients at floor - 1 .. floor + 2 by w0..w3.
    The pair (w0, w1) equals (w0 + w1) times a linear interpolation between the first two taps at
    floor - 1 + w1 / (w0 + w1); likewise (w2, w3). Returns the two positions, normalised to
    grid_sample's [-1, 1] (align_corners=True), and the two pair weights.
    """
    first = torch.floor(position)
    f = (position - first).to(torch.float32)  # float64 up to here: the fraction is what must be exact
    first = first.to(torch.float32)
    g = 1 - f
    w0, w1, w2, w3 = g**3 / 6, 2 / 3 - f**2 + f**3 / 2, 2 / 3 - g**2 + g**3 / 2, f**3 / 6
    low, high = w0 + w1, w2 + w3  # both >= 1/6
    scale = 2.0 / (side - 1)
    return (first - 1 + w1 / low) * scale - 1, (first + 1 + w3 / high) * scale - 1, low, high


def _rotate_spline_centred(x: Tensor, degrees: Tensor, fill: Tensor) -> Tensor:
    """Rotate image n by ``degrees[n]`` as ``scipy.ndimage.rotate(reshape=True, order=3,
    mode='constant', cval=fill)`` does, then cut out the centre H x W as the reference does; all
    images at once. Positions outside the input take ``fill``."""
    n, channels, height, width = x.shape
    if min(height, width) < 2:
        raise ValueError(f"the classic rotation needs images of at least 2 x 2 pixels, got {height} x {width}")
    radians = degrees.to(torch.float64) * (math.pi / 180.0)
    cos, sin = torch.cos(radians).view(-1, 1, 1), torch.sin(radians).view(-1, 1, 1)
    # Size of the grown output plane (the rotated bounding box, rounded), and the crop's corner.
    grown_h = torch.floor(cos.abs() * height + sin.abs() * width + 0.5)
    grown_w = torch.floor(sin.abs() * height + cos.abs() * width + 0.5)
    top = torch.div(grown_h - height, 2, rounding_mode="trunc")
    left = torch.div(grown_w - width, 2, rounding_mode="trunc")
    rows = torch.arange(height, device=x.device, dtype=torch.float64).view(1, -1, 1) + top
    cols = torch.arange(width, device=x.device, dtype=torch.float64).view(1, 1, -1) + left
    dy, dx = rows - (grown_h - 1) / 2, cols - (grown_w - 1) / 2
    source_y = cos * dy + sin * dx + (height - 1) / 2  # (N, H, W) positions in the input
    source_x = -sin * dy + cos * dx + (width - 1) / 2
    outside = (source_y < 0) | (source_y > height - 1) | (source_x < 0) | (source_x > width - 1)

    # Cubic-spline interpolation: prefilter the samples to coefficients (one matrix per axis),
    # then four bilinear samples of them with mirror boundaries (scipy's) per output pixel.
    coefficients = x @ _spline_prefilter(width).to(x).T
    coefficients = (coefficients.transpose(-1, -2) @ _spline_prefilter(height).to(x).T).transpose(-1, -2)
    y_low, y_high, wy_low, wy_high = _spline_sample_points(source_y, height)
    x_low, x_high, wx_low, wx_high = _spline_sample_points(source_x, width)
    # The four (y, x) sample grids stacked along the height: (low, low), (low, high), (high, low), (high, high).
    grid_x = torch.cat([x_low, x_high, x_low, x_high], dim=1)
    grid_y = torch.cat([y_low, y_low, y_high, y_high], dim=1)
    grid = torch.stack([grid_x, grid_y], dim=-1).to(x.dtype)  # (N, 4H, W, 2)
    samples = F.grid_sample(coefficients, grid, mode="bilinear", padding_mode="reflection",
                            align_corners=True).view(n, channels, 4, height, width)
    weights = torch.stack([wy * wx for wy in (wy_low, wy_high) for wx in (wx_low, wx_high)], dim=1).to(x.dtype)
    rotated = (samples * weights.unsqueeze(1)).sum(dim=2)
    return torch.where(outside.unsqueeze(1), fill.to(x.dtype), rotated)


def _classic_op(name: str, x: Tensor, params: ClassicParams, recipe: ClassicRecipe, mean: Tensor) -> Tensor:
    """Op ``name`` on the images ``x`` that drew it, with their parameters; ``mean`` is the whole
    batch's per-channel mean (the fill)."""
    _, _, height, width = x.shape
    scale_fill = mean if recipe.scale_fill == "mean" else torch.zeros_like(mean)
    if name == "crop":
        return _shift_with_zeros(x - mean, params.shift[:, 0], params.shift[:, 1]) + mean
    if name == "noise":
        return x + recipe.noise_std * params.noise.to(x)
    if recipe.resample == "affine":  # gmlib 0.1: bilinear warps about the centre
        if name == "scale":
            scale = params.scale.to(x)
            return _warp(x - scale_fill, _scale_theta(1.0 / scale[:, 1], 1.0 / scale[:, 0])) + scale_fill
        return _warp(x - mean, _rotation_theta(params.degrees.to(x), height, width)) + mean
    if name == "scale":
        sides = torch.tensor([height, width], device=x.device, dtype=torch.float64)
        sizes = torch.floor(params.scale.to(torch.float64) * sides).long()
        return _resize_nearest_centred(x - scale_fill, sizes) + scale_fill
    return _rotate_spline_centred(x, params.degrees, mean.mean())


def apply_classic(x: Tensor, params: ClassicParams, recipe: ClassicRecipe = MNIST_REFERENCE) -> Tensor:
    """Apply drawn classic parameters: each op runs once, batched, on the images that drew it.

    Fills use the batch's per-channel mean, taken before augmenting, as the reference does.
    """
    _check_images(x)
    n = x.shape[0]
    params = ClassicParams(*(None if p is None else p.to(x.device) for p in
                             (params.op, params.shift, params.scale, params.degrees, params.noise)))
    if params.op.shape != (n,):
        raise ValueError(f"classic parameters were drawn for {params.op.shape[0]} images, the batch has {n}")
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    out = x.clone()
    for index, name in enumerate(CLASSIC_OPS):
        chosen = torch.nonzero(params.op == index).squeeze(1)
        if chosen.numel() == 0:
            continue
        if name == "noise" and params.noise is None:
            raise ValueError("some images drew the noise op but the parameters hold no noise; draw them with a "
                             "recipe whose ops include 'noise'")
        subset = ClassicParams(*(None if p is None else p[chosen] for p in
                                 (params.op, params.shift, params.scale, params.degrees, params.noise)))
        out[chosen] = _classic_op(name, x[chosen], subset, recipe, mean)
    return out


def classic_per_image(x: Tensor, params: ClassicParams, recipe: ClassicRecipe = MNIST_REFERENCE) -> Tensor:
    """The classic augmentation the plain way, one image at a time as DC's code does it (padding
    and slicing, ``F.interpolate``, ``scipy.ndimage.rotate``): what :func:`apply_classic` must
    equal (tests) and beat (benchmarks). Only ``resample='reference'`` has a plain version."""
    from scipy.ndimage import rotate

    if recipe.resample != "reference":
        raise ValueError(f"only resample='reference' has a per-image version, got {recipe.resample!r}")
    _check_images(x)
    channels, height, width = x.shape[1:]
    mean = x.mean(dim=(0, 2, 3)).view(-1, 1, 1)
    pad = max(recipe.shift_range[1], -recipe.shift_range[0], 0)
    out = x.clone()
    for i in range(x.shape[0]):
        op = CLASSIC_OPS[int(params.op[i])]
        if op == "crop":
            padded = mean.expand(channels, height + 2 * pad, width + 2 * pad).clone()
            padded[:, pad : pad + height, pad : pad + width] = x[i]
            top, left = (pad - int(s) for s in params.shift[i])
            out[i] = padded[:, top : top + height, left : left + width]
        elif op == "scale":
            h, w = int(float(params.scale[i, 0]) * height), int(float(params.scale[i, 1]) * width)
            side = max(h, w, height, width)
            canvas = (mean if recipe.scale_fill == "mean" else torch.zeros_like(mean)).expand(channels, side, side).clone()
            top, left = (side - h) // 2, (side - w) // 2
            canvas[:, top : top + h, left : left + w] = F.interpolate(x[i : i + 1], [h, w])[0]
            top, left = (side - height) // 2, (side - width) // 2
            out[i] = canvas[:, top : top + height, left : left + width]
        elif op == "rotate":
            rotated = rotate(x[i].cpu().numpy(), angle=int(params.degrees[i]), axes=(-2, -1), cval=float(mean.mean()))
            top, left = (rotated.shape[1] - height) // 2, (rotated.shape[2] - width) // 2
            out[i] = torch.from_numpy(rotated[:, top : top + height, left : left + width].copy()).to(x)
        elif op == "noise":
            out[i] = x[i] + recipe.noise_std * params.noise[i].to(x)
    return out


def classic_augment(x: Tensor, generator: torch.Generator, recipe: ClassicRecipe = MNIST_REFERENCE) -> Tensor:
    """DC's MNIST evaluation augmentation with per-image random draws (see :class:`ClassicRecipe`)."""
    _check_images(x)
    return apply_classic(x, sample_classic(x.shape, generator, recipe), recipe)


# --------------------------------------------------------------------------------------------
# The entry point used by the evaluation protocol
# --------------------------------------------------------------------------------------------


def check_augment_kind(kind: str) -> str:
    if kind not in AUGMENT_KINDS:
        raise ValueError(f"unknown augmentation {kind!r}; allowed: {', '.join(repr(k) for k in AUGMENT_KINDS)}")
    return kind


def augment(
    x: Tensor,
    kind: str,
    generator: torch.Generator,
    *,
    dsa_strategy: str = DEFAULT_DSA_STRATEGY,
    classic: ClassicRecipe = MNIST_REFERENCE,
) -> Tensor:
    """Augment a training batch: ``'none'`` (x unchanged), ``'mnist'`` (DC's classic MNIST
    augmentation done as ``classic`` says, per-image ops) or ``'dsa'`` (one DSA family per call,
    per-image draws)."""
    check_augment_kind(kind)
    if kind == "none":
        return x
    if kind == "mnist":
        return classic_augment(x, generator, classic)
    return dsa(x, dsa_strategy, generator)
