"""What both augmentations share: batched affine warps, their matrices, and parameter draws.

Everything works on a batch ``x`` of shape ``(N, C, H, W)`` in normalised space and stays on
``x``'s device; parameters are drawn on the generator's device (a CPU generator gives the same
draws on every device) and then moved to ``x``'s device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"images must be a tensor of shape (N, C, H, W), got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"images must be floating point, got dtype {x.dtype}")


def uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator) -> Tensor:
    """U(low, high) draws on the generator's device."""
    return low + (high - low) * torch.rand(shape, generator=generator, device=generator.device)


def as_batch_param(value: Tensor, x: Tensor) -> Tensor:
    """A per-image parameter of shape (n,) on x's device and dtype, n = 1 or N."""
    return value.to(device=x.device, dtype=x.dtype if value.is_floating_point() else value.dtype)


def per_image(value: Tensor) -> Tensor:
    """(n,) -> (n, 1, 1, 1), to broadcast one number per image over (C, H, W)."""
    return value.view(-1, 1, 1, 1)


def warp(x: Tensor, theta: Tensor) -> Tensor:
    """Resample every image with its own 2x3 affine matrix; pixels from outside become 0.

    ``theta`` maps output coordinates to sampling coordinates in grid_sample's normalised
    [-1, 1] frame (align_corners=False, so pixel centres map to pixel centres under integer
    shifts and quarter turns). A single (1, 2, 3) matrix is shared by the whole batch.
    """
    theta = theta.expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def identity_theta(n: int, like: Tensor) -> Tensor:
    theta = torch.zeros(n, 2, 3, device=like.device, dtype=like.dtype)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    return theta


def scale_theta(sx: Tensor, sy: Tensor) -> Tensor:
    """Sampling-grid scale: sx > 1 samples a wider region, so the content shrinks."""
    theta = identity_theta(sx.shape[0], sx)
    theta[:, 0, 0] = sx
    theta[:, 1, 1] = sy
    return theta


def rotation_theta(degrees: Tensor, height: int, width: int) -> Tensor:
    """Rotate the content by ``degrees`` about the image centre (positive = counter-clockwise
    as displayed, i.e. with rows growing downwards).

    The rotation acts in pixel units; the H/W factors convert it into grid_sample's normalised
    frame so that non-square images are not sheared.
    """
    radians = degrees * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    theta = identity_theta(degrees.shape[0], degrees)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin * (height / width)
    theta[:, 1, 0] = sin * (width / height)
    theta[:, 1, 1] = cos
    return theta


def gather_pixels(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """out[n, :, i, j] = x[n, :, rows[n, i], cols[n, j]], and 0 where that index falls outside
    the image. ``rows``: (N, H_out), ``cols``: (N, W_out) integer tensors."""
    n, _, height, width = x.shape
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    rows, cols = rows.clamp(0, height - 1), cols.clamp(0, width - 1)
    batch = torch.arange(n, device=x.device).view(-1, 1, 1)
    # Advanced indices on dims 0, 2, 3 broadcast to (N, H, W) and come first: result (N, H, W, C).
    gathered = x[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    return gathered * inside.unsqueeze(1).to(x.dtype)


def shift_with_zeros(x: Tensor, shift_y: Tensor, shift_x: Tensor) -> Tensor:
    """Move each image by whole pixels (down, right), filling uncovered pixels with 0: exact
    (no interpolation), differentiable in x, and no host-device synchronisation."""
    _, _, height, width = x.shape
    rows = torch.arange(height, device=x.device) - shift_y.view(-1, 1)  # (n, H) source rows
    cols = torch.arange(width, device=x.device) - shift_x.view(-1, 1)  # (n, W) source cols
    return gather_pixels(x, rows, cols)
