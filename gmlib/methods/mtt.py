"""Dataset distillation by matching training trajectories: MTT (Cazenavette et al., 2022).

A network trained on a good synthetic set should move through parameter space the way one trained
on the real data moves. MTT keeps the real trajectories (the *experts*' parameters after every
epoch, :mod:`gmlib.methods.mtt_experts`) and, every iteration, starts a student at an expert's
parameters theta*_t, trains it N steps on the synthetic set with a learnable learning rate alpha,
and asks it to land where the expert was M epochs later:

    L = || theta_N - theta*_{t+M} ||^2 / || theta*_t - theta*_{t+M} ||^2

(the denominator makes the loss scale-free across the trajectory: a student that does not move
scores 1). The gradient of L reaches the images and alpha through the N unrolled SGD steps.

MTT's algorithm, line by line, and where each line is (tests/test_mtt.py checks this map)::

    initialise the synthetic set S (real images), alpha = lr_teacher
                                                           MTTMethod.__init__: init_synthetic, log_lr
    for k = 0 .. K-1:                                      gmlib.run.loop._run_in: method.iteration
        draw an expert and a start epoch t < T+            mtt_iteration: draw_start
        theta_0 <- theta*_t, the target theta*_{t+M}       mtt_iteration: snapshot
        for n = 0 .. N-1: a batch b_n of S, a DSA draw     mtt_iteration: student_plan
            theta_{n+1} = theta_n - alpha grad l(A_n(b_n); theta_n)
                                                           unrolled_gradient: student_step
        L = ||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2
                                                           unrolled_gradient: trajectory_loss
        S, alpha <- momentum-SGD(grad_S L, grad_alpha L)   mtt_iteration: optimizer.step

Where gmlib departs from the reference code, on purpose (its users' reported faults):

* **the learned rate is state**: it is checkpointed with the images and saved with the set
  (``synthetic.metadata['learned_lr']``); evaluation can use it (:func:`learned_lr_protocol`);
* **it stays positive**: gmlib learns ``u = log alpha``. SGD on u with rate
  ``lr_lr / lr_teacher**2`` moves alpha, to first order, by ``-(lr_lr / lr_teacher**2) alpha^2
  dL/dalpha``: at the initial rate alpha = lr_teacher this is the reference's step
  ``-lr_lr dL/dalpha``; a larger alpha moves faster, a smaller one slower, and none turns negative;
* **a non-finite loss stops the run** before any update (:func:`gmlib.run.loop.check_finite`);
* **nothing is chosen by test accuracy**: the result is the set after the last iteration.

Two ways to the same gradient (``gradient`` in :class:`MTTConfig`):

* ``'unroll'``: keep all N steps' graphs and backpropagate once; memory grows with N times the
  activations of a step (:func:`unrolled_gradient`);
* ``'recompute'``: the forward pass keeps only the N + 1 parameter vectors; the backward pass walks
  the steps from the last to the first, rebuilds ONE step's graph at a time and pushes the adjoint
  ``a_n = dL/dtheta_n`` through it with a vector-Jacobian product, adding each step's contribution
  to the images' and alpha's gradients (:func:`recomputed_gradient`). Memory: N + 1 parameter
  vectors and one step's graph; time: about one more forward-and-gradient per step.

Indices of epochs: ``max_start_epoch`` and ``expert_epochs`` count the buffer's *kept snapshots*:
the student starts at snapshot t (t uniform in 0 .. max_start_epoch - 1) and its target is
snapshot t + expert_epochs. With a buffer kept every epoch (``every`` = 1) snapshots are epochs,
as in the paper; with ``every`` = k they are the parameters after epochs k t and k (t + M), so the
student matches k * expert_epochs real epochs. A buffer with fewer than max_start_epoch +
expert_epochs snapshots is refused when the method is built.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from gmlib.checks import check_fraction, check_int, check_one_of, check_positive
from gmlib.data import ImageDataset
from gmlib.dsa import DSATransform, check_dsa_option, dsa_strategy_for, sample_dsa
from gmlib.eval_config import EvalConfig
from gmlib.methods.mtt_buffer import ExpertBuffer, load_buffer
from gmlib.methods.mtt_experts import check_no_batchnorm
from gmlib.networks import filter_network_kwargs, get_network
from gmlib.run.loop import PixelMethod, RunResult, Step, check_finite, distill_with
from gmlib.run.settings import RunSettings
from gmlib.synthetic import INIT_NAMES, SyntheticSet, init_synthetic

__all__ = ["GRADIENTS", "MTTConfig", "MTTMethod", "distill_mtt", "learned_lr_protocol", "measure_mtt_memory",
           "mtt_iteration", "recomputed_gradient", "student_step", "trajectory_loss", "unrolled_gradient"]

GRADIENTS = ("unroll", "recompute")


@dataclass(frozen=True)
class MTTConfig(RunSettings):
    """MTT's hyperparameters; the defaults are the paper's general ones (5000 iterations, 20 student
    steps matching 3 expert epochs from a start before epoch 25, lr_img 1000, lr_lr 1e-5,
    lr_teacher 0.01, momentum 0.5 for both, real initialisation, DSA). Per-setting values for
    CIFAR-10 are in ``shared/spec/reference-defaults.md``; none are published for MNIST.

    ``batch_syn``: synthetic images per student step (None = all of them at every step).
    ``dsa``: a per-image DSA draw on the synthetic batch at every student step (as MTT does);
    ``dsa_strategy`` None = the dataset's. ``network`` and ``network_kwargs`` must be the buffer's.
    ``gradient``: 'unroll' or 'recompute' (the same numbers, up to rounding; see the module notes).
    ``lr_lr`` is the reference's learning rate of the learned rate; gmlib learns its logarithm
    with rate ``lr_lr / lr_teacher**2`` (the same step at the initial rate). ``eval_at``,
    ``eval_config``, ``eval_models`` and ``checkpoint_every`` as :class:`gmlib.methods.dm.DMConfig`'s.
    """

    ipc: int = 1
    iterations: int = 5000
    syn_steps: int = 20
    expert_epochs: int = 3
    max_start_epoch: int = 25
    lr_img: float = 1000.0
    lr_lr: float = 1e-5
    lr_teacher: float = 0.01
    momentum: float = 0.5
    batch_syn: int | None = None
    init: str = "real"
    dsa: bool = True
    dsa_strategy: str | None = None
    gradient: str = "unroll"

    def __post_init__(self) -> None:
        self.check_run_settings()
        check_int("ipc (images per class)", self.ipc, 1)
        check_int("syn_steps", self.syn_steps, 1)
        check_int("expert_epochs", self.expert_epochs, 1)
        check_int("max_start_epoch", self.max_start_epoch, 1)
        for name in ("lr_img", "lr_lr", "lr_teacher"):
            check_positive(name, getattr(self, name))
        check_fraction("momentum", self.momentum)
        if self.batch_syn is not None:
            check_int("batch_syn (or None)", self.batch_syn, 1)
        check_one_of("init", self.init, INIT_NAMES)
        check_dsa_option(self.dsa, self.dsa_strategy)
        check_one_of("gradient", self.gradient, GRADIENTS)

    @property
    def lr_log_lr(self) -> float:
        """The SGD rate of u = log(alpha): ``lr_lr / lr_teacher**2`` (the reference's step at alpha = lr_teacher)."""
        return self.lr_lr / self.lr_teacher ** 2


# --------------------------------------------------------------------------------------------
# The student: parameters as one flat vector, trained by plain SGD
# --------------------------------------------------------------------------------------------


class StudentStep(NamedTuple):
    """What one student step trains on: indices into the synthetic set and the DSA draw (or None)."""

    batch: Tensor
    transform: DSATransform | None


def student_plan(num_images: int, batch_syn: int | None, steps: int, image_shape: Sequence[int],
                 strategy: str | None, generator: torch.Generator, device: torch.device) -> list[StudentStep]:
    """Every student step's batch and augmentation, drawn before any computation (so both gradient
    modes train on the same). With ``batch_syn`` the batches walk through random permutations of
    the set, a new one whenever the last is used up (as the reference); None = all images each step."""
    plan, order = [], torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if batch_syn is None:
            batch = torch.arange(num_images)
        else:
            if len(order) < min(batch_syn, num_images):
                order = torch.cat([order, torch.randperm(num_images, generator=generator)])
            batch, order = order[:batch_syn], order[batch_syn:]
        transform = None if strategy is None else sample_dsa((len(batch), *image_shape), strategy, generator)
        plan.append(StudentStep(batch.to(device), transform))
    return plan


def student_step(net: nn.Module, unflatten: Any, theta: Tensor, images: Tensor, labels: Tensor, step: StudentStep,
                 lr: Tensor, create_graph: bool) -> Tensor:
    """theta - lr * grad of the cross-entropy on the step's (augmented) synthetic batch.

    ``theta`` must require grad; with ``create_graph`` the result stays differentiable with
    respect to ``theta``, ``images`` and ``lr``."""
    x = images[step.batch]
    if step.transform is not None:
        x = step.transform(x)
    loss = F.cross_entropy(functional_call(net, unflatten(theta), (x,)), labels[step.batch])
    (grad,) = torch.autograd.grad(loss, theta, create_graph=create_graph)
    return theta - lr * grad


def trajectory_loss(theta: Tensor, start: Tensor, target: Tensor) -> Tensor:
    """||theta - target||^2 / ||start - target||^2: 1 for a student that did not move, 0 on target."""
    return ((theta - target) ** 2).sum() / ((start - target) ** 2).sum()


def unrolled_gradient(net: nn.Module, unflatten: Any, start: Tensor, target: Tensor, images: Tensor, labels: Tensor,
                      log_lr: Tensor, plan: Sequence[StudentStep]) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, dL/dimages, dL/dlog_lr) by backpropagation through all the student's steps at once.

    A non-finite loss is returned with zero gradients (no backward pass): the caller's
    :func:`gmlib.run.loop.check_finite` stops the run on it before any update."""
    lr = log_lr.exp()
    theta = start.detach().requires_grad_(True)
    for step in plan:
        theta = student_step(net, unflatten, theta, images, labels, step, lr, create_graph=True)
    loss = trajectory_loss(theta, start, target)
    if not torch.isfinite(loss):
        return loss.detach(), torch.zeros_like(images), torch.zeros_like(log_lr)
    grad_images, grad_log_lr = torch.autograd.grad(loss, [images, log_lr])
    return loss.detach(), grad_images, grad_log_lr


def recomputed_gradient(net: nn.Module, unflatten: Any, start: Tensor, target: Tensor, images: Tensor,
                        labels: Tensor, log_lr: Tensor, plan: Sequence[StudentStep]) -> tuple[Tensor, Tensor, Tensor]:
    """The same as :func:`unrolled_gradient`, keeping one step's graph at a time.

    Forward: theta_0 .. theta_N without graphs. Backward: the adjoint a_N = dL/dtheta_N; for
    n = N-1 .. 0 rebuild step n's graph from theta_n and take the vector-Jacobian product of
    theta_{n+1}(theta_n, S, u) with a_{n+1}: its theta part is a_n, its S and u parts are step
    n's contributions to dL/dS and dL/du."""
    lr = log_lr.detach().exp()
    thetas = [start.detach()]
    for step in plan:
        theta = thetas[-1].clone().requires_grad_(True)
        thetas.append(student_step(net, unflatten, theta, images.detach(), labels, step, lr, create_graph=False).detach())
    final = thetas[-1].requires_grad_(True)
    loss = trajectory_loss(final, start, target)
    if not torch.isfinite(loss):
        return loss.detach(), torch.zeros_like(images), torch.zeros_like(log_lr)
    (adjoint,) = torch.autograd.grad(loss, final)
    grad_images, grad_log_lr = torch.zeros_like(images), torch.zeros_like(log_lr)
    for n in reversed(range(len(plan))):
        theta = thetas[n].clone().requires_grad_(True)
        out = student_step(net, unflatten, theta, images, labels, plan[n], log_lr.exp(), create_graph=True)
        adjoint, g_images, g_log_lr = torch.autograd.grad(out, [theta, images, log_lr], grad_outputs=adjoint)
        grad_images += g_images
        grad_log_lr += g_log_lr
    return loss.detach(), grad_images, grad_log_lr


# --------------------------------------------------------------------------------------------
# One iteration
# --------------------------------------------------------------------------------------------


def draw_start(num_experts: int, max_start_epoch: int, generator: torch.Generator) -> tuple[int, int]:
    """An expert and a start snapshot t < max_start_epoch, uniformly."""
    expert = int(torch.randint(num_experts, (1,), generator=generator))
    start = int(torch.randint(max_start_epoch, (1,), generator=generator))
    return expert, start


def mtt_iteration(mtt: "MTTMethod", it: int, generator: torch.Generator) -> Step:
    """One iteration of MTT; every random draw comes from ``generator``. Returns the matching loss
    and, as extras, the learned rate before the update, the expert and the start snapshot."""
    config, syn, buffer = mtt.config, mtt.synthetic, mtt.buffer
    expert, t = draw_start(buffer.num_experts, config.max_start_epoch, generator)
    start = buffer.snapshot(expert, t, mtt.device)  # theta*_t
    target = buffer.snapshot(expert, t + config.expert_epochs, mtt.device)  # theta*_{t+M}
    plan = student_plan(len(syn.labels), config.batch_syn, config.syn_steps, syn.images.shape[1:],
                        mtt.dsa_strategy, generator, mtt.device)
    gradient = unrolled_gradient if config.gradient == "unroll" else recomputed_gradient
    loss, grad_images, grad_log_lr = gradient(mtt.net, buffer.unflatten, start, target, syn.images, syn.labels,
                                              mtt.log_lr, plan)
    check_finite(loss, "the trajectory-matching loss", it, mtt.divergence_hint)
    check_finite(grad_log_lr, "the gradient of the learned learning rate", it, mtt.divergence_hint)
    lr_before = float(mtt.log_lr.detach().exp())
    mtt.optimizer.zero_grad(set_to_none=True)
    syn.images.grad, mtt.log_lr.grad = grad_images, grad_log_lr
    mtt.optimizer.step()  # S, u <- momentum-SGD
    return Step([float(loss)], {"learned_lr": lr_before, "expert": expert, "start_epoch": t})


# --------------------------------------------------------------------------------------------
# The method on the run scaffold
# --------------------------------------------------------------------------------------------


def check_buffer_fits(buffer: ExpertBuffer, config: MTTConfig) -> None:
    """Refuse a config whose start and target snapshots the buffer does not hold, naming the numbers."""
    needed = config.max_start_epoch + config.expert_epochs  # the last target is snapshot needed - 1
    if needed > buffer.num_snapshots:
        raise ValueError(f"max_start_epoch={config.max_start_epoch} + expert_epochs={config.expert_epochs} = {needed} "
                         f"needs {needed} kept snapshots per expert, but the buffer {buffer.folder} keeps "
                         f"{buffer.num_snapshots} (epochs {buffer.kept_epochs}): lower max_start_epoch or "
                         f"expert_epochs, or train the experts longer")


class MTTMethod(PixelMethod):
    """MTT as :func:`gmlib.run.loop.run` drives it: the synthetic set, the log of the learned rate
    and one momentum-SGD optimiser for both; the experts come from ``buffer`` (a path or a loaded
    :class:`~gmlib.methods.mtt_buffer.ExpertBuffer`)."""

    divergence_hint = "lr_img or lr_lr"

    def __init__(self, dataset: ImageDataset, config: MTTConfig, seed: int, device: torch.device,
                 buffer: ExpertBuffer | str | os.PathLike) -> None:
        self.name, self.config, self.seed, self.device = "mtt", config, seed, device
        kwargs = filter_network_kwargs(config.network, dict(config.network_kwargs))
        self.buffer = buffer if isinstance(buffer, ExpertBuffer) else load_buffer(buffer)
        self.buffer.check_matches(dataset, config.network, kwargs)
        check_buffer_fits(self.buffer, config)
        self.dataset = dataset if dataset.device == device else dataset.to(device)
        self.net = get_network(config.network, dataset.channels, dataset.num_classes, dataset.im_size, seed=0,
                               **kwargs).to(device)
        check_no_batchnorm(self.net, config.network)
        self.net.requires_grad_(False)  # its parameters are replaced by the student's (functional_call)
        self.dsa_strategy = (config.dsa_strategy or dsa_strategy_for(dataset.name)) if config.dsa else None
        self.synthetic = init_synthetic(self.dataset, config.ipc, config.init, seed=seed, device=device)
        self.log_lr = torch.tensor(math.log(config.lr_teacher), device=device, requires_grad=True)
        self.optimizer = torch.optim.SGD([{"params": [self.synthetic.images], "lr": config.lr_img},
                                          {"params": [self.log_lr], "lr": config.lr_log_lr}],
                                         lr=config.lr_img, momentum=config.momentum)

    def iteration(self, it: int, generator: torch.Generator) -> Step:
        return mtt_iteration(self, it, generator)

    @property
    def learned_lr(self) -> float:
        """The student's learning rate alpha as it is now (always positive)."""
        return float(self.log_lr.detach().exp())

    def learned_parameters(self) -> int:
        return self.synthetic.images.numel() + 1

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "log_lr": self.log_lr.detach()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_lr.copy_(state["log_lr"])

    def synthetic_set(self) -> SyntheticSet:
        """The set, with the learned rate and the buffer's identity in its metadata."""
        self.synthetic.metadata.update(learned_lr=self.learned_lr, buffer=self.buffer.identity,
                                       buffer_path=str(self.buffer.folder))
        return self.synthetic

    def identity(self) -> dict[str, Any]:
        """The run's identity includes the buffer's: a checkpoint of a run on another buffer is refused."""
        return {**super().identity(), "buffer": self.buffer.identity}


def distill_mtt(
    dataset: ImageDataset,
    config: MTTConfig,
    buffer: ExpertBuffer | str | os.PathLike,
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    stop_at: int | None = None,
    checkpoint_seconds: float | None = None,
) -> RunResult:
    """Learn ``config.ipc`` images per class of ``dataset`` (and a learning rate) by matching the
    trajectories of the experts in ``buffer``. Arguments and behaviour (resume, extend,
    evaluations, checkpoints) as :func:`gmlib.methods.dc.distill`; the result's
    ``synthetic.metadata['learned_lr']`` holds the learned rate."""
    return distill_with(MTTMethod, MTTConfig, dataset, config, seed=seed, device=device, out_dir=out_dir,
                        resume=resume, progress=progress, stop_at=stop_at, checkpoint_seconds=checkpoint_seconds,
                        method_args=(buffer,))


# --------------------------------------------------------------------------------------------
# Evaluation with the learned rate, and the cost of the two gradients
# --------------------------------------------------------------------------------------------


class LabelledProtocol(NamedTuple):
    """An evaluation protocol and a label that says what it is."""

    label: str
    config: EvalConfig


def learned_lr_protocol(config: EvalConfig, learned: SyntheticSet | float) -> LabelledProtocol:
    """MTT's own evaluation: ``config`` with its learning rate replaced by the learned one (from a
    set's ``metadata['learned_lr']`` or a number), nothing else changed. Report it beside the
    standard protocol, labelled: the learned rate is part of what MTT distils."""
    lr = learned.metadata.get("learned_lr") if isinstance(learned, SyntheticSet) else learned
    if lr is None:
        raise ValueError("this synthetic set has no metadata['learned_lr']: it was not distilled by MTT")
    check_positive("the learned learning rate", lr)
    label = f"MTT's protocol: the learned learning rate {lr:.4g} (standard protocol: {config.lr:g})"
    return LabelledProtocol(label, dataclasses.replace(config, lr=float(lr)))


def measure_mtt_memory(dataset: ImageDataset, config: MTTConfig, buffer: ExpertBuffer | str | os.PathLike,
                       syn_steps: Sequence[int], *, seed: int = 0, device: str | torch.device = "cpu",
                       gradients: Sequence[str] = GRADIENTS) -> list[dict[str, Any]]:
    """Peak memory and time of ONE iteration for each ``syn_steps`` value and gradient mode
    (:func:`gmlib.memory.track_peak_memory`): a list of rows {gradient, syn_steps, peak_mib,
    added_mib, seconds, kind}. On a CPU the numbers are the process's resident memory: compare
    rows with each other, not with other processes."""
    from gmlib.memory import track_peak_memory
    from gmlib.randomness import iteration_generator
    from gmlib.runinfo import resolve_device

    device = resolve_device(device)
    if not isinstance(buffer, ExpertBuffer):
        buffer = load_buffer(buffer)
    rows = []
    for gradient in gradients:
        for steps in syn_steps:
            method = MTTMethod(dataset, config.replace(syn_steps=steps, gradient=gradient), seed, device, buffer)
            method.buffer.expert(0)  # read from disk before measuring
            with track_peak_memory(device) as report:
                method.iteration(0, iteration_generator(seed, 0))
            rows.append({"gradient": gradient, "syn_steps": steps, "peak_mib": report.peak_mib,
                         "added_mib": report.added_mib, "seconds": report.seconds, "kind": report.kind})
    return rows
