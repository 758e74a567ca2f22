"""How first-order passes run (gmlib.first_order): bfloat16 where the CPU computes it natively,
compiled where it pays, float32 and eager as the exact path. The fast paths must move the numbers
only by their rounding: the real-gradient target, one matching step's image gradient and the
evaluation's accuracies stay close to the exact path's, runs stay seeded and deterministic, a
checkpoint of one precision never continues a run of the other, and compiling happens once per
architecture, not once per fresh network."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from fakes import TINY_NET, fake_dataset, tiny_dc_config

from gmlib.distances import get_distance
from gmlib.eval_config import EvalConfig
from gmlib.evaluate import evaluate_set
from gmlib.first_order import (
    COMPILE_PAYS_OFF_IMAGES,
    EXACT,
    PRECISIONS,
    FirstOrder,
    PatchProductConv2d,
    _image_convs_as_products,
    cpu_has_native_bf16,
    has_cpp_compiler,
    resolve_compile,
    resolve_precision,
)
from gmlib.methods.dc import DCMethod, distill, matching_step_backward
from gmlib.methods.dc_variants import real_gradient
from gmlib.networks import get_network

native_bf16 = pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bfloat16")
compiler = pytest.mark.skipif(not has_cpp_compiler(), reason="torch.compile's CPU backend needs a C++ compiler")
BF16 = FirstOrder("bf16")


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.flatten() for t in tensors])


def tiny_net(seed: int = 0, **changes):
    return get_network("convnet", 1, 3, 8, seed=seed, **{**TINY_NET, **changes})


def test_auto_picks_bf16_only_on_a_cpu_that_computes_it() -> None:
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("auto", "meta") == "fp32"  # any other device: not measured, the exact path
    assert resolve_precision("fp32", "cpu") == "fp32"


def test_auto_compiles_only_large_jobs_of_networks_it_can_compile() -> None:
    big, small = COMPILE_PAYS_OFF_IMAGES, COMPILE_PAYS_OFF_IMAGES - 1
    assert resolve_compile("auto", "cpu", tiny_net(), big) == has_cpp_compiler()
    assert not resolve_compile("auto", "cpu", tiny_net(), small)
    assert not resolve_compile("auto", "meta", tiny_net(), big)
    assert not resolve_compile("auto", "cpu", tiny_net(norm="batchnorm"), big)
    assert not resolve_compile(False, "cpu", tiny_net(), big)
    with pytest.raises(ValueError, match="compile=True cannot compile ConvNet because it has BatchNorm"):
        resolve_compile(True, "cpu", tiny_net(norm="batchnorm"), 1)


@pytest.mark.parametrize("value", ["fp16", "float32", None, 16])
def test_a_bad_precision_is_refused_naming_the_allowed_ones(value) -> None:
    with pytest.raises(ValueError) as error:
        resolve_precision(value, "cpu")
    assert repr(value) in str(error.value) and all(repr(p) in str(error.value) for p in PRECISIONS)
    with pytest.raises(ValueError, match="precision"):
        tiny_dc_config(precision=value)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_bad_compile_is_refused(value) -> None:
    with pytest.raises(ValueError, match=f"compile must be 'auto', True or False, got {value!r}"):
        tiny_dc_config(compile=value)


def test_bf16_is_refused_where_the_cpu_would_emulate_it(monkeypatch) -> None:
    monkeypatch.setattr("gmlib.first_order.cpu_has_native_bf16", lambda: False)
    with pytest.raises(ValueError, match="native bfloat16"):
        resolve_precision("bf16", "cpu")
    assert resolve_precision("auto", "cpu") == "fp32"


def test_the_real_gradient_target_moves_only_by_bfloat16_rounding() -> None:
    net = tiny_net()
    params = list(net.parameters())
    images = fake_dataset().class_batches(16, torch.Generator().manual_seed(0))[1]
    exact = flat(real_gradient(net, params, images, 1, 4, EXACT))
    fast = flat(real_gradient(net, params, images, 1, 4, BF16))
    assert fast.dtype == torch.float32
    assert (fast - exact).norm() / exact.norm() < 2e-2
    assert F.cosine_similarity(fast, exact, dim=0) > 0.999
    assert not torch.equal(fast, exact)  # the bfloat16 path really ran


def test_one_matching_step_gives_nearly_the_same_image_gradient() -> None:
    dataset = fake_dataset()
    net = tiny_net()
    real = dataset.class_batches(16, torch.Generator().manual_seed(1))
    grads = {}
    for name, passes in (("exact", EXACT), ("bf16", BF16)):
        images = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
        matching_step_backward(net, images, 2, real, get_distance("ours"), chunk_size=4, passes=passes)
        grads[name] = images.grad.flatten()
    assert F.cosine_similarity(grads["bf16"], grads["exact"], dim=0) > 0.99


def test_logits_come_back_in_float32_and_nothing_leaks_out() -> None:
    net = tiny_net()
    images = torch.randn(2, 1, 8, 8, requires_grad=True)
    with BF16.context("cpu"):
        assert net(images).dtype == torch.bfloat16  # what the context is for
    assert BF16.logits(net, images).dtype == torch.float32
    assert net(images).dtype == torch.float32


@pytest.mark.parametrize("channels, settings", [(1, dict(padding=3)), (3, dict(padding=1, stride=2)),
                                                (2, dict(padding=(0, 2), dilation=2, bias=False))])
def test_the_patch_product_convolution_is_the_convolution(channels, settings) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(channels, 5, 3, **settings).double()
    images = torch.randn(4, channels, 11, 9, dtype=torch.float64, requires_grad=True)
    product = PatchProductConv2d(channels, 5, 3, **settings).double()
    product.load_state_dict(conv.state_dict())
    expected = conv(images)
    got = product(images)
    torch.testing.assert_close(got, expected)
    weights = torch.randn_like(expected)
    for a, b in zip(torch.autograd.grad((expected * weights).sum(), [images, *conv.parameters()]),
                    torch.autograd.grad((got * weights).sum(), [images, *product.parameters()])):
        torch.testing.assert_close(b, a)


def test_only_one_channel_convolutions_become_products() -> None:
    net = tiny_net()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    short = [m.in_channels == 1 for m in convs]
    assert short[0] and not all(short)  # the image layer and the wider ones
    state = {k: v.clone() for k, v in net.state_dict().items()}
    _image_convs_as_products(net)
    assert [type(m) is PatchProductConv2d for m in convs] == short
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())


@compiler
def test_compiled_passes_equal_the_eager_ones_and_compile_once_per_architecture() -> None:
    from torch._dynamo.utils import counters

    compiled = FirstOrder("fp32", compile=True)
    images = fake_dataset().class_batches(8, torch.Generator().manual_seed(0))[0]
    nets = [tiny_net(seed) for seed in range(3)]
    for k, net in enumerate(nets):
        params = list(net.parameters())
        torch.testing.assert_close(real_gradient(net, params, images, 0, 4, compiled),
                                   real_gradient(net, params, images, 0, 4, EXACT), rtol=1e-4, atol=1e-6)
        if k == 0:
            graphs = counters["stats"]["unique_graphs"]
    assert counters["stats"]["unique_graphs"] == graphs, "a fresh network recompiled"


@native_bf16
def test_a_bf16_run_is_seeded_and_close_to_the_exact_one() -> None:
    dataset = fake_dataset()
    first = distill(dataset, tiny_dc_config(precision="bf16"), seed=3, progress=False)
    again = distill(dataset, tiny_dc_config(precision="bf16"), seed=3, progress=False)
    exact = distill(dataset, tiny_dc_config(), seed=3, progress=False)
    assert torch.equal(first.synthetic.images, again.synthetic.images)
    assert first.synthetic.images.dtype == torch.float32
    assert F.cosine_similarity(first.synthetic.images.flatten(), exact.synthetic.images.flatten(), dim=0) > 0.99


@native_bf16
def test_a_checkpoint_of_one_precision_does_not_continue_the_other(tmp_path) -> None:
    from gmlib.run.checkpoint import CheckpointError

    dataset = fake_dataset()
    distill(dataset, tiny_dc_config(iterations=2), seed=0, out_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="precision"):
        distill(dataset, tiny_dc_config(iterations=3, precision="bf16"), seed=0, out_dir=tmp_path, progress=False)
    # 'auto' resolves to the same arithmetic as the explicit value and continues it
    distill(dataset, tiny_dc_config(iterations=2, precision="bf16"), seed=0, out_dir=tmp_path / "b", progress=False)
    distill(dataset, tiny_dc_config(iterations=3, precision="auto"), seed=0, out_dir=tmp_path / "b", progress=False)


def test_float32_runs_keep_the_identity_they_had_before_the_option() -> None:
    method = DCMethod(fake_dataset(), tiny_dc_config(), 0, torch.device("cpu"))
    assert "precision" not in method.identity() and "compile" not in method.identity()
    assert method.passes == EXACT


def test_evaluation_records_its_passes_and_agrees_with_float32() -> None:
    dataset = fake_dataset()
    images, labels = dataset.subset(4, seed=0)
    config = EvalConfig(network_kwargs=TINY_NET, epochs=20, augment="mnist")
    results = {p: evaluate_set(images, labels, dataset.test_images, dataset.test_labels, config, 4, 0, precision=p)
               for p in ("fp32", "auto")}
    assert results["fp32"].passes == "fp32" and results["auto"].passes == resolve_precision("auto", "cpu")
    assert str(results["auto"]).endswith(", bf16)") == (results["auto"].passes == "bf16")
    assert abs(results["auto"].mean - results["fp32"].mean) <= max(results["fp32"].std, 0.05)
