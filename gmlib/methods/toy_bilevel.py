"""A bi-level toy with an exact answer: distilling a 2-D ridge regression.

The real set ``T`` is ``n`` points ``x in R^2`` with targets ``y = x . w_true + noise``. The
synthetic set ``S`` is ``m`` learnable points ``X_S`` with fixed targets ``y_S``. The inner
problem is ridge regression on ``S``,

    L_S(theta) = 1/(2m) ||X_S theta - y_S||^2 + ridge/2 ||theta||^2,
    theta*(S)  = (X_S^T X_S / m + ridge I)^{-1} X_S^T y_S / m,

and the outer loss is the mean squared error on ``T``, ``L_T(theta) = 1/(2n) ||X_T theta - y_T||^2``.
Because ``theta*`` is a linear solve, ``dL_T(theta*(S))/dX_S`` is exact by autograd through the
solve, and the two approximations of the book can be measured against it:

- :func:`unrolled_hypergradient`: backpropagate through ``N`` steps of gradient descent on ``L_S``;
- :func:`implicit_toy_hypergradient`: the implicit-function hypergradient with a ``K``-term
  Neumann series (:func:`gmlib.methods.bilevel.implicit_hypergradient`).

Everything is float64 so that differences of 1e-10 mean something.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gmlib.checks import check_int, check_positive
from gmlib.methods.bilevel import implicit_hypergradient

DTYPE = torch.float64


@dataclass(frozen=True)
class RidgeToy:
    """Real points/targets, the starting synthetic points/targets, and the ridge strength."""

    real_x: Tensor
    real_y: Tensor
    synthetic_x: Tensor
    synthetic_y: Tensor
    ridge: float
    w_true: Tensor

    @property
    def num_synthetic(self) -> int:
        return self.synthetic_x.shape[0]

    def inner_hessian(self, synthetic_x: Tensor | None = None) -> Tensor:
        """The (constant) Hessian of ``L_S``: ``X_S^T X_S / m + ridge I`` (2 x 2)."""
        x = self.synthetic_x if synthetic_x is None else synthetic_x
        return x.T @ x / x.shape[0] + self.ridge * torch.eye(x.shape[1], dtype=x.dtype)


def make_ridge_toy(num_real: int = 200, num_synthetic: int = 2, *, ridge: float = 0.1, noise: float = 0.3,
                   seed: int = 0) -> RidgeToy:
    """A seeded toy: correlated 2-D real inputs, ``w_true = (1.5, -0.5)``, random synthetic points.

    Synthetic targets alternate +1 / -1 so that the synthetic points have something to say.
    """
    for name, value, low in (("num_real", num_real, 1), ("num_synthetic", num_synthetic, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not ridge > 0:
        raise ValueError(f"ridge must be > 0 (it keeps the inner problem strongly convex), got {ridge!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    g = torch.Generator().manual_seed(seed)
    mixing = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=DTYPE)  # correlated inputs: a tilted landscape
    real_x = torch.randn(num_real, 2, generator=g, dtype=DTYPE) @ mixing
    w_true = torch.tensor([1.5, -0.5], dtype=DTYPE)
    real_y = real_x @ w_true + noise * torch.randn(num_real, generator=g, dtype=DTYPE)
    synthetic_x = torch.randn(num_synthetic, 2, generator=g, dtype=DTYPE)
    synthetic_y = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(num_synthetic)], dtype=DTYPE)
    return RidgeToy(real_x, real_y, synthetic_x, synthetic_y, float(ridge), w_true)


def inner_loss(toy: RidgeToy, theta: Tensor, synthetic_x: Tensor) -> Tensor:
    """``L_S(theta)``: ridge-regularised mean squared error on the synthetic points."""
    residual = synthetic_x @ theta - toy.synthetic_y
    return 0.5 * residual.pow(2).mean() + 0.5 * toy.ridge * theta.pow(2).sum()


def outer_loss(toy: RidgeToy, theta: Tensor) -> Tensor:
    """``L_T(theta)``: mean squared error on the real points."""
    return 0.5 * (toy.real_x @ theta - toy.real_y).pow(2).mean()


def ridge_solution(toy: RidgeToy, synthetic_x: Tensor) -> Tensor:
    """``theta*(S)`` by a linear solve (differentiable in ``synthetic_x``)."""
    m = synthetic_x.shape[0]
    return torch.linalg.solve(toy.inner_hessian(synthetic_x), synthetic_x.T @ toy.synthetic_y / m)


def exact_hypergradient(toy: RidgeToy, synthetic_x: Tensor | None = None) -> Tensor:
    """``dL_T(theta*(S))/dX_S`` exactly, by autograd through the linear solve (m x 2)."""
    x = (toy.synthetic_x if synthetic_x is None else synthetic_x).detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(outer_loss(toy, ridge_solution(toy, x)), x)
    return grad


def outer_landscape(toy: RidgeToy, point: int, grid: Tensor, synthetic_x: Tensor | None = None) -> Tensor:
    """``L_T(theta*(S))`` with synthetic point ``point`` moved to every ``(grid[i], grid[j])``.

    Returns a (len(grid), len(grid)) tensor indexed ``[row = second coordinate, column = first]``,
    the layout ``matplotlib.contour(grid, grid, values)`` expects.
    """
    base = (toy.synthetic_x if synthetic_x is None else synthetic_x).detach()
    if not 0 <= point < base.shape[0]:
        raise ValueError(f"point must be in 0..{base.shape[0] - 1}, got {point!r}")
    grid = grid.to(DTYPE)
    values = torch.empty(len(grid), len(grid), dtype=DTYPE)
    for i, second in enumerate(grid):
        for j, first in enumerate(grid):
            x = base.clone()
            x[point] = torch.stack([first, second])
            values[i, j] = outer_loss(toy, ridge_solution(toy, x))
    return values


def _check_steps(steps: int, lr: float) -> None:
    check_int("steps", steps, 0)
    check_positive("lr", lr)


def inner_trajectory(toy: RidgeToy, steps: int, lr: float, synthetic_x: Tensor | None = None,
                     theta0: Tensor | None = None) -> Tensor:
    """The iterates ``theta_0 .. theta_steps`` of gradient descent on ``L_S`` ((steps + 1) x 2)."""
    _check_steps(steps, lr)
    x = (toy.synthetic_x if synthetic_x is None else synthetic_x).detach()
    theta = torch.zeros(2, dtype=DTYPE) if theta0 is None else theta0.detach().to(DTYPE).clone()
    path = [theta.clone()]
    for _ in range(steps):
        theta = theta.requires_grad_(True)
        (g,) = torch.autograd.grad(inner_loss(toy, theta, x), theta)
        theta = (theta - lr * g).detach()
        path.append(theta.clone())
    return torch.stack(path)


def unrolled_hypergradient(toy: RidgeToy, steps: int, lr: float, synthetic_x: Tensor | None = None,
                           theta0: Tensor | None = None) -> Tensor:
    """``dL_T(theta_N(S))/dX_S`` by backpropagating through ``N = steps`` gradient-descent steps."""
    _check_steps(steps, lr)
    x = (toy.synthetic_x if synthetic_x is None else synthetic_x).detach().clone().requires_grad_(True)
    theta = torch.zeros(2, dtype=DTYPE) if theta0 is None else theta0.detach().to(DTYPE).clone()
    theta.requires_grad_(True)  # a leaf, so the first step's gradient can be taken
    for _ in range(steps):
        (g,) = torch.autograd.grad(inner_loss(toy, theta, x), theta, create_graph=True)
        theta = theta - lr * g
    loss = outer_loss(toy, theta)
    (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def implicit_toy_hypergradient(toy: RidgeToy, terms: int, alpha: float, synthetic_x: Tensor | None = None,
                               theta: Tensor | None = None) -> Tensor:
    """The implicit-function hypergradient with a ``terms``-term Neumann series.

    ``theta`` is the point treated as the inner optimum (default: the exact ``theta*(S)``, so the
    only error left is the truncated series).
    """
    x = (toy.synthetic_x if synthetic_x is None else synthetic_x).detach().clone().requires_grad_(True)
    point = ridge_solution(toy, x.detach()) if theta is None else theta.detach().to(DTYPE)
    point = point.clone().requires_grad_(True)
    (grad,) = implicit_hypergradient(inner_loss(toy, point, x), outer_loss(toy, point), [point], [x],
                                     alpha=alpha, terms=terms)
    return grad
