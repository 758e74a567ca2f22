"""Building networks by name: :data:`NETWORK_NAMES`, :func:`get_network`, :func:`network_info`
and :func:`filter_network_kwargs`.

Only convnet and convnet_bn take the variant keywords (width, depth, norm, act, pool); every
other network has a fixed architecture and rejects values other than the defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gmlib.networks.alexnet import AlexNet, AlexNetOriginal
from gmlib.networks.base import EmbeddingNet
from gmlib.networks.convnet import ConvNet
from gmlib.networks.deep import VGG11, ResNet18
from gmlib.networks.sizes import ImageSize, _as_hw, _one_of, _positive_int
from gmlib.networks.small import MLP, LeNet
from gmlib.randomness import seeded

NETWORK_NAMES: tuple[str, ...] = (
    "mlp",
    "convnet",
    "convnet_bn",
    "lenet",
    "lenet_original",
    "alexnet",
    "alexnet_bn",
    "alexnet_original",
    "vgg11",
    "vgg11_bn",
    "resnet18",
    "resnet18_bn",
)

# The keyword defaults of get_network; networks without variants must leave them untouched.
CONVNET_DEFAULTS: dict[str, object] = {
    "width": 128,
    "depth": 3,
    "norm": "instancenorm",
    "act": "relu",
    "pool": "avgpool",
}


@dataclass(frozen=True)
class NetworkInfo:
    """What a network name stands for, for tables and for checking options."""

    name: str
    description: str
    keywords: tuple[str, ...]  # the get_network keywords this network accepts
    batchnorm: bool  # whether it contains BatchNorm (matching then needs the BN handling)


_CONVNET_KW = ("width", "depth", "norm", "act", "pool")
_INFO: dict[str, NetworkInfo] = {
    info.name: info
    for info in (
        NetworkInfo("mlp", "MLP: flatten -> 128 -> 128 -> classes, ReLU", (), False),
        NetworkInfo("convnet", "ConvNet: 3 x [conv3x3(128), instance norm, ReLU, avg-pool], FC", _CONVNET_KW, False),
        NetworkInfo("convnet_bn", "ConvNet with batch norm", ("width", "depth", "act", "pool"), True),
        NetworkInfo("lenet", "LeNet (DC variant): ReLU, max-pool, FC 120-84", (), False),
        NetworkInfo("lenet_original", "LeNet-5 (LeCun 1998 style): tanh, average subsampling", (), False),
        NetworkInfo("alexnet", "AlexNet (DC variant): 5 conv, 3 max-pool, one linear, no dropout", (), False),
        NetworkInfo("alexnet_bn", "AlexNet (DC variant) with batch norm", (), True),
        NetworkInfo("alexnet_original", "AlexNet (2012 style): 5 conv, LRN, FC 4096-4096 with dropout", (), False),
        NetworkInfo("vgg11", "VGG11 with instance norm", (), False),
        NetworkInfo("vgg11_bn", "VGG11 with batch norm", (), True),
        NetworkInfo("resnet18", "ResNet18 (CIFAR stem) with instance norm", (), False),
        NetworkInfo("resnet18_bn", "ResNet18 (CIFAR stem) with batch norm", (), True),
    )
}


def _check_name(name: str) -> str:
    key = name.lower() if isinstance(name, str) else name
    return _one_of("network", key, NETWORK_NAMES)


def network_info(name: str) -> NetworkInfo:
    """Description, accepted keywords and BatchNorm use of the network ``name``."""
    return _INFO[_check_name(name)]


def filter_network_kwargs(name: str, kwargs: Mapping[str, object]) -> dict[str, object]:
    """The entries of ``kwargs`` that network ``name`` accepts, for settings shared across
    networks (e.g. an evaluation width that applies to the ConvNets of a cross-architecture row).

    >>> filter_network_kwargs("lenet", {"width": 64})
    {}
    """
    accepted = network_info(name).keywords
    return {keyword: value for keyword, value in kwargs.items() if keyword in accepted}


def check_network_kwargs(name: str, kwargs: Mapping[str, object]) -> None:
    """Refuse, before any network is built, a keyword ``get_network(name, ...)`` would not take
    (a misspelling such as ``widht``, or a ConvNet variant on a fixed architecture)."""
    key = _check_name(name)
    unknown = sorted(set(kwargs) - set(CONVNET_DEFAULTS))
    if unknown:
        accepted = ", ".join(_INFO[key].keywords) or "none (its architecture is fixed)"
        raise ValueError(f"network {key!r} takes no keyword {', '.join(map(repr, unknown))}; "
                         f"the keywords it takes: {accepted}")
    _reject_unused_keywords(key, dict(kwargs))


def _reject_unused_keywords(name: str, given: dict[str, object]) -> None:
    """Networks without a variant must leave the variant keywords at their defaults."""
    accepted = _INFO[name].keywords
    for keyword, value in given.items():
        if keyword in accepted or value == CONVNET_DEFAULTS[keyword]:
            continue
        if name == "convnet_bn" and keyword == "norm" and value == "batchnorm":
            continue
        if name == "convnet_bn":
            hint = f"convnet_bn always uses batchnorm; use get_network('convnet', norm={value!r}) instead"
        elif keyword == "norm" and value == "batchnorm" and f"{name}_bn" in NETWORK_NAMES:
            hint = f"use the name {name + '_bn'!r} for its batchnorm variant"
        else:
            hint = f"{keyword!r} applies only to convnet and convnet_bn ({name} has a fixed architecture)"
        raise ValueError(f"{name} does not take {keyword}={value!r}: {hint}")


def get_network(
    name: str,
    channels: int,
    num_classes: int,
    im_size: ImageSize,
    *,
    width: int = 128,
    depth: int = 3,
    norm: str = "instancenorm",
    act: str = "relu",
    pool: str = "avgpool",
    seed: int | None = None,
) -> EmbeddingNet:
    """Build the network ``name`` (one of :data:`NETWORK_NAMES`) on the default device.

    The default device is the CPU unless a ``torch.device(...)`` context says otherwise (the
    meta device gives a free, shape-only network); move it with ``.to(device)``.

    Args:
        name: network name, case-insensitive.
        channels: image channels (1 for MNIST, 3 for CIFAR).
        num_classes: number of outputs.
        im_size: image side or (height, width); 28 and 32 are the reference sizes.
        width, depth, norm, act, pool: ConvNet variants (convnet_bn fixes norm to batchnorm);
            every other network rejects values other than these defaults.
        seed: initialise the parameters from this seed without touching the global RNG state;
            None draws them from the global RNG (PyTorch's default initialisation).

    Raises:
        ValueError: unknown name/norm/act/pool, a non-positive size, a keyword the network does
            not take, or an image size the network cannot take.
    """
    key = _check_name(name)
    channels = _positive_int("channels", channels)
    num_classes = _positive_int("num_classes", num_classes)
    hw = _as_hw(im_size)
    _reject_unused_keywords(key, {"width": width, "depth": depth, "norm": norm, "act": act, "pool": pool})

    convnet_variant = {"width": width, "depth": depth, "act": act, "pool": pool}
    builders: dict[str, Callable[[], EmbeddingNet]] = {
        "mlp": lambda: MLP(channels, num_classes, hw),
        "convnet": lambda: ConvNet(channels, num_classes, hw, norm=norm, **convnet_variant),
        "convnet_bn": lambda: ConvNet(channels, num_classes, hw, norm="batchnorm", **convnet_variant),
        "lenet": lambda: LeNet(channels, num_classes, hw),
        "lenet_original": lambda: LeNet(channels, num_classes, hw, original=True),
        "alexnet": lambda: AlexNet(channels, num_classes, hw),
        "alexnet_bn": lambda: AlexNet(channels, num_classes, hw, norm="batchnorm"),
        "alexnet_original": lambda: AlexNetOriginal(channels, num_classes, hw),
        "vgg11": lambda: VGG11(channels, num_classes, hw),
        "vgg11_bn": lambda: VGG11(channels, num_classes, hw, norm="batchnorm"),
        "resnet18": lambda: ResNet18(channels, num_classes, hw),
        "resnet18_bn": lambda: ResNet18(channels, num_classes, hw, norm="batchnorm"),
    }
    with seeded(seed):
        net = builders[key]()
    net.input_shape = (channels, *hw)
    return net
