"""The evaluation protocol: how every accuracy in the book is obtained.

An image set (synthetic or real) is judged by training freshly initialised networks on it from
scratch and testing them on the real test set:

* SGD, lr 0.01, momentum 0.9, weight decay 5e-4, batch 256, shuffled every epoch;
* E = 300 without augmentation and 1000 with it (overridable); as DC's code does, E + 1 epochs
  are trained and the learning rate is multiplied by 0.1 after 0-based epoch E // 2 + 1, with the
  momentum buffers emptied there (the reference builds a new optimiser);
* augmentation per training batch, on the device: ``'none'``, ``'mnist'`` (DC's classic MNIST
  augmentation: one of crop, scale, rotate per image, exactly as the reference does them) or
  ``'dsa'`` (per-image DSA draws). :func:`protocol_variant` gives gmlib 0.1's protocol and
  each single difference from the reference, by name;
* the reported number is the FINAL-epoch test accuracy, as mean +- std over models.

Model ``k`` of a call with seed ``s`` takes its initialisation and its data order/augmentation from
two seeds derived from ``(s, k)`` (see :func:`model_seeds`), so a seed reproduces every accuracy and
the models differ from each other.

Two ways to train the models give the same result up to floating-point rounding:
``'sequential'`` trains them one after another (the reference loop, :func:`train_network`);
``'batched'`` stacks the models' parameters and trains all of them in one vectorised step
(``torch.func.vmap``), which pays off where one small model leaves the device idle (GPUs).
Networks with BatchNorm or dropout always use the sequential path (see :func:`batching_obstacle`).

How the training and testing passes run (bfloat16 on CPUs that compute it natively, compiled for
long evaluations; float32 and eager with ``precision='fp32', compile=False``) is decided by
:mod:`gmlib.first_order`; the result records it (``result.passes``).

The hyperparameters live in :mod:`gmlib.eval_config`, the one-model loop in :mod:`gmlib.training`;
this module runs many models and is the one to import.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmlib.augment import augment
from gmlib.checks import check_int, is_int
from gmlib.eval_config import (
    EvalConfig,
    EvalResult,
)
from gmlib.networks import filter_network_kwargs, get_network, has_batchnorm
from gmlib.first_order import FirstOrder, first_order_for
from gmlib.progress import progress_bar
from gmlib.randomness import draw_seed
from gmlib.runinfo import resolve_device
from gmlib.training import (
    apply_schedule,
    epoch_orders,
    model_seeds,
    protocol_sgd,
    test_accuracy,
    train_network,
)

__all__ = ["WholeSetResult", "batching_obstacle", "choose_method", "evaluate_across_networks", "evaluate_set",
    "train_on_whole_set"]

# The seed of the fixed test subset (EvalConfig.test_size): the same images for every call.
_TEST_SUBSET_SEED = 0


# --------------------------------------------------------------------------------------------
# Many models: sequential and batched
# --------------------------------------------------------------------------------------------


def _build_network(config: EvalConfig, shape: tuple[int, int, int], num_classes: int, init_seed: int) -> nn.Module:
    channels, height, width = shape
    kwargs = dict(config.network_kwargs)
    return get_network(config.network, channels, num_classes, (height, width), seed=init_seed, **kwargs)


def _has_dropout(net: nn.Module) -> bool:
    return any(isinstance(module, nn.modules.dropout._DropoutNd) for module in net.modules())


def _evaluate_sequential(
    nets: Sequence[nn.Module],
    generators: Sequence[torch.Generator],
    data: "_Data",
    config: EvalConfig,
    chunk_size: int | None,
    progress: bool,
    passes: FirstOrder,
    test_every: int | None = None,
) -> tuple[list[float], list[list[tuple[int, float]]]]:
    """Train and test the models one after another; with ``test_every``, also test each one every
    that many epochs (the curves, each ending with the final accuracy)."""
    accuracies, curves = [], []
    bar = progress_bar(len(nets), "models", enabled=progress)
    for net, generator in zip(nets, generators):
        curve: list[tuple[int, float]] = []

        def test_during_training(epoch: int, lr: float, net: nn.Module = net, curve: list = curve) -> None:
            if test_every and epoch and epoch % test_every == 0:  # called before epoch `epoch`: after `epoch` epochs
                curve.append((epoch, test_accuracy(net, data.test_images, data.test_labels, chunk_size, passes)))

        train_network(net, data.images, data.labels, config, generator, chunk_size=chunk_size,
                      on_epoch=test_during_training if test_every else None, passes=passes)
        accuracies.append(test_accuracy(net, data.test_images, data.test_labels, chunk_size, passes))
        if test_every:
            curves.append(curve + [(config.num_epochs, accuracies[-1])])
        bar.update()
        bar.set_postfix(acc=f"{accuracies[-1]:.3f}")
    bar.close()
    return accuracies, curves


def _evaluate_batched(
    nets: Sequence[nn.Module],
    generators: Sequence[torch.Generator],
    data: "_Data",
    config: EvalConfig,
    chunk_size: int | None,
    progress: bool,
    passes: FirstOrder,
) -> list[float]:
    """Train all ``nets`` at once: their parameters are stacked along a new leading dimension
    and one vmapped forward/backward serves every model.

    Equivalent to :func:`_evaluate_sequential`: every model consumes its own generator in the same
    order (shuffle, then augment each batch), the loss is the sum of the models' mean losses (so
    each model receives exactly its own gradient), and SGD with momentum and weight decay acts
    elementwise, so one optimiser over the stacked tensors equals one optimiser per model.
    Results differ only by floating-point rounding (vmapped convolutions are computed as grouped
    convolutions, which sum in a different order).
    """
    from torch.func import functional_call, stack_module_state, vmap

    params, buffers = stack_module_state(list(nets))
    template = copy.deepcopy(nets[0]).to("meta")  # structure only; weights come from `params`

    def forward_one(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(template, (p, b), (x,))

    forward_all = vmap(forward_one)  # (models, batch, ...) -> (models, batch, classes)
    for generator in generators:  # the draw train_network spends on seeding the global RNG
        draw_seed(generator)
    num_models, num_images = len(nets), data.images.shape[0]
    epochs = config.num_epochs
    optimizer = protocol_sgd(params.values(), config)
    template.train()
    bar = progress_bar(epochs, f"{num_models} models", enabled=progress)
    for epoch in range(epochs):
        apply_schedule(optimizer, epoch, config)
        orders = epoch_orders(num_images, generators, data.images.device)
        for batch in orders.split(config.batch_size, dim=1):  # (models, batch)
            x = data.images[batch]
            if config.augment != "none":
                x = torch.stack([
                    augment(x[k], config.augment, generators[k], dsa_strategy=config.dsa_strategy, classic=config.classic)
                    for k in range(num_models)
                ])
            with passes.context(x.device):  # vmapped: never compiled
                logits = forward_all(params, buffers, x)
                losses = F.cross_entropy(logits.flatten(0, 1), data.labels[batch].flatten(), reduction="none")
                loss = losses.view(num_models, -1).mean(dim=1).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        bar.update()
    bar.close()

    with torch.no_grad():  # hand the trained weights back to the modules
        for k, net in enumerate(nets):
            for name, stacked in params.items():
                net.get_parameter(name).copy_(stacked[k])

    # Testing needs no vmap: a chunk of test images already fills the device, and vmapped
    # (grouped) convolutions measured 1.5x slower than plain ones on CPU.
    return [test_accuracy(net, data.test_images, data.test_labels, chunk_size, passes) for net in nets]


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


@dataclass
class _Data:
    images: Tensor
    labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    num_classes: int


def _check_pair(images: Any, labels: Any, what: str) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        got = f"{tuple(images.shape)} {images.dtype}" if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{what} images must be a float tensor of shape (N, C, H, W), got {got}")
    if images.shape[0] == 0:
        raise ValueError(f"the {what} set is empty (0 images)")
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        got = f"{tuple(labels.shape)} {labels.dtype}" if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"{what} labels must be a 1-D integer tensor, got {got}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{what} set has {images.shape[0]} images but {labels.shape[0]} labels")


def _prepare_data(
    images: Tensor,
    labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    config: EvalConfig,
    num_classes: int | None,
    device: torch.device,
) -> _Data:
    """Check the inputs, move them to the device once, and pick the test subset."""
    _check_pair(images, labels, "training")
    _check_pair(test_images, test_labels, "test")
    if images.shape[1:] != test_images.shape[1:]:
        raise ValueError(
            f"training images are {tuple(images.shape[1:])} but test images {tuple(test_images.shape[1:])}"
        )
    if config.test_size is not None and config.test_size < test_images.shape[0]:
        subset_generator = torch.Generator().manual_seed(_TEST_SUBSET_SEED)
        keep = torch.randperm(test_images.shape[0], generator=subset_generator)[: config.test_size].sort().values
        test_images, test_labels = test_images[keep.to(test_images.device)], test_labels[keep.to(test_labels.device)]
    if num_classes is None:
        num_classes = int(max(labels.max().item(), test_labels.max().item())) + 1
    for what, values in (("training", labels), ("test", test_labels)):
        low, high = int(values.min().item()), int(values.max().item())
        if low < 0 or high >= num_classes:
            raise ValueError(f"the {what} labels range over [{low}, {high}] but num_classes is {num_classes} "
                             f"(labels must lie in [0, {num_classes})): the set and the test data do not "
                             f"have the same classes")
    return _Data(
        images=images.detach().to(device, torch.float32),
        labels=labels.to(device, torch.long),
        test_images=test_images.detach().to(device, torch.float32),
        test_labels=test_labels.to(device, torch.long),
        num_classes=num_classes,
    )


def choose_method(device: torch.device, net: nn.Module) -> str:
    """What ``batched='auto'`` picks for ``net`` on ``device``: sequential for networks with
    BatchNorm or dropout (see :func:`batching_obstacle`) and on CPUs (benchmarks/bench_evaluate.py
    measured no gain there: both paths are compute-bound), batched on GPUs (small per-model
    batches leave a GPU mostly idle)."""
    if batching_obstacle(net) is not None or device.type == "cpu":
        return "sequential"
    return "batched"


def batching_obstacle(net: nn.Module) -> str | None:
    """Why ``net`` cannot take the batched path, or None. BatchNorm keeps running statistics as
    module state that vmap cannot update per model; dropout draws from the global RNG, which
    vmap would share differently than the sequential loop does."""
    if has_batchnorm(net):
        return "it has BatchNorm"
    if _has_dropout(net):
        return "it has dropout"
    return None


def evaluate_set(
    images: Tensor,
    labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    config: EvalConfig = EvalConfig(),
    num_models: int = 1,
    seed: int = 0,
    *,
    first_model: int = 0,
    num_classes: int | None = None,
    device: str | torch.device = "auto",
    batched: bool | str = "auto",
    max_batched_images: int = 2048,
    chunk_size: int | None = None,
    keep_networks: bool = False,
    progress: bool = False,
    test_every: int | None = None,
    precision: str = "auto",
    compile: bool | str = "auto",
) -> EvalResult:
    """Evaluate an image set: train ``num_models`` fresh networks on it, test each one.

    The models are numbers ``first_model`` .. ``first_model + num_models - 1`` of ``seed`` (see
    :func:`model_seeds`), so a long evaluation can be split into pieces (and resumed) that give
    the accuracies of one call. ``num_classes`` defaults to 1 + the largest label. ``batched``: ``'auto'`` (see
    :func:`choose_method`), ``True`` (vmapped; refused for BatchNorm networks) or ``False``
    (one model after another). The batched path trains at most ``max_batched_images //
    min(set size, batch size)`` models at a time to bound memory. Both paths give the same
    accuracies for the same seed up to floating-point rounding. ``chunk_size``: images per
    forward pass in testing and, on the sequential path, in training (see :func:`train_network`;
    None = by device). ``keep_networks=True`` stores the trained networks in ``result.networks``.
    ``test_every`` also tests each model every that many epochs of its training (sequential path;
    training is unchanged): ``result.curves[k]`` lists (epochs trained, accuracy) for model k,
    ending with its final accuracy, so a best-of-training report can be set beside the final one.
    ``precision`` ('auto', 'fp32': the exact path, 'bf16') and ``compile`` ('auto', True, False)
    say how the training and testing passes run (:mod:`gmlib.first_order`; 'auto' compiles an
    evaluation that trains and tests enough images); ``result.passes`` records what they resolved to.
    """
    if not is_int(num_models) or num_models < 1:
        raise ValueError(f"num_models must be an integer >= 1, got {num_models!r}")
    if not is_int(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not is_int(first_model) or first_model < 0:
        raise ValueError(f"first_model must be an integer >= 0, got {first_model!r}")
    if batched not in ("auto", True, False):
        raise ValueError(f"batched must be 'auto', True or False, got {batched!r}")
    if not is_int(max_batched_images) or max_batched_images < 1:
        raise ValueError(f"max_batched_images must be an integer >= 1, got {max_batched_images!r}")
    if chunk_size is not None:
        check_int("chunk_size", chunk_size, 1)
    if test_every is not None:
        check_int("test_every", test_every, 1)
        if batched is True:
            raise ValueError("test_every tests each model during its training, which only the sequential path does; "
                             "use batched='auto' or False")
    device = resolve_device(device)
    data = _prepare_data(images, labels, test_images, test_labels, config, num_classes, device)

    start = time.perf_counter()
    seeds = [model_seeds(seed, k) for k in range(first_model, first_model + num_models)]
    nets = [_build_network(config, tuple(data.images.shape[1:]), data.num_classes, s[0]).to(device) for s in seeds]
    generators = [torch.Generator().manual_seed(s[1]) for s in seeds]
    work = num_models * (config.num_epochs * data.images.shape[0] + data.test_images.shape[0])
    passes = first_order_for(precision, compile, device, nets[0], work)
    obstacle = batching_obstacle(nets[0])
    if batched is True and obstacle is not None:
        raise ValueError(
            f"batched=True cannot train {config.network!r} because {obstacle}; use batched='auto' or False"
        )
    method = choose_method(device, nets[0]) if batched == "auto" else ("batched" if batched else "sequential")
    if test_every is not None:
        method = "sequential"

    curves: list[list[tuple[int, float]]] = []
    if method == "sequential":
        accuracies, curves = _evaluate_sequential(nets, generators, data, config, chunk_size, progress, passes,
                                                   test_every)
    else:
        models_per_group = max(1, max_batched_images // min(data.images.shape[0], config.batch_size))
        accuracies = []
        for first in range(0, num_models, models_per_group):
            group = slice(first, first + models_per_group)
            accuracies += _evaluate_batched(nets[group], generators[group], data, config, chunk_size, progress,
                                            passes)
    seconds = time.perf_counter() - start

    return EvalResult(
        accuracies=accuracies,
        mean=float(np.mean(accuracies)),
        std=float(np.std(accuracies)),
        seconds_per_model=seconds / num_models,
        config=config,
        method=method,
        seed=seed,
        device=str(device),
        num_test_images=data.test_images.shape[0],
        networks=nets if keep_networks else [],
        curves=curves,
        passes=passes.describe(),
    )


def evaluate_across_networks(
    images: Tensor,
    labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    networks: Sequence[str],
    config: EvalConfig = EvalConfig(),
    num_models: int = 1,
    seed: int = 0,
    **kwargs: Any,
) -> dict[str, EvalResult]:
    """One row of a cross-architecture matrix: the same set evaluated on several networks.

    Each network takes those of ``config.network_kwargs`` it accepts (e.g. a width reaches the
    ConvNets only); other keyword arguments go to :func:`evaluate_set`.
    """
    if not networks:
        raise ValueError("networks must name at least one network, e.g. ['convnet', 'mlp']")
    results = {}
    for name in networks:
        kwargs_for_network = filter_network_kwargs(name, dict(config.network_kwargs))
        network_config = dataclasses.replace(config, network=name, network_kwargs=kwargs_for_network)
        results[name] = evaluate_set(
            images, labels, test_images, test_labels, network_config, num_models, seed, **kwargs
        )
    return results


class WholeSetResult(NamedTuple):
    """A network trained on a whole (real) set, its test accuracy and the seconds it took."""

    net: nn.Module
    accuracy: float
    seconds: float


def train_on_whole_set(
    images: Tensor,
    labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    epochs: int,
    *,
    config: EvalConfig = EvalConfig(),
    seed: int = 0,
    num_classes: int | None = None,
    device: str | torch.device = "auto",
    chunk_size: int | None = None,
    progress: bool = True,
    precision: str = "auto",
    compile: bool | str = "auto",
) -> WholeSetResult:
    """Train one network on a whole training set (the "whole set" baseline) and test it.

    Same optimiser, schedule, augmentation and seeding as :func:`evaluate_set` (model 0 of
    ``seed``), for ``epochs`` epochs of shuffled minibatches, at ``precision`` and ``compile`` (as there).
    """
    config = dataclasses.replace(config, epochs=epochs)
    device = resolve_device(device)
    data = _prepare_data(images, labels, test_images, test_labels, config, num_classes, device)
    start = time.perf_counter()
    init_seed, data_seed = model_seeds(seed, 0)
    net = _build_network(config, tuple(data.images.shape[1:]), data.num_classes, init_seed).to(device)
    generator = torch.Generator().manual_seed(data_seed)
    passes = first_order_for(precision, compile, device, net, epochs * data.images.shape[0] + data.test_images.shape[0])
    train_network(net, data.images, data.labels, config, generator, chunk_size=chunk_size, progress=progress,
                  passes=passes)
    accuracy = test_accuracy(net, data.test_images, data.test_labels, chunk_size, passes)
    return WholeSetResult(net=net, accuracy=accuracy, seconds=time.perf_counter() - start)
