"""The arithmetic of first-order passes (gmlib.precision): bfloat16 where the CPU computes it
natively, float32 as the exact path. bfloat16 must move the numbers only by its rounding: the
real-gradient target, one matching step's image gradient and the evaluation's accuracies stay
close to float32's, runs stay seeded and deterministic, and a checkpoint of one precision never
continues a run of the other."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from fakes import TINY_NET, fake_dataset, tiny_dc_config

from gmlib.distances import get_distance
from gmlib.eval_config import EvalConfig
from gmlib.evaluate import evaluate_set
from gmlib.methods.dc import distill, matching_step_backward
from gmlib.methods.dc_variants import real_gradient
from gmlib.networks import get_network
from gmlib.precision import PRECISIONS, cpu_has_native_bf16, first_order, resolve_precision

native_bf16 = pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bfloat16")


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.flatten() for t in tensors])


def test_auto_picks_bf16_only_on_a_cpu_that_computes_it() -> None:
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("auto", "meta") == "fp32"  # any other device: not measured, the exact path
    assert resolve_precision("fp32", "cpu") == "fp32"


@pytest.mark.parametrize("value", ["fp16", "float32", None, 16])
def test_a_bad_precision_is_refused_naming_the_allowed_ones(value) -> None:
    with pytest.raises(ValueError) as error:
        resolve_precision(value, "cpu")
    assert repr(value) in str(error.value) and all(repr(p) in str(error.value) for p in PRECISIONS)
    with pytest.raises(ValueError, match="precision"):
        tiny_dc_config(precision=value)


def test_bf16_is_refused_where_the_cpu_would_emulate_it(monkeypatch) -> None:
    monkeypatch.setattr("gmlib.precision.cpu_has_native_bf16", lambda: False)
    with pytest.raises(ValueError, match="native bfloat16"):
        resolve_precision("bf16", "cpu")
    assert resolve_precision("auto", "cpu") == "fp32"


def test_the_real_gradient_target_moves_only_by_bfloat16_rounding() -> None:
    net = get_network("convnet", 1, 3, 8, seed=0, **TINY_NET)
    params = list(net.parameters())
    images = fake_dataset().class_batches(16, torch.Generator().manual_seed(0))[1]
    exact = flat(real_gradient(net, params, images, 1, 4, "fp32"))
    fast = flat(real_gradient(net, params, images, 1, 4, "bf16"))
    assert fast.dtype == torch.float32
    assert (fast - exact).norm() / exact.norm() < 2e-2
    assert F.cosine_similarity(fast, exact, dim=0) > 0.999
    assert not torch.equal(fast, exact)  # the bfloat16 path really ran


def test_one_matching_step_gives_nearly_the_same_image_gradient() -> None:
    dataset = fake_dataset()
    net = get_network("convnet", 1, 3, 8, seed=0, **TINY_NET)
    real = dataset.class_batches(16, torch.Generator().manual_seed(1))
    grads = {}
    for precision in ("fp32", "bf16"):
        images = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
        matching_step_backward(net, images, 2, real, get_distance("ours"), chunk_size=4, precision=precision)
        grads[precision] = images.grad.flatten()
    assert F.cosine_similarity(grads["bf16"], grads["fp32"], dim=0) > 0.99


def test_the_second_order_pass_stays_float32() -> None:
    net = get_network("convnet", 1, 3, 8, seed=0, **TINY_NET)
    images = torch.randn(2, 1, 8, 8, requires_grad=True)
    with first_order("bf16", "cpu"):
        low = net(images)
    assert low.dtype == torch.bfloat16  # what first_order is for
    assert net(images).dtype == torch.float32  # and nothing leaks out of it


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
    # auto resolves to the same arithmetic as the explicit value, and continues it
    distill(dataset, tiny_dc_config(iterations=2, precision="bf16"), seed=0, out_dir=tmp_path / "b", progress=False)
    distill(dataset, tiny_dc_config(iterations=3, precision="auto"), seed=0, out_dir=tmp_path / "b", progress=False)


def test_evaluation_records_its_precision_and_agrees_with_float32() -> None:
    dataset = fake_dataset()
    images, labels = dataset.subset(4, seed=0)
    config = EvalConfig(network_kwargs=TINY_NET, epochs=20, augment="mnist")
    results = {p: evaluate_set(images, labels, dataset.test_images, dataset.test_labels, config, 4, 0, precision=p)
               for p in ("fp32", "auto")}
    assert results["fp32"].precision == "fp32" and results["auto"].precision == resolve_precision("auto", "cpu")
    assert ", bf16)" in str(results["auto"]) or results["auto"].precision == "fp32"
    assert abs(results["auto"].mean - results["fp32"].mean) <= max(results["fp32"].std, 0.05)
