"""The deep networks: VGG11 and the CIFAR-style ResNet18, each with instance or batch norm."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from gmlib.networks.base import EmbeddingNet, _conv, _make_norm
from gmlib.networks.sizes import ImageSize, _as_hw, _final_hw, _first_conv_padding, _first_padding, _one_of, _window_out

VGG11_CONFIG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def _vgg11_side(side: int) -> int:
    first = True
    for item in VGG11_CONFIG:
        if item == "M":
            side = _window_out(side, 2, stride=2)
        else:
            side = _window_out(side, 3, padding=_first_padding(side, 1) if first else 1)
            first = False
    return side


class VGG11(EmbeddingNet):
    """VGG11 (configuration A): 3x3 convolutions 64, M, 128, M, 256, 256, M, 512, 512, M,
    512, 512, M, each followed by a norm and ReLU, then one Linear(512 -> classes).

    ``norm`` is 'instancenorm' (vgg11, the DC default) or 'batchnorm' (vgg11_bn).
    """

    def __init__(self, channels: int, num_classes: int, im_size: ImageSize, *, norm: str = "instancenorm") -> None:
        _one_of("VGG11 norm", norm, ("instancenorm", "batchnorm"))
        h, w = _as_hw(im_size)
        final_h, final_w = _final_hw("vgg11", (h, w), _vgg11_side)
        layers: list[tuple[str, nn.Module]] = []
        in_channels, convs, pools = channels, 0, 0
        for item in VGG11_CONFIG:
            if item == "M":
                pools += 1
                layers.append((f"pool{pools}", nn.MaxPool2d(2, 2)))
                continue
            padding = _first_conv_padding((h, w), 1) if convs == 0 else 1
            convs += 1
            out_channels = int(item)
            layers += [
                (f"conv{convs}", _conv(in_channels, out_channels, 3, padding)),
                (f"norm{convs}", _make_norm(norm, out_channels)),
                (f"relu{convs}", nn.ReLU()),
            ]
            in_channels = out_channels
        super().__init__(nn.Sequential(OrderedDict(layers)), nn.Linear(512 * final_h * final_w, num_classes))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with a norm each, plus a shortcut (a 1x1
    convolution and norm when the shape changes), ReLU after the sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _make_norm(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.norm2 = _make_norm(norm, out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                _make_norm(norm, out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def _resnet18_side(side: int) -> int:
    """Side of the last stage's feature map (the stem and first stage keep the size)."""
    for _ in range(3):
        side = _window_out(side, 3, stride=2, padding=1)
    return side


class ResNet18(EmbeddingNet):
    """CIFAR-style ResNet18: a 3x3 stride-1 stem (no max-pool), four stages of two basic blocks
    (64, 128, 256, 512 channels; stride 1, 2, 2, 2), global average pooling, Linear(512).

    ``norm`` is 'instancenorm' (resnet18, the DC default) or 'batchnorm' (resnet18_bn).
    Global pooling takes any size whose last stage is at least 2x2 (per-sample
    normalisation of a 1x1 map would erase it): sides of 9 and more.
    """

    def __init__(self, channels: int, num_classes: int, im_size: ImageSize, *, norm: str = "instancenorm") -> None:
        _one_of("ResNet18 norm", norm, ("instancenorm", "batchnorm"))
        _final_hw("resnet18", _as_hw(im_size), _resnet18_side, minimum=2)
        layers: list[tuple[str, nn.Module]] = [
            ("conv1", nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)),
            ("norm1", _make_norm(norm, 64)),
            ("relu1", nn.ReLU()),
        ]
        in_channels = 64
        for stage, (out_channels, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
            first = BasicBlock(in_channels, out_channels, stride, norm)  # may downsample
            second = BasicBlock(out_channels, out_channels, 1, norm)
            layers.append((f"layer{stage}", nn.Sequential(first, second)))
            in_channels = out_channels
        layers.append(("avgpool", nn.AdaptiveAvgPool2d(1)))
        super().__init__(nn.Sequential(OrderedDict(layers)), nn.Linear(512, num_classes))
