"""Every distillation network of gmlib.networks distils: finite losses, every image moves.

A CI-sized run per network on a small MNIST-shaped dataset (1x28x28 images, the size every
network's first layer is built for; 2 classes to keep the class loop short): one image per class,
two iterations (two fresh networks, one image update each, as DC does at ipc 1), 2 real images
per class. The ConvNets are narrowed to width 8; the other networks have fixed architectures and
run at their real size (AlexNet-original, 30 M parameters, is the slowest). On one torch thread
of a 2-core CPU shared with other jobs the file took about 19 s of CPU time (47 s wall).
"""

from __future__ import annotations

import math

import pytest
import torch

from gmlib.data import ImageDataset
from gmlib.methods.dc import distill
from gmlib.methods.dc_config import MatchingConfig
from gmlib.networks import NETWORK_NAMES, network_info
from gmlib.synthetic import init_synthetic

CLASSES = 2
NARROW = {"width": 8}  # reaches only the networks that take a width (the ConvNets)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset() -> ImageDataset:
    """MNIST-shaped toy data: class c is noise plus a bright c-th horizontal band."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(CLASSES).repeat(6)
    images = torch.randn(len(labels), 1, 28, 28, generator=g)
    for c in range(CLASSES):
        images[labels == c, :, 8 * c : 8 * c + 6, :] += 2.0
    return ImageDataset("mnist-shaped", images, labels, images[:6].clone(), labels[:6].clone(),
                        (0.1307,), (0.3081,), ["a", "b"])


def test_the_list_covers_every_network():
    assert set(NETWORK_NAMES) == {"mlp", "convnet", "convnet_bn", "lenet", "lenet_original", "alexnet",
                                  "alexnet_bn", "alexnet_original", "vgg11", "vgg11_bn", "resnet18", "resnet18_bn"}


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_network_distils(dataset, name):
    kwargs = {k: v for k, v in NARROW.items() if k in network_info(name).keywords}
    config = MatchingConfig(
        ipc=1, iterations=2, batch_real=2, batch_train=CLASSES, network=name, network_kwargs=kwargs,
        lr_img=0.01 if name == "mlp" else 0.1,  # the reference's lr_img for the MLP
        bn_real_per_class=2,
    )
    start = init_synthetic(dataset, 1, config.init, seed=0).images.detach()
    result = distill(dataset, config, seed=0, device="cpu", progress=False)

    losses = result.history.losses
    assert len(losses) == 2 and all(len(row) == CLASSES for row in losses)
    assert all(math.isfinite(v) and v > 0 for row in losses for v in row), losses
    images = result.synthetic.images.detach()
    assert images.shape == start.shape and torch.isfinite(images).all()
    moved = (images - start).flatten(1).norm(dim=1)
    assert (moved > 1e-6).all(), f"{name}: some class's image did not move: {moved.tolist()}"
