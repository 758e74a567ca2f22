"""Generative teaching networks (gmlib.methods.gtn): shapes, parameter counts, gradients, determinism,
resuming through gmlib.run.loop, errors."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from gmlib.data import ImageDataset
from gmlib.distances import get_distance
from gmlib.methods.gtn import GTNConfig, GTNMethod, gm_teacher_backward, ift_teacher_backward, train_gtn
from gmlib.methods.gtn_generator import GenerativeTeacher, Generator, generator_parameter_count
from gmlib.networks import get_network
from gmlib.run.loop import DivergenceError, RunResult, run

CLASSES, SIZE = 3, 8
NET = {"width": 8, "depth": 2}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset() -> ImageDataset:
    """Three classes that differ in brightness, plus noise: a learnable toy problem."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(CLASSES).repeat(16)
    images = torch.randn(len(labels), 1, SIZE, SIZE, generator=g) + labels.view(-1, 1, 1, 1).float()
    test_labels = torch.arange(CLASSES).repeat(4)
    test_images = torch.randn(len(test_labels), 1, SIZE, SIZE, generator=g) + test_labels.view(-1, 1, 1, 1).float()
    return ImageDataset("toy", images, labels, test_images, test_labels, (0.0,), (1.0,), ["a", "b", "c"])


def tiny(**changes) -> GTNConfig:
    values = dict(k=8, latent_dim=4, ipc=2, iterations=3, outer_loop=2, inner_steps=2, batch_real=6, batch_train=8,
                  lr_teacher=1e-2, neumann_terms=2, network_kwargs=NET)
    values.update(changes)
    return GTNConfig(**values)


# ------------------------------------------------------------------------------------------
# The generator
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["learned_input", "random_input"])
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
@pytest.mark.parametrize("k", [4, 7, 16])
def test_generated_images_have_the_dataset_shape(mode, channels, size, k) -> None:
    teacher = GenerativeTeacher(Generator(8, 10, channels, size, k, seed=0), mode, ipc=2)
    images = teacher.images(torch.Generator().manual_seed(0))
    assert images.shape == (20, channels, size, size)
    assert torch.equal(teacher.labels, torch.arange(10).repeat_interleave(2))


def test_parameter_count_by_hand_for_k_64_on_mnist() -> None:
    # fc1 (64 + 10) * 64 + 64 = 4,800; fc2 64 * (32*28*28) + 32*28*28 = 1,630,720;
    # BatchNorm 2 * (64 + 32) = 192; conv1 32*16*9 + 16 = 4,624; conv2 16*9 + 1 = 145.
    generator = Generator(64, 10, 1, 28, 64)
    assert sum(p.numel() for p in generator.parameters()) == 1_640_481  # seed 003: "1.640 M" (GTN-rnd)
    teacher = GenerativeTeacher(generator, "learned_input", ipc=50)
    assert teacher.parameter_counts() == {"generator": 1_640_481, "latents": 32_000, "total": 1_672_481}  # "1.672 M"


@pytest.mark.parametrize("k", [4, 5, 16, 32, 128])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_parameter_count_formula_matches_the_module_and_grows_with_k(k, batch_norm) -> None:
    for channels, size in [(1, 28), (3, 32)]:
        with torch.device("meta"):
            generator = Generator(64, 10, channels, size, k, batch_norm=batch_norm)
        actual = sum(p.numel() for p in generator.parameters())
        assert actual == generator_parameter_count(64, 10, channels, size, k, batch_norm=batch_norm)
        assert generator_parameter_count(64, 10, channels, size, 2 * k, batch_norm=batch_norm) > actual


def test_learned_latents_are_parameters_that_receive_gradients() -> None:
    teacher = GenerativeTeacher(Generator(4, 3, 1, 8, 8, seed=0), "learned_input", ipc=2, seed=1)
    names = dict(teacher.named_parameters())
    assert "latents" in names and names["latents"].shape == (6, 4)
    teacher.images().square().sum().backward()
    assert teacher.latents.grad is not None and teacher.latents.grad.abs().sum() > 0
    # Fixed inputs: the same images every call.
    torch.testing.assert_close(teacher.images(), teacher.images())


def test_random_inputs_are_seeded_and_fresh() -> None:
    teacher = GenerativeTeacher(Generator(4, 3, 1, 8, 8, seed=0), "random_input", ipc=2)
    assert teacher.latents is None and teacher.parameter_counts()["latents"] == 0
    a = teacher.images(torch.Generator().manual_seed(5))
    b = teacher.images(torch.Generator().manual_seed(5))
    c = teacher.images(torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    with pytest.raises(ValueError, match="noise_generator"):
        teacher.images()


def test_generator_seed_fixes_the_weights_and_leaves_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, b = Generator(4, 3, 1, 8, 8, seed=3), Generator(4, 3, 1, 8, 8, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


# ------------------------------------------------------------------------------------------
# The gradient-matching objective against finite differences
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_class", [True, False])
def test_gm_teacher_gradient_matches_finite_differences(per_class) -> None:
    torch.manual_seed(0)
    teacher = GenerativeTeacher(Generator(3, CLASSES, 1, 4, 4, seed=0), "learned_input", ipc=2, seed=1).double()
    net = get_network("mlp", 1, CLASSES, 4, seed=0).double()
    real = torch.randn(CLASSES, 5, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    distance = get_distance("ours")

    def loss() -> float:
        teacher.zero_grad(set_to_none=True)
        net.zero_grad(set_to_none=True)
        return float(gm_teacher_backward(teacher, net, real, distance, per_class=per_class).sum())

    loss()
    analytic = {name: p.grad.clone() for name, p in teacher.named_parameters()}
    eps = 1e-6
    checked = 0
    for name in ("generator.fc1.weight", "generator.fc2.bias", "generator.conv2.weight", "latents"):
        p = dict(teacher.named_parameters())[name]
        for index in [(0,) * p.dim(), tuple(s - 1 for s in p.shape)]:
            with torch.no_grad():
                p[index] += eps
            up = loss()
            with torch.no_grad():
                p[index] -= 2 * eps
            down = loss()
            with torch.no_grad():
                p[index] += eps
            numeric = (up - down) / (2 * eps)
            assert math.isclose(analytic[name][index].item(), numeric, rel_tol=1e-4, abs_tol=1e-7), (name, index)
            checked += 1
    assert checked == 8


def test_ift_teacher_gradient_is_the_library_hypergradient_and_reaches_latents() -> None:
    from gmlib.methods.bilevel import implicit_hypergradient

    teacher = GenerativeTeacher(Generator(3, CLASSES, 1, 4, 4, seed=0), "learned_input", ipc=2, seed=1).double()
    net = get_network("mlp", 1, CLASSES, 4, seed=0).double()
    real = torch.randn(6, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    real_labels = torch.arange(CLASSES).repeat(2)
    ift_teacher_backward(teacher, net, real, real_labels, alpha=0.1, terms=3)
    ours = [p.grad.clone() for p in teacher.parameters()]
    params, hyper = list(net.parameters()), list(teacher.parameters())
    inner = torch.nn.functional.cross_entropy(net(teacher.images()), teacher.labels)
    outer = torch.nn.functional.cross_entropy(net(real), real_labels)
    expected = implicit_hypergradient(inner, outer, params, hyper, alpha=0.1, terms=3)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b)
    assert teacher.latents.grad.abs().sum() > 0 and teacher.generator.fc1.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------
# Training runs
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["learned_input", "random_input"])
@pytest.mark.parametrize("objective", ["gm", "ift"])
def test_train_gtn_is_seeded_and_finite(dataset, mode, objective) -> None:
    config = tiny(mode=mode, objective=objective)
    first = train_gtn(dataset, config, seed=0, device="cpu", progress=False)
    again = train_gtn(dataset, config, seed=0, device="cpu", progress=False)
    other = train_gtn(dataset, config, seed=1, device="cpu", progress=False)
    assert isinstance(first, RunResult) and isinstance(first.method, GTNMethod)
    assert len(first.history.losses) == 3 and all(len(row) == 1 for row in first.history.losses)
    assert all(math.isfinite(row[0]) for row in first.history.losses)
    assert first.history.losses == again.history.losses
    assert torch.equal(first.synthetic.images, again.synthetic.images)
    assert not torch.equal(first.synthetic.images, other.synthetic.images)
    assert first.synthetic.images.shape == (CLASSES * 2, 1, SIZE, SIZE)
    assert first.history.peak_mib > 0 and len(first.history.seconds) == 3
    counts = first.method.teacher.parameter_counts()
    assert counts["total"] == counts["generator"] + counts["latents"] == first.method.learned_parameters()
    assert (counts["latents"] > 0) == (mode == "learned_input")


def test_gm_training_lowers_the_matching_loss(dataset) -> None:
    result = train_gtn(dataset, tiny(iterations=8), seed=0, device="cpu", progress=False)
    losses = [row[0] for row in result.history.losses]
    assert sum(losses[-3:]) < sum(losses[:3])


def test_learned_input_set_is_what_the_teacher_generates(dataset) -> None:
    result = train_gtn(dataset, tiny(iterations=1), seed=0, device="cpu", progress=False)
    with torch.no_grad():
        torch.testing.assert_close(result.synthetic.images.detach(), result.method.teacher.images())


def test_a_diverging_teacher_raises_a_divergence_error(dataset) -> None:
    with pytest.raises(DivergenceError, match="lr_teacher"):
        train_gtn(dataset, tiny(lr_teacher=1e30, iterations=4), seed=0, device="cpu", progress=False)


# ------------------------------------------------------------------------------------------
# Resuming through an output folder (gmlib.run.loop)
# ------------------------------------------------------------------------------------------


def assert_same_run(a: RunResult, b: RunResult) -> None:
    """Bit-identical teachers (weights, latents, BatchNorm statistics), Adam states, sets and losses."""
    state_a, state_b = a.method.teacher.state_dict(), b.method.teacher.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name
    adam_a, adam_b = a.method.optimizer.state_dict()["state"], b.method.optimizer.state_dict()["state"]
    assert adam_a.keys() == adam_b.keys()
    for index in adam_a:
        for name in adam_a[index]:
            assert torch.equal(adam_a[index][name], adam_b[index][name]), (index, name)
    assert torch.equal(a.synthetic.images, b.synthetic.images)
    assert a.history.losses == b.history.losses


@pytest.mark.parametrize("mode", ["learned_input", "random_input"])
@pytest.mark.parametrize("objective", ["gm", "ift"])
def test_a_stopped_run_resumes_bit_identically(dataset, tmp_path, objective, mode) -> None:
    config = tiny(objective=objective, mode=mode)
    straight = train_gtn(dataset, config, seed=0, device="cpu", progress=False)
    first = run(GTNMethod(dataset, config, 0, torch.device("cpu")), out_dir=tmp_path, stop_at=1, progress=False)
    assert first.history.completed == 1 and (tmp_path / "checkpoint.pt").exists()
    resumed = train_gtn(dataset, config, seed=0, device="cpu", progress=False, out_dir=tmp_path)
    assert resumed.history.completed == 3 and resumed.history.resumed_at == [1]
    assert_same_run(straight, resumed)
    # A finished run asked again returns its result without another iteration.
    again = train_gtn(dataset, config, seed=0, device="cpu", progress=False, out_dir=tmp_path)
    assert again.history.resumed_at == [1, 3]
    assert_same_run(straight, again)


@pytest.mark.parametrize("objective", ["gm", "ift"])
def test_extending_a_finished_run_equals_a_longer_run(dataset, tmp_path, objective) -> None:
    short = tiny(objective=objective, iterations=2)
    longer = dataclasses.replace(short, iterations=4)
    train_gtn(dataset, short, seed=0, device="cpu", progress=False, out_dir=tmp_path)
    extended = train_gtn(dataset, longer, seed=0, device="cpu", progress=False, out_dir=tmp_path)
    fresh = train_gtn(dataset, longer, seed=0, device="cpu", progress=False)
    assert extended.history.completed == 4 and extended.history.resumed_at == [2]
    assert extended.history.config["iterations"] == 4
    assert_same_run(fresh, extended)


def test_a_checkpoint_of_another_gtn_run_is_refused(dataset, tmp_path) -> None:
    from gmlib.run.checkpoint import CheckpointError

    train_gtn(dataset, tiny(iterations=1), seed=0, device="cpu", progress=False, out_dir=tmp_path)
    with pytest.raises(CheckpointError, match="k=8 there, 16 here"):
        train_gtn(dataset, tiny(iterations=1, k=16), seed=0, device="cpu", progress=False, out_dir=tmp_path)
    fresh = train_gtn(dataset, tiny(iterations=1, k=16), seed=0, device="cpu", progress=False, out_dir=tmp_path,
                      resume=False)
    assert fresh.history.resumed_at == []


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("changes,words", [
    (dict(mode="fixed"), "mode 'fixed'.*'learned_input', 'random_input'"),
    (dict(objective="unroll"), "objective 'unroll'.*'gm', 'ift'"),
    (dict(k=3), "k \\(generator size\\) must be an integer >= 4, got 3"),
    (dict(k=16.0), "k \\(generator size\\)"),
    (dict(ipc=0), "ipc"),
    (dict(lr_teacher=0.0), "lr_teacher"),
    (dict(neumann_alpha=-1.0), "neumann_alpha"),
    (dict(distance="nope"), "nope"),
    (dict(network="nope"), "nope"),
    (dict(objective="ift", per_class=False), "per_class=False"),
])
def test_bad_config_values_raise_value_errors(changes, words) -> None:
    with pytest.raises(ValueError, match=words):
        GTNConfig(**changes)


def test_bad_generator_arguments_raise_value_errors() -> None:
    with pytest.raises(ValueError, match="k \\(generator size\\) must be an integer >= 4"):
        Generator(64, 10, 1, 28, 2)
    with pytest.raises(ValueError, match="unknown mode 'both'"):
        GenerativeTeacher(Generator(4, 3, 1, 8, 8), "both", ipc=1)
    with pytest.raises(ValueError, match="expected latents"):
        Generator(4, 3, 1, 8, 8)(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long))
