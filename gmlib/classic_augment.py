"""DC's classic evaluation augmentation for MNIST (kind ``"mnist"``), batched.

Every image gets one random op among crop, scale and rotate, done exactly as the reference code
does them (mean-padded crop, nearest-neighbour resize on a zero canvas, cubic-spline rotation),
but for the whole batch at once; :class:`ClassicRecipe` describes the op set and each detail, so
that variants (such as gmlib's earlier affine approximation) can be measured against it.
:func:`classic_per_image` is the plain per-image version the tests hold the batched one to.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from gmlib.image_warp import (
    check_images,
    gather_pixels,
    rotation_theta,
    scale_theta,
    shift_with_zeros,
    uniform,
    warp,
)

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
        scale=uniform((n, 2), recipe.scale_range[0], recipe.scale_range[1], generator),
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
    return gather_pixels(x, source_index(height, h, canvas), source_index(width, w, canvas))


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
        return shift_with_zeros(x - mean, params.shift[:, 0], params.shift[:, 1]) + mean
    if name == "noise":
        return x + recipe.noise_std * params.noise.to(x)
    if recipe.resample == "affine":  # gmlib 0.1: bilinear warps about the centre
        if name == "scale":
            scale = params.scale.to(x)
            return warp(x - scale_fill, scale_theta(1.0 / scale[:, 1], 1.0 / scale[:, 0])) + scale_fill
        return warp(x - mean, rotation_theta(params.degrees.to(x), height, width)) + mean
    if name == "scale":
        sides = torch.tensor([height, width], device=x.device, dtype=torch.float64)
        sizes = torch.floor(params.scale.to(torch.float64) * sides).long()
        return _resize_nearest_centred(x - scale_fill, sizes) + scale_fill
    return _rotate_spline_centred(x, params.degrees, mean.mean())


def apply_classic(x: Tensor, params: ClassicParams, recipe: ClassicRecipe = MNIST_REFERENCE) -> Tensor:
    """Apply drawn classic parameters: each op runs once, batched, on the images that drew it.

    Fills use the batch's per-channel mean, taken before augmenting, as the reference does.
    """
    check_images(x)
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
    check_images(x)
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
    check_images(x)
    return apply_classic(x, sample_classic(x.shape, generator, recipe), recipe)
