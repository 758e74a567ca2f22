"""The common shape of every network (:class:`EmbeddingNet`) and the layer factories.

The factories build the normalisation, activation and pooling layers by name, so that the
network variants (``norm``, ``act``, ``pool``) are chosen by strings from
:data:`NORMS`, :data:`ACTIVATIONS` and :data:`POOLINGS`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gmlib.networks.sizes import _one_of

NORMS: tuple[str, ...] = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
ACTIVATIONS: tuple[str, ...] = ("relu", "sigmoid", "leakyrelu", "swish")
POOLINGS: tuple[str, ...] = ("avgpool", "maxpool", "none")
GROUPNORM_GROUPS = 4


class EmbeddingNet(nn.Module):
    """A feature extractor followed by one linear classifier.

    ``embed(x)`` is the flattened penultimate feature; ``forward(x)`` classifies it.
    ``input_shape`` (C, H, W), set by :func:`gmlib.networks.get_network`, is the image shape the
    network was built for: other shapes are refused with a clear error, even those that would
    run (a ConvNet built for 28 x 28 pools 32 x 32 images to a larger map and fails in its linear
    layer; one with a global pooling would silently accept them).
    """

    def __init__(self, features: nn.Module, classifier: nn.Linear) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier
        self.input_shape: tuple[int, int, int] | None = None

    @property
    def embed_dim(self) -> int:
        """Length of the feature vector that ``embed`` returns."""
        return self.classifier.in_features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened penultimate feature of a batch of images, shape (N, embed_dim)."""
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            built = "x".join(map(str, self.input_shape))
            raise ValueError(f"{type(self).__name__} was built for {built} images (channels x height x width), "
                             f"got a batch of shape {tuple(x.shape)}; build it with get_network(..., "
                             f"channels={x.shape[1] if x.dim() == 4 else '?'}, im_size=...) for these images")
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, shape (N, num_classes)."""
        return self.classifier(self.embed(x))


# --------------------------------------------------------------------------------------------
# Layer factories
# --------------------------------------------------------------------------------------------


def _make_norm(kind: str, channels: int, feature_hw: tuple[int, int] | None = None) -> nn.Module:
    """The normalisation layer named ``kind`` for a (channels, *feature_hw) feature map.

    ``feature_hw`` is needed by 'layernorm' only; 'none' gives an identity.
    """
    _one_of("norm", kind, NORMS)
    if kind == "instancenorm":
        # Per-sample, per-channel statistics with a learned scale/shift; no running statistics,
        # so it behaves the same in train and eval mode and works with batch size 1.
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "layernorm":
        if feature_hw is None:
            raise ValueError("norm 'layernorm' needs the feature-map size (h, w)")
        # Normalise over (C, H, W): the scale and shift are (C, H, W) tensors, as in DC.
        return nn.LayerNorm([channels, *feature_hw], elementwise_affine=True)
    if kind == "groupnorm":
        if channels % GROUPNORM_GROUPS:
            raise ValueError(
                f"norm 'groupnorm' uses {GROUPNORM_GROUPS} groups: the channel count (width) must be "
                f"a multiple of {GROUPNORM_GROUPS}, got {channels}"
            )
        return nn.GroupNorm(GROUPNORM_GROUPS, channels, affine=True)
    return nn.Identity()


def _make_activation(kind: str) -> nn.Module:
    """The activation named ``kind``."""
    activations: dict[str, Callable[[], nn.Module]] = {
        "relu": nn.ReLU,
        "sigmoid": nn.Sigmoid,
        "leakyrelu": lambda: nn.LeakyReLU(negative_slope=0.01),
        "swish": nn.SiLU,  # swish(x) = x * sigmoid(x)
    }
    return activations[_one_of("act", kind, ACTIVATIONS)]()


def _make_pool(kind: str) -> nn.Module | None:
    """The 2x2, stride-2 pooling named ``kind`` (None for 'none')."""
    pools: dict[str, Callable[[], nn.Module | None]] = {
        "avgpool": lambda: nn.AvgPool2d(kernel_size=2, stride=2),
        "maxpool": lambda: nn.MaxPool2d(kernel_size=2, stride=2),
        "none": lambda: None,
    }
    return pools[_one_of("pool", kind, POOLINGS)]()


def _conv(in_channels: int, out_channels: int, kernel: int, padding: int | tuple[int, int]) -> nn.Conv2d:
    """A stride-1 convolution with bias."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=kernel, padding=padding)
