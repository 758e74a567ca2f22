"""Published numbers the book compares against, each with the table it comes from.

These are quoted, never produced by us: the book prints them in a column of their own, labelled
"published", beside the numbers our code measured.  Accuracies are in percent as printed in the
sources; ``None`` marks a cell the source leaves empty.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """One published accuracy: mean (and std when given), in percent, with its source."""

    mean: float
    std: float | None
    source: str

    def __str__(self) -> str:
        # ':g' keeps the digits the source printed (98.55 stays 98.55, 99.30 prints as 99.3).
        return f"{self.mean:g} ± {self.std:g}" if self.std is not None else f"{self.mean:g}"


_JIANG_T3 = "Jiang et al. (seed 002), Table 3"

# Coreset baselines and whole-set accuracy, ConvNet, by dataset -> method -> ipc.
BASELINES: dict[str, dict[str, dict[int, Published]]] = {
    "mnist": {
        "random": {1: Published(64.9, 3.5, _JIANG_T3), 10: Published(95.1, 0.9, _JIANG_T3), 50: Published(97.9, 0.2, _JIANG_T3)},
        "herding": {1: Published(89.2, 1.6, _JIANG_T3), 10: Published(93.7, 0.3, _JIANG_T3), 50: Published(94.8, 0.2, _JIANG_T3)},
    },
    "fashion-mnist": {
        "random": {1: Published(51.4, 3.8, _JIANG_T3), 10: Published(73.8, 0.7, _JIANG_T3), 50: Published(82.5, 0.7, _JIANG_T3)},
        "herding": {1: Published(67.0, 1.9, _JIANG_T3), 10: Published(71.1, 0.7, _JIANG_T3), 50: Published(71.9, 0.8, _JIANG_T3)},
    },
}

WHOLE_SET: dict[str, Published] = {
    "mnist": Published(99.6, 0.0, _JIANG_T3),
    "fashion-mnist": Published(93.5, 0.1, _JIANG_T3),
}

# Whole-set accuracy per network on MNIST from the course reports (their own short training
# schedules, not the evaluation protocol): seed 000 Table 1 (10 epochs, lr 0.01, batch 1024) and
# seed 001 Table 1 (ConvNet, 20 epochs, cosine schedule, with FLOPs counted by 'flopth').
WHOLE_SET_BY_NETWORK_MNIST: dict[str, Published] = {
    "convnet": Published(99.30, None, "Cartwright (seed 000), Table 1, 'CNN'"),
    "mlp": Published(97.30, None, "Cartwright (seed 000), Table 1"),
    "lenet": Published(98.55, None, "Cartwright (seed 000), Table 1"),
}
CONVNET_MNIST_SEED001 = Published(99.06, None, "Toronto report (seed 001), Table 1 (48.90 M FLOPs per image)")
CONVNET_MNIST_FLOPS_SEED001 = 48.90e6  # "Model FLOPs" per image, as the report counted them with flopth

# Dataset condensation (DC) with a ConvNet, by dataset -> ipc (reference-defaults.md).
DC: dict[str, dict[int, Published]] = {
    "mnist": {1: Published(91.7, 0.5, "Zhao et al. 2021 (DC)"), 10: Published(97.4, 0.2, "Zhao et al. 2021 (DC)"),
              50: Published(98.8, 0.2, "Zhao et al. 2021 (DC)")},
    "fashion-mnist": {1: Published(70.5, 0.6, "Zhao et al. 2021 (DC)"), 10: Published(82.3, 0.4, "Zhao et al. 2021 (DC)"),
                      50: Published(83.6, 0.4, "Zhao et al. 2021 (DC)")},
}


def lookup(table: dict, *keys) -> Published | None:
    """``table[k1][k2]...`` or None when the source has no such cell."""
    for key in keys:
        if not isinstance(table, dict) or key not in table:
            return None
        table = table[key]
    return table
