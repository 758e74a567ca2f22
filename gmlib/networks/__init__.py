"""The networks of the dataset-distillation literature, built by name.

Every network is a :class:`EmbeddingNet`: a feature extractor followed by one linear layer, so
that ``net.embed(x)`` is the flattened penultimate feature (distribution matching and herding use
it) and ``net(x) == net.classifier(net.embed(x))``.

``get_network(name, channels, num_classes, im_size)`` builds any of :data:`NETWORK_NAMES`. The
reference inputs are 28x28x1 (MNIST, FashionMNIST) and 32x32x3 (CIFAR, SVHN). Following the DC
reference code, a 28x28 image gets 2 more pixels of padding around it in the first layer of
ConvNet, LeNet, AlexNet and VGG11, so that it follows exactly the 32x32 path (same feature-map
sizes, same head). Other sizes work where the feature map does not vanish; a size a network
cannot take raises a ValueError naming the sizes it can.

Which keywords a network takes (all others must stay at their defaults):

======================  =============================================
network                 keywords
======================  =============================================
convnet                 width, depth, norm, act, pool
convnet_bn              width, depth, act, pool (norm is batchnorm)
every other network     none: the architecture is fixed
======================  =============================================

Settings shared by several networks go through :func:`filter_network_kwargs` first.

The package, one concept per module (import everything from ``gmlib.networks`` itself)::

    sizes     argument checks and feature-map sizes (ImageSize)
    base      EmbeddingNet, NORMS/ACTIVATIONS/POOLINGS and the layer factories
    convnet   ConvNet
    small     MLP, LeNet
    alexnet   AlexNet, AlexNetOriginal
    deep      VGG11, BasicBlock, ResNet18
    registry  NETWORK_NAMES, get_network, NetworkInfo, network_info, filter_network_kwargs
    measure   count_parameters, count_flops, has_batchnorm

Nothing here imports torchvision.
"""

from gmlib.networks.alexnet import ALEXNET_ORIGINAL_HIDDEN, AlexNet, AlexNetOriginal
from gmlib.networks.base import ACTIVATIONS, GROUPNORM_GROUPS, NORMS, POOLINGS, EmbeddingNet
from gmlib.networks.convnet import ConvNet
from gmlib.networks.deep import VGG11, VGG11_CONFIG, BasicBlock, ResNet18
from gmlib.networks.measure import count_flops, count_parameters, has_batchnorm
from gmlib.networks.registry import (
    CONVNET_DEFAULTS,
    NETWORK_NAMES,
    NetworkInfo,
    check_network_kwargs,
    filter_network_kwargs,
    get_network,
    network_info,
)
from gmlib.networks.sizes import ImageSize
from gmlib.networks.small import MLP, LeNet

__all__ = [
    "ACTIVATIONS",
    "ALEXNET_ORIGINAL_HIDDEN",
    "CONVNET_DEFAULTS",
    "GROUPNORM_GROUPS",
    "ImageSize",
    "VGG11_CONFIG",
    "NETWORK_NAMES",
    "NORMS",
    "POOLINGS",
    "AlexNet",
    "AlexNetOriginal",
    "BasicBlock",
    "ConvNet",
    "EmbeddingNet",
    "LeNet",
    "MLP",
    "NetworkInfo",
    "ResNet18",
    "VGG11",
    "count_flops",
    "count_parameters",
    "check_network_kwargs", "filter_network_kwargs",
    "get_network",
    "has_batchnorm",
    "network_info",
]
