"""The evaluation protocol's hyperparameters (:class:`EvalConfig`, defaults = the literature's) and
the record of one evaluation (:class:`EvalResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from torch import nn

from gmlib.augment import DEFAULT_DSA_STRATEGY, check_augment_kind, parse_dsa_strategy
from gmlib.checks import is_int

EPOCHS_WITHOUT_AUGMENTATION = 300
EPOCHS_WITH_AUGMENTATION = 1000
LR_DECAY_FACTOR = 0.1


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
