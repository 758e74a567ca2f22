"""Hypergradients: the ridge toy against its exact answer, finite differences, the distillation loops."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from gmlib.data import ImageDataset
from gmlib.methods.bilevel import (
    ImplicitConfig,
    ImplicitMethod,
    UnrollConfig,
    UnrollMethod,
    batch_indices,
    distill_implicit,
    distill_unrolled,
    implicit_hypergradient,
    lr_from_raw,
    neumann_inverse_hvp,
    raw_from_lr,
    unrolled_training,
)
from gmlib.methods.toy_bilevel import (
    exact_hypergradient,
    implicit_toy_hypergradient,
    inner_trajectory,
    make_ridge_toy,
    outer_landscape,
    outer_loss,
    ridge_solution,
    unrolled_hypergradient,
)
from gmlib.randomness import draw_seed, iteration_generator
from gmlib.run.checkpoint import CheckpointError, checkpoint_path, load_checkpoint
from gmlib.run.loop import CHECKPOINT_FORMAT, DivergenceError, RunResult, run

F64 = torch.float64


# ---------------------------------------------------------------------------------------------
# The ridge toy
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy():
    return make_ridge_toy(num_real=100, num_synthetic=3, ridge=0.1, seed=1)


def _safe_lr(toy) -> float:
    return 1.0 / float(torch.linalg.eigvalsh(toy.inner_hessian()).max())


def test_ridge_solution_is_the_stationary_point(toy):
    theta = ridge_solution(toy, toy.synthetic_x).requires_grad_(True)
    from gmlib.methods.toy_bilevel import inner_loss

    (g,) = torch.autograd.grad(inner_loss(toy, theta, toy.synthetic_x), theta)
    assert g.abs().max() < 1e-12


def test_exact_hypergradient_matches_finite_differences(toy):
    exact = exact_hypergradient(toy)
    eps = 1e-6
    for i in range(toy.num_synthetic):
        for j in range(2):
            plus, minus = toy.synthetic_x.clone(), toy.synthetic_x.clone()
            plus[i, j] += eps
            minus[i, j] -= eps
            fd = (outer_loss(toy, ridge_solution(toy, plus)) - outer_loss(toy, ridge_solution(toy, minus))) / (2 * eps)
            assert abs(float(fd) - float(exact[i, j])) < 1e-8


def test_unrolled_hypergradient_converges_to_exact_as_steps_grow(toy):
    exact, lr = exact_hypergradient(toy), _safe_lr(toy)
    errors = [float((unrolled_hypergradient(toy, n, lr) - exact).norm()) for n in (10, 40, 160, 640)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-8 * max(1.0, float(exact.norm()))


def test_gradient_descent_trajectory_reaches_the_ridge_solution(toy):
    path = inner_trajectory(toy, 400, _safe_lr(toy))
    assert path.shape == (401, 2) and torch.equal(path[0], torch.zeros(2, dtype=F64))
    assert torch.allclose(path[-1], ridge_solution(toy, toy.synthetic_x), atol=1e-10)


def test_neumann_hypergradient_converges_to_exact_as_terms_grow(toy):
    exact, alpha = exact_hypergradient(toy), _safe_lr(toy)
    errors = [float((implicit_toy_hypergradient(toy, k, alpha) - exact).norm()) for k in (0, 10, 100, 1000)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-9


def test_outer_landscape_cells_are_outer_losses_of_the_moved_point(toy):
    grid = torch.tensor([-1.0, 0.5], dtype=F64)
    values = outer_landscape(toy, 1, grid)
    assert values.shape == (2, 2)
    moved = toy.synthetic_x.clone()
    moved[1] = torch.tensor([0.5, -1.0], dtype=F64)  # column 1 = first coordinate, row 0 = second
    assert float(values[0, 1]) == pytest.approx(float(outer_loss(toy, ridge_solution(toy, moved))), rel=1e-12)
    with pytest.raises(ValueError, match="point must be in 0..2"):
        outer_landscape(toy, 3, grid)


# ---------------------------------------------------------------------------------------------
# Neumann series and the implicit hypergradient
# ---------------------------------------------------------------------------------------------


def _quadratic(hessian: torch.Tensor, mixed: torch.Tensor):
    """Inner loss 1/2 w^T H w - w^T (M h): Hessian H, d^2/dw dh = -M."""
    w = torch.zeros(hessian.shape[0], dtype=F64, requires_grad=True)
    h = torch.ones(mixed.shape[1], dtype=F64, requires_grad=True)
    return w, h, 0.5 * w @ hessian @ w - w @ (mixed @ h)


def test_neumann_inverse_hvp_matches_linear_solve_on_a_small_spd_hessian():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 5, generator=g, dtype=F64)
    hessian = a @ a.T / 5 + 0.5 * torch.eye(5, dtype=F64)
    w, _, loss = _quadratic(hessian, torch.zeros(5, 1, dtype=F64))
    (grad,) = torch.autograd.grad(loss, w, create_graph=True)
    v = torch.randn(5, generator=g, dtype=F64)
    alpha = 1.0 / float(torch.linalg.eigvalsh(hessian).max())
    (approx,) = neumann_inverse_hvp([grad], [w], [v], alpha=alpha, terms=2000)
    assert torch.allclose(approx, torch.linalg.solve(hessian, v), atol=1e-10)
    # Hand value: zero terms is alpha * v.
    (first,) = neumann_inverse_hvp([grad], [w], [v], alpha=alpha, terms=0)
    assert torch.allclose(first, alpha * v)


def test_implicit_hypergradient_on_a_quadratic_is_the_exact_formula():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(4, 4, generator=g, dtype=F64)
    hessian = a @ a.T / 4 + torch.eye(4, dtype=F64)
    mixed = torch.randn(4, 2, generator=g, dtype=F64)
    target = torch.randn(4, generator=g, dtype=F64)
    # theta*(h) = H^{-1} M h; outer = 1/2 |theta - target|^2 (+ a direct term 0.3 * sum(h)).
    w, h, inner = _quadratic(hessian, mixed)
    with torch.no_grad():
        w.copy_(torch.linalg.solve(hessian, mixed @ h))
    inner = 0.5 * w @ hessian @ w - w @ (mixed @ h)
    outer = 0.5 * (w - target).pow(2).sum() + 0.3 * h.sum()
    alpha = 1.0 / float(torch.linalg.eigvalsh(hessian).max())
    unused = torch.zeros(3, dtype=F64, requires_grad=True)
    grad_h, grad_unused = implicit_hypergradient(inner, outer, [w], [h, unused], alpha=alpha, terms=3000)
    exact = mixed.T @ torch.linalg.solve(hessian, (w - target).detach()) + 0.3
    assert torch.allclose(grad_h, exact, atol=1e-10)
    assert torch.equal(grad_unused, torch.zeros(3, dtype=F64))


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": 0.0, "terms": 3}, "alpha must be a finite number > 0"),
    ({"alpha": 0.1, "terms": -1}, "terms must be an integer >= 0"),
    ({"alpha": 0.1, "terms": 2.5}, "terms must be an integer >= 0"),
])
def test_neumann_rejects_bad_settings(kwargs, message):
    w = torch.zeros(2, requires_grad=True)
    (grad,) = torch.autograd.grad((w ** 2).sum(), w, create_graph=True)
    with pytest.raises(ValueError, match=message):
        neumann_inverse_hvp([grad], [w], [torch.ones(2)], **kwargs)


# ---------------------------------------------------------------------------------------------
# Finite differences on tiny networks (float64)
# ---------------------------------------------------------------------------------------------


def _tiny_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(6, 1, 3, 3, generator=g, dtype=F64)  # 3 classes x 2 images
    labels = torch.arange(3).repeat_interleave(2)
    real_x, real_y = torch.randn(8, 1, 3, 3, generator=g, dtype=F64), torch.randint(0, 3, (8,), generator=g)
    return images, labels, real_x, real_y


def _fd_check(objective, point: torch.Tensor, analytic: torch.Tensor, coordinates, eps=1e-6, tol=1e-7):
    for index in coordinates:
        plus, minus = point.clone(), point.clone()
        plus[index] += eps
        minus[index] -= eps
        fd = (objective(plus) - objective(minus)) / (2 * eps)
        assert abs(float(fd) - float(analytic[index])) < tol * max(1.0, abs(float(fd))), (index, fd, analytic[index])


def test_unrolled_objective_gradients_match_finite_differences():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(9, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    params0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    images, labels, real_x, real_y = _tiny_problem()
    batches = batch_indices(3, 1, 2)  # two batches of one image per class, alternating
    raw = raw_from_lr(0.3, 4).double()

    def objective(x, raw_lrs=raw, momentum=0.5):
        start = {n: p.clone().requires_grad_(True) for n, p in params0.items()}
        final = unrolled_training(net, start, x, labels, batches, lr_from_raw(raw_lrs), momentum=momentum)
        return F.cross_entropy(functional_call(net, final, (real_x,)), real_y)

    x = images.clone().requires_grad_(True)
    r = raw.clone().requires_grad_(True)
    grad_x, grad_r = torch.autograd.grad(objective(x, r), [x, r])
    assert grad_r.abs().min() > 0  # every learned learning rate gets a gradient
    _fd_check(lambda p: objective(p).detach(), images, grad_x, [(0, 0, 0, 0), (3, 0, 1, 2), (5, 0, 2, 1)])
    _fd_check(lambda p: objective(images, p).detach(), raw, grad_r, [(0,), (3,)])


def _newton_solve(loss_of, theta: torch.Tensor, iterations: int = 10) -> torch.Tensor:
    """The minimiser of a smooth strongly convex loss by Newton's method (to machine precision)."""
    for _ in range(iterations):
        grad = torch.autograd.functional.jacobian(loss_of, theta)
        hess = torch.autograd.functional.hessian(loss_of, theta)
        theta = theta - torch.linalg.solve(hess, grad)
    return theta


def test_implicit_objective_gradient_matches_finite_differences_of_the_solved_inner_problem():
    images, labels, real_x, real_y = _tiny_problem(1)
    decay = 0.5  # ridge term: the inner problem is strongly convex, theta* unique

    def logits(theta, x):
        w, b = theta[:27].view(3, 9), theta[27:]
        return x.flatten(1) @ w.T + b

    def inner(theta, x):
        return F.cross_entropy(logits(theta, x), labels) + 0.5 * decay * theta.pow(2).sum()

    def solved_outer(x):
        theta = _newton_solve(lambda t: inner(t, x), torch.zeros(30, dtype=F64))
        return F.cross_entropy(logits(theta, real_x), real_y)

    x = images.clone().requires_grad_(True)
    theta = _newton_solve(lambda t: inner(t, images), torch.zeros(30, dtype=F64)).requires_grad_(True)
    hess = torch.autograd.functional.hessian(lambda t: inner(t, images), theta.detach())
    alpha = 1.0 / float(torch.linalg.eigvalsh(hess).max())
    (grad,) = implicit_hypergradient(inner(theta, x), F.cross_entropy(logits(theta, real_x), real_y), [theta], [x],
                                     alpha=alpha, terms=400)
    _fd_check(lambda p: solved_outer(p).detach(), images, grad, [(0, 0, 0, 0), (2, 0, 1, 1), (5, 0, 2, 2)], tol=1e-6)


# ---------------------------------------------------------------------------------------------
# The distillation loops on a tiny dataset
# ---------------------------------------------------------------------------------------------


def tiny_dataset() -> ImageDataset:
    g = torch.Generator().manual_seed(7)
    labels = torch.arange(3).repeat(10)
    images = torch.randn(30, 1, 6, 6, generator=g) + labels.view(-1, 1, 1, 1).float()
    return ImageDataset("tiny", images, labels, images[:9], labels[:9], (0.5,), (0.25,), ["a", "b", "c"])


TINY_NET = {"network": "mlp", "network_kwargs": {}, "batch_real": 8, "iterations": 2}


def test_distill_unrolled_is_seeded_and_learns_lrs():
    data = tiny_dataset()
    config = UnrollConfig(ipc=1, synthetic_batches=2, inner_steps=2, inner_momentum=0.5, **TINY_NET)
    a = distill_unrolled(data, config, seed=5, device="cpu")
    b = distill_unrolled(data, config, seed=5, device="cpu")
    c = distill_unrolled(data, config, seed=6, device="cpu")
    assert isinstance(a, RunResult) and a.method.config is config
    assert a.synthetic.images.shape == (3 * 2, 1, 6, 6) and a.synthetic.ipc == 2
    assert torch.equal(a.synthetic.images, b.synthetic.images) and a.history.losses == b.history.losses
    assert not torch.equal(a.synthetic.images, c.synthetic.images)
    lrs = a.method.learned_lrs
    assert lrs.device.type == "cpu" and lrs.shape == (2,) and not torch.allclose(lrs, torch.full((2,), 0.02))
    assert a.method.learned_parameters() == 6 * 36 + 2
    history = a.history
    assert history.completed == 2 and len(history.seconds) == 2 and all(len(row) == 1 for row in history.losses)
    assert history.peak_mib > 0 and sum(history.seconds) > 0 and history.memory_kind == "cpu resident"
    assert a.synthetic.metadata["iterations"] == 2 and "2 iterations, 218 learned values" in a.summary()


def test_distill_implicit_is_seeded_and_moves_the_images():
    data = tiny_dataset()
    config = ImplicitConfig(ipc=1, inner_steps=3, init_mode="fixed", **TINY_NET)
    a = distill_implicit(data, config, seed=2, device="cpu")
    b = distill_implicit(data, config, seed=2, device="cpu")
    assert torch.equal(a.synthetic.images, b.synthetic.images) and a.history.losses == b.history.losses
    start = distill_implicit(data, ImplicitConfig(ipc=1, inner_steps=3, **{**TINY_NET, "iterations": 0}),
                             seed=2, device="cpu")
    assert start.history.completed == 0 and start.history.losses == []
    assert not torch.equal(a.synthetic.images, start.synthetic.images)
    assert not hasattr(a.method, "learned_lrs") and a.method.learned_parameters() == 3 * 36


@pytest.mark.parametrize("method_class, config_class", [(UnrollMethod, UnrollConfig), (ImplicitMethod, ImplicitConfig)])
def test_each_outer_step_draws_its_student_and_a_batch_of_distinct_real_images(method_class, config_class):
    data = tiny_dataset()
    data.train_images[:, 0, 0, 0] = torch.arange(30.0)  # pixel (0, 0) names the image

    def draws(init_mode, it, seed=4):
        method = method_class(data, config_class(ipc=1, init_mode=init_mode, **TINY_NET), seed, torch.device("cpu"))
        return method.student_and_real_batch(iteration_generator(seed, it))

    first, again, second = draws("random", 0), draws("random", 0), draws("random", 1)
    # A function of (seed, iteration) only.
    assert all(torch.equal(first[0][n], again[0][n]) for n in first[0])
    assert torch.equal(first[1], again[1]) and torch.equal(first[2], again[2])
    assert not torch.equal(first[0]["classifier.weight"], second[0]["classifier.weight"])
    assert not torch.equal(first[1], second[1])
    names = first[1][:, 0, 0, 0]
    assert len(names) == 8 and len(set(names.tolist())) == 8  # without replacement
    assert torch.equal(first[2], data.train_labels[names.long()])
    fixed0, fixed1 = draws("fixed", 0), draws("fixed", 1)
    assert all(torch.equal(fixed0[0][n], fixed1[0][n]) for n in fixed0[0])  # one student for every step
    assert not torch.equal(fixed0[0]["classifier.weight"], first[0]["classifier.weight"])
    # In that order: a fresh student's seed, then the real batch (a fixed student draws no seed).
    generator = iteration_generator(4, 0)
    draw_seed(generator)
    assert torch.equal(first[1], data.mixed_batch(8, generator)[0])
    assert torch.equal(fixed0[1], data.mixed_batch(8, iteration_generator(4, 0))[0])
    assert not torch.equal(draws("fixed", 0, seed=5)[0]["classifier.weight"], fixed0[0]["classifier.weight"])


def test_a_non_finite_outer_loss_stops_before_the_update(tmp_path):
    data = tiny_dataset()
    data.train_images[:, :, 2, 2] = math.nan  # every real batch has NaN pixels
    config = UnrollConfig(ipc=1, inner_steps=1, **TINY_NET)
    initial = UnrollMethod(data, config, 0, torch.device("cpu")).synthetic.images.detach().clone()
    with pytest.raises(DivergenceError, match="the outer loss is nan in iteration 0.*outer_lr"):
        distill_unrolled(data, config, seed=0, device="cpu", out_dir=tmp_path)
    # The checkpoint keeps the state before the failed update: the initial images, no iteration.
    saved = load_checkpoint(checkpoint_path(tmp_path), CHECKPOINT_FORMAT)
    assert saved["completed"] == 0 and torch.equal(saved["state"]["images"], initial)



# ---------------------------------------------------------------------------------------------
# Resuming through out_dir (gmlib.run.loop checkpoints)
# ---------------------------------------------------------------------------------------------

SMALL_CONVNET = {"network": "convnet", "network_kwargs": {"width": 8, "depth": 2}, "batch_real": 8, "iterations": 5}
RESUMABLE = [
    pytest.param(UnrollMethod, distill_unrolled,
                 UnrollConfig(ipc=1, synthetic_batches=2, inner_steps=2, inner_momentum=0.5, **SMALL_CONVNET),
                 id="unroll"),
    pytest.param(ImplicitMethod, distill_implicit, ImplicitConfig(ipc=1, inner_steps=3, init_mode="fixed",
                                                                  **SMALL_CONVNET), id="implicit-fixed"),
]


def _assert_same_run(a: RunResult, b: RunResult) -> None:
    assert torch.equal(a.synthetic.images, b.synthetic.images)
    assert a.history.losses == b.history.losses
    if isinstance(a.method, UnrollMethod):
        assert torch.equal(a.method.learned_lrs, b.method.learned_lrs)


@pytest.mark.parametrize("method_class, distill, config", RESUMABLE)
def test_a_stopped_run_resumes_to_the_images_of_an_uninterrupted_one(method_class, distill, config, tmp_path):
    data = tiny_dataset()
    whole = distill(data, config, seed=3, device="cpu")
    # An interruption after two of five iterations (what Ctrl-C or a time slice leaves behind).
    part = run(method_class(data, config, 3, torch.device("cpu")), out_dir=tmp_path, stop_at=2, progress=False)
    assert part.history.completed == 2 and part.history.losses == whole.history.losses[:2]
    assert not torch.equal(part.synthetic.images, whole.synthetic.images)
    resumed = distill(data, config, seed=3, device="cpu", out_dir=tmp_path)
    assert resumed.history.resumed_at == [2] and resumed.history.completed == 5
    _assert_same_run(resumed, whole)  # images, losses, learned rates: the Adam state came back too
    # Rerunning the finished run loads it and does no further step.
    again = distill(data, config, seed=3, device="cpu", out_dir=tmp_path)
    assert again.history.resumed_at == [2, 5]
    _assert_same_run(again, whole)


@pytest.mark.parametrize("method_class, distill, config", RESUMABLE)
def test_more_iterations_extend_a_finished_run_to_a_longer_one(method_class, distill, config, tmp_path):
    data = tiny_dataset()
    short = dataclasses.replace(config, iterations=3)
    first = distill(data, short, seed=3, device="cpu", out_dir=tmp_path)
    assert first.history.completed == 3 and first.history.resumed_at == []
    # A time limit says how the run is driven, not what it computes: it may change between sessions.
    longer = distill(data, dataclasses.replace(config, time_limit_s=1e6), seed=3, device="cpu", out_dir=tmp_path)
    assert longer.history.resumed_at == [3] and longer.history.losses[:3] == first.history.losses
    _assert_same_run(longer, distill(data, config, seed=3, device="cpu"))
    # A checkpoint of another run is refused, naming the difference; so is asking for fewer iterations.
    with pytest.raises(CheckpointError, match="outer_lr=0.01 there, 0.02 here"):
        distill(data, dataclasses.replace(config, outer_lr=0.02), seed=3, device="cpu", out_dir=tmp_path)
    with pytest.raises(CheckpointError, match="seed=3 there, 4 here"):
        distill(data, config, seed=4, device="cpu", out_dir=tmp_path)
    with pytest.raises(CheckpointError, match="5 completed iterations, more than iterations=3"):
        distill(data, short, seed=3, device="cpu", out_dir=tmp_path)
    # resume=False starts over in the same folder.
    restarted = distill(data, short, seed=3, device="cpu", out_dir=tmp_path, resume=False)
    assert restarted.history.resumed_at == []
    _assert_same_run(restarted, first)

def test_batch_indices_take_every_class_in_every_batch():
    batches = batch_indices(2, 1, 3)
    assert [b.tolist() for b in batches] == [[0, 3], [1, 4], [2, 5]]
    assert raw_from_lr(0.02, 1).exp().log1p().item() == pytest.approx(0.02)
    assert math.isclose(float(lr_from_raw(raw_from_lr(0.7, 1))), 0.7, rel_tol=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda: UnrollConfig(inner_steps=10, synthetic_batches=3), "synthetic_batches \\(ic\\) must divide inner_steps"),
    (lambda: UnrollConfig(init_mode="sometimes"), "unknown init_mode 'sometimes'; allowed: 'random', 'fixed'"),
    (lambda: UnrollConfig(lr_init=0), "lr_init must be a finite number > 0"),
    (lambda: UnrollConfig(inner_momentum=1.0), "inner_momentum must be a number in \\[0, 1\\)"),
    (lambda: UnrollConfig(ipc=0), "ipc must be an integer >= 1"),
    (lambda: ImplicitConfig(image_init="plaid"), "unknown image_init"),
    (lambda: ImplicitConfig(neumann_terms=-2), "terms must be an integer >= 0"),
    (lambda: ImplicitConfig(neumann_alpha=-0.1), "alpha must be a finite number > 0"),
])
def test_bad_configs_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_wrong_config_type_and_batchnorm_network_are_refused():
    data = tiny_dataset()
    with pytest.raises(ValueError, match="config must be an UnrollConfig"):
        distill_unrolled(data, ImplicitConfig(**TINY_NET), device="cpu")
    with pytest.raises(ValueError, match="has BatchNorm"):
        bn_config = ImplicitConfig(network="convnet_bn", network_kwargs={"width": 4, "depth": 1}, iterations=1)
        distill_implicit(data, bn_config, device="cpu")


def test_time_limit_stops_after_the_step_that_crosses_it():
    data = tiny_dataset()
    config = UnrollConfig(ipc=1, inner_steps=1, time_limit_s=1e-9, **{**TINY_NET, "iterations": 5})
    result = distill_unrolled(data, config, seed=0, device="cpu")
    assert result.history.completed == 1 and len(result.history.losses) == 1
    with pytest.raises(ValueError, match="time_limit_s must be a finite number > 0"):
        UnrollConfig(time_limit_s=0)


def test_implicit_hypergradient_rejects_a_non_scalar_loss():
    w = torch.zeros(2, requires_grad=True)
    h = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="outer_loss must be a scalar tensor"):
        implicit_hypergradient((w * h).sum(), w * 2, [w], [h], alpha=0.1, terms=1)
