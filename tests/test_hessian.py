"""gmlib.methods.hessian: Hessian-vector products and curvature terms against explicitly formed matrices,
and the image gradient of the whole matching objective against finite differences."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from gmlib.distances import get_distance
from gmlib.methods.dc_config import MatchingConfig
from gmlib.methods.dc_variants import CurvatureSpec, loop_step_backward
from gmlib.methods.hessian import (
    HESSIAN_KINDS,
    HESSIAN_LOSSES,
    curvature_term,
    dot,
    hvp,
    jvp_logits,
    matching_objective_with_curvature,
    softmax_cross_entropy_curvature,
)

NUM_CLASSES = 3


def tiny_net(seed: int = 0, act: type[nn.Module] = nn.Tanh, inputs: int = 4) -> nn.Module:
    """A 2-layer net with a smooth activation, so third derivatives are not zero."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(inputs, 5), act(), nn.Linear(5, NUM_CLASSES)).double()


def tiny_convnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.Softplus(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(2 * 2 * 2, NUM_CLASSES)
    ).double()


def batch(seed: int, n: int = 6, shape: tuple[int, ...] = (4,)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=torch.double), torch.randint(0, NUM_CLASSES, (n,), generator=g)


def random_like(params, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def explicit(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(H, J, H_out) formed explicitly on the flattened parameter vector."""
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    sizes = [p.numel() for p in net.parameters()]
    theta = flat([p.detach() for p in net.parameters()])

    def unflatten(vector):
        return {n: t.view(s) for n, t, s in zip(names, vector.split(sizes), shapes)}

    def logits_of(vector):
        return functional_call(net, unflatten(vector), (x,))

    hessian = torch.autograd.functional.hessian(lambda t: F.cross_entropy(logits_of(t), y), theta)
    jacobian = torch.autograd.functional.jacobian(logits_of, theta).reshape(-1, len(theta))
    p = logits_of(theta).softmax(dim=1).detach()
    h_out = torch.block_diag(*[torch.diag(row) - torch.outer(row, row) for row in p]) / len(x)
    return hessian, jacobian, h_out


def loss_and_grads(net, x, y):
    params = list(net.parameters())
    logits = net(x)
    grads = torch.autograd.grad(F.cross_entropy(logits, y), params, create_graph=True)
    return params, logits, grads


@pytest.mark.parametrize("seed", [0, 1])
def test_hvp_equals_explicit_hessian_times_v(seed):
    net = tiny_net(seed)
    x, y = batch(seed)
    params, _, grads = loss_and_grads(net, x, y)
    v = random_like(params, seed + 10)
    hessian, _, _ = explicit(net, x, y)
    torch.testing.assert_close(flat(hvp(grads, params, v)), hessian @ flat(v))


def test_hvp_of_a_conv_net_equals_explicit_hessian():
    net = tiny_convnet()
    x, y = batch(3, n=4, shape=(1, 4, 4))
    params, _, grads = loss_and_grads(net, x, y)
    v = random_like(params, 4)
    hessian, _, _ = explicit(net, x, y)
    torch.testing.assert_close(flat(hvp(grads, params, v)), hessian @ flat(v))


def test_hvp_ignores_the_dependence_of_v_on_theta():
    # In matching v = g_real - g_syn depends on theta; H v must still be the plain product, with no
    # (dv/dtheta)^T g term (the trap of differentiating g . v naively).
    net = tiny_net(2)
    x, y = batch(5)
    x_syn, y_syn = batch(6, n=2)
    params, _, grads = loss_and_grads(net, x, y)
    g_syn = torch.autograd.grad(F.cross_entropy(net(x_syn), y_syn), params, create_graph=True)
    v = [r.detach() - s for r, s in zip(grads, g_syn)]
    hessian, _, _ = explicit(net, x, y)
    torch.testing.assert_close(flat(hvp(grads, params, v)), hessian @ flat([t.detach() for t in v]))


def test_hvp_without_create_graph_is_detached_and_unused_parameters_get_zeros():
    net = tiny_net(0)
    unused = nn.Parameter(torch.ones(2, dtype=torch.double))
    x, y = batch(0)
    params = list(net.parameters()) + [unused]
    grads = list(torch.autograd.grad(F.cross_entropy(net(x), y), list(net.parameters()), create_graph=True))
    grads.append(torch.zeros_like(unused))  # the loss does not depend on it: a constant zero gradient
    products = hvp(grads, params, random_like(params, 1), create_graph=False)
    assert not any(h.requires_grad for h in products)
    torch.testing.assert_close(products[-1], torch.zeros(2, dtype=torch.double))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_and_abs_terms_equal_the_explicit_quadratic_form(seed):
    net = tiny_net(seed)
    x, y = batch(seed)
    params, logits, grads = loss_and_grads(net, x, y)
    v = random_like(params, seed + 20)
    hessian, _, _ = explicit(net, x, y)
    expected = flat(v) @ hessian @ flat(v)
    torch.testing.assert_close(curvature_term("exact", params, v, grads, logits, y), expected)
    torch.testing.assert_close(curvature_term("abs", params, v, grads, logits, y), expected.abs())


@pytest.mark.parametrize("seed", [0, 1])
def test_gauss_newton_term_and_jvp_equal_the_explicit_matrices(seed):
    net = tiny_convnet(seed)
    x, y = batch(seed, n=3, shape=(1, 4, 4))
    params, logits, grads = loss_and_grads(net, x, y)
    v = random_like(params, seed + 30)
    _, jacobian, h_out = explicit(net, x, y)
    jv = jacobian @ flat(v)
    torch.testing.assert_close(jvp_logits(logits, params, v).reshape(-1), jv)
    torch.testing.assert_close(curvature_term("gauss_newton", params, v, grads, logits, y), jv @ h_out @ jv)


def test_the_exact_term_takes_both_signs_and_the_bounded_ones_never_go_below_zero():
    # H of a tanh net's loss is indefinite, so random directions give both signs of v^T H v.
    signs = set()
    for seed in range(12):
        net = tiny_net(seed)
        x, y = batch(seed)
        params, logits, grads = loss_and_grads(net, x, y)
        v = random_like(params, 100 + seed)
        exact = curvature_term("exact", params, v, grads, logits, y)
        signs.add(bool(exact > 0))
        assert curvature_term("abs", params, v, grads, logits, y) >= 0
        assert curvature_term("gauss_newton", params, v, grads, logits, y) >= 0
    assert signs == {True, False}


def test_softmax_cross_entropy_curvature_by_hand():
    # Two classes, logits 0 and 0: p = (1/2, 1/2); d = (1, -1): variance of d under p is 1.
    logits = torch.zeros(1, 2, dtype=torch.double)
    d = torch.tensor([[1.0, -1.0]], dtype=torch.double)
    torch.testing.assert_close(softmax_cross_entropy_curvature(logits, d), torch.tensor(1.0, dtype=torch.double))
    # A direction that moves every logit equally does not change the softmax: zero curvature.
    torch.testing.assert_close(softmax_cross_entropy_curvature(logits, torch.ones(1, 2, dtype=torch.double)),
                               torch.tensor(0.0, dtype=torch.double))


def objective_of_images(net, kind, hessian_loss, weight, distance, x_real, y_real, y_syn, constant=False):
    """images -> D(g_syn, g_real) + weight * v^T C v with v = g_real - g_syn, as the loop computes it."""
    params = list(net.parameters())
    real_logits = net(x_real)
    g_real_graph = torch.autograd.grad(F.cross_entropy(real_logits, y_real), params, create_graph=True)
    g_real = [g.detach() for g in g_real_graph]

    def objective(images):
        logits = net(images)
        g_syn = torch.autograd.grad(F.cross_entropy(logits, y_syn), params, create_graph=True)
        v = [r - s for r, s in zip(g_real, g_syn)]
        if hessian_loss == "synthetic":
            term = curvature_term(kind, params, v, g_syn, logits, y_syn)
        else:
            term = curvature_term(kind, params, v, g_real_graph, real_logits, y_real, constant_curvature=constant)
        return distance(g_syn, g_real) + weight * term

    return objective


@pytest.mark.parametrize("hessian_loss", HESSIAN_LOSSES)
@pytest.mark.parametrize("kind", HESSIAN_KINDS)
def test_image_gradient_of_the_whole_objective_matches_finite_differences(kind, hessian_loss):
    net = tiny_convnet(7)
    x_real, y_real = batch(8, n=4, shape=(1, 4, 4))
    images = batch(9, n=2, shape=(1, 4, 4))[0].requires_grad_(True)
    y_syn = torch.tensor([0, 1])
    objective = objective_of_images(net, kind, hessian_loss, 0.7, get_distance("ours"), x_real, y_real, y_syn)
    if kind == "abs":  # |.| is smooth only away from 0: check that the test point is away from it
        exact = objective_of_images(net, "exact", hessian_loss, 1.0, lambda s, r: 0.0, x_real, y_real, y_syn)
        assert abs(exact(images).item()) > 1e-4
    assert torch.autograd.gradcheck(objective, (images,), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("kind", HESSIAN_KINDS)
def test_constant_curvature_shortcut_has_the_same_value_and_image_gradient(kind):
    # With the real batch's curvature, C does not depend on the images: the cheap surrogate must
    # give the same objective and the same gradient w.r.t. the images as the full graph.
    net = tiny_convnet(11)
    x_real, y_real = batch(12, n=4, shape=(1, 4, 4))
    y_syn = torch.tensor([0, 2])
    results = []
    for constant in (False, True):
        images = batch(13, n=2, shape=(1, 4, 4))[0].requires_grad_(True)
        objective = objective_of_images(net, kind, "real", 0.9, get_distance("mse"), x_real, y_real, y_syn, constant)
        value = objective(images)
        (grad,) = torch.autograd.grad(value, images)
        results.append((value.detach(), grad))
    torch.testing.assert_close(results[1][0], results[0][0])
    torch.testing.assert_close(results[1][1], results[0][1])


def test_the_teaching_objective_matches_its_parts():
    net = tiny_convnet(1)
    images = batch(2, n=2, shape=(1, 4, 4))[0].requires_grad_(True)
    labels = torch.tensor([2, 2])
    x_real, y_real = batch(3, n=4, shape=(1, 4, 4))
    params = list(net.parameters())
    g_real = torch.autograd.grad(F.cross_entropy(net(x_real), y_real), params)
    distance = get_distance("mse")
    plain = matching_objective_with_curvature(net, images, labels, g_real, distance, 0.0, "exact")
    with_term = matching_objective_with_curvature(net, images, labels, g_real, distance, 0.5, "exact")
    logits = net(images)
    g_syn = torch.autograd.grad(F.cross_entropy(logits, labels), params, create_graph=True)
    v = [r - s for r, s in zip(g_real, g_syn)]
    torch.testing.assert_close(plain, distance(g_syn, g_real))
    torch.testing.assert_close(with_term, plain + 0.5 * dot(v, hvp(g_syn, params, v)))
    with_term.backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()


@pytest.mark.parametrize("kind", HESSIAN_KINDS)
def test_the_teaching_objective_equals_the_matching_loops_step(kind):
    """One class through matching_objective_with_curvature and through the loop DC's variants
    use (loop_step_backward with a curvature term): the same objective, the same image gradient."""
    net = tiny_convnet(2)
    images = batch(4, n=2, shape=(1, 4, 4))[0]
    real = batch(5, n=4, shape=(1, 4, 4))[0]
    params = list(net.parameters())
    g_real = torch.autograd.grad(F.cross_entropy(net(real), torch.zeros(4, dtype=torch.long)), params)
    distance = get_distance("ours")
    x = images.clone().requires_grad_(True)
    matching_objective_with_curvature(net, x, torch.zeros(2, dtype=torch.long), g_real, distance, 0.5, kind).backward()
    y = images.clone().requires_grad_(True)
    step = loop_step_backward(net, y, 2, real[None], distance, curvature=CurvatureSpec(0.5, "synthetic", kind))
    torch.testing.assert_close(y.grad, x.grad)
    assert torch.isfinite(step.objective)


def test_bad_inputs_raise_clear_errors():
    net = tiny_net(0)
    x, y = batch(0)
    params, logits, grads = loss_and_grads(net, x, y)
    v = random_like(params, 1)
    with pytest.raises(ValueError, match="unknown Hessian kind 'newton'.*'exact', 'abs', 'gauss_newton'"):
        curvature_term("newton", params, v, grads, logits, y)
    with pytest.raises(ValueError, match="params has 4 tensors but v has 3"):
        curvature_term("exact", params, v[:3], grads, logits, y)
    with pytest.raises(ValueError, match="shapes differ at index 0"):
        hvp(grads, params, [v[0].T, *v[1:]])
    with pytest.raises(ValueError, match=r"labels \(batch,\)"):
        curvature_term("gauss_newton", params, v, grads, logits, y[:2])
    with pytest.raises(ValueError, match="unknown hessian_loss 'test'.*'synthetic', 'real'"):
        MatchingConfig(hessian_weight=1.0, hessian_loss="test")
    with pytest.raises(ValueError, match="unknown Hessian kind"):
        matching_objective_with_curvature(net, x, y, grads, get_distance("mse"), 1.0, "hessian")
