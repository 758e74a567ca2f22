"""Tests for gmlib.networks: exact parameter counts derived by hand, shapes, seeding, errors, FLOPs.

Shape and parameter-count checks over every network build on the meta device (no memory, no
initialisation, shape-only forward), so they cost milliseconds; real CPU forwards run once per
network on the MNIST shape, and on small ConvNet variants.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gmlib.networks import (
    ACTIVATIONS,
    NETWORK_NAMES,
    NORMS,
    POOLINGS,
    count_flops,
    count_parameters,
    filter_network_kwargs,
    get_network,
    has_batchnorm,
    network_info,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Run these small forwards on one thread: on a busy 2-core machine, OpenMP threads that
    wait for each other made tiny convolutions up to 50x slower than a single thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


MNIST = (1, 28)  # (channels, side)
CIFAR = (3, 32)
SHAPES = {"mnist": MNIST, "cifar": CIFAR}
CLASSES = 10


# ---------------------------------------------------------------------------------------------
# Parameter counts, layer by layer from the architecture definitions
# ---------------------------------------------------------------------------------------------


def conv(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def norm(c: int) -> int:
    """Affine scale and shift per channel (instance norm = GroupNorm(C, C), batch norm alike)."""
    return 2 * c


def expected_mlp(c: int, side: int) -> int:
    return linear(c * side * side, 128) + linear(128, 128) + linear(128, CLASSES)


def expected_convnet(c: int) -> int:
    # 28 px is padded to 32 in the first conv, so both shapes end on a 128 x 4 x 4 map.
    blocks = conv(c, 128, 3) + norm(128) + 2 * (conv(128, 128, 3) + norm(128))
    return blocks + linear(128 * 4 * 4, CLASSES)


def expected_lenet(c: int) -> int:
    # 32 -> conv5 28 -> pool 14 -> conv5 10 -> pool 5: a 16 x 5 x 5 = 400 feature.
    return conv(c, 6, 5) + conv(6, 16, 5) + linear(400, 120) + linear(120, 84) + linear(84, CLASSES)


def expected_alexnet(c: int, batchnorm: bool = False) -> int:
    # 36 (padded) -> conv5 32 -> pool 16 -> 16 -> pool 8 -> 8 -> 8 -> 8 -> pool 4: 192 x 4 x 4.
    widths = [(c, 128, 5), (128, 192, 5), (192, 256, 3), (256, 192, 3), (192, 192, 3)]
    convs = sum(conv(i, o, k) + (norm(o) if batchnorm else 0) for i, o, k in widths)
    return convs + linear(192 * 4 * 4, CLASSES)


def expected_alexnet_original(c: int) -> int:
    # 32 -> conv5 32 -> pool3/2 15 -> conv5 15 -> pool3/2 7 -> 7 -> 7 -> 7 -> pool3/2 3: 256 x 3 x 3.
    widths = [(c, 96, 5), (96, 256, 5), (256, 384, 3), (384, 384, 3), (384, 256, 3)]
    convs = sum(conv(i, o, k) for i, o, k in widths)
    return convs + linear(256 * 3 * 3, 4096) + linear(4096, 4096) + linear(4096, CLASSES)


def expected_vgg11(c: int) -> int:
    widths = [(c, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
    return sum(conv(i, o, 3) + norm(o) for i, o in widths) + linear(512, CLASSES)


def expected_resnet18(c: int) -> int:
    def block(c_in: int, c_out: int) -> int:
        main = conv(c_in, c_out, 3, bias=False) + norm(c_out) + conv(c_out, c_out, 3, bias=False) + norm(c_out)
        shortcut = conv(c_in, c_out, 1, bias=False) + norm(c_out) if c_in != c_out else 0
        return main + shortcut

    stem = conv(c, 64, 3, bias=False) + norm(64)
    stage_channels = [(64, 64), (64, 128), (128, 256), (256, 512)]  # two blocks each
    stages = sum(block(c_in, c_out) + block(c_out, c_out) for c_in, c_out in stage_channels)
    return stem + stages + linear(512, CLASSES)


EXPECTED_PARAMETERS = {
    "mlp": lambda c, side: expected_mlp(c, side),
    "convnet": lambda c, side: expected_convnet(c),
    "convnet_bn": lambda c, side: expected_convnet(c),
    "lenet": lambda c, side: expected_lenet(c),
    "lenet_original": lambda c, side: expected_lenet(c),
    "alexnet": lambda c, side: expected_alexnet(c),
    "alexnet_bn": lambda c, side: expected_alexnet(c, batchnorm=True),
    "alexnet_original": lambda c, side: expected_alexnet_original(c),
    "vgg11": lambda c, side: expected_vgg11(c),
    "vgg11_bn": lambda c, side: expected_vgg11(c),
    "resnet18": lambda c, side: expected_resnet18(c),
    "resnet18_bn": lambda c, side: expected_resnet18(c),
}

# The same numbers written out (MNIST 1x28x28, CIFAR-10 3x32x32, 10 classes), as a check on the
# derivations above; the ConvNet pair is the literature's.
STATED_PARAMETERS = {
    "mlp": (118_282, 411_146),
    "convnet": (317_706, 320_010),
    "convnet_bn": (317_706, 320_010),
    "lenet": (61_706, 62_006),
    "lenet_original": (61_706, 62_006),
    "alexnet": (1_865_802, 1_872_202),
    "alexnet_bn": (1_867_722, 1_874_122),
    "alexnet_original": (29_978_314, 29_983_114),
    "vgg11": (9_229_962, 9_231_114),
    "vgg11_bn": (9_229_962, 9_231_114),
    "resnet18": (11_172_810, 11_173_962),
    "resnet18_bn": (11_172_810, 11_173_962),
}

EMBED_DIMS = {
    "mlp": 128,
    "convnet": 2048,
    "convnet_bn": 2048,
    "lenet": 84,
    "lenet_original": 84,
    "alexnet": 3072,
    "alexnet_bn": 3072,
    "alexnet_original": 4096,
    "vgg11": 512,
    "vgg11_bn": 512,
    "resnet18": 512,
    "resnet18_bn": 512,
}


def meta_network(name: str, channels: int, side: int, **variant) -> nn.Module:
    """The network on the meta device: real structure, no storage, shape-only forward."""
    with torch.device("meta"):
        return get_network(name, channels, CLASSES, side, **variant)


def test_every_name_is_covered():
    assert set(EXPECTED_PARAMETERS) == set(STATED_PARAMETERS) == set(EMBED_DIMS) == set(NETWORK_NAMES)


def test_convnet_has_the_reference_parameter_counts():
    assert count_parameters(get_network("convnet", 1, 10, 28)) == 317_706
    assert count_parameters(get_network("convnet", 3, 10, 32)) == 320_010


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_parameter_count_matches_the_hand_derivation(name, shape):
    channels, side = SHAPES[shape]
    expected = EXPECTED_PARAMETERS[name](channels, side)
    assert expected == STATED_PARAMETERS[name][0 if shape == "mnist" else 1]
    assert count_parameters(meta_network(name, channels, side)) == expected


def test_meta_and_cpu_builds_count_the_same():
    assert count_parameters(get_network("resnet18", 3, 10, 32)) == STATED_PARAMETERS["resnet18"][1]


# ---------------------------------------------------------------------------------------------
# Shapes, embed, forward
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_output_and_embed_shapes(name, shape):
    channels, side = SHAPES[shape]
    net = meta_network(name, channels, side)
    x = torch.empty(3, channels, side, side, device="meta")
    assert net(x).shape == (3, CLASSES)
    assert net.embed(x).shape == (3, EMBED_DIMS[name])
    assert net.embed_dim == EMBED_DIMS[name]


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_real_forward_is_classifier_of_embed(name):
    net = get_network(name, 1, 7, 28, seed=0).eval()  # eval: dropout off, so both paths agree
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = net(x)
        features = net.embed(x)
    assert logits.shape == (2, 7) and features.shape == (2, EMBED_DIMS[name])
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits, net.classifier(features))


def test_other_channel_and_class_counts():
    net = get_network("convnet", 5, 3, 32, width=8, seed=0)
    assert net(torch.randn(2, 5, 32, 32)).shape == (2, 3)
    assert meta_network("resnet18", 2, 64)(torch.empty(1, 2, 64, 64, device="meta")).shape == (1, CLASSES)


def test_non_square_images_and_28_padding_per_axis():
    net = get_network("convnet", 3, 10, (28, 32), width=8)
    assert net.features.block1.conv.padding == (3, 1)
    assert net.embed(torch.zeros(2, 3, 28, 32)).shape == (2, 8 * 4 * 4)


def test_larger_images_grow_the_head():
    # 64 -> 32 -> 16 -> 8 after three pools: the head reads 128 x 8 x 8.
    assert meta_network("convnet", 3, 64).classifier.in_features == 128 * 8 * 8
    # LeNet on 64: 60 -> 30 -> 26 -> 13.
    assert meta_network("lenet", 3, 64).features.fc1.in_features == 16 * 13 * 13


# ---------------------------------------------------------------------------------------------
# ConvNet variants
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_convnet_depth(depth, shape):
    channels, side = SHAPES[shape]
    net = get_network("convnet", channels, CLASSES, side, width=8, depth=depth, seed=0)
    final = 32 // 2**depth  # 28 is padded to 32 first
    assert net.embed(torch.randn(2, channels, side, side)).shape == (2, 8 * final * final)
    assert len(net.features) == depth


@pytest.mark.parametrize("width", [32, 64, 128, 256])
def test_convnet_width(width):
    net = meta_network("convnet", 3, 32, width=width)
    assert net.embed_dim == width * 4 * 4
    blocks = conv(3, width, 3) + norm(width) + 2 * (conv(width, width, 3) + norm(width))
    assert count_parameters(net) == blocks + linear(width * 16, CLASSES)


def test_convnet_deeper_when_the_image_allows():
    assert meta_network("convnet", 3, 32, depth=5).embed_dim == 128  # 32 -> 1 after five pools
    assert meta_network("convnet", 3, 64, depth=6).embed_dim == 128


@pytest.mark.parametrize("norm_kind", NORMS)
def test_convnet_norms(norm_kind):
    net = get_network("convnet", 3, CLASSES, 32, width=8, norm=norm_kind, seed=0)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, CLASSES)
    block1 = net.features.block1
    expected_type = {
        "instancenorm": nn.GroupNorm,
        "batchnorm": nn.BatchNorm2d,
        "layernorm": nn.LayerNorm,
        "groupnorm": nn.GroupNorm,
        "none": type(None),
    }[norm_kind]
    assert isinstance(getattr(block1, "norm", None), expected_type)
    assert has_batchnorm(net) == (norm_kind == "batchnorm")


@pytest.mark.parametrize("norm_kind", NORMS)
def test_second_order_gradients_reach_the_images(norm_kind):
    """Gradient matching differentiates a parameter gradient with respect to the images."""
    net = get_network("convnet", 1, CLASSES, 28, width=8, norm=norm_kind, seed=0)
    images = torch.randn(4, 1, 28, 28, requires_grad=True)
    loss = nn.functional.cross_entropy(net(images), torch.tensor([0, 1, 2, 3]))
    grads = torch.autograd.grad(loss, list(net.parameters()), create_graph=True)
    (image_grad,) = torch.autograd.grad(sum((g**2).sum() for g in grads), images)
    assert torch.isfinite(image_grad).all() and image_grad.abs().sum() > 0


def test_convnet_norm_details():
    instance = get_network("convnet", 3, CLASSES, 32, width=8).features.block1.norm
    assert (instance.num_groups, instance.num_channels, instance.affine) == (8, 8, True)
    group = get_network("convnet", 3, CLASSES, 32, width=8, norm="groupnorm").features.block1.norm
    assert group.num_groups == 4
    # Layer norm normalises over (C, H, W) of the conv output: its scale is a 3-D tensor.
    layer = get_network("convnet", 3, CLASSES, 32, width=8, norm="layernorm")
    assert layer.features.block1.norm.weight.shape == (8, 32, 32)
    assert layer.features.block3.norm.weight.shape == (8, 8, 8)


def test_instance_norm_convnet_works_with_batch_size_one():
    net = get_network("convnet", 1, CLASSES, 28, width=8, seed=0)
    assert net(torch.randn(1, 1, 28, 28)).shape == (1, CLASSES)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_convnet_activations(act):
    net = get_network("convnet", 1, CLASSES, 28, width=8, act=act, seed=0)
    expected = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "leakyrelu": nn.LeakyReLU, "swish": nn.SiLU}[act]
    assert isinstance(net.features.block1.act, expected)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, CLASSES)


@pytest.mark.parametrize("pool", POOLINGS)
def test_convnet_pooling(pool):
    net = get_network("convnet", 3, CLASSES, 32, width=8, pool=pool, seed=0)
    final = 32 if pool == "none" else 4
    assert net.embed(torch.randn(2, 3, 32, 32)).shape == (2, 8 * final * final)
    expected = {"avgpool": nn.AvgPool2d, "maxpool": nn.MaxPool2d, "none": type(None)}[pool]
    assert isinstance(getattr(net.features.block1, "pool", None), expected)


def test_convnet_bn_keeps_its_variant_keywords():
    net = get_network("convnet_bn", 3, CLASSES, 32, width=16, depth=2, act="swish", pool="maxpool", norm="batchnorm")
    assert net.embed_dim == 16 * 8 * 8
    assert isinstance(net.features.block1.norm, nn.BatchNorm2d)


# ---------------------------------------------------------------------------------------------
# BatchNorm, info
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_batchnorm_only_in_bn_variants(name):
    net = meta_network(name, 3, 32)
    assert has_batchnorm(net) == name.endswith("_bn") == network_info(name).batchnorm


def test_lenet_variants_differ_in_activation_and_pooling():
    dc, original = meta_network("lenet", 1, 28), meta_network("lenet_original", 1, 28)
    assert isinstance(dc.features.act1, nn.ReLU) and isinstance(dc.features.pool1, nn.MaxPool2d)
    assert isinstance(original.features.act1, nn.Tanh) and isinstance(original.features.pool1, nn.AvgPool2d)


def test_alexnet_original_has_dropout_and_the_dc_variant_does_not():
    assert any(isinstance(m, nn.Dropout) for m in meta_network("alexnet_original", 3, 32).modules())
    assert not any(isinstance(m, nn.Dropout) for m in meta_network("alexnet", 3, 32).modules())


def test_network_info():
    for name in NETWORK_NAMES:
        info = network_info(name)
        assert info.name == name and info.description
    assert network_info("ConvNet").keywords == ("width", "depth", "norm", "act", "pool")
    assert network_info("lenet").keywords == ()


def test_filter_network_kwargs_keeps_what_each_network_takes():
    shared = {"width": 64, "norm": "layernorm"}
    assert filter_network_kwargs("convnet", shared) == shared
    assert filter_network_kwargs("convnet_bn", shared) == {"width": 64}
    assert filter_network_kwargs("lenet", shared) == {}
    for name in NETWORK_NAMES:  # the filtered keywords are always accepted
        meta_network(name, 3, 32, **filter_network_kwargs(name, shared))


# ---------------------------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------------------------


def same_parameters(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("name", ["mlp", "convnet", "convnet_bn", "lenet", "alexnet", "vgg11", "resnet18_bn"])
def test_same_seed_same_parameters(name):
    assert same_parameters(get_network(name, 1, 10, 28, seed=3), get_network(name, 1, 10, 28, seed=3))


def test_different_seeds_differ():
    assert not same_parameters(get_network("convnet", 1, 10, 28, seed=0), get_network("convnet", 1, 10, 28, seed=1))


def test_seed_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    get_network("convnet", 1, 10, 28, width=8, seed=0)
    assert torch.equal(torch.get_rng_state(), state)


def test_seed_none_draws_from_the_global_rng():
    torch.manual_seed(7)
    a = get_network("lenet", 1, 10, 28)
    torch.manual_seed(7)
    b = get_network("lenet", 1, 10, 28)
    assert same_parameters(a, b)
    assert not same_parameters(a, get_network("lenet", 1, 10, 28))  # the global RNG moved on


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "resnet50"}, r"unknown network 'resnet50'.*'convnet'"),
        ({"norm": "weightnorm"}, r"unknown norm 'weightnorm'.*'instancenorm'.*'none'"),
        ({"act": "tanh"}, r"unknown act 'tanh'.*'swish'"),
        ({"pool": "stride"}, r"unknown pool 'stride'.*'maxpool'"),
        ({"width": 0}, r"width must be an integer >= 1, got 0"),
        ({"depth": -1}, r"depth must be an integer >= 1, got -1"),
        ({"norm": "groupnorm", "width": 6}, r"multiple of 4, got 6"),
        ({"channels": 0}, r"channels must be an integer >= 1, got 0"),
        ({"num_classes": 1.5}, r"num_classes must be an integer >= 1, got 1.5"),
        ({"im_size": (28,)}, r"im_size .* got \(28,\)"),
        ({"im_size": 0}, r"im_size must be an integer >= 1, got 0"),
        ({"seed": "0"}, r"seed must be an int or None, got '0'"),
        ({"name": "lenet", "width": 64}, r"lenet does not take width=64"),
        ({"name": "vgg11", "norm": "batchnorm"}, r"vgg11_bn"),
        ({"name": "convnet_bn", "norm": "layernorm"}, r"convnet_bn always uses batchnorm"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    arguments = {"name": "convnet", "channels": 3, "num_classes": 10, "im_size": 32} | kwargs
    with pytest.raises(ValueError, match=message):
        get_network(**arguments)


@pytest.mark.parametrize(
    ("name", "side", "variant", "message"),
    [
        ("convnet", 32, {"depth": 6}, r"32x32.*at least 64"),
        ("convnet", 7, {}, r"7x7.*at least 8"),
        ("vgg11", 16, {}, r"16x16.*at least 32 \(or exactly 28"),
        ("lenet", 12, {}, r"at least 16"),
        ("alexnet", 4, {}, r"at least 8"),
        ("alexnet_original", 14, {}, r"at least 15"),
        ("resnet18", 8, {}, r"at least 9"),
    ],
)
def test_too_small_images_are_rejected(name, side, variant, message):
    with pytest.raises(ValueError, match=rf"{name}.*{message}"):
        meta_network(name, 3, side, **variant)


def test_pool_none_takes_tiny_images():
    assert meta_network("convnet", 3, 2, pool="none").embed_dim == 128 * 2 * 2


# ---------------------------------------------------------------------------------------------
# FLOPs (FlopCounterMode: 2 FLOPs per multiply-add of conv/linear; norms, activations, pools free)
# ---------------------------------------------------------------------------------------------


def convnet_macs(channels: int) -> list[int]:
    """Multiply-adds per image of each conv/linear layer of the default ConvNet (32 px path)."""
    return [
        32 * 32 * 128 * channels * 3 * 3,  # block 1: every output value sums C x 3 x 3 products
        16 * 16 * 128 * 128 * 3 * 3,  # block 2 on the pooled 16 x 16 map
        8 * 8 * 128 * 128 * 3 * 3,  # block 3
        2048 * 10,  # head
    ]


@pytest.mark.parametrize("shape", SHAPES)
def test_convnet_forward_flops(shape):
    channels, side = SHAPES[shape]
    net = get_network("convnet", channels, 10, side)
    expected = 2 * sum(convnet_macs(channels))
    assert expected == {"mnist": 96_772_096, "cifar": 101_490_688}[shape]
    assert count_flops(net, (channels, side, side)) == expected


def test_convnet_backward_flops():
    # Backward computes each layer's weight gradient (as costly as its forward) and its input
    # gradient (as costly again) except for the first layer, whose input is the image.
    net = get_network("convnet", 1, 10, 28)
    macs = convnet_macs(1)
    expected = 2 * (sum(macs) + sum(macs) + sum(macs[1:]))
    assert count_flops(net, (1, 28, 28), backward=True) == expected == 287_956_992


def test_mlp_flops():
    assert count_flops(get_network("mlp", 1, 10, 28), (1, 28, 28)) == 2 * (784 * 128 + 128 * 128 + 128 * 10)


def test_count_flops_has_no_side_effects():
    net = get_network("convnet_bn", 1, 10, 28, width=8).train()
    stats = net.features.block1.norm.running_mean.clone()
    count_flops(net, (1, 28, 28), backward=True)
    assert net.training and all(m.training for m in net.modules())
    assert all(p.grad is None for p in net.parameters())
    assert torch.equal(net.features.block1.norm.running_mean, stats)


def test_count_flops_rejects_a_batched_shape():
    with pytest.raises(ValueError, match=r"\(channels, height, width\).*\(2, 1, 28, 28\)"):
        count_flops(get_network("mlp", 1, 10, 28), (2, 1, 28, 28))
