"""Training ONE network under the evaluation protocol, and testing it: the reference loop that
:mod:`gmlib.evaluate` runs for each model (and that its batched path must agree with)."""

from __future__ import annotations

import hashlib
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmlib.augment import augment
from gmlib.checks import check_int
from gmlib.eval_config import LR_DECAY_FACTOR, EvalConfig
from gmlib.networks import has_batchnorm
from gmlib.first_order import EXACT, FirstOrder
from gmlib.progress import progress_bar
from gmlib.randomness import global_rng_from

# Images per forward pass. On CPU, chunks of 32 keep a ConvNet's activations in cache: the
# test pass measured 1.4-1.9x faster than with 256-1000 and training at batch 100 about 1.2x
# (benchmarks/bench_evaluate.py). GPUs want big chunks.
CPU_CHUNK_SIZE = 32
GPU_TEST_CHUNK_SIZE = 1024


def learning_rate_at(epoch: int, config: EvalConfig) -> float:
    """The learning rate of 0-based ``epoch``: ``config.lr`` before ``config.decay_epoch``, a
    tenth of it from then on."""
    return config.lr if epoch < config.decay_epoch else config.lr * LR_DECAY_FACTOR


def apply_schedule(optimizer: torch.optim.Optimizer, epoch: int, config: EvalConfig) -> float:
    """Set ``optimizer`` up for 0-based ``epoch`` and return its learning rate.

    At the decay epoch with ``config.reset_momentum`` the momentum buffers are emptied: SGD then
    starts them afresh from the next gradient, exactly as the new optimiser the reference builds.
    """
    if epoch == config.decay_epoch and config.reset_momentum:
        optimizer.state.clear()
    lr = learning_rate_at(epoch, config)
    set_lr(optimizer, lr)
    return lr


def model_seeds(seed: int, index: int) -> tuple[int, int]:
    """(initialisation seed, data seed) of model ``index`` in a call with ``seed``.

    Derived by hashing, so nearby seeds and indices give unrelated streams; both are < 2**32.
    """
    digest = hashlib.sha256(f"gmlib.evaluate:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little"), int.from_bytes(digest[4:8], "little")


def epoch_orders(num_images: int, generators: Sequence[torch.Generator], device: torch.device) -> Tensor:
    """One shuffled order of the images per generator: (len(generators), num_images) on device."""
    orders = [torch.randperm(num_images, generator=g, device=g.device).to(device) for g in generators]
    return torch.stack(orders)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    # Changing lr in place keeps the momentum buffers, like torch's lr schedulers do.
    for group in optimizer.param_groups:
        group["lr"] = lr


def protocol_sgd(params: Iterable[Tensor], config: EvalConfig) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


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
    passes: FirstOrder = EXACT,
) -> nn.Module:
    """Train ``net`` in place on (images, labels) with the protocol's optimiser and schedule.

    The reference, one-model loop. ``images`` and ``labels`` must already be on ``net``'s device;
    ``generator`` drives the data order and the augmentation, and seeds (in a forked, restored
    global RNG) layers that draw from the global RNG, such as dropout. ``on_epoch(epoch, lr)``
    is called at the start of every epoch (for progress reports and tests). Returns ``net``.

    ``chunk_size`` only changes speed: each batch's gradient is accumulated over chunks of that
    many images (the same gradient up to rounding; skipped for BatchNorm networks, whose batch
    statistics would change). ``None`` = :data:`CPU_CHUNK_SIZE` on CPU, whole batches elsewhere.
    ``passes`` says how forward and backward run (bfloat16, compiled: :mod:`gmlib.first_order`);
    the weights and the optimiser stay float32.
    """
    if chunk_size is None:
        chunk_size = CPU_CHUNK_SIZE if images.device.type == "cpu" else config.batch_size
    check_int("chunk_size", chunk_size, 1)
    if has_batchnorm(net):
        chunk_size = config.batch_size
    with global_rng_from(generator):  # dropout draws from the global RNG
        _train_loop(net, images, labels, config, generator, chunk_size, on_epoch, progress, passes)
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
    passes: FirstOrder,
) -> None:
    epochs = config.num_epochs
    optimizer = protocol_sgd(net.parameters(), config)
    net.train()
    bar = progress_bar(epochs, "train", enabled=progress)
    for epoch in range(epochs):
        lr = apply_schedule(optimizer, epoch, config)
        if on_epoch is not None:
            on_epoch(epoch, lr)
        order = epoch_orders(images.shape[0], [generator], images.device)[0]
        for batch in order.split(config.batch_size):
            x = augment(images[batch], config.augment, generator, dsa_strategy=config.dsa_strategy, classic=config.classic)
            optimizer.zero_grad(set_to_none=True)
            loss = _accumulate_gradient(net, x, labels[batch], chunk_size, passes)
            optimizer.step()
        bar.update()
        if progress:  # .item() waits for the device: only pay for it when the bar shows
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()


def _accumulate_gradient(net: nn.Module, x: Tensor, y: Tensor, chunk_size: int, passes: FirstOrder) -> Tensor:
    """Backpropagate the batch's mean cross-entropy, ``chunk_size`` images at a time; returns
    the (detached) batch loss."""
    total = torch.zeros((), device=x.device)
    for x_chunk, y_chunk in zip(x.split(chunk_size), y.split(chunk_size)):
        loss = F.cross_entropy(passes.logits(net, x_chunk), y_chunk, reduction="sum") / x.shape[0]
        loss.backward()
        total += loss.detach()
    return total



def test_accuracy(net: nn.Module, test_images: Tensor, test_labels: Tensor, batch_size: int | None = None,
                  passes: FirstOrder = EXACT) -> float:
    """Fraction of ``test_images`` that ``net`` classifies correctly (eval mode, no autograd).

    The images go through in chunks of ``batch_size``: ``None`` = :data:`CPU_CHUNK_SIZE` on CPU
    (cache-sized chunks are fastest there) and :data:`GPU_TEST_CHUNK_SIZE` elsewhere; ``passes``
    says how they run (bfloat16, compiled: :mod:`gmlib.first_order`). The network's train/eval mode
    is restored afterwards.
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
            correct += (passes.logits(net, x).argmax(dim=1) == y).sum()
    net.train(was_training)
    return correct.item() / test_images.shape[0]


test_accuracy.__test__ = False  # a library function, not a test, when pytest imports it
