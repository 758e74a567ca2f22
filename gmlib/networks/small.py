"""The small fixed networks: the MLP and the two LeNet-5 variants."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import nn

from gmlib.networks.base import EmbeddingNet, _conv
from gmlib.networks.sizes import ImageSize, _as_hw, _final_hw, _first_conv_padding, _first_padding, _window_out


class MLP(EmbeddingNet):
    """Flatten -> Linear(128) -> ReLU -> Linear(128) -> ReLU -> Linear(classes)."""

    hidden = 128

    def __init__(self, channels: int, num_classes: int, im_size: ImageSize) -> None:
        h, w = _as_hw(im_size)
        features = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                fc1=nn.Linear(channels * h * w, self.hidden),
                relu1=nn.ReLU(),
                fc2=nn.Linear(self.hidden, self.hidden),
                relu2=nn.ReLU(),
            )
        )
        super().__init__(features, nn.Linear(self.hidden, num_classes))


def _lenet_side(side: int) -> int:
    side = _window_out(side, 5, padding=_first_padding(side, 0))
    side = _window_out(side, 2, stride=2)
    side = _window_out(side, 5)
    return _window_out(side, 2, stride=2)


class LeNet(EmbeddingNet):
    """LeNet-5 shape: Conv5x5(6) -> pool -> Conv5x5(16) -> pool -> FC 120 -> FC 84 -> classes.

    ``original=False`` is the DC variant (ReLU, max-pooling); ``original=True`` is closer to
    LeCun et al. 1998 (tanh squashing, 2x2 average subsampling), with two simplifications: full
    connectivity between the 6 and 16 maps, and a linear output layer instead of RBF units.
    Both have 61,706 parameters on MNIST and 62,006 on CIFAR-10.
    """

    def __init__(self, channels: int, num_classes: int, im_size: ImageSize, *, original: bool = False) -> None:
        h, w = _as_hw(im_size)
        final_h, final_w = _final_hw("lenet_original" if original else "lenet", (h, w), _lenet_side)
        act: Callable[[], nn.Module] = nn.Tanh if original else nn.ReLU
        pool: Callable[[], nn.Module] = (lambda: nn.AvgPool2d(2, 2)) if original else (lambda: nn.MaxPool2d(2, 2))
        features = nn.Sequential(
            OrderedDict(
                conv1=_conv(channels, 6, 5, _first_conv_padding((h, w), 0)),
                act1=act(),
                pool1=pool(),
                conv2=_conv(6, 16, 5, 0),
                act2=act(),
                pool2=pool(),
                flatten=nn.Flatten(),
                fc1=nn.Linear(16 * final_h * final_w, 120),
                act3=act(),
                fc2=nn.Linear(120, 84),
                act4=act(),
            )
        )
        super().__init__(features, nn.Linear(84, num_classes))
