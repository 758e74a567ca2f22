"""The evaluation protocol's hyperparameters (:class:`EvalConfig`, defaults = what DC's reference
code runs), its named variants (:data:`PROTOCOL_VARIANTS`) and the record of one evaluation
(:class:`EvalResult`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

from torch import nn

from gmlib.augment import check_augment_kind
from gmlib.checks import check_fraction, check_int, check_nonnegative, check_one_of, check_positive, is_int
from gmlib.classic_augment import CLASSIC_OPS, MNIST_AFFINE, MNIST_REFERENCE, ClassicRecipe
from gmlib.dsa import DEFAULT_DSA_STRATEGY, parse_dsa_strategy
from gmlib.networks import check_network_kwargs

EPOCHS_WITHOUT_AUGMENTATION = 300
EPOCHS_WITH_AUGMENTATION = 1000
LR_DECAY_FACTOR = 0.1
# "reference": E + 1 epochs, the rate drops after 0-based epoch E // 2 + 1 (DC's code);
# "halves": E epochs, E // 2 at the full rate, the rest at a tenth (gmlib 0.1).
SCHEDULES = ("reference", "halves")


@dataclass(frozen=True)
class EvalConfig:
    """Hyperparameters of the evaluation protocol (defaults = the literature's).

    ``network_kwargs`` are passed to :func:`gmlib.networks.get_network` (e.g. ``{"width": 64}``);
    a dict is accepted and stored as a sorted tuple of pairs so the config stays hashable.
    ``epochs`` is the protocol's E; ``None`` means 300 without augmentation and 1000 with it.
    ``schedule='reference'`` trains E + 1 epochs and multiplies the learning rate by 0.1 after
    0-based epoch E // 2 + 1, as DC's code does; ``'halves'`` trains E epochs, E // 2 at the full
    rate. ``reset_momentum`` empties the momentum buffers at that step (the reference builds a new
    SGD optimiser there). ``classic`` says how ``augment='mnist'`` transforms images (default: the
    reference's crop/scale/rotate exactly). ``test_size`` evaluates on a fixed random subset of
    that many test images (the same subset for every seed; all images when the test set is
    smaller), for small profiles. :func:`protocol_variant` applies a named variant.
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
    classic: ClassicRecipe = MNIST_REFERENCE
    schedule: str = "reference"
    reset_momentum: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.network_kwargs, Mapping):
            object.__setattr__(self, "network_kwargs", tuple(sorted(self.network_kwargs.items())))
        check_network_kwargs(self.network, dict(self.network_kwargs))  # names the known networks and keywords
        if self.epochs is not None and (not is_int(self.epochs) or self.epochs < 1):
            raise ValueError(f"epochs must be an integer >= 1 or None (300/1000 by augmentation), got {self.epochs!r}")
        check_positive("lr", self.lr)
        check_fraction("momentum", self.momentum)
        check_nonnegative("weight_decay", self.weight_decay)
        check_int("batch_size", self.batch_size, 1)
        if self.test_size is not None and (not is_int(self.test_size) or self.test_size < 1):
            raise ValueError(f"test_size must be an integer >= 1 or None (all test images), got {self.test_size!r}")
        check_augment_kind(self.augment)
        parse_dsa_strategy(self.dsa_strategy)
        if not isinstance(self.classic, ClassicRecipe):
            raise ValueError(f"classic must be a gmlib.classic_augment.ClassicRecipe, got {type(self.classic).__name__}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not isinstance(self.reset_momentum, bool):
            raise ValueError(f"reset_momentum must be True or False, got {self.reset_momentum!r}")

    @property
    def protocol_epochs(self) -> int:
        """The protocol's E: ``epochs``, or 300/1000 by augmentation."""
        if self.epochs is not None:
            return self.epochs
        return EPOCHS_WITHOUT_AUGMENTATION if self.augment == "none" else EPOCHS_WITH_AUGMENTATION

    @property
    def num_epochs(self) -> int:
        """The epochs actually trained: E + 1 under the reference schedule, E under 'halves'."""
        return self.protocol_epochs + (1 if self.schedule == "reference" else 0)

    @property
    def decay_epoch(self) -> int:
        """The first 0-based epoch trained at the decayed learning rate."""
        half = self.protocol_epochs // 2
        return half + 2 if self.schedule == "reference" else half

    def as_dict(self) -> dict[str, Any]:
        """Plain data for printing and JSON (network_kwargs and classic as dicts, tuples as lists,
        epochs resolved), equal to itself after a JSON round trip."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields["network_kwargs"] = dict(self.network_kwargs)
        fields["classic"] = {name: list(value) if isinstance(value, tuple) else value
                             for name, value in dataclasses.asdict(self.classic).items()}
        fields["num_epochs"] = self.num_epochs
        return fields


class ProtocolVariant(NamedTuple):
    """A named departure from the reference protocol: what it changes, in words and as fields."""

    description: str
    changes: Mapping[str, Any]


# Each single difference that gmlib 0.1 had from the reference, and gmlib 0.1's protocol as a
# whole. The book measures what each does to a reported accuracy.
PROTOCOL_VARIANTS: dict[str, ProtocolVariant] = {
    "reference": ProtocolVariant("DC's code: crop/scale/rotate, E + 1 epochs, fresh momentum at the decay", {}),
    "with-noise": ProtocolVariant("noise (+0.001 N(0, 1)) drawn as a fourth op",
                                  {"classic": dataclasses.replace(MNIST_REFERENCE, ops=CLASSIC_OPS)}),
    "shift-4": ProtocolVariant("crop shifts -4..4 instead of -3..4",
                               {"classic": dataclasses.replace(MNIST_REFERENCE, shift_range=(-4, 4))}),
    "scale-mean-fill": ProtocolVariant("a shrunk image padded with the mean instead of zeros",
                                       {"classic": dataclasses.replace(MNIST_REFERENCE, scale_fill="mean")}),
    "affine-resample": ProtocolVariant("scale and rotate as bilinear affine warps (continuous sizes)",
                                       {"classic": dataclasses.replace(MNIST_REFERENCE, resample="affine")}),
    "keep-momentum": ProtocolVariant("momentum buffers kept at the learning-rate step", {"reset_momentum": False}),
    "halves": ProtocolVariant("E epochs in two halves instead of E + 1 split after E/2 + 1", {"schedule": "halves"}),
    "gmlib-0.1": ProtocolVariant("gmlib 0.1: all of the above at once",
                                 {"classic": MNIST_AFFINE, "schedule": "halves", "reset_momentum": False}),
}


def protocol_variant(config: EvalConfig, name: str) -> EvalConfig:
    """``config`` under the named variant of :data:`PROTOCOL_VARIANTS` (other fields kept)."""
    if name not in PROTOCOL_VARIANTS:
        raise ValueError(f"unknown protocol variant {name!r}; allowed: {', '.join(PROTOCOL_VARIANTS)}")
    return dataclasses.replace(config, **PROTOCOL_VARIANTS[name].changes)


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
    # Per model, (epochs trained, test accuracy) during training when evaluate_set(test_every=...).
    curves: list[list[tuple[int, float]]] = field(default_factory=list, repr=False)
    passes: str = "fp32"  # how training and testing ran: precision[, compiled] (gmlib.first_order)

    @property
    def num_models(self) -> int:
        return len(self.accuracies)

    def __str__(self) -> str:
        # One model has no spread: "n = 1" says so where "+- 0.00" would claim a perfect one.
        if self.num_models == 1:
            accuracy = f"{100 * self.mean:.2f} % from 1 {self.config.network} model (n = 1, no spread)"
        else:
            accuracy = f"{100 * self.mean:.2f} +- {100 * self.std:.2f} % over {self.num_models} {self.config.network} models"
        return (
            f"{accuracy} "
            f"({self.config.num_epochs} epochs, augment {self.config.augment}, seed {self.seed}, "
            f"{self.seconds_per_model:.1f} s/model on {self.device}, {self.method}"
            + (")" if self.passes == "fp32" else f", {self.passes})")
        )


# The methods whose published evaluations this protocol reproduces, and the augmentation each
# paper trained its evaluation networks with (None: DC's, which depends on the dataset).
DISTILLATION_METHODS = ("dc", "dsa", "dm", "mtt")
_PAPER_EVAL_AUGMENT = {"dc": None, "dsa": "dsa", "dm": "dsa", "mtt": "dsa"}


def evaluation_augment(dataset: str, method: str) -> str:
    """The evaluation augmentation the papers used: 'dsa' after DSA, DM and MTT (their papers
    evaluate with DSA's augmentation), DC's classic 'mnist' augmentation for MNIST after DC, none
    otherwise."""
    check_one_of("method", method, DISTILLATION_METHODS)
    augment = _PAPER_EVAL_AUGMENT[method]
    if augment is not None:
        return augment
    return "mnist" if dataset.lower() == "mnist" else "none"
