"""Measuring networks: parameter counts, FLOPs, and whether BatchNorm couples the batch."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(net: nn.Module) -> int:
    """Number of parameter values (shared parameters counted once; buffers not counted)."""
    return sum(p.numel() for p in net.parameters())


def has_batchnorm(net: nn.Module) -> bool:
    """Whether ``net`` contains a BatchNorm layer (its batch statistics couple the images)."""
    batchnorms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    return any(isinstance(module, batchnorms) for module in net.modules())


def count_flops(net: nn.Module, input_shape: Sequence[int], *, backward: bool = False) -> int:
    """FLOPs for one image of shape ``input_shape`` = (C, H, W), counted by FlopCounterMode.

    A multiply-add counts 2 FLOPs; only convolutions and matrix products are counted (norms,
    activations and pooling are not). With ``backward=True`` the count adds the backward pass
    that training needs: gradients for every parameter and for every layer's input except the
    image itself. The network runs in eval mode (no dropout, no BatchNorm statistics update) and
    its modes and ``.grad`` fields are left as they were.
    """
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(s, numbers.Integral) and s > 0 for s in shape):
        raise ValueError(f"input_shape must be (channels, height, width) of positive ints, got {input_shape!r}")
    reference = next(net.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    image = torch.zeros(1, *shape, device=device, dtype=dtype)

    modes = [(module, module.training) for module in net.modules()]
    net.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.set_grad_enabled(backward):
            out = net(image)
            params = [p for p in net.parameters() if p.requires_grad]
            if backward and params:
                torch.autograd.grad(out.sum(), params)  # not .backward(): leaves .grad untouched
    finally:
        for module, training in modes:
            module.training = training
    return int(counter.get_total_flops())
