"""Behaviour of gmlib.augment: geometry, fill values, Siamese draws, determinism, gradients."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gmlib.augment import augment
from gmlib.classic_augment import (
    CLASSIC_OPS,
    MNIST_AFFINE,
    MNIST_REFERENCE,
    ClassicParams,
    ClassicRecipe,
    apply_classic,
    classic_augment,
    classic_per_image,
    sample_classic,
)
from gmlib.dsa import (
    DEFAULT_DSA_STRATEGY,
    DSA_FAMILIES,
    DSATransform,
    dsa,
    dsa_strategy_for,
    parse_dsa_strategy,
    sample_dsa,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 4, c: int = 3, size: int = 8, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(n, c, size, size, generator=gen(seed), dtype=dtype)


def transform(family: str, size: int = 8, **params: list) -> DSATransform:
    return DSATransform(family, {name: torch.tensor(values) for name, values in params.items()}, (size, size))


IDENTITY_PARAMS = {
    "color": {"brightness": [0.0], "saturation": [1.0], "contrast": [1.0]},
    "crop": {"shift_y": [0], "shift_x": [0]},
    "flip": {"flip": [False]},
    "scale": {"sx": [1.0], "sy": [1.0]},
    "rotate": {"degrees": [0.0]},
}

SOME_PARAMS = {
    "color": {"brightness": [0.3], "saturation": [1.7], "contrast": [0.6]},
    "crop": {"shift_y": [1], "shift_x": [-2]},
    "cutout": {"center_y": [2], "center_x": [5]},
    "flip": {"flip": [True]},
    "scale": {"sx": [1.13], "sy": [0.87]},
    "rotate": {"degrees": [11.0]},
}


def shift_reference(x: torch.Tensor, dy: int, dx: int, fill: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Move content by (dy, dx) pixels (down, right) the slow, obvious way."""
    out = torch.empty_like(x)
    out[:] = fill if isinstance(fill, float) else fill.view(1, -1, 1, 1)
    h, w = x.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


# ------------------------------------------------------------------------------------------
# Shapes, kinds, strategies
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["none", "mnist", "dsa"])
def test_augment_keeps_shape_dtype_and_device(kind: str) -> None:
    x = images(5, 1, 28)
    out = augment(x, kind, gen())
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device


def test_augment_none_returns_input_unchanged() -> None:
    x = images()
    assert augment(x, "none", gen()) is x


@pytest.mark.parametrize("family", DSA_FAMILIES)
def test_every_family_keeps_shape(family: str) -> None:
    x = images(6, 3, 10)
    assert dsa(x, family, gen()).shape == x.shape
    assert dsa(x, family, gen(), siamese=True).shape == x.shape


def test_bad_kind_and_strategy_are_refused_with_the_allowed_values() -> None:
    with pytest.raises(ValueError, match="'blur'.*'none', 'mnist', 'dsa'"):
        augment(images(), "blur", gen())
    with pytest.raises(ValueError, match="'zoom'.*color, crop, cutout, flip, scale, rotate"):
        dsa(images(), "color_zoom", gen())
    with pytest.raises(ValueError, match="non-empty"):
        parse_dsa_strategy("")
    with pytest.raises(ValueError, match="'imagenet'"):
        dsa_strategy_for("imagenet")
    with pytest.raises(ValueError, match="shape"):
        augment(torch.zeros(3, 8, 8), "dsa", gen())


def test_strategy_parsing_and_digit_datasets_drop_flip() -> None:
    assert parse_dsa_strategy(DEFAULT_DSA_STRATEGY) == DSA_FAMILIES
    assert "flip" not in parse_dsa_strategy(dsa_strategy_for("mnist"))
    assert "flip" not in parse_dsa_strategy(dsa_strategy_for("SVHN"))
    assert dsa_strategy_for("fashion-mnist") == DEFAULT_DSA_STRATEGY
    assert dsa_strategy_for("cifar10") == DEFAULT_DSA_STRATEGY


# ------------------------------------------------------------------------------------------
# DSA geometry and values
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(IDENTITY_PARAMS))
def test_identity_parameters_give_the_input_back(family: str) -> None:
    x = images()
    torch.testing.assert_close(transform(family, **IDENTITY_PARAMS[family])(x), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shift", [(1, -2), (-3, 4), (0, 1)])
def test_crop_moves_content_by_whole_pixels_with_zero_fill(shift: tuple[int, int]) -> None:
    x = images()
    out = transform("crop", shift_y=[shift[0]], shift_x=[shift[1]])(x)
    torch.testing.assert_close(out, shift_reference(x, *shift), atol=0, rtol=0)


def test_crop_draws_stay_within_one_eighth_of_the_side() -> None:
    g = gen(1)
    draws = [sample_dsa((64, 1, 32, 32), "crop", g).params for _ in range(20)]
    shifts = torch.cat([torch.stack([d["shift_y"], d["shift_x"]]) for d in draws], dim=1)
    assert shifts.abs().max() == 4 and set(shifts.unique().tolist()) == set(range(-4, 5))


def test_cutout_zeroes_exactly_a_square_of_half_the_side() -> None:
    x = torch.ones(1, 2, 8, 8)
    out = transform("cutout", center_y=[4], center_x=[3])(x)
    expected = torch.ones_like(x)
    expected[..., 2:6, 1:5] = 0.0
    torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_random_cutouts_are_clipped_squares_and_same_for_all_channels() -> None:
    x = torch.ones(200, 3, 10, 10)
    out = dsa(x, "cutout", gen(2))
    zero = out == 0
    assert torch.equal(zero, zero[:, :1].expand_as(zero))
    rows, cols = zero[:, 0].any(dim=2).sum(dim=1), zero[:, 0].any(dim=1).sum(dim=1)
    assert torch.equal(zero[:, 0].sum(dim=(1, 2)), rows * cols)  # a rectangle
    assert rows.max() == 5 and cols.max() == 5 and (rows * cols == 25).any() and (rows < 5).any()


def test_flip_mirrors_left_right_only_where_asked() -> None:
    x = images(2)
    out = transform("flip", flip=[True, False])(x)
    torch.testing.assert_close(out[0], x[0].flip(-1), atol=0, rtol=0)
    torch.testing.assert_close(out[1], x[1], atol=0, rtol=0)


def test_rotate_by_a_quarter_turn_is_rot90_counter_clockwise() -> None:
    x = images()
    out = transform("rotate", degrees=[90.0])(x)
    torch.testing.assert_close(out, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5, rtol=0)


def test_scale_above_one_samples_a_wider_region() -> None:
    ramp = (torch.arange(8.0) - 3.5).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    out = transform("scale", sx=[2.0], sy=[1.0])(ramp)
    # The centre columns see the ramp at twice the distance; the outer ones fall outside (zero).
    torch.testing.assert_close(out[..., 2:6], 2 * ramp[..., 2:6], atol=1e-5, rtol=0)
    assert out[..., 0].abs().max() < 1.0


def test_color_matches_its_definition() -> None:
    x = images(2, 3)
    b, s, c = 0.3, 1.7, 0.6
    out = transform("color", brightness=[b], saturation=[s], contrast=[c])(x)
    y = x + b
    y = (y - y.mean(1, keepdim=True)) * s + y.mean(1, keepdim=True)
    y = (y - y.mean((1, 2, 3), keepdim=True)) * c + y.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(out, y)


def test_parameter_ranges_of_random_draws() -> None:
    g = gen(3)
    draws: dict[str, list[torch.Tensor]] = {}
    for family in ("color", "scale", "rotate", "flip"):
        for name, value in sample_dsa((1000, 3, 8, 8), family, g).params.items():
            draws[name] = value.float()
    assert -0.5 <= draws["brightness"].min() and draws["brightness"].max() < 0.5
    assert 0.0 <= draws["saturation"].min() and draws["saturation"].max() < 2.0
    assert 0.5 <= draws["contrast"].min() and draws["contrast"].max() < 1.5
    assert 1 / 1.2 <= draws["sx"].min() and draws["sy"].max() < 1.2
    assert -15 <= draws["degrees"].min() and draws["degrees"].max() < 15
    assert 0.4 < draws["flip"].mean() < 0.6


def test_each_call_picks_one_family_and_all_families_get_picked() -> None:
    g = gen(4)
    picked = {sample_dsa((2, 1, 8, 8), DEFAULT_DSA_STRATEGY, g).family for _ in range(200)}
    assert picked == set(DSA_FAMILIES)
    assert {sample_dsa((2, 1, 8, 8), "scale_rotate", g).family for _ in range(50)} == {"scale", "rotate"}


# ------------------------------------------------------------------------------------------
# Determinism and Siamese draws
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mnist", "dsa"])
def test_same_generator_seed_same_output(kind: str) -> None:
    x = images(8, 1, 12)
    torch.testing.assert_close(augment(x, kind, gen(5)), augment(x, kind, gen(5)), atol=0, rtol=0)
    outputs = [augment(x, kind, gen(seed)) for seed in range(4)]
    assert any(not torch.equal(outputs[0], other) for other in outputs[1:])


@pytest.mark.parametrize("family", DSA_FAMILIES)
def test_siamese_draw_applies_the_same_transform_to_two_batches(family: str) -> None:
    real, synthetic = images(5, 3, 8, seed=1), images(2, 3, 8, seed=2)
    t = sample_dsa(real.shape, family, gen(6), siamese=True)
    assert t.num_draws == 1
    # The synthetic images placed inside the real batch are transformed exactly as on their own.
    both = t(torch.cat([real, synthetic]))
    torch.testing.assert_close(t(synthetic), both[5:], atol=1e-6, rtol=0)
    torch.testing.assert_close(t(real), both[:5], atol=1e-6, rtol=0)
    if family != "color":  # the geometric families are linear in the image
        torch.testing.assert_close(t(2 * synthetic), 2 * t(synthetic), atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["color", "crop", "scale", "rotate"])
def test_siamese_gives_identical_images_identical_outputs_per_image_does_not(family: str) -> None:
    same = images(1, 3, 8).expand(16, 3, 8, 8).contiguous()
    siamese = dsa(same, family, gen(7), siamese=True)
    assert torch.equal(siamese, siamese[:1].expand_as(siamese))
    per_image = dsa(same, family, gen(7))
    assert not torch.equal(per_image, per_image[:1].expand_as(per_image))


def test_a_per_image_draw_refuses_a_batch_of_another_size() -> None:
    t = sample_dsa((4, 1, 8, 8), "rotate", gen())
    with pytest.raises(ValueError, match="4 per-image parameters.*3 images"):
        t(images(3, 1, 8))
    with pytest.raises(ValueError, match=r"\(8, 8\)"):
        t(images(4, 1, 10))


def test_a_hand_made_transform_is_checked() -> None:
    with pytest.raises(ValueError, match="'zoom'"):
        transform("zoom", factor=[2.0])
    with pytest.raises(ValueError, match=r"takes parameters \['sx', 'sy'\], got \['sx'\]"):
        transform("scale", sx=[1.0])
    with pytest.raises(ValueError, match="one common length"):
        transform("crop", shift_y=[1, 2], shift_x=[0])


# ------------------------------------------------------------------------------------------
# Gradients: the matching loop backpropagates through DSA into the synthetic images
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", DSA_FAMILIES)
def test_gradient_reaches_the_input(family: str) -> None:
    x = images(3, 3, 8).requires_grad_(True)
    out = dsa(x, family, gen(8), siamese=True)
    weights = torch.randn(out.shape, generator=gen(9))
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("family", sorted(SOME_PARAMS))
def test_gradcheck_against_finite_differences(family: str) -> None:
    x = images(2, 3, 5, dtype=torch.float64).requires_grad_(True)
    t = transform(family, size=5, **SOME_PARAMS[family])
    assert torch.autograd.gradcheck(t, (x,), eps=1e-6, atol=1e-5)


# ------------------------------------------------------------------------------------------
# Classic (DC's MNIST evaluation augmentation)
# ------------------------------------------------------------------------------------------


def classic_params(x: torch.Tensor, op: str, shift=(0, 0), scale=(1.0, 1.0), degrees=0) -> ClassicParams:
    n = x.shape[0]
    return ClassicParams(
        op=torch.full((n,), CLASSIC_OPS.index(op)),
        shift=torch.tensor([shift] * n),
        scale=torch.tensor([scale] * n),
        degrees=torch.full((n,), degrees),
        noise=torch.randn(x.shape, generator=gen(10)),
    )


@pytest.mark.parametrize("recipe", [MNIST_REFERENCE, MNIST_AFFINE], ids=["reference", "affine"])
@pytest.mark.parametrize("op", ["crop", "scale", "rotate"])
def test_classic_identity_parameters_give_the_input_back(op: str, recipe: ClassicRecipe) -> None:
    x = images(3, 1, 12)
    torch.testing.assert_close(apply_classic(x, classic_params(x, op), recipe), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shift", [(4, -3), (-2, 3)])
def test_classic_crop_shifts_content_and_fills_with_the_channel_mean(shift: tuple[int, int]) -> None:
    x = images(3, 2, 12) + torch.tensor([1.0, -2.0]).view(1, 2, 1, 1)
    mean = x.mean(dim=(0, 2, 3))
    out = apply_classic(x, classic_params(x, "crop", shift=shift))
    torch.testing.assert_close(out, shift_reference(x, *shift, fill=mean), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("recipe, shifts", [(MNIST_REFERENCE, range(-3, 5)), (MNIST_AFFINE, range(-4, 5))],
                         ids=["reference", "affine"])
def test_classic_crop_moves_a_bright_pixel_by_every_allowed_shift_and_no_other(recipe, shifts) -> None:
    x = torch.zeros(3000, 1, 28, 28)
    x[:, 0, 14, 14] = 100.0  # the batch mean stays far below the pixel
    crop_only = dataclasses.replace(recipe, ops=("crop",))
    out = classic_augment(x, gen(20), crop_only)
    where = out.flatten(1).argmax(dim=1)
    moved_y, moved_x = where // 28 - 14, where % 28 - 14
    assert set(moved_y.tolist()) == set(shifts) and set(moved_x.tolist()) == set(shifts)


def test_classic_scale_equals_the_per_image_version_for_every_size() -> None:
    x = images(144, 2, 28, seed=3)
    factors = torch.tensor([[(22.5 + i) / 28, (22.5 + j) / 28] for i in range(12) for j in range(12)])
    params = ClassicParams(op=torch.full((144,), CLASSIC_OPS.index("scale")), shift=torch.zeros(144, 2, dtype=torch.long),
                           scale=factors, degrees=torch.zeros(144, dtype=torch.long))
    assert {int(f * 28) for f in factors[:, 0].tolist()} == set(range(22, 34))  # every size 22..33 pixels
    torch.testing.assert_close(apply_classic(x, params), classic_per_image(x, params), atol=0, rtol=0)


def test_classic_shrink_leaves_zeros_at_the_border_not_the_mean() -> None:
    x = torch.ones(2, 1, 28, 28)  # mean 1: a mean fill would be invisible
    out = apply_classic(x, classic_params(x, "scale", scale=(0.8, 0.8)))  # 22 x 22 pixels, 3 zero rows each side
    assert out[:, :, :3].abs().max() == 0 and out[:, :, -3:].abs().max() == 0
    assert out[:, :, :, :3].abs().max() == 0 and out[:, :, :, -3:].abs().max() == 0
    assert torch.all(out[:, :, 3:-3, 3:-3] == 1)
    mean_fill = apply_classic(x, classic_params(x, "scale", scale=(0.8, 0.8)), dataclasses.replace(MNIST_REFERENCE, scale_fill="mean"))
    assert torch.all(mean_fill == 1)


def test_classic_rotation_equals_scipys_cubic_spline_rotation_at_every_angle() -> None:
    x = images(90, 1, 28, seed=4)
    params = ClassicParams(op=torch.full((90,), CLASSIC_OPS.index("rotate")), shift=torch.zeros(90, 2, dtype=torch.long),
                           scale=torch.ones(90, 2), degrees=torch.arange(-45, 45))
    torch.testing.assert_close(apply_classic(x, params), classic_per_image(x, params), atol=2e-5, rtol=0)


@pytest.mark.parametrize("recipe", [MNIST_REFERENCE, dataclasses.replace(MNIST_AFFINE, resample="reference")],
                         ids=["reference", "four-ops-mean-fill"])
def test_batched_classic_equals_the_per_image_version_on_random_draws(recipe: ClassicRecipe) -> None:
    x = images(200, 2, 28, seed=5) + torch.tensor([0.5, -1.0]).view(1, 2, 1, 1)
    params = sample_classic(x.shape, gen(13), recipe)
    torch.testing.assert_close(apply_classic(x, params, recipe), classic_per_image(x, params, recipe), atol=2e-5, rtol=0)


def test_classic_rotation_fills_corners_with_the_mean() -> None:
    x = torch.zeros(2, 1, 9, 9)
    x[0] = 1.0  # batch mean 0.5
    out = apply_classic(x, classic_params(x, "rotate", degrees=44))
    assert out[0, 0, 0, 0].item() == pytest.approx(0.5, abs=1e-5)
    assert out[0, 0, 4, 4].item() == pytest.approx(1.0, abs=1e-5)


def test_classic_noise_adds_a_thousandth_of_the_draw() -> None:
    x = images(3, 1, 8)
    params = classic_params(x, "noise")
    torch.testing.assert_close(apply_classic(x, params, MNIST_AFFINE), x + 0.001 * params.noise, atol=1e-5, rtol=0)


def test_reference_mnist_draws_one_of_exactly_three_ops_per_image() -> None:
    params = sample_classic((3000, 1, 4, 4), gen(11))
    counts = torch.bincount(params.op, minlength=len(CLASSIC_OPS))
    assert counts[CLASSIC_OPS.index("noise")] == 0 and params.noise is None
    assert counts[:3].min() > 900
    assert params.shift.min() == -3 and params.shift.max() == 4
    assert 0.8 <= params.scale.min() and params.scale.max() < 1.2
    assert params.degrees.min() == -45 and params.degrees.max() == 44


def test_gmlib_0_1_recipe_draws_four_ops_and_shifts_of_four() -> None:
    params = sample_classic((4000, 1, 4, 4), gen(11), MNIST_AFFINE)
    assert torch.bincount(params.op, minlength=4).min() > 800
    assert params.shift.min() == -4 and params.shift.max() == 4


def test_classic_applies_a_different_op_to_each_image() -> None:
    x = images(1, 1, 12).expand(64, 1, 12, 12).contiguous()
    out = classic_augment(x, gen(12))
    assert len({tuple(row.tolist()) for row in out.flatten(1)[:, :20]}) > 10


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"ops": ("crop", "blur")}, "ops must be distinct names among crop, scale, rotate, noise.*'blur'"),
        ({"ops": ()}, "ops must be"),
        ({"shift_range": (4, -3)}, r"shift_range.*low <= high, got \(4, -3\)"),
        ({"scale_range": (0.0, 1.2)}, "scale_range"),
        ({"max_degrees": 0}, "max_degrees must be an integer >= 1, got 0"),
        ({"scale_fill": "edge"}, "scale_fill must be one of zero, mean, got 'edge'"),
        ({"resample": "bicubic"}, "resample must be one of reference, affine, got 'bicubic'"),
    ],
)
def test_bad_classic_recipes_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClassicRecipe(**changes)
