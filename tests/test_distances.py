"""Behaviour of gmlib.distances against hand-computed values, plus gradients, parsing and errors."""

from __future__ import annotations

import math

import pytest
import torch

from gmlib.distances import (
    COSINE_EPS,
    DISTANCE_NAMES,
    GradientDistance,
    cosine_distance,
    euclidean,
    euclidean_distance,
    get_distance,
    gradient_distance,
    layerwise_distance,
    mean_squared_error,
    mse_distance,
    negative_cosine,
    output_rows,
    parse_distance_spec,
    per_class_distance,
    squared_error,
)

F64 = torch.float64
EPS = COSINE_EPS


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def close(actual: torch.Tensor, expected: float, tol: float = 1e-12) -> None:
    assert actual.dim() == 0, f"expected a scalar, got shape {tuple(actual.shape)}"
    assert actual.item() == pytest.approx(expected, abs=tol, rel=1e-12)


# --------------------------------------------------------------------------------------------
# Hand-computed values
# --------------------------------------------------------------------------------------------

# Linear (2, 2): rows [1,0] vs [0,1] and [0,1] vs [1,0] are orthogonal.
ORTHO_SYN, ORTHO_REAL = [t([[1.0, 0.0], [0.0, 1.0]])], [t([[0.0, 1.0], [1.0, 0.0]])]


def test_orthogonal_rows_by_hand():
    # each row: a.b = 0 -> d1 = 1 - 0/(1*1 + 1e-6) = 1 exactly; two rows -> 2
    close(gradient_distance(ORTHO_SYN, ORTHO_REAL, "d1"), 2.0)
    close(gradient_distance(ORTHO_SYN, ORTHO_REAL, "ours"), 2.0)
    # each row: a - b = [1,-1] or [-1,1] -> ||.|| = sqrt 2, ||.||^2 = 2, mean square = 2/2 = 1
    close(gradient_distance(ORTHO_SYN, ORTHO_REAL, "d2"), 2 * math.sqrt(2))
    close(gradient_distance(ORTHO_SYN, ORTHO_REAL, "d3"), 4.0)
    close(gradient_distance(ORTHO_SYN, ORTHO_REAL, "d4"), 2.0)
    # whole vector: [1,0,0,1] vs [0,1,1,0]: dot 0 -> cos = 1; diff [1,-1,-1,1] -> mse 4, euclid 2
    close(gradient_distance(ORTHO_SYN, ORTHO_REAL, "cos"), 1.0)
    close(gradient_distance(ORTHO_SYN, ORTHO_REAL, "mse"), 4.0)
    close(gradient_distance(ORTHO_SYN, ORTHO_REAL, "euclidean"), 2.0)


def test_parallel_rows_are_near_zero_within_the_eps_convention():
    # [1,2,2] vs [2,4,4]: norms 3 and 6, dot 18 -> d1 = 1 - 18/(18 + 1e-6) = 1e-6/(18 + 1e-6)
    syn, real = [t([[1.0, 2.0, 2.0]])], [t([[2.0, 4.0, 4.0]])]
    close(gradient_distance(syn, real, "d1"), EPS / (18 + EPS), tol=1e-15)
    assert 0 < gradient_distance(syn, real, "d1").item() < 1e-7
    # diff [-1,-2,-2]: ||.|| = 3, ||.||^2 = 9, mean square over 3 entries = 3
    close(gradient_distance(syn, real, "d2"), 3.0)
    close(gradient_distance(syn, real, "d3"), 9.0)
    close(gradient_distance(syn, real, "d4"), 3.0)


def test_zero_real_row_gives_d1_one_not_nan():
    # [3,4] vs [0,0]: dot 0, norm product 0 -> 1 - 0/(0 + 1e-6) = 1; diff [3,4] -> 5, 25, 25/2
    syn, real = [t([[3.0, 4.0]])], [t([[0.0, 0.0]])]
    close(gradient_distance(syn, real, "d1"), 1.0)
    close(gradient_distance(syn, real, "d2"), 5.0)
    close(gradient_distance(syn, real, "d3"), 25.0)
    close(gradient_distance(syn, real, "d4"), 12.5)


def test_row_distances_work_over_the_last_dimension():
    a, b = t([[1.0, 0.0], [3.0, 4.0]]), t([[0.0, 1.0], [0.0, 0.0]])
    torch.testing.assert_close(negative_cosine(a, b), t([1.0, 1.0]))
    torch.testing.assert_close(euclidean(a, b), t([math.sqrt(2), 5.0]))
    torch.testing.assert_close(squared_error(a, b), t([2.0, 25.0]))
    torch.testing.assert_close(mean_squared_error(a, b), t([1.0, 12.5]))


def test_linear_rows_are_output_units_not_columns():
    # rows: [1,0]·[1,1] -> 1 - 1/(sqrt2 + 1e-6); [0,1] vs [0,2] parallel -> 1 - 2/(2 + 1e-6)
    # (columns would give 0 and 1 - 2/sqrt5 instead: 0.106 rather than 0.293)
    syn, real = [t([[1.0, 0.0], [0.0, 1.0]])], [t([[1.0, 1.0], [0.0, 2.0]])]
    expected = (1 - 1 / (math.sqrt(2) + EPS)) + (1 - 2 / (2 + EPS))
    close(gradient_distance(syn, real, "d1"), expected)
    close(layerwise_distance(syn, real, negative_cosine), expected)


def test_conv_rows_are_output_channels():
    # conv (O=2, I=1, h=2, w=1): channel rows syn [1,0], [0,1] vs real [2,0], [0,3] -> both parallel
    syn = [t([[1.0, 0.0], [0.0, 1.0]]).reshape(2, 1, 2, 1)]
    real = [t([[2.0, 0.0], [0.0, 3.0]]).reshape(2, 1, 2, 1)]
    row_wise = (1 - 2 / (2 + EPS)) + (1 - 3 / (3 + EPS))  # ~1e-6, nearly zero
    close(gradient_distance(syn, real, "d1"), row_wise)
    # whole tensor: [1,0,0,1]·[2,0,0,3] = 5, norms sqrt2 * sqrt13 -> 1 - 5/sqrt26 ~ 0.0194
    whole = 1 - 5 / (math.sqrt(2) * math.sqrt(13) + EPS)
    close(gradient_distance(syn, real, "cos"), whole)
    assert whole > 0.019 and row_wise < 1e-6
    assert output_rows(syn[0]).shape == (2, 2)


def test_3d_tensor_rows_are_first_dimension():
    # (C=2, h=1, w=2): rows [1,0] vs [0,1] orthogonal -> 1; [0,1] vs [0,1] parallel -> 1 - 1/(1+1e-6)
    syn = [t([[[1.0, 0.0]], [[0.0, 1.0]]])]
    real = [t([[[0.0, 1.0]], [[0.0, 1.0]]])]
    close(gradient_distance(syn, real, "d1"), 1 + (1 - 1 / (1 + EPS)))
    # whole: dot 1, norms sqrt2 * sqrt2 = 2 -> 1 - 1/(2 + 1e-6) ~ 0.5
    close(gradient_distance(syn, real, "cos"), 1 - 1 / (2 + EPS))


def test_1d_tensors_are_zero_by_default_and_one_row_with_include_1d():
    # weight as in ORTHO (d1 = 2, d2 = 2 sqrt2, d3 = 4, d4 = 2) plus bias [1,2] vs [1,0]:
    # bias row: dot 1, norms sqrt5 * 1 -> d1 = 1 - 1/(sqrt5 + 1e-6); diff [0,2] -> d2 2, d3 4, d4 2
    syn, real = ORTHO_SYN + [t([1.0, 2.0])], ORTHO_REAL + [t([1.0, 0.0])]
    expected_default = {"d1": 2.0, "d2": 2 * math.sqrt(2), "d3": 4.0, "d4": 2.0}
    bias_term = {"d1": 1 - 1 / (math.sqrt(5) + EPS), "d2": 2.0, "d3": 4.0, "d4": 2.0}
    for name, value in expected_default.items():
        close(gradient_distance(syn, real, name), value)
        close(gradient_distance(syn, real, name, include_1d=True), value + bias_term[name])
    # a network of only 1-D tensors has layer-wise distance zero by default
    close(gradient_distance([t([1.0, 2.0])], [t([3.0, 0.0])], "d1"), 0.0)
    # whole-vector distances always count the bias: mse 4 + 4 = 8, whatever include_1d says
    close(gradient_distance(syn, real, "mse"), 8.0)
    close(gradient_distance(syn, real, "mse", include_1d=True), 8.0)
    close(gradient_distance(syn, real, "euclidean"), math.sqrt(8))


# --------------------------------------------------------------------------------------------
# Weighted sums and the spec parser
# --------------------------------------------------------------------------------------------


def random_gradients(seed: int, shapes=((3, 2, 2, 2), (3,), (4, 12), (4,)), lead=(), requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*lead, *s, generator=g, dtype=F64).requires_grad_(requires_grad) for s in shapes]


def test_weighted_sums_equal_the_sum_of_their_terms():
    syn, real = random_gradients(0), random_gradients(1)
    d = {name: gradient_distance(syn, real, name) for name in ("d1", "d2", "d3", "d4", "mse", "cos")}
    torch.testing.assert_close(gradient_distance(syn, real, "d1+d2"), d["d1"] + d["d2"])
    torch.testing.assert_close(gradient_distance(syn, real, "d1+d3"), d["d1"] + d["d3"])
    torch.testing.assert_close(gradient_distance(syn, real, "d1+100*d4"), d["d1"] + 100 * d["d4"])
    torch.testing.assert_close(gradient_distance(syn, real, "d1+0.1*d2"), d["d1"] + 0.1 * d["d2"])
    spaced = gradient_distance(syn, real, " 0.5 * d1 + 2*MSE ")
    torch.testing.assert_close(spaced, 0.5 * d["d1"] + 2 * d["mse"])
    torch.testing.assert_close(gradient_distance(syn, real, "1e-3*cos + ours"), 1e-3 * d["cos"] + d["d1"])
    # the public per-term functions agree with the named terms
    torch.testing.assert_close(mse_distance(syn, real), d["mse"])
    torch.testing.assert_close(cosine_distance(syn, real), d["cos"])
    torch.testing.assert_close(euclidean_distance(syn, real), gradient_distance(syn, real, "euclidean"))
    torch.testing.assert_close(layerwise_distance(syn, real, euclidean), d["d2"])


def test_every_book_name_resolves():
    for name in DISTANCE_NAMES:
        distance = get_distance(name)
        assert isinstance(distance, GradientDistance)
        assert distance(ORTHO_SYN, ORTHO_REAL).dim() == 0


def test_parser_accepts_spaces_aliases_and_exponents():
    assert parse_distance_spec("ours") == ((1.0, "d1"),)
    assert parse_distance_spec("d1 + 0.1 * d2") == ((1.0, "d1"), (0.1, "d2"))
    assert parse_distance_spec("0.5*d1+2*mse") == ((0.5, "d1"), (2.0, "mse"))
    assert parse_distance_spec("1e+2*d4+.5*euclidean") == ((100.0, "d4"), (0.5, "euclidean"))
    assert parse_distance_spec("D1+100*d4") == ((1.0, "d1"), (100.0, "d4"))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("d5", "unknown distance term 'd5'"),
        ("d1+cosine", "unknown distance term 'cosine'"),
        ("100d4", "unknown distance term '100d4'"),
        ("d1 d2", "unknown distance term 'd1 d2'"),
        ("abc*d1", "malformed weight 'abc'"),
        ("-1*d1", "malformed weight '-1'"),
        ("nan*d1", "malformed weight 'nan'"),
        ("0.1**d2", "malformed weight '0.1\\*'"),
        ("*d1", "malformed weight ''"),
        ("d1+", "malformed distance spec"),
        ("+d1", "malformed distance spec"),
        ("d1++d2", "malformed distance spec"),
        ("  ", "non-empty string"),
    ],
)
def test_parser_rejects_junk(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_distance_spec(spec)


def test_unknown_term_error_lists_allowed_terms():
    with pytest.raises(ValueError) as info:
        get_distance("foo")
    for allowed in ("ours", "d1", "d4", "mse", "cos", "euclidean", "d1+0.1*d2"):
        assert allowed in str(info.value)


# --------------------------------------------------------------------------------------------
# Gradients: autograd reaches g_syn, never g_real
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["d1", "d2", "d3", "d4", "mse", "cos", "euclidean", "d1+0.1*d2"])
def test_gradcheck_through_g_syn(spec):
    syn = random_gradients(2, shapes=((2, 1, 2, 2), (2,), (3, 2)), requires_grad=True)
    real = random_gradients(3, shapes=((2, 1, 2, 2), (2,), (3, 2)))
    for include_1d in (False, True):
        distance = get_distance(spec, include_1d=include_1d)
        assert torch.autograd.gradcheck(lambda *xs: distance(list(xs), real), tuple(syn))


def test_gradient_is_nonzero_on_g_syn_and_absent_on_g_real():
    syn = [t([[1.0, 0.0], [0.0, 1.0]]).requires_grad_()]
    real = [t([[1.0, 1.0], [0.0, 2.0]]).requires_grad_()]
    for spec in ("ours", "d1+d2", "mse"):
        distance = gradient_distance(syn, real, spec)
        grad_syn, grad_real = torch.autograd.grad(distance, syn + real, allow_unused=True)
        assert grad_syn.abs().sum() > 0
        assert grad_real is None  # g_real is a constant


def test_zero_rows_give_finite_gradients():
    # a dead unit: zero gradient rows on both sides (norms 0, a - b = 0) must not produce NaN
    syn, real = [torch.zeros(2, 3, dtype=F64, requires_grad=True)], [torch.zeros(2, 3, dtype=F64)]
    for spec in ("d1+d2", "cos+euclidean"):
        (grad,) = torch.autograd.grad(gradient_distance(syn, real, spec), syn)
        assert torch.isfinite(grad).all()


# --------------------------------------------------------------------------------------------
# Per-class batching and errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("include_1d", [False, True])
def test_per_class_equals_the_loop_over_classes(include_1d):
    num_classes = 3
    syn = random_gradients(4, lead=(num_classes,))
    real = random_gradients(5, lead=(num_classes,))
    for spec in DISTANCE_NAMES + ("0.5*d1 + 2*mse",):
        batched = per_class_distance(syn, real, spec, include_1d=include_1d)
        loop = torch.stack([
            gradient_distance([g[c] for g in syn], [g[c] for g in real], spec, include_1d=include_1d)
            for c in range(num_classes)
        ])
        assert batched.shape == (num_classes,)
        torch.testing.assert_close(batched, loop)


def test_per_class_gradient_flows_to_each_class():
    syn = random_gradients(6, lead=(2,), requires_grad=True)
    real = random_gradients(7, lead=(2,))
    (grad,) = torch.autograd.grad(per_class_distance(syn, real, "ours")[1], syn[0])
    assert grad[0].abs().sum() == 0 and grad[1].abs().sum() > 0  # class 1 only touches class 1


def test_shape_mismatch_names_index_and_shapes():
    syn = [torch.zeros(2, 3), torch.zeros(2, 3)]
    real = [torch.zeros(2, 3), torch.zeros(3, 2)]
    with pytest.raises(ValueError, match=r"index 1: g_syn \(2, 3\) vs g_real \(3, 2\)"):
        gradient_distance(syn, real)
    with pytest.raises(ValueError, match="2 gradient tensors but g_real has 1"):
        gradient_distance(syn, real[:1])
    with pytest.raises(ValueError, match="empty"):
        gradient_distance([], [])
    with pytest.raises(ValueError, match="leading class dimension"):
        per_class_distance([torch.zeros(2, 3), torch.zeros(3, 3)], [torch.zeros(2, 3), torch.zeros(3, 3)])


def test_distance_reaches_synthetic_images_through_create_graph_gradients():
    # the matching loop in miniature: a tiny conv net, real gradients detached, synthetic ones
    # with create_graph=True; the distance must backpropagate into the synthetic images
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3)
    ).double()
    params = list(net.parameters())
    loss = torch.nn.functional.cross_entropy
    x_real, y = torch.randn(4, 1, 4, 4, dtype=F64), torch.tensor([1, 1, 1, 1])
    x_syn = torch.randn(1, 1, 4, 4, dtype=F64, requires_grad=True)
    g_real = [g.detach() for g in torch.autograd.grad(loss(net(x_real), y), params)]
    g_syn = torch.autograd.grad(loss(net(x_syn), y[:1]), params, create_graph=True)
    for spec in ("ours", "d1+0.1*d2", "mse"):
        (grad,) = torch.autograd.grad(gradient_distance(g_syn, g_real, spec), x_syn, retain_graph=True)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
