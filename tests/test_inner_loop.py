"""Where to match (gmlib.methods.inner_loop and the inner_steps policies of gmlib.methods.dc): seed 002's
schedule zeta(t), the overfit-aware stop, and the counts of network updates in the History."""

from __future__ import annotations

import pytest
import torch
from fakes import CLASSES, SIZE, fake_dataset, tiny_dc_config
from torch import nn

from gmlib.methods.dc import distill
from gmlib.methods.dc_config import MatchingConfig
from gmlib.methods.inner_loop import (
    INNER_STEP_POLICIES,
    custom_schedule,
    inner_epochs,
    scheduled_inner_steps,
    steps_per_epoch,
    train_inner,
    train_inner_until_overfit,
    validation_loss,
)
from gmlib.networks import get_network

pytestmark = pytest.mark.usefixtures("one_thread")



def run(config, seed=0):
    return distill(fake_dataset(), config, seed=seed, device="cpu", progress=False)


def tiny(**changes) -> MatchingConfig:
    return tiny_dc_config(**{"iterations": 2, "outer_loop": 4, "inner_loop": 3, **changes})


# ------------------------------------------------------------------------------------------
# The schedule zeta(t) of seed 002 eq. 12
# ------------------------------------------------------------------------------------------


def test_schedule_follows_equation_12() -> None:
    expected = [50, 40, 30, 20, 10, 10, 10, 10, 10, 10, 5, 5, 5, 5, 5, 5]
    assert [scheduled_inner_steps(t) for t in range(16)] == expected


def test_schedule_saves_the_updates_seed_002_counts_at_ten_outer_steps() -> None:
    # "the original algorithm updates theta 450 times in one iteration ..., while we only update it 190 times"
    assert sum(inner_epochs("fixed", t, 50) for t in range(9)) == 450
    assert sum(inner_epochs("schedule", t, 50) for t in range(9)) == 190


def test_custom_schedule_repeats_its_last_value() -> None:
    schedule = custom_schedule((3, 2, 1))
    assert [schedule(t) for t in range(6)] == [3, 2, 1, 1, 1, 1]
    assert inner_epochs("schedule", 4, 99, (7, 0)) == 0
    with pytest.raises(ValueError, match=">= 0"):
        custom_schedule(())
    with pytest.raises(ValueError, match="t"):
        scheduled_inner_steps(-1)


def test_unknown_policy_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError) as error:
        inner_epochs("early-stop", 0, 5)
    assert all(f"'{p}'" in str(error.value) for p in INNER_STEP_POLICIES)


# ------------------------------------------------------------------------------------------
# Network updates and the overfit-aware stop
# ------------------------------------------------------------------------------------------


def test_an_epoch_is_one_update_while_the_set_fits_one_batch() -> None:
    assert steps_per_epoch(100, 256) == 1  # MNIST, 10 ipc: DC's inner_loop epochs are steps
    assert steps_per_epoch(250, 256) == 1 and steps_per_epoch(500, 256) == 2  # 25 ipc / 50 ipc
    net = get_network("mlp", 1, CLASSES, SIZE, seed=0)
    images, labels = torch.randn(7, 1, SIZE, SIZE), torch.arange(7) % CLASSES
    assert train_inner(net, images, labels, epochs=3, batch_size=3, lr=0.1, generator=torch.Generator()) == 9


def problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(CLASSES).repeat(4)
    images = torch.randn(len(labels), 1, SIZE, SIZE, generator=g) + 2 * labels.view(-1, 1, 1, 1).float()
    return get_network("mlp", 1, CLASSES, SIZE, seed=seed), images, labels


def test_overfit_policy_stops_at_the_first_rise_of_the_real_loss() -> None:
    # Validation labels shifted by one class: every step that fits the training labels raises the
    # "real" loss, so the policy must stop after exactly one epoch and keep that epoch.
    net, images, labels = problem()
    before = validation_loss(net, images, (labels + 1) % CLASSES)
    log = train_inner_until_overfit(net, images, labels, images, (labels + 1) % CLASSES, max_epochs=10,
                                    batch_size=len(images), lr=0.5, generator=torch.Generator().manual_seed(0))
    assert (log.epochs, log.steps) == (1, 1)
    assert log.real_losses[0] == pytest.approx(before) and log.real_losses[1] > log.real_losses[0]


def test_overfit_policy_stops_later_when_the_loss_first_falls() -> None:
    # A zero-initialised linear model, full batches, and validation labels with every fourth one
    # wrong: fitting the training labels first lowers the validation loss, then overconfidence on
    # the wrong quarter raises it. Measured: it falls for 8 epochs and rises in the 9th.
    _, images, labels = problem()
    val_labels = labels.clone()
    val_labels[::4] = (val_labels[::4] + 1) % CLASSES
    net = nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, CLASSES))
    nn.init.zeros_(net[1].weight)
    nn.init.zeros_(net[1].bias)
    log = train_inner_until_overfit(net, images, labels, images, val_labels, max_epochs=500,
                                    batch_size=len(images), lr=0.001, generator=torch.Generator().manual_seed(0))
    losses = log.real_losses
    assert log.epochs == 9 and len(losses) == 10
    assert all(b <= a for a, b in zip(losses[:-2], losses[1:-1]))  # non-increasing until ...
    assert losses[-1] > losses[-2]  # ... the first rise, where it stopped


def test_overfit_policy_without_a_rise_is_the_fixed_policy_bit_for_bit() -> None:
    net, images, labels = problem(2)
    twin = get_network("mlp", 1, CLASSES, SIZE, seed=2)
    log = train_inner_until_overfit(net, images, labels, images, labels, max_epochs=4, batch_size=5, lr=0.01,
                                    generator=torch.Generator().manual_seed(1))
    steps = train_inner(twin, images, labels, epochs=4, batch_size=5, lr=0.01, generator=torch.Generator().manual_seed(1))
    assert (log.epochs, log.steps) == (4, steps) == (4, 12)
    for a, b in zip(net.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_validation_loss_restores_the_training_mode() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, CLASSES))
    net.train()
    validation_loss(net, torch.randn(4, 1, SIZE, SIZE), torch.zeros(4, dtype=torch.long), chunk_size=3)
    assert net.training


# ------------------------------------------------------------------------------------------
# The counts in the History
# ------------------------------------------------------------------------------------------


def test_history_counts_updates_and_savings_of_each_policy() -> None:
    # 6 synthetic images in batches of 4: 2 SGD steps per epoch; 3 inner stretches per iteration.
    fixed = run(tiny()).history
    assert fixed.extras["inner_epochs"] == [[3, 3, 3]] * 2
    assert fixed.extras["inner_updates"] == [18, 18] and fixed.extras["inner_updates_saved"] == [0, 0]
    scheduled = run(tiny(inner_steps="schedule", inner_schedule=(2, 1, 0))).history
    assert scheduled.extras["inner_epochs"] == [[2, 1, 0]] * 2
    assert scheduled.extras["inner_updates"] == [6, 6] and scheduled.extras["inner_updates_saved"] == [12, 12]
    assert (scheduled.total("inner_updates"), scheduled.total("inner_updates_saved")) == (12, 24)
    data = scheduled.to_dict()
    assert (sum(data["extras"]["inner_updates"]), sum(data["extras"]["inner_updates_saved"])) == (12, 24)
    eq12 = run(tiny(inner_steps="schedule", iterations=1)).history  # 50, 40, 30 epochs: more than fixed
    assert eq12.extras["inner_epochs"] == [[50, 40, 30]] and eq12.extras["inner_updates_saved"] == [18 - 240]


def test_history_counts_of_the_overfit_policy() -> None:
    history = run(tiny(inner_steps="overfit")).history
    for epochs, updates, saved in zip(history.extras["inner_epochs"], history.extras["inner_updates"], history.extras["inner_updates_saved"]):
        assert len(epochs) == 3 and all(1 <= e <= 3 for e in epochs)
        assert updates == 2 * sum(epochs) and saved == 18 - updates


def test_overfit_run_is_seeded_deterministic_and_resumes_from_a_checkpoint(tmp_path) -> None:
    config = tiny(inner_steps="overfit", iterations=3)
    straight = run(config)
    distill(fake_dataset(), config, seed=0, device="cpu", progress=False, out_dir=tmp_path, stop_at=1)
    resumed = distill(fake_dataset(), config, seed=0, device="cpu", progress=False, out_dir=tmp_path)
    assert torch.equal(straight.synthetic.images, resumed.synthetic.images)
    assert resumed.history.extras["inner_updates"] == straight.history.extras["inner_updates"]
