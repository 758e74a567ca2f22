"""What to match (gmlib.methods.dc_variants and its options in gmlib.methods.dc): inter-class and multi-level
gradients, per-class vs one mixed batch, the curvature term, the seed 002 distances, errors.

Tiny data (3 classes of 1x8x8 images) and a ConvNet of width 8 keep the file fast.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from fakes import CLASSES, SIZE, tiny_dc_config
from fakes import TINY_NET as NET

from gmlib.distances import get_distance
from gmlib.methods.dc import distill, matching_step_backward, resolve_engine
from gmlib.methods.dc_config import MatchingConfig
from gmlib.methods.dc_variants import (
    MATCH_LEVELS,
    CurvatureSpec,
    level_of_iteration,
    loop_step_backward,
    mixed_step_backward,
    union_gradient,
)
from gmlib.methods.hessian import curvature_term
from gmlib.networks import get_network

IPC = 2


pytestmark = pytest.mark.usefixtures("one_thread")




def step_inputs(dataset, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    net = get_network("convnet", 1, CLASSES, SIZE, seed=seed, **NET)
    images = torch.randn(CLASSES * IPC, 1, SIZE, SIZE, generator=generator)
    real = dataset.class_batches(8, generator)
    return net, images, real


def leaf(images):
    return images.detach().clone().requires_grad_(True)


def step(net, images, real, **options):
    x = leaf(images)
    losses = loop_step_backward(net, x, IPC, real, get_distance("ours"), **options)
    return losses, x.grad


def tiny(**changes) -> MatchingConfig:
    return tiny_dc_config(**{"iterations": 2, **changes})


def run(dataset, config, seed=0):
    return distill(dataset, config, seed=seed, device="cpu", progress=False)


# ------------------------------------------------------------------------------------------
# Inter-class and multi-level gradients
# ------------------------------------------------------------------------------------------


def test_mean_of_class_gradients_is_the_union_batch_gradient(dataset) -> None:
    net, _, real = step_inputs(dataset)
    params = list(net.parameters())
    per_class = [torch.autograd.grad(F.cross_entropy(net(real[c]), torch.full((len(real[c]),), c)), params)
                 for c in range(CLASSES)]
    union_images = real.flatten(0, 1)
    union_labels = torch.arange(CLASSES).repeat_interleave(real.shape[1])
    direct = torch.autograd.grad(F.cross_entropy(net(union_images), union_labels), params)
    for ours, theirs in zip(union_gradient(per_class), direct):
        torch.testing.assert_close(ours, theirs)


def test_inter_level_is_the_distance_of_the_union_gradients_times_lambda(dataset) -> None:
    net, images, real = step_inputs(dataset)
    losses, grad = step(net, images, real, level="inter", level_weight=2.5)
    # the same objective written directly: whole-batch gradients of the union batches
    x = leaf(images)
    params = list(net.parameters())
    syn_labels = torch.arange(CLASSES).repeat_interleave(IPC)
    real_labels = torch.arange(CLASSES).repeat_interleave(real.shape[1])
    g_real = torch.autograd.grad(F.cross_entropy(net(real.flatten(0, 1)), real_labels), params)
    g_syn = torch.autograd.grad(F.cross_entropy(net(x), syn_labels), params, create_graph=True)
    direct = get_distance("ours")(g_syn, g_real)
    (2.5 * direct).backward()
    torch.testing.assert_close(losses.inter, direct.detach())
    torch.testing.assert_close(losses.objective, 2.5 * direct.detach())
    torch.testing.assert_close(grad, x.grad)


def test_multi_level_is_intra_plus_lambda_times_inter(dataset) -> None:
    net, images, real = step_inputs(dataset)
    intra, intra_grad = step(net, images, real, level="intra")
    inter, inter_grad = step(net, images, real, level="inter", level_weight=1.0)
    multi, multi_grad = step(net, images, real, level="multi")  # lambda None = number of classes
    torch.testing.assert_close(multi.per_class, intra.per_class)
    torch.testing.assert_close(inter.per_class, intra.per_class)  # logged, not optimised
    torch.testing.assert_close(multi.objective, intra.per_class.sum() + CLASSES * inter.inter)
    torch.testing.assert_close(multi_grad, intra_grad + CLASSES * inter_grad)
    assert intra.inter is None and intra.curvature is None


def test_interleaved_alternates_intra_and_inter_by_iteration() -> None:
    assert [level_of_iteration("interleaved", it) for it in range(5)] == ["intra", "inter", "intra", "inter", "intra"]
    for level in ("intra", "inter", "multi"):
        assert level_of_iteration(level, 7) == level
    with pytest.raises(ValueError, match="'interleaved'"):
        level_of_iteration("both", 0)


def test_interleaved_run_matches_intra_in_even_and_inter_in_odd_iterations(dataset) -> None:
    interleaved = run(dataset, tiny(match_level="interleaved", iterations=3))
    intra = run(dataset, tiny(iterations=1))
    assert interleaved.history.losses[0] == intra.history.losses[0]
    assert interleaved.history.extras["inter_loss"][0] is None and interleaved.history.extras["inter_loss"][2] is None
    assert interleaved.history.extras["inter_loss"][1] is not None


# ------------------------------------------------------------------------------------------
# Per class or one mixed batch (seed 003, Table II)
# ------------------------------------------------------------------------------------------


def test_not_per_class_loss_equals_a_direct_computation(dataset) -> None:
    net, images, _ = step_inputs(dataset)
    real_images, real_labels = dataset.mixed_batch(12, torch.Generator().manual_seed(3))
    syn_labels = torch.arange(CLASSES).repeat_interleave(IPC)
    x = leaf(images)
    losses = mixed_step_backward(net, x, syn_labels, real_images, real_labels, get_distance("ours"), chunk_size=5)
    y = leaf(images)
    params = list(net.parameters())
    g_real = torch.autograd.grad(F.cross_entropy(net(real_images), real_labels), params)
    g_syn = torch.autograd.grad(F.cross_entropy(net(y), syn_labels), params, create_graph=True)
    direct = get_distance("ours")(g_syn, g_real)
    direct.backward()
    torch.testing.assert_close(losses.per_class, direct.detach().reshape(1))
    torch.testing.assert_close(x.grad, y.grad)


def test_mixed_real_batch_is_uniform_over_the_training_set(dataset) -> None:
    images, labels = dataset.mixed_batch(30, torch.Generator().manual_seed(0))
    assert images.shape == (30, 1, SIZE, SIZE) and labels.shape == (30,)
    assert len(torch.unique(images.flatten(1), dim=0)) == 30  # without replacement
    again, _ = dataset.mixed_batch(30, torch.Generator().manual_seed(0))
    assert torch.equal(images, again)
    with pytest.raises(ValueError, match="the mixed batch size is 1000000 but at most 72 are available"):
        dataset.mixed_batch(10**6, torch.Generator())


def test_not_per_class_run_uses_batch_real_times_classes_real_images(dataset, monkeypatch) -> None:
    sizes = []
    original = type(dataset).mixed_batch

    def spy(data, size, generator):
        sizes.append(size)
        return original(data, size, generator)

    monkeypatch.setattr(type(dataset), "mixed_batch", spy)
    result = run(dataset, tiny(per_class=False))
    assert sizes == [8 * CLASSES] * 4  # 2 iterations x 2 outer steps
    assert all(len(row) == 1 for row in result.history.losses)


# ------------------------------------------------------------------------------------------
# The curvature term (gmlib.methods.hessian)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss, kind", [("synthetic", "exact"), ("real", "abs"), ("synthetic", "gauss_newton")])
def test_curvature_term_is_added_per_class(dataset, loss, kind) -> None:
    net, images, real = step_inputs(dataset)
    spec = CurvatureSpec(0.3, loss, kind)
    losses, grad = step(net, images, real, curvature=spec)
    x = leaf(images)
    params = list(net.parameters())
    total, values = 0.0, []
    for c in range(CLASSES):
        real_labels = torch.full((real.shape[1],), c)
        real_logits = net(real[c])
        real_grads = torch.autograd.grad(F.cross_entropy(real_logits, real_labels), params, create_graph=True)
        g_real = [g.detach() for g in real_grads]
        syn_labels = torch.full((IPC,), c)
        syn_logits = net(x[c * IPC:(c + 1) * IPC])
        g_syn = torch.autograd.grad(F.cross_entropy(syn_logits, syn_labels), params, create_graph=True)
        v = [a - b for a, b in zip(g_real, g_syn)]
        if loss == "synthetic":
            value = curvature_term(kind, params, v, g_syn, syn_logits, syn_labels)
        else:
            value = curvature_term(kind, params, v, real_grads, real_logits, real_labels)
        values.append(value.detach())
        total = total + get_distance("ours")(g_syn, g_real) + 0.3 * value
    total.backward()
    torch.testing.assert_close(losses.curvature, torch.stack(values))
    torch.testing.assert_close(losses.objective, total.detach())
    torch.testing.assert_close(grad, x.grad)


def test_hessian_weight_zero_reproduces_the_default_run_bit_for_bit(dataset) -> None:
    default = run(dataset, tiny())
    explicit = run(dataset, tiny(hessian_weight=0.0, hessian_loss="real", hessian_kind="abs", match_level="intra",
                                 per_class=True, inner_steps="fixed"))
    assert torch.equal(default.synthetic.images, explicit.synthetic.images)
    assert default.history.losses == explicit.history.losses
    assert explicit.history.extras["curvature"] == [None, None]


def test_a_run_with_the_curvature_term_records_it(dataset) -> None:
    result = run(dataset, tiny(hessian_weight=0.1, hessian_kind="gauss_newton"))
    assert all(value is not None and value >= 0 for value in result.history.extras["curvature"])  # Gauss-Newton: >= 0


# ------------------------------------------------------------------------------------------
# Whole runs: every option completes and is seeded-deterministic
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    {"match_level": "inter"},
    {"match_level": "multi", "distance": "d1+d2"},
    {"match_level": "interleaved", "level_weight": 1.0},
    {"per_class": False},
    {"per_class": False, "hessian_weight": 0.05, "hessian_loss": "real"},
    {"match_level": "multi", "hessian_weight": 0.05, "hessian_kind": "abs"},
    {"match_level": "multi", "inner_steps": "overfit", "network": "convnet_bn"},
    {"inner_steps": "schedule", "inner_schedule": (1, 0)},
])
def test_each_option_runs_and_is_seeded_deterministic(dataset, options) -> None:
    first = run(dataset, tiny(**options))
    again = run(dataset, tiny(**options))
    other = run(dataset, tiny(**options), seed=1)
    assert torch.equal(first.synthetic.images, again.synthetic.images)
    assert first.history.to_dict()["losses"] == again.history.to_dict()["losses"]
    assert not torch.equal(first.synthetic.images, other.synthetic.images)
    assert torch.isfinite(first.synthetic.images).all()


def test_dsa_with_mixed_batches_runs(dataset) -> None:
    result = run(dataset, tiny(method="dsa", dsa_strategy="crop_scale", per_class=False, iterations=1))
    assert torch.isfinite(result.synthetic.images).all()


def test_auto_engine_picks_the_loop_for_other_objectives() -> None:
    cuda = torch.device("cuda")
    assert resolve_engine("auto", cuda, dc_options=True) == "batched"
    assert resolve_engine("auto", cuda, dc_options=False) == "loop"
    assert not tiny(match_level="multi").dc_options and tiny().dc_options


def test_the_batched_engine_refuses_other_levels(dataset) -> None:
    net, images, real = step_inputs(dataset)
    with pytest.raises(ValueError, match="engine='loop'"):
        matching_step_backward(net, leaf(images), IPC, real, get_distance("ours"), engine="batched", level="multi")


# ------------------------------------------------------------------------------------------
# Configuration errors and seed 002's distances
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, words", [
    ({"match_level": "both"}, ["match_level", "'both'", "'intra'", "'inter'", "'multi'", "'interleaved'"]),
    ({"match_level": "multi", "level_weight": -1.0}, ["level_weight", ">= 0"]),
    ({"level_weight": 2.0}, ["level_weight", "'intra'", "'multi'"]),
    ({"per_class": "yes"}, ["per_class", "True or False"]),
    ({"per_class": False, "match_level": "multi"}, ["per_class=False", "'intra'"]),
    ({"inner_steps": "adaptive"}, ["inner_steps", "'fixed'", "'overfit'", "'schedule'"]),
    ({"inner_schedule": (5, 1)}, ["inner_schedule", "inner_steps='schedule'"]),
    ({"inner_steps": "schedule", "inner_schedule": (5, -1)}, ["schedule", ">= 0"]),
    ({"hessian_weight": float("nan")}, ["hessian_weight"]),
    ({"hessian_loss": "test"}, ["hessian_loss", "'synthetic'", "'real'"]),
    ({"hessian_kind": "fisher"}, ["hessian_kind", "'exact'", "'abs'", "'gauss_newton'"]),
    ({"engine": "batched", "match_level": "inter"}, ["engine='batched'", "match_level='intra'"]),
])
def test_bad_options_raise_errors_naming_the_allowed_values(changes, words) -> None:
    with pytest.raises(ValueError) as error:
        MatchingConfig(**changes)
    for word in words:
        assert word in str(error.value)


def test_levels_are_listed() -> None:
    assert MATCH_LEVELS == ("intra", "inter", "multi", "interleaved")


def test_every_distance_of_seed_002_table_2_resolves_with_its_weights() -> None:
    table_2 = {"d1": ((1.0, "d1"),), "d2": ((1.0, "d2"),), "d3": ((1.0, "d3"),), "100*d4": ((100.0, "d4"),),
               "d1+d2": ((1.0, "d1"), (1.0, "d2")), "d1+d3": ((1.0, "d1"), (1.0, "d3")),
               "d1+100*d4": ((1.0, "d1"), (100.0, "d4")), "d1+0.1*d2": ((1.0, "d1"), (0.1, "d2"))}
    for name, terms in table_2.items():
        assert get_distance(name).terms == terms, name


def test_100_d4_by_hand() -> None:
    # one 2x2 weight gradient: rows (3, 4) vs (0, 0) and (1, 1) vs (1, 3); d4 = ||a - b||^2 / len(a) per row
    g_syn, g_real = [torch.tensor([[3.0, 4.0], [1.0, 1.0]])], [torch.tensor([[0.0, 0.0], [1.0, 3.0]])]
    expected = 100 * ((9 + 16) / 2 + (0 + 4) / 2)
    torch.testing.assert_close(get_distance("100*d4")(g_syn, g_real), torch.tensor(expected))
