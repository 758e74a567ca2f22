"""Distribution matching: the loss by hand, the batched Siamese augmentation, the algorithm map,
configuration errors, and the method on the run scaffold."""

from __future__ import annotations

import inspect
import re
import shutil

import pytest
import torch

from fakes import CLASSES, STRATEGY, TINY_NET

from gmlib.dsa import apply_per_class, sample_dsa
from gmlib.methods import dm as dm_module
from gmlib.methods.dm import DMConfig, DMMethod, distill_dm, dm_losses, mean_embeddings
from gmlib.randomness import iteration_generator
from gmlib.run.loop import DivergenceError, fresh_network

CPU = torch.device("cpu")


def tiny_config(**changes) -> DMConfig:
    values = dict(ipc=2, iterations=3, batch_real=6, dsa_strategy=STRATEGY, network_kwargs=TINY_NET, eval_models=1)
    values.update(changes)
    return DMConfig(**values)


@pytest.mark.parametrize("dsa", [True, False])
def test_one_dm_step_by_hand_equals_the_library(dataset, dsa):
    """Class by class, as the paper writes it: the same draws, the same loss, the same new images."""
    config = tiny_config(dsa=dsa, dsa_strategy=STRATEGY if dsa else None, momentum_img=0.5, lr_img=0.7)
    method = DMMethod(dataset, config, seed=3, device=CPU)
    start = method.synthetic.images.detach().clone()

    g = iteration_generator(3, 0)
    net = fresh_network(config.network, config.network_kwargs, dataset, g, CPU)
    real = dataset.class_batches(config.batch_real, g)
    draws = [sample_dsa((1, *real.shape[2:]), STRATEGY, g, siamese=True) for _ in range(CLASSES)] if dsa else None
    images = start.clone().requires_grad_(True)
    total, by_hand = 0.0, []
    for c in range(CLASSES):
        real_c, syn_c = real[c], images[c * config.ipc:(c + 1) * config.ipc]
        if dsa:
            real_c, syn_c = draws[c](real_c), draws[c](syn_c)
        loss_c = ((net.embed(real_c).mean(0).detach() - net.embed(syn_c).mean(0)) ** 2).sum()
        by_hand.append(loss_c.item())
        total = total + loss_c
    total.backward()
    expected = start - config.lr_img * images.grad  # the first momentum step is the gradient itself

    step = method.iteration(0, iteration_generator(3, 0))
    assert torch.allclose(torch.as_tensor(step.losses), torch.tensor(by_hand), rtol=1e-5, atol=1e-7)
    assert torch.allclose(method.synthetic.images.detach(), expected, rtol=1e-5, atol=1e-6)
    assert not torch.equal(method.synthetic.images.detach(), start)


def test_mean_embeddings_do_not_depend_on_the_chunk_size(dataset):
    net = fresh_network("convnet", TINY_NET, dataset, torch.Generator().manual_seed(0), CPU)
    images = dataset.class_batches(5, torch.Generator().manual_seed(1)).flatten(0, 1)
    whole = mean_embeddings(net, images, CLASSES)
    assert whole.shape == (CLASSES, net.embed_dim)
    assert torch.allclose(mean_embeddings(net, images, CLASSES, chunk_size=4), whole, atol=1e-6)
    assert torch.equal(dm_losses(whole, whole), torch.zeros(CLASSES))


def test_per_class_augmentation_equals_a_loop_over_the_classes():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6 * 4, 1, 8, 8, requires_grad=True)
    draws = [sample_dsa((1, 1, 8, 8), STRATEGY, g, siamese=True) for _ in range(6)]
    batched = apply_per_class(draws, x)
    looped = torch.cat([draws[c](x[c * 4:(c + 1) * 4]) for c in range(6)])
    assert torch.allclose(batched, looped, atol=1e-6)
    weights = torch.randn_like(batched)
    (grad_batched,) = torch.autograd.grad((batched * weights).sum(), x)
    (grad_looped,) = torch.autograd.grad((looped * weights).sum(), x)
    assert torch.allclose(grad_batched, grad_looped, atol=1e-6)


def test_per_class_augmentation_refuses_bad_input():
    g = torch.Generator().manual_seed(0)
    draws = [sample_dsa((1, 1, 8, 8), STRATEGY, g, siamese=True) for _ in range(3)]
    with pytest.raises(ValueError, match="does not split into 3 equal class blocks"):
        apply_per_class(draws, torch.zeros(4, 1, 8, 8))
    per_image = [sample_dsa((2, 1, 8, 8), STRATEGY, g) for _ in range(3)]
    with pytest.raises(ValueError, match="Siamese draws"):
        apply_per_class(per_image, torch.zeros(6, 1, 8, 8))


def test_the_algorithm_map_names_real_code():
    """Every 'function: names' entry of the module docstring's map exists in that function."""
    doc = dm_module.__doc__
    entries = re.findall(r"\s{2,}(\w+(?:\.\w+)*): ([\w, .]+)$", doc, flags=re.M)
    assert len(entries) >= 6
    for where, names in entries:
        if where.startswith("gmlib."):
            continue
        owner, _, attr = where.partition(".")
        target = getattr(dm_module, owner)
        source = inspect.getsource(getattr(target, attr) if attr else target)
        for name in names.split(", "):
            assert name.strip() in source, f"{name!r} is not in {where}"


def test_a_run_is_seeded_and_reaches_a_lower_loss(dataset):
    config = tiny_config(iterations=25, batch_real=12, dsa=False, dsa_strategy=None)
    first = distill_dm(dataset, config, seed=1, device="cpu", progress=False)
    again = distill_dm(dataset, config, seed=1, device="cpu", progress=False)
    assert torch.equal(first.synthetic.images, again.synthetic.images)
    losses = first.history.mean_losses()
    assert sum(losses[-5:]) < sum(losses[:5])
    assert first.history.method == "dm" and first.synthetic.metadata["method"] == "dm"


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile's CPU backend needs a C++ compiler")
def test_the_compiled_passes_equal_the_eager_ones_and_compile_once(dataset):
    """compile=True: the same losses and images to float32 rounding, and a fresh network each
    iteration reuses the compiled code (the weights are inputs, not constants)."""
    from torch._dynamo.utils import counters

    config = tiny_config(dsa=True)
    eager = DMMethod(dataset, config, seed=2, device=CPU)
    compiled = DMMethod(dataset, config.replace(compile=True), seed=2, device=CPU)
    for it in range(3):
        expected = eager.iteration(it, iteration_generator(2, it)).losses
        if it == 1:
            graphs = counters["stats"]["unique_graphs"]
        losses = compiled.iteration(it, iteration_generator(2, it)).losses
        assert torch.allclose(torch.as_tensor(losses), torch.as_tensor(expected), rtol=1e-4, atol=1e-6)
    assert torch.allclose(compiled.synthetic.images, eager.synthetic.images, rtol=1e-4, atol=1e-5)
    assert graphs > 0 and counters["stats"]["unique_graphs"] == graphs, "a fresh network recompiled the embedding"


def test_a_nan_loss_stops_the_run_before_updating(dataset):
    method = DMMethod(dataset, tiny_config(), seed=0, device=CPU)
    with torch.no_grad():
        method.synthetic.images[0, 0, 0, 0] = float("nan")
    with pytest.raises(DivergenceError, match="distribution-matching loss of class 0 is nan"):
        method.iteration(0, iteration_generator(0, 0))


def test_evaluations_during_a_run(dataset):
    from gmlib.eval_config import EvalConfig

    config = tiny_config(iterations=2, eval_at=(0, 2), eval_config=EvalConfig(network_kwargs=TINY_NET, epochs=2))
    result = distill_dm(dataset, config, seed=0, device="cpu", progress=False)
    assert [e.iteration for e in result.history.evaluations] == [0, 2]


@pytest.mark.parametrize("changes, message", [
    ({"ipc": 0}, "ipc"),
    ({"lr_img": 0}, "lr_img"),
    ({"momentum_img": 1.5}, "momentum_img"),
    ({"init": "zeros"}, "init"),
    ({"dsa": False, "dsa_strategy": "crop"}, "needs dsa=True"),
    ({"dsa_strategy": "crop_blur"}, "blur"),
    ({"network": "transformer"}, "transformer"),
    ({"eval_at": (5,), "iterations": 3}, "outside"),
    ({"compile": "yes"}, "compile must be True or False, got 'yes'"),
])
def test_bad_configurations_are_refused_by_name(changes, message):
    with pytest.raises(ValueError, match=message):
        DMConfig(**changes)


def test_distill_dm_refuses_another_config_type(dataset):
    from gmlib.methods.dc_config import MatchingConfig

    with pytest.raises(ValueError, match="config must be a DMConfig"):
        distill_dm(dataset, MatchingConfig(), device="cpu")
