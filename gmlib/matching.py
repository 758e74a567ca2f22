"""Dataset condensation by gradient matching: DC (Zhao et al., 2021) and DSA (Zhao & Bilen, 2021).

The algorithm box of DC, line by line, and where each line lives in this module::

    initialise the synthetic set S                              distill -> init_synthetic
    for it = 0 .. iterations-1:                                 distill
        theta <- a freshly initialised network                  _fresh_network
        for t = 0 .. outer_loop-1:                              _run_iteration
            (BatchNorm nets) real statistics, then freeze BN    freeze_batchnorm_on_real
            for each class c:                                   matching_loss_backward
                B_c ~ batch_real real images of class c         sample_real_batches
                D_c = D( grad_theta L(S_c), grad_theta L(B_c) ) (real side: real_gradient)
            S <- S - lr_img * momentum-SGD( grad_S sum_c D_c )  _run_iteration
            if t < outer_loop-1:
                train theta on S for inner_loop epochs          train_inner

DSA changes two things: during matching the real batch and the synthetic images of a class go
through ONE shared random augmentation (Siamese), and the inner-loop training augments every
image with its own draw.

Options of the same loop (seed 002's "what, how and where to match"; defaults = DC, bit-identical):

* what: ``match_level`` intra (DC) / inter / multi (intra + lambda * inter) / interleaved, and
  ``per_class`` matching or one mixed batch (:mod:`gmlib.match_levels`);
* how: ``distance``, any of :mod:`gmlib.distances` (seed 002's d1..d4 and their sums);
* where: ``inner_steps`` fixed (DC) / overfit / schedule (:mod:`gmlib.inner_loop`);
* a curvature term ``hessian_weight * v^T C v`` per class (:mod:`gmlib.hessian`, seed 000).

Design notes:

* Every random choice of iteration ``it`` (the network's initialisation, the real batches, the
  augmentations, the inner-loop shuffles) comes from one CPU generator seeded from
  ``(seed, it)`` (:func:`iteration_generator`). So a run is reproducible on any device, and a
  checkpoint needs nothing but the images, the image optimiser's momentum and the iteration
  index to resume bit-identically.
* Two interchangeable engines compute the per-class matching losses (same numbers up to
  rounding): ``'loop'`` goes class by class like the algorithm box (and, on CPU, computes the
  real-batch gradient in cache-sized chunks, which is faster there); ``'batched'`` vectorises
  over classes with ``torch.func.vmap``, which keeps a GPU busy. ``'auto'`` picks batched on CUDA
  and loop on CPU, where benchmarks/bench_matching.py measured vmap 2.3-2.7x slower.
* The hyperparameters are :class:`gmlib.matching_config.MatchingConfig`, the record of a run is
  :class:`gmlib.history.History`, the vmap engine is :mod:`gmlib.batched_engine`; all are
  importable from here.
* :mod:`gmlib.matching_reference` holds the same outer step written as plainly as possible; the
  tests assert that this module computes the same numbers.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from gmlib.augment import dsa, dsa_strategy_for, sample_dsa
from gmlib.batched_engine import MAX_BATCHED_IMAGES, batched_losses
from gmlib.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, save_checkpoint
from gmlib.distances import get_distance
from gmlib.evaluate import EvalConfig, evaluate_set
from gmlib.history import History
from gmlib.inner_loop import (
    custom_schedule,
    inner_epochs,
    scheduled_inner_steps,
    steps_per_epoch,
    train_inner,
    train_inner_until_overfit,
)
from gmlib.match_levels import (
    CurvatureSpec,
    StepLosses,
    level_of_iteration,
    loop_step_backward,
    mixed_step_backward,
    real_gradient,
    sample_mixed_real_batch,
)
from gmlib.checks import check_int, check_one_of, is_int
from gmlib.matching_config import ENGINES, METHODS, MatchingConfig, evaluation_augment
from gmlib.networks import filter_network_kwargs, get_network, has_batchnorm
from gmlib.runinfo import resolve_device
from gmlib.synthetic import SyntheticSet, init_synthetic

# The loop's public names; the configuration, the history, the level/inner-loop pieces and the
# batched engine live in their own modules and are re-exported here for one import line.
__all__ = [
    "CPU_CHUNK_SIZE", "ENGINES", "MAX_BATCHED_IMAGES", "METHODS", "History", "MatchingConfig", "MatchingResult",
    "NonFiniteLossError", "custom_schedule", "distill", "evaluation_augment", "freeze_batchnorm_on_real",
    "iteration_generator", "iteration_seed", "matching_loss_backward", "matching_step_backward", "real_gradient",
    "resolve_engine", "sample_real_batches", "scheduled_inner_steps", "train_inner",
]

# Images per forward pass for the real-batch gradients and the inner loop on CPU: a ConvNet's
# activations for 32 images stay in cache, which measured 1.5x faster than whole batches of 256
# (benchmarks/bench_matching.py; bench_evaluate.py for training). On GPUs whole batches are best. On a CPU
# shared with other busy jobs, torch.set_num_threads(1) can be several times faster than
# threads that wait for each other (bench_matching.py, "threads").
CPU_CHUNK_SIZE = 32
_CHECKPOINT_FORMAT = "gmlib.matching.checkpoint"
_CHECKPOINT_VERSION = 1


class NonFiniteLossError(RuntimeError):
    """The matching loss became NaN or infinite; the synthetic set would be ruined by the step."""

    def __init__(self, iteration: int, outer_step: int, class_index: int | None, value: float) -> None:
        self.iteration, self.outer_step, self.class_index, self.value = iteration, outer_step, class_index, value
        what = "the matching objective" if class_index is None else f"the matching loss of class {class_index}"
        super().__init__(
            f"{what} is {value} at iteration {iteration} (outer step "
            f"{outer_step}); stopped before updating the images. The last checkpoint (if any) is untouched. "
            f"Try a smaller lr_img or another distance."
        )


# --------------------------------------------------------------------------------------------
# Configuration, history and result
# --------------------------------------------------------------------------------------------


@dataclass
class MatchingResult:
    """The learned synthetic set and the history of the run that produced it."""

    synthetic: SyntheticSet
    history: History


# --------------------------------------------------------------------------------------------
# Randomness: one generator per iteration
# --------------------------------------------------------------------------------------------


def iteration_seed(seed: int, iteration: int) -> int:
    """The seed of iteration ``iteration`` of a run with ``seed`` (hashed: unrelated streams)."""
    digest = hashlib.sha256(f"gmlib.matching:{seed}:{iteration}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def iteration_generator(seed: int, iteration: int) -> torch.Generator:
    """The CPU generator every random draw of that iteration comes from (same on every device)."""
    return torch.Generator().manual_seed(iteration_seed(seed, iteration))


def _draw_seed(generator: torch.Generator) -> int:
    return int(torch.randint(2**62, (1,), generator=generator).item())


# --------------------------------------------------------------------------------------------
# The pieces of one outer step
# --------------------------------------------------------------------------------------------


def sample_real_batches(dataset: Any, batch_real: int, generator: torch.Generator) -> Tensor:
    """One random batch of real images per class, stacked: (num_classes, B, C, H, W).

    B = ``batch_real``, or the smallest class size when a class has fewer images (the reference
    code silently takes what there is; a shared B keeps the batches stackable).
    """
    n = min(batch_real, min(len(dataset.class_indices(c)) for c in range(dataset.num_classes)))
    return torch.stack([dataset.sample(c, n, generator) for c in range(dataset.num_classes)])


def freeze_batchnorm_on_real(net: nn.Module, dataset: Any, per_class: int, generator: torch.Generator) -> None:
    """Set BatchNorm statistics from real data, then freeze them for matching (DC's BN handling).

    A BatchNorm net in train mode would mix the statistics of whatever batch it sees into the
    gradients; DC instead passes ``per_class`` real images of every class through it in train mode
    (updating the running statistics), then puts the BN layers in eval mode, so the real and the
    synthetic gradients are taken under the same, real-data normalisation.
    """
    n = min(per_class, min(len(dataset.class_indices(c)) for c in range(dataset.num_classes)))
    images = torch.cat([dataset.sample(c, n, generator) for c in range(dataset.num_classes)])
    net.train()
    with torch.no_grad():
        net(images)
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def matching_loss_backward(
    net: nn.Module,
    syn_images: Tensor,
    ipc: int,
    real_batches: Tensor,
    distance: Callable[[Sequence[Tensor], Sequence[Tensor]], Tensor],
    *,
    augmentations: Sequence[Callable[[Tensor], Tensor]] | None = None,
    engine: str = "loop",
    chunk_size: int | None = None,
    max_batched_images: int = MAX_BATCHED_IMAGES,
    level: str = "intra",
    level_weight: float | None = None,
    curvature: CurvatureSpec | None = None,
) -> Tensor:
    """The per-class matching losses D_c, with grad_S sum_c D_c accumulated into ``syn_images.grad``.
    (With ``level``/``curvature`` the gradient of that objective is accumulated instead; the
    returned D_c are the same; :func:`matching_step_backward` returns every term.)

    ``syn_images``: the class-ordered leaf tensor (num_classes * ipc, C, H, W); ``real_batches``:
    (num_classes, B, C, H, W); ``distance(g_syn, g_real)`` a gradient distance;
    ``augmentations[c]`` (DSA) is applied to both the real batch and the synthetic images of class
    ``c``. ``engine`` 'loop' or 'batched' (same result up to rounding); ``chunk_size`` splits the
    real batches of the loop engine. Returns the detached ``(num_classes,)`` losses; the caller
    zeroes the gradient before and steps the optimiser after.
    """
    return matching_step_backward(net, syn_images, ipc, real_batches, distance, augmentations=augmentations,
                                  engine=engine, chunk_size=chunk_size, max_batched_images=max_batched_images,
                                  level=level, level_weight=level_weight, curvature=curvature).per_class


def matching_step_backward(
    net: nn.Module,
    syn_images: Tensor,
    ipc: int,
    real_batches: Tensor,
    distance: Callable[[Sequence[Tensor], Sequence[Tensor]], Tensor],
    *,
    augmentations: Sequence[Callable[[Tensor], Tensor]] | None = None,
    engine: str = "loop",
    chunk_size: int | None = None,
    max_batched_images: int = MAX_BATCHED_IMAGES,
    level: str = "intra",
    level_weight: float | None = None,
    curvature: CurvatureSpec | None = None,
) -> StepLosses:
    """One per-class matching step at ``level`` ('intra', 'inter' or 'multi'; lambda =
    ``level_weight``, None = number of classes) with an optional ``curvature`` term: accumulates
    grad_S of the objective into ``syn_images.grad`` and returns the detached terms
    (:class:`gmlib.match_levels.StepLosses`). Arguments as :func:`matching_loss_backward`; the
    batched engine computes only DC's objective (intra, no curvature term).
    """
    check_one_of("engine", engine, ENGINES[1:])
    if real_batches.dim() != 5 or syn_images.shape[0] != len(real_batches) * ipc:
        raise ValueError(f"expected real_batches (classes, B, C, H, W) and {len(real_batches)} x ipc={ipc} synthetic "
                         f"images; got {tuple(real_batches.shape)} and {tuple(syn_images.shape)}")
    if engine == "loop":
        return loop_step_backward(net, syn_images, ipc, real_batches, distance, augmentations=augmentations,
                                  chunk_size=chunk_size, level=level, level_weight=level_weight, curvature=curvature)
    if level != "intra" or curvature is not None:
        raise ValueError(f"engine='batched' computes only the intra-class objective without a curvature term "
                         f"(got level={level!r}, curvature={curvature!r}); use engine='loop'")
    losses = batched_losses(net, syn_images, ipc, real_batches, distance, augmentations, max_batched_images)
    return StepLosses(losses, None, None, losses.sum())


# --------------------------------------------------------------------------------------------
# One iteration, and the loop around it
# --------------------------------------------------------------------------------------------


def resolve_engine(engine: str, device: torch.device, dc_options: bool = True) -> str:
    """'auto' -> 'batched' on CUDA, 'loop' elsewhere (vmap measured slower on CPU) and for any
    objective other than DC's (``dc_options`` False), which only the loop engine computes."""
    check_one_of("engine", engine, ENGINES)
    if engine != "auto":
        return engine
    return "batched" if device.type == "cuda" and dc_options else "loop"


def _fresh_network(config: MatchingConfig, dataset: Any, generator: torch.Generator, device: torch.device) -> nn.Module:
    net = get_network(config.network, dataset.channels, dataset.num_classes, dataset.im_size,
                      seed=_draw_seed(generator), **dict(config.network_kwargs))
    return net.to(device)


@dataclass
class _Run:
    """What every iteration of one run shares (built once by :func:`distill`)."""

    config: MatchingConfig
    dataset: Any
    synthetic: SyntheticSet
    optimizer: torch.optim.Optimizer
    distance: Callable
    device: torch.device
    engine: str
    chunk_size: int | None
    dsa_strategy: str | None
    seed: int
    curvature: CurvatureSpec | None = None


def _matching_step_gradient(run: _Run, net: nn.Module, real_batches: Tensor, augmentations: Any,
                            level: str = "intra") -> StepLosses:
    """Zero the images' gradient and accumulate grad_S of the step's objective; returns its terms.

    The batched engine holds every class's activations at once; if the GPU runs out of memory,
    the step is redone with the loop engine (same inputs, same result up to rounding), which the
    rest of the run then keeps.
    """
    def attempt() -> StepLosses:
        run.optimizer.zero_grad(set_to_none=True)
        return matching_step_backward(net, run.synthetic.images, run.synthetic.ipc, real_batches, run.distance,
                                      augmentations=augmentations, engine=run.engine, chunk_size=run.chunk_size,
                                      level=level, level_weight=run.config.level_weight, curvature=run.curvature)

    try:
        return attempt()
    except torch.cuda.OutOfMemoryError:
        if run.engine != "batched":
            raise
        warnings.warn("the batched matching engine ran out of GPU memory; continuing with engine='loop'",
                      RuntimeWarning, stacklevel=2)
        run.engine = "loop"
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return attempt()


@contextlib.contextmanager
def _global_rng_from(generator: torch.Generator) -> Iterator[None]:
    """Seed the global RNG from ``generator`` for the block, restoring it afterwards: layers such
    as dropout draw from it, and a run must not depend on (or disturb) anyone else's random state."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(_draw_seed(generator))
        yield


@dataclass
class _IterationRecord:
    """What one iteration adds to the History (losses averaged over its outer steps)."""

    losses: list[float]
    inter_loss: float | None
    curvature: float | None
    inner_epochs: list[int]
    inner_updates: int
    inner_updates_saved: int


def _run_iteration(run: _Run, it: int) -> _IterationRecord:
    """One outer iteration of the algorithm box."""
    generator = iteration_generator(run.seed, it)
    with _global_rng_from(generator):
        return _iteration_body(run, it, generator)


def _check_finite(step: StepLosses, it: int, t: int) -> None:
    values = step.values()
    if not torch.isfinite(values).all():  # one host sync per outer step: cheap next to the step
        bad = int((~torch.isfinite(values)).nonzero()[0])
        raise NonFiniteLossError(it, t, bad if bad < len(step.per_class) else None, float(values[bad]))


def _iteration_body(run: _Run, it: int, generator: torch.Generator) -> _IterationRecord:
    config, dataset, syn = run.config, run.dataset, run.synthetic
    net = _fresh_network(config, dataset, generator, run.device)
    batchnorm = has_batchnorm(net)
    outer_loop, inner_loop = config.loops
    level = level_of_iteration(config.match_level, it)
    totals = torch.zeros(dataset.num_classes if config.per_class else 1, device=run.device)
    inter_total = curvature_total = 0.0
    epochs_done: list[int] = []
    updates = 0
    for t in range(outer_loop):
        if batchnorm:
            freeze_batchnorm_on_real(net, dataset, config.bn_real_per_class, generator)
        if config.per_class:
            real_batches = sample_real_batches(dataset, config.batch_real, generator)
            augmentations = None
            if run.dsa_strategy is not None:  # Siamese: one draw per class, shared by real and synthetic
                augmentations = [sample_dsa(real_batches.shape[1:], run.dsa_strategy, generator, siamese=True)
                                 for _ in range(dataset.num_classes)]
            step = _matching_step_gradient(run, net, real_batches, augmentations, level)
            # the step's own real images, class-ordered, are the overfit policy's validation batch
            real_images = real_batches.flatten(0, 1)
            real_labels = torch.arange(dataset.num_classes, device=run.device).repeat_interleave(real_batches.shape[1])
        else:  # one mixed real batch against the whole synthetic set (seed 003, "not per class")
            real_images, real_labels = sample_mixed_real_batch(dataset, config.batch_real * dataset.num_classes,
                                                               generator)
            augmentation = None
            if run.dsa_strategy is not None:
                augmentation = sample_dsa(real_images.shape, run.dsa_strategy, generator, siamese=True)
            run.optimizer.zero_grad(set_to_none=True)
            step = mixed_step_backward(net, syn.images, syn.labels, real_images, real_labels, run.distance,
                                       augmentation=augmentation, chunk_size=run.chunk_size, curvature=run.curvature)
        _check_finite(step, it, t)
        run.optimizer.step()  # S <- S - lr_img * momentum-SGD(grad_S objective)
        totals += step.per_class
        if step.inter is not None:
            inter_total += float(step.inter)
        if step.curvature is not None:
            curvature_total += float(step.curvature.sum())

        if t == outer_loop - 1:
            break  # the next iteration starts from a fresh network: no point training this one
        images, labels = syn.detached()
        augment = None if run.dsa_strategy is None else (lambda x: dsa(x, run.dsa_strategy, generator))
        epochs = inner_epochs(config.inner_steps, t, inner_loop, config.inner_schedule)
        if config.inner_steps == "overfit":
            log = train_inner_until_overfit(net, images, labels, real_images, real_labels, max_epochs=epochs,
                                            batch_size=config.batch_train, lr=config.lr_net, generator=generator,
                                            augment=augment, chunk_size=run.chunk_size)
            epochs_done.append(log.epochs)
            updates += log.steps
        else:
            updates += train_inner(net, images, labels, epochs=epochs, batch_size=config.batch_train,
                                   lr=config.lr_net, generator=generator, augment=augment,
                                   chunk_size=run.chunk_size) or 0
            epochs_done.append(epochs)
    fixed = (outer_loop - 1) * inner_loop * steps_per_epoch(len(syn.labels), config.batch_train)
    return _IterationRecord(
        losses=(totals / outer_loop).tolist(),
        inter_loss=inter_total / outer_loop if level in ("inter", "multi") else None,
        curvature=curvature_total / outer_loop if run.curvature is not None else None,
        inner_epochs=epochs_done, inner_updates=updates, inner_updates_saved=fixed - updates,
    )


def _evaluate(run: _Run, completed: int, seconds_before: float) -> dict[str, Any]:
    config = run.config
    eval_config = config.eval_config
    if eval_config is None:
        eval_config = EvalConfig(network=config.network,
                                 network_kwargs=filter_network_kwargs(config.network, dict(config.network_kwargs)))
    images, labels = run.synthetic.detached()
    start = time.perf_counter()
    result = evaluate_set(images, labels, run.dataset.test_images, run.dataset.test_labels, eval_config,
                          config.eval_models, seed=run.seed, num_classes=run.dataset.num_classes, device=run.device)
    return {"iteration": completed, "mean": result.mean, "std": result.std, "accuracies": list(result.accuracies),
            "seconds": time.perf_counter() - start, "distill_seconds": seconds_before}


def _identity(config: MatchingConfig, seed: int, dataset: Any) -> dict[str, Any]:
    """What must match for a checkpoint to continue this run (checkpoint_every only affects I/O)."""
    data = config.as_dict()
    del data["checkpoint_every"]
    # Options added after checkpoints existed are left out at their defaults, so those still resume.
    for name in _LATER_OPTIONS:
        if getattr(config, name) == _DEFAULT_OPTIONS[name]:
            del data[name]
    data.update(seed=seed, dataset=dataset.name, num_classes=dataset.num_classes,
                image_shape=[dataset.channels, *dataset.im_size])
    return json.loads(json.dumps(data))  # tuples -> lists, as they come back from a file


_LATER_OPTIONS = ("match_level", "level_weight", "per_class", "inner_steps", "inner_schedule",
                  "hessian_weight", "hessian_loss", "hessian_kind")
_DEFAULT_OPTIONS = {f.name: f.default for f in dataclasses.fields(MatchingConfig) if f.name in _LATER_OPTIONS}


def _to_cpu(value: Any) -> Any:
    """A deep copy with every tensor cloned to the CPU (a snapshot no later step can change)."""
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return copy.deepcopy(value)


def _load_compatible(path: Path, identity: dict) -> dict | None:
    state = load_checkpoint(path, _CHECKPOINT_FORMAT)
    if state is None:
        return None
    if state.get("version") != _CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')!r}; this gmlib writes "
                              f"version {_CHECKPOINT_VERSION}. Start over with resume=False (--no-resume).")
    saved = state["identity"]
    differences = [f"{key}={saved.get(key)!r} there, {identity.get(key)!r} here"
                   for key in sorted(set(saved) | set(identity)) if saved.get(key) != identity.get(key)]
    if differences:
        raise CheckpointError(f"the checkpoint {path} belongs to another run: " + "; ".join(differences)
                              + ". Use the same settings and seed, another checkpoint directory, or "
                                "resume=False (--no-resume) to start over.")
    return state


def distill(
    dataset: Any,
    config: MatchingConfig = MatchingConfig(),
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    stop_at: int | None = None,
) -> MatchingResult:
    """Learn a synthetic set of ``config.ipc`` images per class of ``dataset`` by DC or DSA.

    ``dataset`` is a :class:`gmlib.data.ImageDataset` (moved to ``device`` once if needed). The
    run is determined by ``(config, seed)``: the same call gives the same images.

    Checkpoints (``checkpoint_dir``): every ``config.checkpoint_every`` iterations, at the end,
    at ``stop_at``, and on Ctrl-C (the last completed iteration, then the KeyboardInterrupt goes
    on), the state is written atomically to ``checkpoint_dir/checkpoint.pt``. With ``resume``
    a run continues from it and ends bit-identical to an uninterrupted run; a checkpoint of
    another config, seed or dataset is refused with a :class:`gmlib.checkpoint.CheckpointError`.
    ``stop_at`` ends this call after that many completed iterations (a time slice).

    Raises :class:`NonFiniteLossError` if a matching loss becomes NaN/inf (no checkpoint is
    written then, so the last good one survives).
    """
    if not isinstance(config, MatchingConfig):
        raise ValueError(f"config must be a MatchingConfig, got {type(config).__name__}")
    if not is_int(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if stop_at is not None:
        check_int("stop_at", stop_at, 0)
    device = resolve_device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # 'cuda' and 'cuda:0' are one device
    if dataset.device != device:
        dataset = dataset.to(device)  # once: every real batch is then drawn on the device
    dsa_strategy = None
    if config.method == "dsa":
        dsa_strategy = config.dsa_strategy or dsa_strategy_for(dataset.name)
    # Check the network takes this data before any work (clear error for a bad size or keyword).
    with torch.device("meta"):
        get_network(config.network, dataset.channels, dataset.num_classes, dataset.im_size, **dict(config.network_kwargs))

    synthetic = init_synthetic(dataset, config.ipc, config.init, seed=seed, device=device)
    optimizer = torch.optim.SGD([synthetic.images], lr=config.lr_img, momentum=config.momentum_img)
    history = History(config=config.as_dict(), seed=seed, device=str(device))
    identity = _identity(config, seed, dataset)
    path = None if checkpoint_dir is None else checkpoint_path(checkpoint_dir)
    start = 0
    if path is not None and resume:
        state = _load_compatible(path, identity)
        if state is not None:
            start = state["completed"]
            with torch.no_grad():
                synthetic.images.copy_(state["images"])
            optimizer.load_state_dict(state["optimizer"])
            history = History.from_dict(state["history"])
            history.device = str(device)
            history.resumed_at.append(start)
    chunk_size = CPU_CHUNK_SIZE if device.type == "cpu" else None
    curvature = None
    if config.hessian_weight > 0:
        curvature = CurvatureSpec(float(config.hessian_weight), config.hessian_loss, config.hessian_kind)
    run = _Run(config, dataset, synthetic, optimizer, get_distance(config.distance), device,
               resolve_engine(config.engine, device, config.dc_options), chunk_size, dsa_strategy, seed, curvature)
    end = config.iterations if stop_at is None else min(stop_at, config.iterations)

    def snapshot(completed: int) -> dict:
        # Tensors are copied now (later steps change them in place); the history only grows,
        # so save() cuts it to `completed` when it writes.
        return {"completed": completed, "images": synthetic.images.detach().cpu().clone(),
                "optimizer": _to_cpu(optimizer.state_dict())}

    def save(snap: dict) -> None:
        save_checkpoint(path, {"format": _CHECKPOINT_FORMAT, "version": _CHECKPOINT_VERSION, "identity": identity,
                               **snap, "history": history.to_dict(upto=snap["completed"])})

    def maybe_evaluate(completed: int) -> None:
        if completed in config.eval_at and all(e["iteration"] != completed for e in history.evaluations):
            history.evaluations.append(_evaluate(run, completed, sum(history.seconds)))

    from tqdm.auto import tqdm

    bar = tqdm(total=config.iterations, initial=start, desc=f"{config.method} ipc {config.ipc}",
               disable=not progress, leave=True)
    last_good = snapshot(start) if path is not None else None
    try:
        maybe_evaluate(start)
        for it in range(start, end):
            began = time.perf_counter()
            record = _run_iteration(run, it)
            history.seconds.append(time.perf_counter() - began)
            history.losses.append(record.losses)
            history.inter_losses.append(record.inter_loss)
            history.curvature.append(record.curvature)
            history.inner_epochs.append(record.inner_epochs)
            history.inner_updates.append(record.inner_updates)
            history.inner_updates_saved.append(record.inner_updates_saved)
            completed = it + 1
            maybe_evaluate(completed)
            if path is not None:
                last_good = snapshot(completed)
                if config.checkpoint_every and completed % config.checkpoint_every == 0:
                    save(last_good)
            bar.update()
            postfix = {"loss": f"{sum(history.losses[-1]) / dataset.num_classes:.4f}"}
            if history.evaluations:
                postfix["acc"] = f"{history.evaluations[-1]['mean']:.3f}"
            bar.set_postfix(postfix)
    except KeyboardInterrupt:
        if last_good is not None:
            save(last_good)
            bar.write(f"interrupted: saved the state after {last_good['completed']} iterations to {path}")
        raise
    finally:
        bar.close()
    if path is not None:
        save(last_good)
    synthetic.metadata.update(method=config.method, iterations=history.completed, seed=seed)
    return MatchingResult(synthetic, history)
