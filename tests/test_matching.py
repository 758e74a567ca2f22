"""gmlib.methods.dc: the DC/DSA loop against the plain reference, determinism, resume, errors.

Everything runs on a tiny fake dataset (3 classes of 1x8x8 images) with a ConvNet of width 8,
so the whole file stays well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re

import pytest
import torch
from fakes import CLASSES, SIZE, STRATEGY, fake_dataset, tiny_dc_config
from fakes import TINY_NET as NET

import gmlib.methods.dc as matching
from gmlib.distances import get_distance
from gmlib.dsa import sample_dsa
from gmlib.eval_config import EvalConfig
from gmlib.methods.dc import distill, freeze_batchnorm_on_real, matching_loss_backward
from gmlib.methods.dc_config import MatchingConfig
from gmlib.methods.dc_reference import reference_outer_step, reference_train_network
from gmlib.methods.inner_loop import train_inner
from gmlib.networks import get_network
from gmlib.run.history import History

pytestmark = pytest.mark.usefixtures("one_thread")




tiny = tiny_dc_config


def run(dataset, config, **kwargs):
    kwargs.setdefault("seed", 0)
    return distill(dataset, config, device="cpu", progress=False, **kwargs)


# ------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------


def test_defaults_are_the_reference_settings() -> None:
    config = MatchingConfig()
    assert (config.iterations, config.batch_real, config.batch_train) == (1000, 256, 256)
    assert (config.lr_img, config.momentum_img, config.lr_net) == (0.1, 0.5, 0.01)
    assert (config.distance, config.init, config.method, config.network) == ("ours", "noise", "dc", "convnet")
    assert config.bn_real_per_class == 16 and config.checkpoint_every == 0
    assert config.loops == (1, 1)
    assert config.replace(ipc=10).loops == (10, 50)
    assert config.replace(ipc=50, inner_loop=3).loops == (50, 3)
    assert json.loads(json.dumps(config.as_dict()))["resolved_loops"] == [1, 1]


@pytest.mark.parametrize("changes, words", [
    ({"ipc": 0}, ["ipc", ">= 1"]),
    ({"method": "mtt"}, ["method", "'mtt'", "'dc'", "'dsa'"]),
    ({"init": "zeros"}, ["init", "'zeros'", "'noise'", "'real'"]),
    ({"distance": "manhattan"}, ["manhattan", "ours"]),
    ({"network": "resnet99"}, ["resnet99", "convnet"]),
    ({"engine": "fast"}, ["engine", "'loop'", "'batched'"]),
    ({"eval_at": (0, 2000)}, ["eval_at", "2000"]),
    ({"dsa_strategy": "crop"}, ["dsa_strategy", "method='dsa'"]),
    ({"method": "dsa", "dsa_strategy": "crop_blur"}, ["blur", "allowed"]),
    ({"lr_img": 0.0}, ["lr_img"]),
    ({"batch_real": 0}, ["batch_real"]),
])
def test_bad_values_raise_value_errors_naming_the_allowed_ones(changes, words) -> None:
    with pytest.raises(ValueError) as error:
        MatchingConfig(**changes)
    for word in words:
        assert word in str(error.value)


# ------------------------------------------------------------------------------------------
# One outer step: the library against the plain reference
# ------------------------------------------------------------------------------------------


def step_inputs(dataset, network: str = "convnet", ipc: int = 2, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    net = get_network(network, 1, CLASSES, SIZE, seed=seed, **NET)
    if network == "convnet_bn":
        freeze_batchnorm_on_real(net, dataset, 4, generator)
    images = torch.randn(CLASSES * ipc, 1, SIZE, SIZE, generator=generator)
    labels = torch.arange(CLASSES).repeat_interleave(ipc)
    real = dataset.class_batches(8, generator)
    return net, images, labels, real, generator


@pytest.mark.parametrize("engine, options, network, augmented", [
    ("loop", {}, "convnet", False),
    ("loop", {"chunk_size": 3}, "convnet", False),  # chunked real gradients (as on CPU), a ragged last chunk
    ("batched", {}, "convnet", False),
    ("batched", {"max_batched_images": 16}, "convnet", True),  # classes in groups of 2 and 1
    ("loop", {"chunk_size": 3}, "convnet", True),  # DSA: one Siamese draw per class
    ("batched", {}, "convnet", True),
    ("loop", {"chunk_size": 3}, "convnet_bn", False),  # BatchNorm frozen on real statistics
    ("batched", {}, "convnet_bn", False),
])
def test_library_step_equals_the_reference_step(dataset, engine, options, network, augmented) -> None:
    net, images, labels, real, generator = step_inputs(dataset, network)
    distance = get_distance("ours")
    augmentations = None
    if augmented:
        augmentations = [sample_dsa(real.shape[1:], STRATEGY, generator, siamese=True) for _ in range(CLASSES)]

    learnable = images.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([learnable], lr=0.1, momentum=0.5)
    buffer = None
    expected_images = images
    for _ in range(2):  # two steps: the second one uses the momentum buffer
        optimizer.zero_grad()
        losses = matching_loss_backward(net, learnable, 2, real, distance, augmentations=augmentations,
                                        engine=engine, **options)
        optimizer.step()
        expected = reference_outer_step(net, expected_images, labels, list(real), distance,
                                        momentum_buffer=buffer, augmentations=augmentations)
        buffer, expected_images = expected.momentum_buffer, expected.images
        torch.testing.assert_close(losses, expected.class_losses)
        torch.testing.assert_close(losses.sum(), expected.loss)
        torch.testing.assert_close(learnable.detach(), expected.images)
    assert not torch.equal(learnable.detach(), images)


def test_inner_training_equals_the_reference_loop() -> None:
    images = torch.randn(10, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(10) % CLASSES
    nets = [get_network("convnet", 1, CLASSES, SIZE, seed=3, **NET) for _ in range(2)]
    train_inner(nets[0], images, labels, epochs=3, batch_size=4, lr=0.05, generator=torch.Generator().manual_seed(2),
                chunk_size=3)
    reference_train_network(nets[1], images, labels, epochs=3, batch_size=4, lr=0.05,
                            generator=torch.Generator().manual_seed(2))
    for mine, theirs in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(mine, theirs)
    fresh = get_network("convnet", 1, CLASSES, SIZE, seed=3, **NET)
    assert not torch.equal(next(fresh.parameters()), next(nets[0].parameters()))


def test_image_steps_on_a_fixed_network_lower_the_matching_loss(dataset) -> None:
    net, images, _, real, _ = step_inputs(dataset)
    learnable = images.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([learnable], lr=0.1, momentum=0.5)
    history = []
    for _ in range(15):
        optimizer.zero_grad()
        history.append(matching_loss_backward(net, learnable, 2, real, get_distance("ours")).sum().item())
        optimizer.step()
    assert history[-1] < 0.8 * history[0]


def test_batchnorm_is_frozen_on_real_statistics(dataset) -> None:
    net = get_network("convnet_bn", 1, CLASSES, SIZE, seed=0, **NET)
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    freeze_batchnorm_on_real(net, dataset, 4, torch.Generator().manual_seed(0))
    assert not torch.equal(bn.running_mean, before) and not bn.training


# ------------------------------------------------------------------------------------------
# The loop: determinism, history, engines, methods
# ------------------------------------------------------------------------------------------


def test_distill_is_deterministic_and_records_a_history(dataset) -> None:
    eval_config = EvalConfig(network="convnet", network_kwargs=NET, epochs=2)
    config = tiny(iterations=3, eval_at=(0, 3), eval_config=eval_config)
    first, second = run(dataset, config), run(dataset, config)
    assert torch.equal(first.synthetic.images, second.synthetic.images)
    assert first.history.losses == second.history.losses
    history = first.history
    assert len(history.losses) == 3 and all(len(row) == CLASSES for row in history.losses)
    assert len(history.seconds) == 3 and all(s > 0 for s in history.seconds)
    assert [e.iteration for e in history.evaluations] == [0, 3]
    assert all(e.models == 1 and 0 <= e.mean <= 1 and "(n = 1)" in str(e) for e in history.evaluations)
    assert history.seed == 0 and history.device == "cpu" and history.config["ipc"] == 2
    assert History.from_dict(json.loads(json.dumps(history.to_dict()))) == history
    syn = first.synthetic
    assert syn.images.shape == (CLASSES * 2, 1, SIZE, SIZE) and syn.images.is_leaf
    assert syn.metadata["method"] == "dc" and syn.metadata["iterations"] == 3
    other = run(dataset, config.replace(eval_at=()), seed=1)
    assert not torch.equal(other.synthetic.images, first.synthetic.images)


def test_engines_agree_and_dsa_differs_from_dc(dataset) -> None:
    loop = run(dataset, tiny(iterations=2, engine="loop"))
    batched = run(dataset, tiny(iterations=2, engine="batched"))
    torch.testing.assert_close(loop.synthetic.images, batched.synthetic.images)
    dsa = run(dataset, tiny(iterations=2, method="dsa", dsa_strategy=STRATEGY))
    assert not torch.equal(dsa.synthetic.images, loop.synthetic.images)
    with pytest.raises(ValueError, match="unknown dataset"):  # the default strategy needs a known dataset
        run(dataset, tiny(iterations=1, method="dsa"))
    bn = run(fake_dataset(name="mnist"), tiny(iterations=2, method="dsa", network="convnet_bn"))
    assert torch.isfinite(bn.synthetic.images).all()


def test_the_batched_engine_falls_back_to_the_loop_when_memory_runs_out(dataset, monkeypatch) -> None:
    expected = run(dataset, tiny(iterations=2, engine="loop"))

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(matching, "batched_losses", out_of_memory)
    with pytest.warns(RuntimeWarning, match="engine='loop'"):
        fallen_back = run(dataset, tiny(iterations=2, engine="batched"))
    assert torch.equal(fallen_back.synthetic.images, expected.synthetic.images)




# ------------------------------------------------------------------------------------------
# Algorithm 1 in the module: its map, and the class loop against the variants' step
# ------------------------------------------------------------------------------------------


def algorithm_map() -> list[tuple[str, str, list[str]]]:
    """(algorithm line, function, names) from the module docstring's map."""
    text = matching.__doc__.split("::", 1)[1].split("\n\n")[1]
    rows = []
    for line in text.splitlines():
        left, right = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        function, names = right.split(": ")
        rows.append((left, function, [n.strip() for n in names.split(",")]))
    return rows


def test_the_docstring_map_of_algorithm_1_is_true() -> None:
    rows = algorithm_map()
    assert len(rows) == 12 and rows[0][0] == "initialise the synthetic set S"
    for line, function, names in rows:
        if function.startswith("gmlib."):  # a module path, then the function
            module_name, attribute = function.rsplit(".", 1)
            target = getattr(importlib.import_module(module_name), attribute)
        else:  # a name, or Class.method, in the DC module
            target = matching
            for part in function.split("."):
                target = getattr(target, part)
        source = inspect.getsource(target)
        for name in names:
            assert name in source, f"{line!r}: {function} does not use {name}"


def test_dc_iteration_reads_on_one_screen() -> None:
    lines = inspect.getsource(matching.dc_iteration).splitlines()
    assert len(lines) <= 45, len(lines)


def test_the_class_loop_equals_the_variants_intra_step(dataset, monkeypatch) -> None:
    """DC's inline class loop and loop_step_backward at level 'intra' give the same images."""
    config = tiny(iterations=2)
    inline = run(dataset, config)
    monkeypatch.setattr(matching, "choose_variant",
                        lambda config, engine, level: lambda dc, net, real: matching.levels_step(dc, net, real, level))
    variant = run(dataset, config)
    assert torch.equal(inline.synthetic.images, variant.synthetic.images)
