"""Behaviour of gmlib.evaluate: schedule, seeding, accuracy, the two training paths, errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from gmlib.classic_augment import MNIST_AFFINE
from gmlib.eval_config import PROTOCOL_VARIANTS, EvalConfig, protocol_variant
from gmlib.evaluate import choose_method, evaluate_across_networks, evaluate_set, train_on_whole_set
from gmlib.networks import get_network
from gmlib.randomness import draw_seed
from gmlib.training import apply_schedule, learning_rate_at, model_seeds, test_accuracy, train_network

SMALL_CONVNET = EvalConfig(network="convnet", network_kwargs={"width": 8}, epochs=4)
MLP = EvalConfig(network="mlp", epochs=10)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_set(n: int, classes: int = 4, size: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(n, 1, size, size, generator=gen(seed))
    return images, torch.arange(n) % classes


def constant_images(n_per_class: int, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Two trivially separable classes: all pixels -1 (class 0) or +1 (class 1), plus a little noise."""
    labels = torch.arange(2).repeat_interleave(n_per_class)
    images = (2.0 * labels - 1).view(-1, 1, 1, 1).expand(-1, 1, size, size)
    return images + 0.1 * torch.randn(images.shape, generator=gen(1)), labels


# ------------------------------------------------------------------------------------------
# The protocol's pieces
# ------------------------------------------------------------------------------------------


def test_reference_schedule_trains_one_extra_epoch_and_decays_after_epoch_half_plus_one() -> None:
    config = EvalConfig(epochs=1000)
    rates = [learning_rate_at(epoch, config) for epoch in range(config.num_epochs)]
    assert config.num_epochs == 1001 and config.decay_epoch == 502
    assert rates[:502] == [0.01] * 502  # 0-based epochs 0..501: the reference decays after 501
    assert rates[502:] == pytest.approx([0.001] * 499)
    small = EvalConfig(epochs=7, lr=1.0)
    assert [learning_rate_at(e, small) for e in range(small.num_epochs)] == pytest.approx([1, 1, 1, 1, 1, 0.1, 0.1, 0.1])


def test_halves_schedule_is_gmlib_0_1s() -> None:
    config = EvalConfig(epochs=300, schedule="halves")
    rates = [learning_rate_at(epoch, config) for epoch in range(config.num_epochs)]
    assert config.num_epochs == 300
    assert rates[:150] == [0.01] * 150 and rates[150:] == pytest.approx([0.001] * 150)


def sgd_with_momentum_state() -> tuple[torch.optim.SGD, torch.Tensor]:
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=0.01, momentum=0.9)
    weight.sum().backward()
    optimizer.step()
    return optimizer, weight


@pytest.mark.parametrize("reset", [True, False])
def test_momentum_buffers_are_emptied_at_the_decay_only_when_asked(reset: bool) -> None:
    config = EvalConfig(epochs=6, reset_momentum=reset)  # decay_epoch 5
    optimizer, weight = sgd_with_momentum_state()
    buffer = optimizer.state[weight]["momentum_buffer"].clone()
    assert apply_schedule(optimizer, config.decay_epoch - 1, config) == 0.01
    torch.testing.assert_close(optimizer.state[weight]["momentum_buffer"], buffer)  # before: untouched
    assert apply_schedule(optimizer, config.decay_epoch, config) == pytest.approx(0.001)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.001)
    assert (weight not in optimizer.state) == reset
    assert apply_schedule(optimizer, config.decay_epoch + 1, config) == pytest.approx(0.001)


def test_training_equals_the_reference_loop_that_builds_a_new_optimiser_at_the_decay() -> None:
    """E + 1 epochs, the rate x0.1 after epoch E//2 + 1 by a new SGD (empty momentum), as DC's code."""
    images, labels = random_set(8)
    config = dataclasses.replace(MLP, epochs=6, batch_size=4)
    ours = train_network(get_network("mlp", 1, 4, 12, seed=0), images, labels, config, gen(3), chunk_size=4)

    net, generator = get_network("mlp", 1, 4, 12, seed=0), gen(3)
    draw_seed(generator)  # what train_network spends on seeding the global RNG
    lr = config.lr
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    for epoch in range(config.epochs + 1):
        for batch in torch.randperm(8, generator=generator).split(4):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(images[batch]), labels[batch]).backward()
            optimizer.step()
        if epoch == config.epochs // 2 + 1:
            lr *= 0.1
            optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    for a, b in zip(ours.parameters(), net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_train_network_applies_the_schedule_to_its_optimiser() -> None:
    images, labels = random_set(6)
    net = get_network("mlp", 1, 4, 12, seed=0)
    seen: list[tuple[int, float]] = []
    config = dataclasses.replace(MLP, epochs=6)
    train_network(net, images, labels, config, gen(), on_epoch=lambda epoch, lr: seen.append((epoch, lr)))
    assert [epoch for epoch, _ in seen] == list(range(7))
    assert [lr for _, lr in seen] == pytest.approx([0.01] * 5 + [0.001] * 2)


def test_default_epochs_follow_the_augmentation() -> None:
    assert EvalConfig().protocol_epochs == 300 and EvalConfig().num_epochs == 301
    assert EvalConfig(augment="dsa").num_epochs == 1001
    assert EvalConfig(augment="mnist").num_epochs == 1001
    assert EvalConfig(augment="dsa", epochs=20).num_epochs == 21
    assert EvalConfig(augment="dsa", epochs=20, schedule="halves").num_epochs == 20


def test_protocol_variants_change_one_thing_each_and_gmlib_0_1_all_of_them() -> None:
    reference = EvalConfig(augment="mnist")
    changed = {}
    for name in PROTOCOL_VARIANTS:
        variant = protocol_variant(reference, name)
        changed[name] = {f for f in ("classic", "schedule", "reset_momentum") if getattr(variant, f) != getattr(reference, f)}
    assert changed["reference"] == set()
    singles = [name for name in PROTOCOL_VARIANTS if name not in ("reference", "gmlib-0.1")]
    assert all(len(changed[name]) == 1 for name in singles)
    old = protocol_variant(reference, "gmlib-0.1")
    assert old.classic == MNIST_AFFINE and old.schedule == "halves" and old.reset_momentum is False
    with pytest.raises(ValueError, match="unknown protocol variant 'newest'.*reference"):
        protocol_variant(reference, "newest")


def test_config_is_hashable_and_prints_as_plain_data() -> None:
    config = EvalConfig(network_kwargs={"width": 64, "depth": 2})
    assert config.network_kwargs == (("depth", 2), ("width", 64))
    assert hash(config) == hash(EvalConfig(network_kwargs={"depth": 2, "width": 64}))
    assert config.as_dict()["network_kwargs"] == {"depth": 2, "width": 64}
    assert config.as_dict()["num_epochs"] == 301
    assert config.as_dict()["classic"]["ops"] == ["crop", "scale", "rotate"]
    assert json.loads(json.dumps(config.as_dict())) == config.as_dict()


def test_accuracy_counts_correct_predictions_and_restores_the_mode() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.eye(2))
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 3.0]]).view(4, 1, 1, 2)
    labels = torch.tensor([0, 1, 1, 1])
    net.train()
    assert test_accuracy(net, images, labels, batch_size=3) == 0.75
    assert net.training


def test_model_seeds_are_deterministic_and_distinct() -> None:
    assert model_seeds(0, 1) == model_seeds(0, 1)
    seeds = {s for seed in range(3) for k in range(20) for s in model_seeds(seed, k)}
    assert len(seeds) == 3 * 20 * 2


# ------------------------------------------------------------------------------------------
# evaluate_set
# ------------------------------------------------------------------------------------------


def test_trivially_separable_set_is_learned() -> None:
    images, labels = constant_images(3)
    test_images, test_labels = constant_images(50)
    result = evaluate_set(images, labels, test_images, test_labels, MLP, num_models=2, seed=0, device="cpu")
    assert result.accuracies == [1.0, 1.0]
    assert result.mean == 1.0 and result.std == 0.0 and result.num_models == 2


def test_same_seed_same_accuracies_and_models_differ() -> None:
    images, labels = random_set(8)
    test_images, test_labels = random_set(200, seed=1)
    config = dataclasses.replace(MLP, augment="dsa", epochs=3)
    first = evaluate_set(images, labels, test_images, test_labels, config, 3, seed=5, device="cpu", keep_networks=True)
    again = evaluate_set(images, labels, test_images, test_labels, config, 3, seed=5, device="cpu", keep_networks=True)
    assert first.accuracies == again.accuracies
    for a, b in zip(first.networks, again.networks):
        torch.testing.assert_close(a.state_dict(), b.state_dict(), atol=0, rtol=0)
    weights = [net.state_dict()["classifier.weight"] for net in first.networks]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    other = evaluate_set(images, labels, test_images, test_labels, config, 3, seed=6, device="cpu", keep_networks=True)
    assert not torch.equal(other.networks[0].state_dict()["classifier.weight"], weights[0])


def test_an_evaluation_split_by_first_model_equals_one_call() -> None:
    images, labels = random_set(12, seed=2)
    config = dataclasses.replace(MLP, epochs=3)
    whole = evaluate_set(images, labels, images, labels, config, 3, seed=5, device="cpu").accuracies
    first = evaluate_set(images, labels, images, labels, config, 1, seed=5, device="cpu").accuracies
    rest = evaluate_set(images, labels, images, labels, config, 2, seed=5, first_model=1, device="cpu").accuracies
    assert first + rest == whole


def test_testing_during_training_changes_nothing_and_records_each_models_curve() -> None:
    images, labels = random_set(12, seed=2)
    test_images, test_labels = random_set(60, seed=3)
    config = dataclasses.replace(MLP, augment="dsa", epochs=6)  # 7 epochs under the reference schedule
    plain = evaluate_set(images, labels, test_images, test_labels, config, 2, seed=5, device="cpu", keep_networks=True)
    watched = evaluate_set(images, labels, test_images, test_labels, config, 2, seed=5, device="cpu",
                           keep_networks=True, test_every=3)
    assert watched.accuracies == plain.accuracies and plain.curves == []
    for a, b in zip(plain.networks, watched.networks):
        torch.testing.assert_close(a.state_dict(), b.state_dict(), atol=0, rtol=0)
    for curve, final, net in zip(watched.curves, watched.accuracies, plain.networks):
        assert [epoch for epoch, _ in curve] == [3, 6, 7] and curve[-1][1] == final
        assert all(0.0 <= accuracy <= 1.0 for _, accuracy in curve)
    with pytest.raises(ValueError, match="test_every .*only the sequential path"):
        evaluate_set(images, labels, test_images, test_labels, config, 1, device="cpu", batched=True, test_every=3)
    with pytest.raises(ValueError, match="test_every"):
        evaluate_set(images, labels, test_images, test_labels, config, 1, device="cpu", test_every=0)


def test_a_curve_point_is_the_accuracy_of_the_network_trained_that_many_epochs() -> None:
    images, labels = random_set(40, seed=2)
    config = dataclasses.replace(MLP, epochs=6, lr=0.003, batch_size=20)  # the rate decays before epoch 5
    watched = evaluate_set(images, labels, images, labels, config, 1, seed=5, device="cpu", test_every=3)
    # Model 0 trained by hand for E = 2 (3 epochs, no decay): the full run's first 3 epochs.
    init_seed, data_seed = model_seeds(5, 0)
    net = get_network("mlp", 1, 4, (12, 12), seed=init_seed)
    train_network(net, images, labels, dataclasses.replace(config, epochs=2), gen(data_seed))
    after_three = test_accuracy(net, images, labels)
    assert watched.curves[0][0] == (3, after_three)
    assert after_three != watched.curves[0][-1][1]  # training went on after the point


def test_std_is_the_population_std_over_models() -> None:
    images, labels = random_set(8)
    test_images, test_labels = random_set(100, seed=1)
    result = evaluate_set(images, labels, test_images, test_labels, dataclasses.replace(MLP, epochs=2), 4, device="cpu")
    accuracies = torch.tensor(result.accuracies, dtype=torch.float64)
    assert result.std == pytest.approx(accuracies.std(unbiased=False).item())
    assert result.mean == pytest.approx(accuracies.mean().item())


@pytest.mark.parametrize("augment", ["none", "dsa", "mnist"])
def test_sequential_and_batched_paths_agree(augment: str) -> None:
    """Same seeds, same draws: the two paths differ only by float rounding in the convolutions
    (vmap turns them into grouped convolutions), so after a few epochs the weights agree to
    ~1e-5 and the test predictions are the same (a flip would need a test image whose two top
    logits tie to within that rounding, hence the one-image tolerance)."""
    images, labels = random_set(12, size=16)
    test_images, test_labels = random_set(100, size=16, seed=1)
    config = dataclasses.replace(SMALL_CONVNET, augment=augment, batch_size=8)  # 2 batches per epoch
    runs = {
        batched: evaluate_set(
            images, labels, test_images, test_labels, config, 3, seed=2, device="cpu", batched=batched, keep_networks=True,
            precision="fp32",
        )
        for batched in (False, True)
    }
    assert (runs[False].method, runs[True].method) == ("sequential", "batched")
    for sequential_net, batched_net in zip(runs[False].networks, runs[True].networks):
        torch.testing.assert_close(batched_net.state_dict(), sequential_net.state_dict(), atol=1e-4, rtol=1e-4)
    for a, b in zip(runs[False].accuracies, runs[True].accuracies):
        assert abs(a - b) <= 1 / 100


def test_chunked_training_gives_the_same_network_and_batchnorm_is_never_chunked() -> None:
    """Accumulating a batch's gradient over chunks changes only the rounding."""
    images, labels = random_set(12, size=16)
    config = dataclasses.replace(SMALL_CONVNET, epochs=3)
    for name, tolerance in (("convnet", 1e-5), ("convnet_bn", 0.0)):
        trained = [
            train_network(get_network(name, 1, 4, 16, width=8, seed=3), images, labels, config, gen(4), chunk_size=size)
            for size in (5, 12)
        ]
        torch.testing.assert_close(trained[0].state_dict(), trained[1].state_dict(), atol=tolerance, rtol=tolerance)
    net = get_network("mlp", 1, 4, 16, seed=0)
    test_images, test_labels = random_set(50, size=16, seed=1)
    assert test_accuracy(net, test_images, test_labels, 7) == test_accuracy(net, test_images, test_labels)


def test_batched_path_in_groups_gives_the_same_accuracies() -> None:
    images, labels = random_set(8)
    test_images, test_labels = random_set(64, seed=1)
    config = dataclasses.replace(MLP, epochs=3)
    whole = evaluate_set(images, labels, test_images, test_labels, config, 3, device="cpu", batched=True, precision="fp32")
    grouped = evaluate_set(
        images, labels, test_images, test_labels, config, 3, device="cpu", batched=True, max_batched_images=16,
        precision="fp32",
    )
    assert whole.accuracies == grouped.accuracies


def test_batchnorm_networks_take_the_sequential_path() -> None:
    images, labels = random_set(8, size=16)
    test_images, test_labels = random_set(20, size=16, seed=1)
    config = EvalConfig(network="convnet_bn", network_kwargs={"width": 4}, epochs=1)
    result = evaluate_set(images, labels, test_images, test_labels, config, 1, device="cpu", batched="auto")
    assert result.method == "sequential"
    with pytest.raises(ValueError, match="'convnet_bn' because it has BatchNorm"):
        evaluate_set(images, labels, test_images, test_labels, config, 1, device="cpu", batched=True)
    assert choose_method(torch.device("cpu"), get_network("mlp", 1, 2, 8)) == "sequential"


def test_test_size_picks_a_fixed_subset() -> None:
    images, labels = random_set(8)
    test_images, test_labels = random_set(100, seed=1)
    config = dataclasses.replace(MLP, epochs=1, test_size=30)
    result = evaluate_set(images, labels, test_images, test_labels, config, 1, device="cpu")
    assert result.num_test_images == 30
    again = evaluate_set(images, labels, test_images, test_labels, config, 1, device="cpu")
    assert again.accuracies == result.accuracies
    larger = dataclasses.replace(config, test_size=1000)
    assert evaluate_set(images, labels, test_images, test_labels, larger, 1, device="cpu").num_test_images == 100


def test_whole_set_and_cross_architecture_helpers() -> None:
    images, labels = constant_images(20)
    test_images, test_labels = constant_images(20)
    net, accuracy, seconds = train_on_whole_set(
        images, labels, test_images, test_labels, 10, config=MLP, device="cpu", progress=False
    )
    assert isinstance(net, torch.nn.Module) and accuracy == 1.0 and seconds > 0
    config = dataclasses.replace(SMALL_CONVNET, network_kwargs={"width": 4}, epochs=1)
    row = evaluate_across_networks(images, labels, test_images, test_labels, ["convnet", "mlp"], config, device="cpu")
    assert set(row) == {"convnet", "mlp"} and row["mlp"].config.network_kwargs == ()


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": -3}, "epochs must be an integer >= 1.*-3"),
        ({"epochs": 0}, "epochs.*0"),
        ({"augment": "cutmix"}, "'cutmix'.*'none', 'mnist', 'dsa'"),
        ({"dsa_strategy": "crop_blur"}, "'blur'"),
        ({"batch_size": 0}, "batch_size.*0"),
        ({"lr": -0.1}, "lr.*-0.1"),
        ({"test_size": 0}, "test_size.*0"),
        ({"schedule": "cosine"}, "schedule must be one of reference, halves, got 'cosine'"),
        ({"reset_momentum": "yes"}, "reset_momentum must be True or False.*'yes'"),
        ({"classic": "reference"}, "classic must be a gmlib.classic_augment.ClassicRecipe, got str"),
    ],
)
def test_bad_config_is_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EvalConfig(**changes)


def test_bad_sets_are_refused() -> None:
    images, labels = random_set(8)
    with pytest.raises(ValueError, match="training set is empty"):
        evaluate_set(images[:0], labels[:0], images, labels, MLP, device="cpu")
    with pytest.raises(ValueError, match="8 images but 5 labels"):
        evaluate_set(images, labels[:5], images, labels, MLP, device="cpu")
    with pytest.raises(ValueError, match="labels must be a 1-D integer tensor"):
        evaluate_set(images, labels.float(), images, labels, MLP, device="cpu")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        evaluate_set(images, labels, images, labels, MLP, device="cpu", num_classes=2)
    with pytest.raises(ValueError, match="num_models.*0"):
        evaluate_set(images, labels, images, labels, MLP, num_models=0, device="cpu")
    with pytest.raises(ValueError, match="first_model must be an integer >= 0, got -1"):
        evaluate_set(images, labels, images, labels, MLP, first_model=-1, device="cpu")
    with pytest.raises(ValueError, match="batched.*'yes'"):
        evaluate_set(images, labels, images, labels, MLP, device="cpu", batched="yes")
    with pytest.raises(ValueError, match="chunk_size.*0"):
        evaluate_set(images, labels, images, labels, MLP, device="cpu", chunk_size=0)
    with pytest.raises(ValueError, match="test images"):
        evaluate_set(images, labels, images[:, :, :8], labels, MLP, device="cpu")
