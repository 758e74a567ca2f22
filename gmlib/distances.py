"""Gradient distances: how far the synthetic set's gradients are from the real ones.

Every distance has one signature, ``distance(g_syn, g_real) -> scalar tensor``, over two lists of
per-parameter gradients in the same order and with the same shapes (``[p.grad for p in
net.parameters()]``). Autograd flows through ``g_syn``: the matching loop computes the synthetic
gradients with ``create_graph=True`` and backpropagates the distance into the synthetic images.
``g_real`` is detached here, so the real gradients are always constants.

Two families, built from the same four *row distances* (each maps two ``(..., n)`` tensors to
one value per row, over the last dimension):

* layer-wise, per output unit: ``d1`` = ``1 - a.b / (||a|| ||b|| + 1e-6)`` (negative cosine),
  ``d2`` = ``||a - b||``, ``d3`` = ``||a - b||^2``, ``d4`` = ``||a - b||^2 / len(a)``;
* whole-vector, on all gradients concatenated: ``cos`` (the d1 formula), ``euclidean`` (d2) and
  ``mse`` (d3: the squared L2 norm, a sum, as in the literature).

*Layer-wise* terms (DC's distance, Zhao et al. 2021, and the d1..d4 of Jiang et al., seed 002,
eqs. 7-9 and Table 2) reshape each parameter's gradient into one row per output unit -- conv
``(O, I, h, w)`` -> ``O`` rows of ``I*h*w``; linear ``(O, I)`` as is; a 3-D layernorm weight
``(C, h, w)`` -> ``C`` rows of ``h*w`` -- apply the row distance to each row, and sum over rows and
layers. Rows are taken along the *first* dimension, which is the output unit for conv and linear
weights (for ``ConvTranspose`` weights it is the input channel; we follow DC and do not special-
case them). Tensors with fewer than two dimensions (every bias, every norm scale/shift) contribute
ZERO, as in DC; ``include_1d=True`` instead counts each of them as one row. The *whole-vector*
terms always use every parameter, whatever ``include_1d`` says.

Distances are named by a spec string: one term (``"ours"`` is an alias of ``"d1"``) or a weighted
sum such as ``"d1 + 0.1*d2"`` (:func:`parse_distance_spec`). :data:`DISTANCE_NAMES` lists the ones
the book uses. :func:`per_class_distance` evaluates a distance for all classes at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

# DC adds this to the product of norms (not to each norm), so a zero row gives d1 = 1, not NaN.
COSINE_EPS = 1e-6

RowDistance = Callable[[Tensor, Tensor], Tensor]


# --------------------------------------------------------------------------------------------
# Row distances: one value per row, over the last dimension, any leading dimensions
# --------------------------------------------------------------------------------------------


def negative_cosine(a: Tensor, b: Tensor) -> Tensor:
    """d1: ``1 - a.b / (||a|| ||b|| + 1e-6)`` per row; 0 for parallel rows, 1 for orthogonal ones."""
    dot = (a * b).sum(dim=-1)
    norms = torch.linalg.vector_norm(a, dim=-1) * torch.linalg.vector_norm(b, dim=-1)
    return 1 - dot / (norms + COSINE_EPS)


def euclidean(a: Tensor, b: Tensor) -> Tensor:
    """d2: ``||a - b||`` per row (torch gives the zero subgradient where ``a == b``, never NaN)."""
    return torch.linalg.vector_norm(a - b, dim=-1)


def squared_error(a: Tensor, b: Tensor) -> Tensor:
    """d3: ``||a - b||^2`` per row (sum of squared errors)."""
    return (a - b).pow(2).sum(dim=-1)


def mean_squared_error(a: Tensor, b: Tensor) -> Tensor:
    """d4: ``||a - b||^2 / len(a)`` per row (mean squared error; ``len(a)`` = row length)."""
    return (a - b).pow(2).mean(dim=-1)


# --------------------------------------------------------------------------------------------
# Input checks and reshaping. ``class_dim`` means every tensor has a leading class dimension.
# --------------------------------------------------------------------------------------------


def _check_gradients(g_syn: Sequence[Tensor], g_real: Sequence[Tensor], class_dim: bool = False) -> None:
    if len(g_syn) != len(g_real):
        raise ValueError(f"g_syn has {len(g_syn)} gradient tensors but g_real has {len(g_real)}")
    if len(g_syn) == 0:
        raise ValueError("no gradient tensors given: g_syn and g_real are empty")
    for i, (s, r) in enumerate(zip(g_syn, g_real)):
        if s.shape != r.shape:
            raise ValueError(
                f"gradient shapes differ at index {i}: g_syn {tuple(s.shape)} vs g_real {tuple(r.shape)}"
            )
    if class_dim:
        sizes = [tuple(s.shape[:1]) for s in g_syn]
        if any(len(s) == 0 for s in sizes) or len(set(sizes)) != 1:
            raise ValueError(
                f"per-class gradients need one shared leading class dimension, got shapes "
                f"{[tuple(s.shape) for s in g_syn]}"
            )


def _lead(g: Tensor, class_dim: bool) -> Tuple[int, ...]:
    """The leading (class) dimensions of ``g`` that every reshape keeps."""
    return tuple(g.shape[:1]) if class_dim else ()


def output_rows(g: Tensor, *, include_1d: bool = False, class_dim: bool = False) -> Optional[Tensor]:
    """Reshape one gradient into rows, one per output unit: ``(O, ...) -> (O, prod(...))``.

    Returns ``None`` for tensors with fewer than two (parameter) dimensions unless ``include_1d``,
    in which case the whole tensor is one row. With ``class_dim`` the leading class dimension is
    kept: ``(C, O, ...) -> (C, O, prod(...))``.
    """
    lead = _lead(g, class_dim)
    param_shape = g.shape[len(lead):]
    if len(param_shape) >= 2:
        return g.reshape(*lead, param_shape[0], -1)
    if include_1d:
        return g.reshape(*lead, 1, -1)
    return None


def concat_gradients(grads: Sequence[Tensor], *, class_dim: bool = False) -> Tensor:
    """All gradients flattened and concatenated into one vector (``(C, total)`` with ``class_dim``)."""
    return torch.cat([g.reshape(*_lead(g, class_dim), -1) for g in grads], dim=-1)


# --------------------------------------------------------------------------------------------
# The two families
# --------------------------------------------------------------------------------------------


def _layerwise(
    g_syn: Sequence[Tensor], g_real: Sequence[Tensor], row_distance: RowDistance, include_1d: bool, class_dim: bool
) -> Tensor:
    total = g_syn[0].new_zeros(_lead(g_syn[0], class_dim))
    for s, r in zip(g_syn, g_real):
        rows_syn = output_rows(s, include_1d=include_1d, class_dim=class_dim)
        if rows_syn is None:  # a skipped 1-D tensor
            continue
        rows_real = output_rows(r.detach(), include_1d=include_1d, class_dim=class_dim)
        total = total + row_distance(rows_syn, rows_real).sum(dim=-1)  # sum over rows
    return total


def _whole_vector(
    g_syn: Sequence[Tensor], g_real: Sequence[Tensor], row_distance: RowDistance, class_dim: bool
) -> Tensor:
    flat_real = concat_gradients([r.detach() for r in g_real], class_dim=class_dim)
    return row_distance(concat_gradients(g_syn, class_dim=class_dim), flat_real)


def layerwise_distance(
    g_syn: Sequence[Tensor], g_real: Sequence[Tensor], row_distance: RowDistance, *, include_1d: bool = False
) -> Tensor:
    """Sum over layers and over output units of ``row_distance`` (eq. 7 of seed 002).

    ``layerwise_distance(g_syn, g_real, negative_cosine)`` is DC's distance 'ours'.
    """
    _check_gradients(g_syn, g_real)
    return _layerwise(g_syn, g_real, row_distance, include_1d, class_dim=False)


def whole_vector_distance(
    g_syn: Sequence[Tensor], g_real: Sequence[Tensor], row_distance: RowDistance
) -> Tensor:
    """``row_distance`` between the two concatenated gradient vectors (every parameter counts)."""
    _check_gradients(g_syn, g_real)
    return _whole_vector(g_syn, g_real, row_distance, class_dim=False)


def mse_distance(g_syn: Sequence[Tensor], g_real: Sequence[Tensor]) -> Tensor:
    """'mse': squared L2 norm of the difference of the concatenated gradients (a sum, not a mean)."""
    return whole_vector_distance(g_syn, g_real, squared_error)


def cosine_distance(g_syn: Sequence[Tensor], g_real: Sequence[Tensor]) -> Tensor:
    """'cos': 1 - cosine of the concatenated gradients (1e-6 added to the product of norms)."""
    return whole_vector_distance(g_syn, g_real, negative_cosine)


def euclidean_distance(g_syn: Sequence[Tensor], g_real: Sequence[Tensor]) -> Tensor:
    """'euclidean': L2 norm of the difference of the concatenated gradients."""
    return whole_vector_distance(g_syn, g_real, euclidean)


# --------------------------------------------------------------------------------------------
# Named terms, specs and their weighted sums
# --------------------------------------------------------------------------------------------

# term -> (family, row distance); "layer" terms honour include_1d, "whole" terms ignore it.
TERMS: Dict[str, Tuple[str, RowDistance]] = {
    "d1": ("layer", negative_cosine),
    "d2": ("layer", euclidean),
    "d3": ("layer", squared_error),
    "d4": ("layer", mean_squared_error),
    "mse": ("whole", squared_error),
    "cos": ("whole", negative_cosine),
    "euclidean": ("whole", euclidean),
}
ALIASES: Dict[str, str] = {"ours": "d1"}
TERM_NAMES: Tuple[str, ...] = tuple(ALIASES) + tuple(TERMS)

# The distances the book names: DC's 'ours', the literature's whole-vector ones, and seed 002's
# d1..d4 with the sums of its Table 2 and footnote 5 (d1 + 0.1*d2 for CIFAR-10 at 50 ipc).
DISTANCE_NAMES: Tuple[str, ...] = (
    "ours", "mse", "cos", "euclidean", "d1", "d2", "d3", "d4",
    "d1+d2", "d1+d3", "d1+100*d4", "d1+0.1*d2",
)

# A weight is an unsigned decimal number, optionally with an exponent (0.1, 100, 1e-3, .5).
_WEIGHT = re.compile(r"(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
# Split terms at '+', except the '+' of an exponent such as 1e+3 (a digit, then e, then '+').
_TERM_SPLIT = re.compile(r"(?<![0-9][eE])\+")


def parse_distance_spec(spec: str) -> Tuple[Tuple[float, str], ...]:
    """Parse ``"w1*name1 + w2*name2 + ..."`` into ``((w1, name1), (w2, name2), ...)``.

    Weights are optional (default 1) non-negative numbers; names are case-insensitive; spaces are
    allowed around ``+`` and ``*`` (not inside a name or number); aliases are resolved
    (``"ours"`` -> ``"d1"``). Raises ``ValueError`` naming an unknown term or a malformed weight.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            f"distance spec must be a non-empty string such as 'ours' or 'd1+0.1*d2', got {spec!r}"
        )
    terms = []
    for part in _TERM_SPLIT.split(spec.lower()):
        weight_text, star, name = (piece.strip() for piece in part.rpartition("*"))
        if not name:
            raise ValueError(f"malformed distance spec {spec!r}: a term is missing around '+' or '*'")
        if star and not _WEIGHT.fullmatch(weight_text):
            raise ValueError(
                f"malformed weight {weight_text!r} in distance spec {spec!r}: write terms as "
                f"'name' or 'weight*name' with a non-negative number, e.g. 'd1+0.1*d2'"
            )
        name = ALIASES.get(name, name)
        if name not in TERMS:
            raise ValueError(
                f"unknown distance term {name!r} in spec {spec!r}; known terms: {', '.join(TERM_NAMES)} "
                f"(named distances: {', '.join(DISTANCE_NAMES)})"
            )
        terms.append((float(weight_text) if star else 1.0, name))
    return tuple(terms)


@dataclass(frozen=True)
class GradientDistance:
    """A parsed distance: ``sum_k weight_k * term_k(g_syn, g_real)``. Call it like a function."""

    terms: Tuple[Tuple[float, str], ...]
    include_1d: bool = False

    def _evaluate(self, g_syn: Sequence[Tensor], g_real: Sequence[Tensor], class_dim: bool) -> Tensor:
        _check_gradients(g_syn, g_real, class_dim)
        total = None
        for weight, name in self.terms:
            family, row_distance = TERMS[name]
            if family == "layer":
                value = _layerwise(g_syn, g_real, row_distance, self.include_1d, class_dim)
            else:
                value = _whole_vector(g_syn, g_real, row_distance, class_dim)
            value = value if weight == 1.0 else weight * value
            total = value if total is None else total + value
        return total

    def __call__(self, g_syn: Sequence[Tensor], g_real: Sequence[Tensor]) -> Tensor:
        """The scalar distance between two lists of per-parameter gradients."""
        return self._evaluate(g_syn, g_real, class_dim=False)

    def per_class(self, g_syn: Sequence[Tensor], g_real: Sequence[Tensor]) -> Tensor:
        """The ``(C,)`` distances for gradients stacked as ``(C, *param_shape)``, all classes at once."""
        return self._evaluate(g_syn, g_real, class_dim=True)


def get_distance(spec: str, *, include_1d: bool = False) -> GradientDistance:
    """The distance named by ``spec`` (see :data:`DISTANCE_NAMES` and :func:`parse_distance_spec`).

    ``include_1d=True`` makes 1-D tensors (biases, norm parameters) count as one row each in the
    layer-wise terms; by default they contribute zero, as in DC.
    """
    return GradientDistance(parse_distance_spec(spec), include_1d=include_1d)


def gradient_distance(
    g_syn: Sequence[Tensor], g_real: Sequence[Tensor], spec: str = "ours", *, include_1d: bool = False
) -> Tensor:
    """One-call form: ``get_distance(spec, include_1d=include_1d)(g_syn, g_real)`` (a scalar)."""
    return get_distance(spec, include_1d=include_1d)(g_syn, g_real)


def per_class_distance(
    g_syn: Sequence[Tensor], g_real: Sequence[Tensor], spec: str = "ours", *, include_1d: bool = False
) -> Tensor:
    """Distances of all classes at once, for the matching loop's speed.

    Each gradient tensor has a leading class dimension, ``(C, *param_shape)`` (e.g. from
    ``torch.func.vmap`` over classes); the result is the ``(C,)`` tensor equal to
    ``torch.stack([gradient_distance([g[c] for g in g_syn], [g[c] for g in g_real], spec) ...])``,
    computed without a Python loop over classes.
    """
    return get_distance(spec, include_1d=include_1d).per_class(g_syn, g_real)
