"""The ConvNet of DC/DSA/DM/MTT and its variants (width, depth, norm, activation, pooling)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from gmlib.networks.base import (
    ACTIVATIONS,
    NORMS,
    POOLINGS,
    EmbeddingNet,
    _conv,
    _make_activation,
    _make_norm,
    _make_pool,
)
from gmlib.networks.sizes import (
    ImageSize,
    _as_hw,
    _final_hw,
    _first_conv_padding,
    _first_padding,
    _one_of,
    _positive_int,
    _window_out,
)


def _convnet_sides(side: int, depth: int, pool: str) -> list[int]:
    """Side of each block's convolution output along one axis, then the final side."""
    conv_sides = []
    for block in range(depth):
        padding = _first_padding(side, 1) if block == 0 else 1
        side = _window_out(side, 3, padding=padding)
        conv_sides.append(side)
        if pool != "none":
            side = _window_out(side, 2, stride=2)
    return conv_sides + [side]


class ConvNet(EmbeddingNet):
    """The ConvNet of DC/DSA/DM/MTT: ``depth`` blocks of Conv3x3(width) -> norm -> act -> pool,
    then Linear(width * h * w -> classes) on the final h x w feature map.

    The default (width 128, depth 3, instancenorm, relu, avgpool) has a 2048-d feature for both
    28x28 and 32x32 inputs: 317,706 parameters on MNIST, 320,010 on CIFAR-10.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        im_size: ImageSize,
        *,
        width: int = 128,
        depth: int = 3,
        norm: str = "instancenorm",
        act: str = "relu",
        pool: str = "avgpool",
    ) -> None:
        width, depth = _positive_int("width", width), _positive_int("depth", depth)
        _one_of("norm", norm, NORMS)
        _one_of("act", act, ACTIVATIONS)
        _one_of("pool", pool, POOLINGS)
        h, w = _as_hw(im_size)
        name = f"convnet (depth {depth}, pool {pool!r})"
        final_h, final_w = _final_hw(name, (h, w), lambda side: _convnet_sides(side, depth, pool)[-1])
        conv_h, conv_w = _convnet_sides(h, depth, pool)[:-1], _convnet_sides(w, depth, pool)[:-1]

        blocks: list[tuple[str, nn.Module]] = []
        in_channels = channels
        for b in range(depth):
            layers: list[tuple[str, nn.Module | None]] = [
                ("conv", _conv(in_channels, width, 3, _first_conv_padding((h, w), 1) if b == 0 else 1)),
                ("norm", None if norm == "none" else _make_norm(norm, width, (conv_h[b], conv_w[b]))),
                ("act", _make_activation(act)),
                ("pool", _make_pool(pool)),
            ]
            # Leave out absent layers so parameter and module names stay block1.conv, block1.norm, ...
            blocks.append((f"block{b + 1}", nn.Sequential(OrderedDict((k, m) for k, m in layers if m is not None))))
            in_channels = width
        super().__init__(nn.Sequential(OrderedDict(blocks)), nn.Linear(width * final_h * final_w, num_classes))
