"""One way to run every distillation method: the loop around a method's iteration.

A method (DC and DSA, unrolled and implicit distillation, the generative teacher, ...) is a
:class:`Method`: its state, its configuration and ONE iteration. :func:`run` does the rest, the
same way for all of them:

* **randomness**: iteration ``it`` draws everything from one CPU generator seeded from
  ``(seed, it)``, and the global RNG (CPU and CUDA, for layers such as dropout) is seeded from it
  for that iteration and restored afterwards (:mod:`gmlib.randomness`). A run is therefore
  reproducible on any device, and a checkpoint needs only the method's state and the number of
  completed iterations;
* **the record**: a :class:`gmlib.run.history.History` (losses, seconds, the method's extra series,
  evaluations, peak memory, provenance), a progress bar, evaluations at chosen iterations;
* **the divergence guard**: a method calls :func:`check_finite` on its loss before each update;
  the state is checked after every iteration, so no checkpoint ever holds non-finite values;
* **checkpoints**: with an output folder, the state is written atomically every
  ``checkpoint_seconds`` (a minute by default) and every ``checkpoint_every`` iterations, at the
  end, and when the run is stopped by Ctrl-C or SIGTERM, so any stop, SIGKILL included, loses at
  most one interval. Rerunning continues the run; rerunning with more iterations extends it, and
  the result equals a run that was that long from the start. Two runs cannot share a folder.
"""

from __future__ import annotations

import abc
import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from gmlib.checks import check_int, check_positive
from gmlib.data import ImageDataset
from gmlib.fileio import check_writable_folder, json_ready
from gmlib.memory import track_peak_memory
from gmlib.networks import get_network
from gmlib.progress import progress_bar
from gmlib.randomness import draw_seed, global_rng_from, iteration_generator
from gmlib.run.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, save_checkpoint
from gmlib.run.history import Evaluation, History
from gmlib.run.stopping import folder_lock, sigterm_as_interrupt
from gmlib.runinfo import describe_hardware, git_commit, library_versions
from gmlib.synthetic import SyntheticSet

CHECKPOINT_FORMAT = "gmlib.run.checkpoint"
CHECKPOINT_VERSION = 2
# Default time between checkpoints: a stop of any kind loses at most this much work.
CHECKPOINT_SECONDS = 60.0
# Settings that say how a run is driven or reported, not what it computes: they may change
# between the sessions of one run (more iterations extend it; evaluations can be added).
RUN_CONTROL_FIELDS = ("iterations", "checkpoint_every", "eval_at", "eval_config", "eval_models", "time_limit_s")


# --------------------------------------------------------------------------------------------
# A fresh network
# --------------------------------------------------------------------------------------------


def fresh_network(network: str, network_kwargs: Any, dataset: ImageDataset, generator: torch.Generator,
                  device: torch.device) -> nn.Module:
    """A newly initialised ``network`` for ``dataset``, its weights drawn from ``generator``."""
    net = get_network(network, dataset.channels, dataset.num_classes, dataset.im_size,
                      seed=draw_seed(generator), **dict(network_kwargs))
    return net.to(device)


# --------------------------------------------------------------------------------------------
# Divergence
# --------------------------------------------------------------------------------------------


class DivergenceError(RuntimeError):
    """A loss or the learned state became NaN or infinite; the run stopped before using it."""

    def __init__(self, what: str, value: float, iteration: int, hint: str = "") -> None:
        self.what, self.value, self.iteration = what, value, iteration
        super().__init__(f"{what} is {value} in iteration {iteration}; stopped before updating. The last checkpoint "
                         f"(if any) holds the state before it: resume from it with a smaller learning rate"
                         + (f" ({hint})" if hint else "") + ", or start over with another seed.")


def check_finite(values: Tensor | Sequence[float] | float, what: str, iteration: int, hint: str = "",
                 entry: str = "entry") -> None:
    """Raise :class:`DivergenceError` naming the first non-finite value, as ``what`` or, for
    several values, ``what of <entry> <index>`` (e.g. "the matching loss of class 1"). One host sync."""
    values = torch.as_tensor(values).detach().reshape(-1)
    finite = torch.isfinite(values)
    if not finite.all():
        bad = int((~finite).nonzero()[0])
        name = what if len(values) == 1 else f"{what} of {entry} {bad}"
        raise DivergenceError(name, float(values[bad]), iteration, hint)


def _all_finite(state: Any) -> bool:
    if isinstance(state, Tensor):
        return not state.is_floating_point() or bool(torch.isfinite(state).all())
    if isinstance(state, dict):
        return all(_all_finite(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return all(_all_finite(v) for v in state)
    return not isinstance(state, float) or math.isfinite(state)


# --------------------------------------------------------------------------------------------
# What a method supplies
# --------------------------------------------------------------------------------------------


@dataclass
class Step:
    """What one iteration reports: its losses (one per class, or one) and any extra values."""

    losses: Sequence[float] | Tensor
    extras: dict[str, Any]


class Method(abc.ABC):
    """A distillation method as :func:`run` drives it.

    Subclasses set ``name``, ``config`` (a frozen dataclass with ``iterations`` and ``as_dict()``),
    ``seed``, ``dataset`` and ``device`` in their constructor, which builds the initial state.
    """

    name: str
    config: Any
    seed: int
    dataset: ImageDataset
    device: torch.device
    divergence_hint: str = ""

    @abc.abstractmethod
    def iteration(self, it: int, generator: torch.Generator) -> Step:
        """One outer iteration; every random draw comes from ``generator``."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything the iterations change (tensors and plain values)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    @abc.abstractmethod
    def synthetic_set(self) -> SyntheticSet:
        """The set as it is now (what evaluations train on, and the result)."""

    def learned_parameters(self) -> int:
        """How many numbers the method learns (the set's pixels, unless it learns more or other)."""
        return self.synthetic_set().images.numel()

    def identity(self) -> dict[str, Any]:
        """What must match for a checkpoint to continue this run."""
        data = {k: v for k, v in self.config.as_dict().items() if k not in RUN_CONTROL_FIELDS}
        data.update(method=self.name, seed=self.seed, dataset=self.dataset.name,
                    num_classes=self.dataset.num_classes, image_shape=[self.dataset.channels, *self.dataset.im_size])
        return json_ready(data)


class PixelMethod(Method):
    """A method that learns the pixels of ``self.synthetic`` with ``self.optimizer`` (DC, DSA, the
    bi-level methods): that is its state, and the set is the result."""

    synthetic: SyntheticSet
    optimizer: torch.optim.Optimizer

    def state_dict(self) -> dict[str, Any]:
        return {"images": self.synthetic.images.detach(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.synthetic.images.copy_(state["images"])
        self.optimizer.load_state_dict(state["optimizer"])

    def synthetic_set(self) -> SyntheticSet:
        return self.synthetic


Evaluator = Callable[[SyntheticSet], Sequence[float]]


def protocol_evaluator(eval_config: Any, models: int, dataset: ImageDataset, seed: int,
                       device: torch.device) -> Evaluator:
    """Test accuracies of ``models`` networks trained on a set under ``eval_config``
    (:func:`gmlib.evaluate.evaluate_set`), seeded from the run's seed."""
    from gmlib.evaluate import evaluate_set

    def evaluate(synthetic: SyntheticSet) -> Sequence[float]:
        images, labels = synthetic.detached()
        result = evaluate_set(images, labels, dataset.test_images, dataset.test_labels, eval_config, models,
                              seed=seed, num_classes=dataset.num_classes, device=device)
        return result.accuracies

    return evaluate


@dataclass
class RunResult:
    """The learned set, the record of the run, and the method with its final state."""

    synthetic: SyntheticSet
    history: History
    method: Method

    def summary(self) -> str:
        """One line: iterations, learned values, time and memory."""
        h = self.history
        return (f"{h.method}: {h.completed} iterations, {self.method.learned_parameters()} learned values, "
                f"{sum(h.seconds):.1f} s, peak {h.peak_mib:.0f} MiB {h.memory_kind} "
                f"(+{h.added_mib:.0f} MiB in the loop)")


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def _to_cpu(value: Any) -> Any:
    """A copy with every tensor cloned to the CPU (a snapshot no later step can change)."""
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _load_compatible(path: Path, identity: dict, iterations: int) -> dict | None:
    state = load_checkpoint(path, CHECKPOINT_FORMAT)
    if state is None:
        return None
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')!r}; this gmlib writes "
                              f"version {CHECKPOINT_VERSION}. Start over with resume=False (--no-resume).")
    saved = state["identity"]
    differences = [f"{key}={saved.get(key)!r} there, {identity.get(key)!r} here"
                   for key in sorted(set(saved) | set(identity)) if saved.get(key) != identity.get(key)]
    if differences:
        raise CheckpointError(f"the checkpoint {path} belongs to another run: " + "; ".join(differences)
                              + ". Use the same settings and seed, another output folder, or "
                                "resume=False (--no-resume) to start over.")
    if state["completed"] > iterations:
        raise CheckpointError(f"the checkpoint {path} has {state['completed']} completed iterations, more than "
                              f"iterations={iterations}: ask for at least {state['completed']}, or start over")
    return state


def _session_provenance() -> dict[str, Any]:
    commit, dirty = git_commit()
    return json_ready({"started": time.strftime("%Y-%m-%d %H:%M:%S"), "hardware": describe_hardware("cpu"),
                       "versions": library_versions(), "git_commit": commit, "git_dirty": dirty})


def run(
    method: Method,
    *,
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    stop_at: int | None = None,
    time_limit_s: float | None = None,
    checkpoint_every: int = 0,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
    eval_at: Sequence[int] = (),
    evaluator: Evaluator | None = None,
) -> RunResult:
    """Run ``method`` for ``method.config.iterations`` iterations and return the result.

    ``out_dir``: the run's folder (checked writable and locked before any work; the checkpoint
    is ``out_dir/checkpoint.pt``); with ``resume`` an existing checkpoint of the same run is
    continued (one of another run is refused with a :class:`gmlib.run.checkpoint.CheckpointError`).
    ``stop_at``: end this call after that many completed iterations (a time slice);
    ``time_limit_s``: end it once the run has distilled that long (the last iteration finishes).
    ``eval_at``: completed-iteration counts after which ``evaluator`` tests the set (0 = the
    initialisation; a count already passed is skipped, except the one the run resumes at).
    A non-finite loss or state raises :class:`DivergenceError`; the checkpoint then keeps the
    last good state.
    """
    config = method.config
    if stop_at is not None:
        check_int("stop_at", stop_at, 0)
    end = config.iterations if stop_at is None else min(stop_at, config.iterations)
    if time_limit_s is not None:
        check_positive("time_limit_s", time_limit_s)
    check_int("checkpoint_every", checkpoint_every, 0)
    if eval_at and evaluator is None:
        raise ValueError(f"eval_at={tuple(eval_at)!r} needs an evaluator")
    check_positive("checkpoint_seconds", checkpoint_seconds)
    folder = None if out_dir is None else check_writable_folder(out_dir)
    with contextlib.nullcontext() if folder is None else folder_lock(folder):
        return _run_in(folder, method, resume, progress, end, time_limit_s, checkpoint_every,
                       checkpoint_seconds, tuple(eval_at), evaluator)


def _run_in(folder: Path | None, method: Method, resume: bool, progress: bool, end: int,
            time_limit_s: float | None, checkpoint_every: int, checkpoint_seconds: float,
            eval_at: tuple[int, ...], evaluator: Evaluator | None) -> RunResult:
    """:func:`run`, once its arguments are checked and its folder is locked."""
    config = method.config
    identity = method.identity()
    path = None if folder is None else checkpoint_path(folder)
    history = History(method=method.name, config=json_ready(config.as_dict()), seed=method.seed,
                      device=str(method.device))
    start = 0
    if path is not None and resume:
        state = _load_compatible(path, identity, config.iterations)
        if state is not None:
            start = state["completed"]
            method.load_state_dict(state["state"])
            history = History.from_dict(state["history"])
            history.config, history.device = json_ready(config.as_dict()), str(method.device)
            history.resumed_at.append(start)
    history.provenance.append(_session_provenance())

    def save(snapshot: dict) -> None:
        save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "method": method.name,
                               "identity": identity, "completed": snapshot["completed"], "state": snapshot["state"],
                               "history": history.to_dict(upto=snapshot["completed"])})

    def maybe_evaluate(completed: int) -> None:
        if completed in eval_at and history.evaluation_at(completed) is None:
            began = time.perf_counter()
            accuracies = evaluator(method.synthetic_set())
            history.evaluations.append(Evaluation(completed, accuracies, time.perf_counter() - began,
                                                  sum(history.seconds)))

    bar = progress_bar(config.iterations, method.name, enabled=progress, initial=start, leave=True)
    # Only a run with a folder keeps a copy of the last completed state (what a stop writes).
    last_good = {"completed": start, "state": _to_cpu(method.state_dict()) if path is not None else None}
    last_saved = time.monotonic()
    stopped: BaseException | None = None
    with sigterm_as_interrupt():
        try:
            with track_peak_memory(method.device) as memory:
                maybe_evaluate(start)
                for it in range(start, end):
                    if time_limit_s is not None and sum(history.seconds) >= time_limit_s:
                        break
                    began = time.perf_counter()
                    generator = iteration_generator(method.seed, it)
                    with global_rng_from(generator):
                        step = method.iteration(it, generator)
                    seconds = time.perf_counter() - began
                    state = method.state_dict()
                    if not _all_finite(state):
                        raise DivergenceError("the learned state", math.nan, it, method.divergence_hint)
                    losses = step.losses.reshape(-1).tolist() if isinstance(step.losses, Tensor) else step.losses
                    history.append(losses, seconds, step.extras)
                    last_good = {"completed": it + 1, "state": _to_cpu(state) if path is not None else None}
                    maybe_evaluate(it + 1)
                    due = (checkpoint_every and (it + 1) % checkpoint_every == 0
                           or time.monotonic() - last_saved >= checkpoint_seconds)
                    if path is not None and due:
                        save(last_good)
                        last_saved = time.monotonic()
                    bar.update()
                    postfix = {"loss": f"{history.mean_losses()[-1]:.4f}"}
                    if history.evaluations:
                        postfix["acc"] = f"{history.evaluations[-1].mean:.3f}"
                    bar.set_postfix(postfix)
        except (KeyboardInterrupt, DivergenceError) as error:  # Ctrl-C, SIGTERM (Terminated), divergence
            stopped = error
        finally:
            bar.close()
        history.record_memory(memory)
        if path is not None:
            save(last_good)  # the last completed iteration: never a half-done or non-finite one
    if stopped is not None:
        if path is not None and isinstance(stopped, KeyboardInterrupt):
            print(f"stopped: saved the state after {last_good['completed']} iterations to {path}; "
                  f"rerun the same command to continue", file=sys.stderr)
        raise stopped
    synthetic = method.synthetic_set()
    synthetic.metadata.update(method=method.name, iterations=history.completed, seed=method.seed)
    return RunResult(synthetic, history, method)


# --------------------------------------------------------------------------------------------
# From a configuration to a finished run (what each method's ``distill`` function calls)
# --------------------------------------------------------------------------------------------


def distill_with(method_class: type[Method], config_class: type, dataset: ImageDataset, config: Any, *, seed: int,
                 device: str | torch.device, out_dir: str | os.PathLike | None, resume: bool, progress: bool,
                 stop_at: int | None = None, checkpoint_seconds: float | None = None,
                 method_args: tuple = (), time_limit_s: float | None = None) -> RunResult:
    """Check ``config`` and ``seed``, check that the config's network takes this dataset's images
    (before any work), build ``method_class(dataset, config, seed, device, *method_args)`` (e.g.
    MTT's expert buffer) and :func:`run` it with
    the config's run settings: ``checkpoint_every``, ``time_limit_s`` (the argument, when given,
    replaces the config's: an equal wall-clock budget for any method) and evaluations after the
    ``eval_at`` iterations under ``eval_config`` (None = the protocol's defaults for the
    distillation network) with ``eval_models`` models, where the config has them."""
    from gmlib.eval_config import EvalConfig
    from gmlib.networks import filter_network_kwargs
    from gmlib.runinfo import resolve_device

    if not isinstance(config, config_class):
        article = "an" if config_class.__name__[0] in "AEIOU" else "a"
        raise ValueError(f"config must be {article} {config_class.__name__}, got {type(config).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    device = resolve_device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # 'cuda' and 'cuda:0' are one device
    network_kwargs = filter_network_kwargs(config.network, dict(config.network_kwargs))
    with torch.device("meta"):  # a clear error for a bad image size or keyword, before any work
        get_network(config.network, dataset.channels, dataset.num_classes, dataset.im_size, **network_kwargs)
    method = method_class(dataset, config, seed, device, *method_args)
    evaluator = None
    if getattr(config, "eval_at", ()):
        eval_config = config.eval_config or EvalConfig(network=config.network, network_kwargs=network_kwargs)
        evaluator = protocol_evaluator(eval_config, config.eval_models, method.dataset, seed, device)
    return run(method, out_dir=out_dir, resume=resume, progress=progress, stop_at=stop_at,
               time_limit_s=getattr(config, "time_limit_s", None) if time_limit_s is None else time_limit_s,
               checkpoint_every=getattr(config, "checkpoint_every", 0),
               checkpoint_seconds=CHECKPOINT_SECONDS if checkpoint_seconds is None else checkpoint_seconds,
               eval_at=getattr(config, "eval_at", ()), evaluator=evaluator)
