"""MatchingConfig.dsa_siamese: DSA's Siamese draw (the default) against the ablation in which the real
and the synthetic batch of a class each get their own draw (gmlib.methods.dc.class_augmentation).

Tiny fake dataset and ConvNet, as in test_matching.py: the file runs in seconds on 2 CPU cores.
"""

from __future__ import annotations

import pytest
import torch
from fakes import STRATEGY, fake_dataset, tiny_dc_config

import gmlib.methods.dc as matching
from gmlib.dsa import sample_dsa
from gmlib.methods.dc import RealBatch, class_augmentation, distill, sample_real
from gmlib.methods.dc_config import MatchingConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_dsa(**changes) -> MatchingConfig:
    return tiny_dc_config(**{"method": "dsa", "dsa_strategy": STRATEGY, "iterations": 2, **changes})


def run(config, **kwargs):
    return distill(fake_dataset(), config, seed=0, device="cpu", progress=False, **kwargs)


def siamese_sample_real_before_the_option(dataset, config, dsa_strategy, generator) -> RealBatch:
    """sample_real as it was before dsa_siamese existed (per class, DSA): one Siamese draw per class."""
    batches = dataset.class_batches(config.batch_real, generator)
    siamese = None
    if dsa_strategy is not None:
        siamese = [sample_dsa(batches.shape[1:], dsa_strategy, generator, siamese=True)
                   for _ in range(dataset.num_classes)]
    labels = torch.arange(dataset.num_classes).repeat_interleave(batches.shape[1])
    return RealBatch(batches.flatten(0, 1), labels, batches, siamese)


def test_the_default_is_siamese_and_unchanged_bit_for_bit(monkeypatch) -> None:
    config = tiny_dsa()
    assert config.dsa_siamese is True and "dsa_siamese" not in config.as_dict()  # old checkpoints still resume
    default = run(config)
    assert torch.equal(run(config.replace(dsa_siamese=True)).synthetic.images, default.synthetic.images)
    monkeypatch.setattr(matching, "sample_real", siamese_sample_real_before_the_option)
    before = run(config)
    assert torch.equal(before.synthetic.images, default.synthetic.images)
    assert before.history.losses == default.history.losses


def test_a_siamese_augmentation_repeats_its_draw_and_an_independent_one_draws_anew() -> None:
    x = torch.randn(6, 1, 8, 8)
    siamese = class_augmentation(x.shape, "rotate", torch.Generator().manual_seed(0))
    assert torch.equal(siamese(x), siamese(x))
    independent = class_augmentation(x.shape, "rotate", torch.Generator().manual_seed(0), siamese=False)
    first, second = independent(x), independent(x)
    assert not torch.equal(first, second)
    # each call is one draw shared by its batch (as DSA's Siamese draw is), only not by the other batch
    assert torch.equal(first, sample_dsa(x.shape, "rotate", torch.Generator().manual_seed(0), siamese=True)(x))


def test_independent_draws_give_a_different_loss_for_the_same_generator() -> None:
    dataset = fake_dataset()
    config = tiny_dsa()
    real_siamese = sample_real(dataset, config, STRATEGY, torch.Generator().manual_seed(3))
    real_independent = sample_real(dataset, config.replace(dsa_siamese=False), STRATEGY,
                                   torch.Generator().manual_seed(3))
    torch.testing.assert_close(real_siamese.batches, real_independent.batches)  # the same real images
    siamese, independent = run(config), run(config.replace(dsa_siamese=False))
    assert siamese.history.losses[0] != independent.history.losses[0]
    assert not torch.equal(siamese.synthetic.images, independent.synthetic.images)
    assert torch.equal(run(config.replace(dsa_siamese=False)).synthetic.images, independent.synthetic.images)
    assert independent.history.config["dsa_siamese"] is False


@pytest.mark.parametrize("changes", [{}, {"per_class": False}, {"match_level": "multi"}])
def test_independent_draws_run_on_every_matching_variant(changes) -> None:
    result = run(tiny_dsa(dsa_siamese=False, **changes))
    assert torch.isfinite(result.synthetic.images).all()


def test_the_engines_agree_with_independent_draws() -> None:
    loop = run(tiny_dsa(dsa_siamese=False, engine="loop"))
    batched = run(tiny_dsa(dsa_siamese=False, engine="batched"))
    torch.testing.assert_close(loop.synthetic.images, batched.synthetic.images)


@pytest.mark.parametrize("changes, message", [
    ({"dsa_siamese": False}, "dsa_siamese=False (independent draws for the real and the synthetic batch) needs "
                             "method='dsa' (got method='dc')"),
    ({"method": "dsa", "dsa_siamese": "no"}, "dsa_siamese must be True or False, got 'no'"),
    ({"method": "dsa", "dsa_siamese": 0}, "dsa_siamese must be True or False, got 0"),
])
def test_a_bad_dsa_siamese_is_refused_by_name(changes, message) -> None:
    with pytest.raises(ValueError) as error:
        MatchingConfig(**changes)
    assert message in str(error.value)


def test_a_checkpoint_of_one_kind_does_not_resume_the_other(tmp_path) -> None:
    from gmlib.run.checkpoint import CheckpointError

    run(tiny_dsa(), out_dir=tmp_path)
    with pytest.raises(CheckpointError, match="dsa_siamese"):
        run(tiny_dsa(dsa_siamese=False), out_dir=tmp_path)
