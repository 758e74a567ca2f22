"""The evaluation protocol: how every accuracy in the book is obtained.

An image set (synthetic or real) is judged by training freshly initialised networks on it from
scratch and testing them on the real test set:

* SGD, lr 0.01, momentum 0.9, weight decay 5e-4, batch 256, shuffled every epoch;
* E epochs, E = 300 without augmentation and 1000 with it (overridable); the learning rate is
  multiplied by 0.1 from epoch E // 2 on (0-based; "epoch E//2 + 1" counting from one);
* augmentation per training batch, on the device: ``'none'``, ``'mnist'`` (DC's classic MNIST
  augmentation) or ``'dsa'`` (per-image DSA draws);
* the reported number is the FINAL-epoch test accuracy, as mean +- std over models.

Model ``k`` of a call with seed ``s`` takes its initialisation and its data order/augmentation from
two seeds derived from ``(s, k)`` (see :func:`model_seeds`), so a seed reproduces every accuracy and
the models differ from each other.

Two ways to train the models give the same result up to floating-point rounding:
``'sequential'`` trains them one after another (the reference loop, :func:`train_network`);
``'batched'`` stacks the models' parameters and trains all of them in one vectorised step
(``torch.func.vmap``), which pays off where one small model leaves the device idle (GPUs).
Networks with BatchNorm or dropout always use the sequential path (see :func:`batching_obstacle`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmlib.checks import check_int, is_int
from gmlib.augment import DEFAULT_DSA_STRATEGY, augment, check_augment_kind, parse_dsa_strategy
from gmlib.networks import filter_network_kwargs, get_network, has_batchnorm
from gmlib.runinfo import resolve_device

EPOCHS_WITHOUT_AUGMENTATION = 300
EPOCHS_WITH_AUGMENTATION = 1000
LR_DECAY_FACTOR = 0.1
# The seed of the fixed test subset (EvalConfig.test_size): the same images for every call.
_TEST_SUBSET_SEED = 0
# Images per forward pass. On CPU, chunks of 32 keep a ConvNet's activations in cache: the
# test pass measured 1.4-1.9x faster than with 256-1000 and training at batch 100 about 1.2x
# (benchmarks/bench_evaluate.py). GPUs want big chunks.
CPU_CHUNK_SIZE = 32
GPU_TEST_CHUNK_SIZE = 1024


# --------------------------------------------------------------------------------------------
# Configuration and result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalConfig:
    """Hyperparameters of the evaluation protocol (defaults = the literature's).

    ``network_kwargs`` are passed to :func:`gmlib.networks.get_network` (e.g. ``{"width": 64}``);
    a dict is accepted and stored as a sorted tuple of pairs so the config stays hashable.
    ``epochs=None`` means 300 without augmentation and 1000 with it. ``test_size`` evaluates on a
    fixed random subset of that many test images (the same subset for every seed; all images when
    the test set is smaller), for small profiles.
    """

    network: str = "convnet"
    network_kwargs: tuple[tuple[str, Any], ...] | Mapping[str, Any] = ()
    epochs: int | None = None
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    augment: str = "none"
    dsa_strategy: str = DEFAULT_DSA_STRATEGY
    test_size: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.network_kwargs, Mapping):
            object.__setattr__(self, "network_kwargs", tuple(sorted(self.network_kwargs.items())))
        if not isinstance(self.network, str) or not self.network:
            raise ValueError(f"network must be a network name such as 'convnet', got {self.network!r}")
        if self.epochs is not None and (not is_int(self.epochs) or self.epochs < 1):
            raise ValueError(f"epochs must be an integer >= 1 or None (300/1000 by augmentation), got {self.epochs!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if self.test_size is not None and (not is_int(self.test_size) or self.test_size < 1):
            raise ValueError(f"test_size must be an integer >= 1 or None (all test images), got {self.test_size!r}")
        check_augment_kind(self.augment)
        parse_dsa_strategy(self.dsa_strategy)

    @property
    def num_epochs(self) -> int:
        """The epochs actually trained: ``epochs``, or 300/1000 by augmentation."""
        if self.epochs is not None:
            return self.epochs
        return EPOCHS_WITHOUT_AUGMENTATION if self.augment == "none" else EPOCHS_WITH_AUGMENTATION

    def as_dict(self) -> dict[str, Any]:
        """Plain data for printing and JSON (network_kwargs as a dict, epochs resolved)."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields["network_kwargs"] = dict(self.network_kwargs)
        fields["num_epochs"] = self.num_epochs
        return fields


@dataclass
class EvalResult:
    """Accuracies (fractions in [0, 1]) of ``num_models`` networks trained on one image set.

    ``std`` is the population standard deviation over models (numpy's default, ddof=0), as the
    literature reports it. ``seconds_per_model`` = wall-clock time of the whole call (training
    and testing) divided by the number of models.
    """

    accuracies: list[float]
    mean: float
    std: float
    seconds_per_model: float
    config: EvalConfig
    method: str
    seed: int
    device: str
    num_test_images: int
    networks: list[nn.Module] = field(default_factory=list, repr=False)

    @property
    def num_models(self) -> int:
        return len(self.accuracies)

    def __str__(self) -> str:
        return (
            f"{100 * self.mean:.2f} +- {100 * self.std:.2f} % over {self.num_models} {self.config.network} models "
            f"({self.config.num_epochs} epochs, augment {self.config.augment}, seed {self.seed}, "
            f"{self.seconds_per_model:.1f} s/model on {self.device}, {self.method})"
        )



# --------------------------------------------------------------------------------------------
# Pieces of the protocol
# --------------------------------------------------------------------------------------------


def learning_rate_at(epoch: int, epochs: int, base_lr: float) -> float:
    """The learning rate of 0-based ``epoch`` out of ``epochs``: ``base_lr`` before ``epochs // 2``,
    ``0.1 * base_lr`` from then on."""
    return base_lr if epoch < epochs // 2 else base_lr * LR_DECAY_FACTOR


def model_seeds(seed: int, index: int) -> tuple[int, int]:
    """(initialisation seed, data seed) of model ``index`` in a call with ``seed``.

    Derived by hashing, so nearby seeds and indices give unrelated streams; both are < 2**32.
    """
    digest = hashlib.sha256(f"gmlib.evaluate:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little"), int.from_bytes(digest[4:8], "little")


def _epoch_orders(num_images: int, generators: Sequence[torch.Generator], device: torch.device) -> Tensor:
    """One shuffled order of the images per generator: (len(generators), num_images) on device."""
    orders = [torch.randperm(num_images, generator=g, device=g.device).to(device) for g in generators]
    return torch.stack(orders)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    # Changing lr in place keeps the momentum buffers, like torch's lr schedulers do.
    for group in optimizer.param_groups:
        group["lr"] = lr


def _sgd(params: Iterable[Tensor], config: EvalConfig) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _progress_bar(total: int, description: str, enabled: bool) -> Any:
    """A tqdm bar; when not ``enabled`` a disabled one, whose methods do nothing."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, leave=False, disable=not enabled)


def train_network(
    net: nn.Module,
    images: Tensor,
    labels: Tensor,
    config: EvalConfig,
    generator: torch.Generator,
    *,
    chunk_size: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    progress: bool = False,
) -> nn.Module:
    """Train ``net`` in place on (images, labels) with the protocol's optimiser and schedule.

    The reference, one-model loop. ``images`` and ``labels`` must already be on ``net``'s device;
    ``generator`` drives the data order and the augmentation, and seeds (in a forked, restored
    global RNG) layers that draw from the global RNG, such as dropout. ``on_epoch(epoch, lr)``
    is called at the start of every epoch (for progress reports and tests). Returns ``net``.

    ``chunk_size`` only changes speed: each batch's gradient is accumulated over chunks of that
    many images (the same gradient up to rounding; skipped for BatchNorm networks, whose batch
    statistics would change). ``None`` = :data:`CPU_CHUNK_SIZE` on CPU, whole batches elsewhere.
    """
    if chunk_size is None:
        chunk_size = CPU_CHUNK_SIZE if images.device.type == "cpu" else config.batch_size
    check_int("chunk_size", chunk_size, 1)
    if has_batchnorm(net):
        chunk_size = config.batch_size
    with _global_rng_seeded_from(generator):
        _train_loop(net, images, labels, config, generator, chunk_size, on_epoch, progress)
    return net


def _train_loop(
    net: nn.Module,
    images: Tensor,
    labels: Tensor,
    config: EvalConfig,
    generator: torch.Generator,
    chunk_size: int,
    on_epoch: Callable[[int, float], None] | None,
    progress: bool,
) -> None:
    epochs = config.num_epochs
    optimizer = _sgd(net.parameters(), config)
    net.train()
    bar = _progress_bar(epochs, "train", progress)
    for epoch in range(epochs):
        lr = learning_rate_at(epoch, epochs, config.lr)
        _set_lr(optimizer, lr)
        if on_epoch is not None:
            on_epoch(epoch, lr)
        order = _epoch_orders(images.shape[0], [generator], images.device)[0]
        for batch in order.split(config.batch_size):
            x = augment(images[batch], config.augment, generator, dsa_strategy=config.dsa_strategy)
            optimizer.zero_grad(set_to_none=True)
            loss = _accumulate_gradient(net, x, labels[batch], chunk_size)
            optimizer.step()
        bar.update()
        if progress:  # .item() waits for the device: only pay for it when the bar shows
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()


def _accumulate_gradient(net: nn.Module, x: Tensor, y: Tensor, chunk_size: int) -> Tensor:
    """Backpropagate the batch's mean cross-entropy, ``chunk_size`` images at a time; returns
    the (detached) batch loss."""
    total = torch.zeros((), device=x.device)
    for x_chunk, y_chunk in zip(x.split(chunk_size), y.split(chunk_size)):
        loss = F.cross_entropy(net(x_chunk), y_chunk, reduction="sum") / x.shape[0]
        loss.backward()
        total += loss.detach()
    return total



def test_accuracy(net: nn.Module, test_images: Tensor, test_labels: Tensor, batch_size: int | None = None) -> float:
    """Fraction of ``test_images`` that ``net`` classifies correctly (eval mode, no autograd).

    The images go through in chunks of ``batch_size``: ``None`` = :data:`CPU_CHUNK_SIZE` on CPU
    (cache-sized chunks are fastest there) and :data:`GPU_TEST_CHUNK_SIZE` elsewhere. The
    network's train/eval mode is restored afterwards.
    """
    if test_images.shape[0] == 0:
        raise ValueError("the test set is empty")
    if batch_size is None:
        batch_size = CPU_CHUNK_SIZE if test_images.device.type == "cpu" else GPU_TEST_CHUNK_SIZE
    check_int("batch_size", batch_size, 1)
    was_training = net.training
    net.eval()
    correct = torch.zeros((), dtype=torch.long, device=test_labels.device)
    with torch.inference_mode():
        for x, y in zip(test_images.split(batch_size), test_labels.split(batch_size)):
            correct += (net(x).argmax(dim=1) == y).sum()
    net.train(was_training)
    return correct.item() / test_images.shape[0]


test_accuracy.__test__ = False  # a library function, not a test, when pytest imports it


# --------------------------------------------------------------------------------------------
# Many models: sequential and batched
# --------------------------------------------------------------------------------------------


def _build_network(config: EvalConfig, shape: tuple[int, int, int], num_classes: int, init_seed: int) -> nn.Module:
    channels, height, width = shape
    kwargs = dict(config.network_kwargs)
    return get_network(config.network, channels, num_classes, (height, width), seed=init_seed, **kwargs)


def _has_dropout(net: nn.Module) -> bool:
    return any(isinstance(module, nn.modules.dropout._DropoutNd) for module in net.modules())


def _draw_seed(generator: torch.Generator) -> int:
    return int(torch.randint(2**62, (1,), generator=generator, device=generator.device).item())


@contextlib.contextmanager
def _global_rng_seeded_from(generator: torch.Generator) -> Iterator[None]:
    """Seed the global RNG from ``generator`` for the block and restore it afterwards.

    Layers such as dropout draw from the global RNG; this makes them reproducible from the
    model's own generator without disturbing anyone else's random state.
    """
    seed = _draw_seed(generator)
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        yield


def _evaluate_sequential(
    nets: Sequence[nn.Module],
    generators: Sequence[torch.Generator],
    data: "_Data",
    config: EvalConfig,
    chunk_size: int | None,
    progress: bool,
) -> list[float]:
    accuracies = []
    bar = _progress_bar(len(nets), "models", progress)
    for net, generator in zip(nets, generators):
        train_network(net, data.images, data.labels, config, generator, chunk_size=chunk_size)
        accuracies.append(test_accuracy(net, data.test_images, data.test_labels, chunk_size))
        bar.update()
        bar.set_postfix(acc=f"{accuracies[-1]:.3f}")
    bar.close()
    return accuracies


def _evaluate_batched(
    nets: Sequence[nn.Module],
    generators: Sequence[torch.Generator],
    data: "_Data",
    config: EvalConfig,
    chunk_size: int | None,
    progress: bool,
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
        _draw_seed(generator)
    num_models, num_images = len(nets), data.images.shape[0]
    epochs = config.num_epochs
    optimizer = _sgd(params.values(), config)
    template.train()
    bar = _progress_bar(epochs, f"{num_models} models", progress)
    for epoch in range(epochs):
        _set_lr(optimizer, learning_rate_at(epoch, epochs, config.lr))
        orders = _epoch_orders(num_images, generators, data.images.device)
        for batch in orders.split(config.batch_size, dim=1):  # (models, batch)
            x = data.images[batch]
            if config.augment != "none":
                x = torch.stack([
                    augment(x[k], config.augment, generators[k], dsa_strategy=config.dsa_strategy)
                    for k in range(num_models)
                ])
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
    return [test_accuracy(net, data.test_images, data.test_labels, chunk_size) for net in nets]


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
    largest = int(max(labels.max().item(), test_labels.max().item()))
    if num_classes is None:
        num_classes = largest + 1
    if min(labels.min().item(), test_labels.min().item()) < 0 or largest >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got values up to {largest} and down to "
                         f"{min(labels.min().item(), test_labels.min().item())}")
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
    num_classes: int | None = None,
    device: str | torch.device = "auto",
    batched: bool | str = "auto",
    max_batched_images: int = 2048,
    chunk_size: int | None = None,
    keep_networks: bool = False,
    progress: bool = False,
) -> EvalResult:
    """Evaluate an image set: train ``num_models`` fresh networks on it, test each one.

    ``num_classes`` defaults to 1 + the largest label. ``batched``: ``'auto'`` (see
    :func:`choose_method`), ``True`` (vmapped; refused for BatchNorm networks) or ``False``
    (one model after another). The batched path trains at most ``max_batched_images //
    min(set size, batch size)`` models at a time to bound memory. Both paths give the same
    accuracies for the same seed up to floating-point rounding. ``chunk_size``: images per
    forward pass in testing and, on the sequential path, in training (see :func:`train_network`;
    None = by device). ``keep_networks=True`` stores the trained networks in ``result.networks``.
    """
    if not is_int(num_models) or num_models < 1:
        raise ValueError(f"num_models must be an integer >= 1, got {num_models!r}")
    if not is_int(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if batched not in ("auto", True, False):
        raise ValueError(f"batched must be 'auto', True or False, got {batched!r}")
    if not is_int(max_batched_images) or max_batched_images < 1:
        raise ValueError(f"max_batched_images must be an integer >= 1, got {max_batched_images!r}")
    if chunk_size is not None:
        check_int("chunk_size", chunk_size, 1)
    device = resolve_device(device)
    data = _prepare_data(images, labels, test_images, test_labels, config, num_classes, device)

    start = time.perf_counter()
    seeds = [model_seeds(seed, k) for k in range(num_models)]
    nets = [_build_network(config, tuple(data.images.shape[1:]), data.num_classes, s[0]).to(device) for s in seeds]
    generators = [torch.Generator().manual_seed(s[1]) for s in seeds]
    obstacle = batching_obstacle(nets[0])
    if batched is True and obstacle is not None:
        raise ValueError(
            f"batched=True cannot train {config.network!r} because {obstacle}; use batched='auto' or False"
        )
    method = choose_method(device, nets[0]) if batched == "auto" else ("batched" if batched else "sequential")

    if method == "sequential":
        accuracies = _evaluate_sequential(nets, generators, data, config, chunk_size, progress)
    else:
        models_per_group = max(1, max_batched_images // min(data.images.shape[0], config.batch_size))
        accuracies = []
        for first in range(0, num_models, models_per_group):
            group = slice(first, first + models_per_group)
            accuracies += _evaluate_batched(nets[group], generators[group], data, config, chunk_size, progress)
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
) -> WholeSetResult:
    """Train one network on a whole training set (the "whole set" baseline) and test it.

    Same optimiser, schedule, augmentation and seeding as :func:`evaluate_set` (model 0 of
    ``seed``), for ``epochs`` epochs of shuffled minibatches.
    """
    config = dataclasses.replace(config, epochs=epochs)
    device = resolve_device(device)
    data = _prepare_data(images, labels, test_images, test_labels, config, num_classes, device)
    start = time.perf_counter()
    init_seed, data_seed = model_seeds(seed, 0)
    net = _build_network(config, tuple(data.images.shape[1:]), data.num_classes, init_seed).to(device)
    generator = torch.Generator().manual_seed(data_seed)
    train_network(net, data.images, data.labels, config, generator, chunk_size=chunk_size, progress=progress)
    accuracy = test_accuracy(net, data.test_images, data.test_labels, chunk_size)
    return WholeSetResult(net=net, accuracy=accuracy, seconds=time.perf_counter() - start)
