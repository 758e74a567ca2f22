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


# --------------------------------------------------------------------------------------------
# Gradient matching (chapters 02 and 05)
# --------------------------------------------------------------------------------------------

# Seed 004, Table 1: a reproduction of DC with the authors' protocol as the reproducers
# understood it (no MNIST augmentation), dataset -> ipc -> (paper, reproduction).
DC_REPRODUCTION_SEED004: dict[str, dict[int, tuple[Published, Published]]] = {
    "mnist": {
        1: (Published(91.7, 0.5, "DC paper, via seed 004 Table 1"), Published(87.1, 0.5, "Shi et al. (seed 004), Table 1")),
        10: (Published(97.4, 0.2, "DC paper, via seed 004 Table 1"), Published(95.7, 0.1, "Shi et al. (seed 004), Table 1")),
    },
    "fashion-mnist": {
        1: (Published(70.5, 0.6, "DC paper, via seed 004 Table 1"), Published(68.1, 0.2, "Shi et al. (seed 004), Table 1")),
        10: (Published(82.3, 0.4, "DC paper, via seed 004 Table 1"), Published(80.9, 0.2, "Shi et al. (seed 004), Table 1")),
    },
}

# Seed 000, Table 2: accuracy (fraction) of a model trained on the 1-image-per-class set after
# k gradient-matching iterations ("Final" = an evaluation outside the matching loop), MNIST,
# the report's own simple evaluation. network -> iteration -> accuracy.
PER_ITERATION_SEED000: dict[str, dict[int | str, float]] = {
    "mlp": {0: 0.0899, 5: 0.2122, 10: 0.4867, 15: 0.5675, 20: 0.5245, 25: 0.5489, "final": 0.5706},
    "convnet": {0: 0.0975, 5: 0.6862, 10: 0.6639, 15: 0.7303, 20: 0.6851, 25: 0.7218, "final": 0.8365},
    "lenet": {0: 0.0937, 5: 0.3105, 10: 0.4568, 15: 0.5869, 20: 0.6057, 25: 0.6225, "final": 0.4621},
}

# Seed 000, Table 3: initialisation vs accuracy (fraction) over iterations, CNN, MNIST, 1 ipc.
INIT_SEED000: dict[str, dict[int | str, float]] = {
    "noise": {0: 0.1195, 10: 0.6479, 15: 0.6758, "final": 0.8256},
    "real": {0: 0.3612, 10: 0.6384, 15: 0.6551, "final": 0.8082},
    "black": {0: 0.0982, 10: 0.0539, 15: 0.1021, "final": 0.0952},
    "white": {0: 0.0996, 10: 0.6586, 15: 0.6541, "final": 0.8027},
    "gray": {0: 0.0662, 10: 0.6028, 15: 0.6414, "final": 0.7608},
}

# Seed 001, Table 2: 10 images per class, ConvNet, real vs noise initialisation (percent) and
# training time on the distilled set vs the original set (seconds, the report's hardware).
INIT_SEED001_MNIST: dict[str, Published] = {
    "real": Published(94.39, None, "Toronto report (seed 001), Table 2"),
    "noise": Published(94.07, None, "Toronto report (seed 001), Table 2"),
}
