"""AlexNet for small images: the DC variant (with or without BatchNorm) and the 2012 original."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from gmlib.networks.base import EmbeddingNet, _conv
from gmlib.networks.sizes import ImageSize, _as_hw, _final_hw, _first_conv_padding, _first_padding, _one_of, _window_out

ALEXNET_ORIGINAL_HIDDEN = 4096  # width of the two hidden fully connected layers, as in the paper


def _alexnet_side(side: int) -> int:
    side = _window_out(side, 5, padding=_first_padding(side, 2))
    side = _window_out(side, 2, stride=2)
    side = _window_out(side, 5, padding=2)
    side = _window_out(side, 2, stride=2)
    for _ in range(3):
        side = _window_out(side, 3, padding=1)
    return _window_out(side, 2, stride=2)


class AlexNet(EmbeddingNet):
    """The DC variant of AlexNet: five convolutions (128, 192, 256, 192, 192), three 2x2
    max-pools, then one Linear(192 * 4 * 4 -> classes); no dropout, no fully connected stack.

    ``norm='batchnorm'`` adds BatchNorm after every convolution (alexnet_bn).
    """

    def __init__(self, channels: int, num_classes: int, im_size: ImageSize, *, norm: str = "none") -> None:
        _one_of("AlexNet norm", norm, ("none", "batchnorm"))
        h, w = _as_hw(im_size)
        final_h, final_w = _final_hw("alexnet", (h, w), _alexnet_side)
        convs = [  # (in, out, kernel, padding, pool after?)
            (channels, 128, 5, _first_conv_padding((h, w), 2), True),
            (128, 192, 5, 2, True),
            (192, 256, 3, 1, False),
            (256, 192, 3, 1, False),
            (192, 192, 3, 1, True),
        ]
        layers: list[tuple[str, nn.Module]] = []
        pools = 0
        for i, (c_in, c_out, kernel, pad, pool_after) in enumerate(convs, start=1):
            layers.append((f"conv{i}", _conv(c_in, c_out, kernel, pad)))
            if norm == "batchnorm":
                layers.append((f"norm{i}", nn.BatchNorm2d(c_out)))
            layers.append((f"relu{i}", nn.ReLU()))
            if pool_after:
                pools += 1
                layers.append((f"pool{pools}", nn.MaxPool2d(2, 2)))
        super().__init__(nn.Sequential(OrderedDict(layers)), nn.Linear(192 * final_h * final_w, num_classes))


def _alexnet_original_side(side: int) -> int:
    side = _window_out(side, 5, padding=_first_padding(side, 2))
    side = _window_out(side, 3, stride=2)
    side = _window_out(side, 5, padding=2)
    side = _window_out(side, 3, stride=2)
    for _ in range(3):
        side = _window_out(side, 3, padding=1)
    return _window_out(side, 3, stride=2)


class AlexNetOriginal(EmbeddingNet):
    """The classic AlexNet (Krizhevsky et al. 2012) adapted to small images.

    As in the paper: five convolutions (96, 256, 384, 384, 256) with ReLU, local response
    normalisation after the first two, overlapping 3x3 stride-2 max-pools, and the classifier
    Dropout(0.5) -> FC 4096 -> ReLU -> Dropout(0.5) -> FC 4096 -> ReLU -> FC classes.
    Adapted: the first convolution is 5x5 stride 1 (not 11x11 stride 4), so a 32x32 image gives
    a 3x3 map and a 2304-d input to the first FC layer. The embedding is the 4096-d output of
    the second FC layer (dropout included in train mode).
    """

    def __init__(self, channels: int, num_classes: int, im_size: ImageSize) -> None:
        h, w = _as_hw(im_size)
        final_h, final_w = _final_hw("alexnet_original", (h, w), _alexnet_original_side)
        hidden = ALEXNET_ORIGINAL_HIDDEN

        def lrn() -> nn.Module:  # the paper's constants: n=5, alpha=1e-4, beta=0.75, k=2
            return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)

        features = nn.Sequential(
            OrderedDict(
                conv1=_conv(channels, 96, 5, _first_conv_padding((h, w), 2)),
                relu1=nn.ReLU(),
                lrn1=lrn(),
                pool1=nn.MaxPool2d(3, 2),
                conv2=_conv(96, 256, 5, 2),
                relu2=nn.ReLU(),
                lrn2=lrn(),
                pool2=nn.MaxPool2d(3, 2),
                conv3=_conv(256, 384, 3, 1),
                relu3=nn.ReLU(),
                conv4=_conv(384, 384, 3, 1),
                relu4=nn.ReLU(),
                conv5=_conv(384, 256, 3, 1),
                relu5=nn.ReLU(),
                pool3=nn.MaxPool2d(3, 2),
                flatten=nn.Flatten(),
                dropout1=nn.Dropout(0.5),
                fc1=nn.Linear(256 * final_h * final_w, hidden),
                relu6=nn.ReLU(),
                dropout2=nn.Dropout(0.5),
                fc2=nn.Linear(hidden, hidden),
                relu7=nn.ReLU(),
            )
        )
        super().__init__(features, nn.Linear(hidden, num_classes))
