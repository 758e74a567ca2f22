"""Dataset condensation with distribution matching: DM (Zhao & Bilen, 2023).

Instead of matching what a network learns from the data (its gradients), DM matches what a network
*sees* in it: the mean embedding of each class's real images and of its synthetic images, in the
feature space of a randomly initialised network that is never trained. The squared distance of the
two means is a maximum mean discrepancy with that network's features as the kernel's feature map;
a new random network every iteration averages it over a family of feature maps.

DM's algorithm, line by line, and where each line is (tests/test_dm.py checks this map)::

    initialise the synthetic set S (real images)           DMMethod.__init__: init_synthetic
    for k = 0 .. K-1:                                      gmlib.run.loop._run_in: method.iteration
        psi <- the embedding of a fresh random network     dm_iteration: fresh_network
        B_c <- a batch of real images of each class c      dm_iteration: class_batches
        one Siamese augmentation A_c per class             dm_iteration: sample_dsa
        L = sum_c || mean psi(A_c(B_c)) - mean psi(A_c(S_c)) ||^2
                                                           dm_iteration: mean_embeddings, dm_losses
        S <- S - lr_img * momentum-SGD(grad_S L)           dm_iteration: optimizer.step

There is no inner loop and no second derivative: one forward pass of the real images (without a
graph: they are a constant target) and one of the synthetic images, for all classes at once, then
one backward pass. That is why DM is much cheaper per iteration than gradient matching, and why its
passes can be compiled (``DMConfig.compile``; ``torch.compile`` cannot compile a double backward):
:mod:`gmlib.first_order` compiles the embedding once with the weights as inputs, so the fresh
network of every iteration reuses the compiled code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gmlib.checks import check_fraction, check_int, check_one_of, check_positive
from gmlib.data import ImageDataset
from gmlib.dsa import apply_per_class, check_dsa_option, dsa_strategy_for, sample_dsa
from gmlib.first_order import EXACT, FirstOrder, resolve_compile
from gmlib.networks import has_batchnorm
from gmlib.run.loop import PixelMethod, RunResult, Step, check_finite, distill_with, fresh_network
from gmlib.run.settings import RunSettings
from gmlib.synthetic import INIT_NAMES, init_synthetic
from gmlib.training import CPU_CHUNK_SIZE

__all__ = ["DMConfig", "DMMethod", "distill_dm", "dm_iteration", "dm_losses", "mean_embeddings"]


@dataclass(frozen=True)
class DMConfig(RunSettings):
    """DM's hyperparameters; the defaults are the paper's (20,000 iterations, lr_img 1 with
    momentum 0.5, 256 real images per class, real initialisation, Siamese DSA).

    ``dsa`` False matches without augmentation; ``dsa_strategy`` None = the dataset's strategy
    (no flip for digits). ``network_kwargs`` go to :func:`gmlib.networks.get_network`.
    ``compile`` runs the network's embedding through ``torch.compile`` (the first iteration pays the
    compilation; the numbers agree with the eager passes to float32 rounding, not bit for bit, so a
    run cannot switch it on resume). ``eval_at``, ``eval_config`` and ``eval_models``: evaluations during the run, as
    :class:`gmlib.methods.dc_config.MatchingConfig`'s.
    """

    ipc: int = 1
    iterations: int = 20_000
    batch_real: int = 256
    lr_img: float = 1.0
    momentum_img: float = 0.5
    init: str = "real"
    dsa: bool = True
    dsa_strategy: str | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        self.check_run_settings()
        check_int("ipc (images per class)", self.ipc, 1)
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be True or False, got {self.compile!r}")
        check_int("batch_real", self.batch_real, 1)
        check_positive("lr_img", self.lr_img)
        check_fraction("momentum_img", self.momentum_img)
        check_one_of("init", self.init, INIT_NAMES)
        check_dsa_option(self.dsa, self.dsa_strategy)


# --------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------


def mean_embeddings(net: nn.Module, images: Tensor, classes: int, chunk_size: int | None = None,
                    passes: FirstOrder = EXACT) -> Tensor:
    """The mean of ``net.embed`` over each of ``classes`` equal, contiguous blocks of ``images``:
    shape (classes, embed_dim). ``chunk_size`` images per forward pass only bound the memory (a
    BatchNorm network sees the whole batch at once: its statistics depend on the batch).
    ``passes`` says how the embedding runs (compiled: :mod:`gmlib.first_order`)."""
    if chunk_size is None or has_batchnorm(net) or len(images) <= chunk_size:
        features = passes.logits(net, images, "embed")
    else:
        features = torch.cat([passes.logits(net, chunk, "embed") for chunk in images.split(chunk_size)])
    return features.reshape(classes, -1, features.shape[-1]).mean(dim=1)


def dm_losses(real_means: Tensor, syn_means: Tensor) -> Tensor:
    """Each class's squared distance between its real and synthetic mean embeddings."""
    return ((real_means - syn_means) ** 2).sum(dim=1)


def dm_iteration(dm: "DMMethod", it: int, generator: torch.Generator) -> Step:
    """One iteration of DM; every random draw comes from ``generator``. Returns each class's loss."""
    config, data, syn = dm.config, dm.dataset, dm.synthetic
    net = fresh_network(config.network, config.network_kwargs, data, generator, dm.device)  # psi, never trained
    net.requires_grad_(False)
    real = data.class_batches(config.batch_real, generator)  # B_c: (classes, B, C, H, W)
    real, syn_images = real.flatten(0, 1), syn.images
    if dm.dsa_strategy is not None:  # A_c: one draw per class, shared by its real and synthetic images
        draws = [sample_dsa((1, *real.shape[1:]), dm.dsa_strategy, generator, siamese=True)
                 for _ in range(data.num_classes)]
        real, syn_images = apply_per_class(draws, real), apply_per_class(draws, syn_images)
    with torch.no_grad():  # the real side is a constant target
        real_means = mean_embeddings(net, real, data.num_classes, dm.chunk_size, dm.passes)
    syn_means = mean_embeddings(net, syn_images, data.num_classes, passes=dm.passes)
    losses = dm_losses(real_means, syn_means)
    check_finite(losses, "the distribution-matching loss", it, dm.divergence_hint, "class")
    dm.optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()
    dm.optimizer.step()  # S <- S - lr_img * momentum-SGD(grad_S L)
    return Step(losses.detach(), {})


# --------------------------------------------------------------------------------------------
# The method on the run scaffold
# --------------------------------------------------------------------------------------------


class DMMethod(PixelMethod):
    """DM as :func:`gmlib.run.loop.run` drives it: the synthetic set and its momentum-SGD optimiser."""

    divergence_hint = "lr_img"

    def __init__(self, dataset: ImageDataset, config: DMConfig, seed: int, device: torch.device) -> None:
        self.name, self.config, self.seed, self.device = "dm", config, seed, device
        self.dataset = dataset if dataset.device == device else dataset.to(device)
        self.dsa_strategy = (config.dsa_strategy or dsa_strategy_for(dataset.name)) if config.dsa else None
        self.synthetic = init_synthetic(self.dataset, config.ipc, config.init, seed=seed, device=device)
        self.optimizer = torch.optim.SGD([self.synthetic.images], lr=config.lr_img, momentum=config.momentum_img)
        self.chunk_size = CPU_CHUNK_SIZE if device.type == "cpu" else None
        # Float32: DM's precision has not been measured; compiled on request (DMConfig.compile),
        # refused by name for a network that cannot be (its architecture: any seed will do).
        template = fresh_network(config.network, config.network_kwargs, self.dataset, torch.Generator(), device)
        self.passes = FirstOrder("fp32", resolve_compile(config.compile, device, template, 0))

    def iteration(self, it: int, generator: torch.Generator) -> Step:
        return dm_iteration(self, it, generator)


def distill_dm(
    dataset: ImageDataset,
    config: DMConfig = DMConfig(),
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    stop_at: int | None = None,
    checkpoint_seconds: float | None = None,
) -> RunResult:
    """Learn ``config.ipc`` images per class of ``dataset`` by distribution matching. Arguments and
    behaviour (resume, extend, evaluations, checkpoints) as :func:`gmlib.methods.dc.distill`."""
    return distill_with(DMMethod, DMConfig, dataset, config, seed=seed, device=device, out_dir=out_dir,
                        resume=resume, progress=progress, stop_at=stop_at, checkpoint_seconds=checkpoint_seconds)
