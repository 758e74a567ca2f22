"""Published numbers the book compares against, each with the table it comes from.

These are quoted, never produced by us: the book prints them in a column of their own, labelled
"published", beside the numbers our code measured.  Accuracies are in percent as printed in the
sources; ``None`` marks a cell the source leaves empty.

Names ending in ``SEED000`` ... ``SEED004`` (and "seed 00N" in the comments) number the five
source reports as in ``book/references.bib``: 000 Cartwright, 001 Shi and Chen (the Toronto
ECE1512 report), 002 Jiang et al. 2022, 003 Medvedev and D'yakonov, 004 Shi et al. (the COMP6248
reproduction of DC).  Each ``source`` string names the report by its authors and year ("n.d."
where the report states none).
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


_JIANG_T3 = "Jiang et al. 2022, Table 3"

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
# schedules, not the evaluation protocol): seed 000 Table 1 (10 epochs, lr 0.01, batch 1024).
WHOLE_SET_BY_NETWORK_MNIST: dict[str, Published] = {
    "convnet": Published(99.30, None, "Cartwright n.d., Table 1, 'CNN'"),
    "mlp": Published(97.30, None, "Cartwright n.d., Table 1"),
    "lenet": Published(98.55, None, "Cartwright n.d., Table 1"),
}

# Dataset condensation (DC) with a ConvNet, by dataset -> ipc (reference-defaults.md).
DC: dict[str, dict[int, Published]] = {
    "mnist": {1: Published(91.7, 0.5, "Zhao et al. 2021 (DC)"), 10: Published(97.4, 0.2, "Zhao et al. 2021 (DC)"),
              50: Published(98.8, 0.2, "Zhao et al. 2021 (DC)")},
    "fashion-mnist": {1: Published(70.5, 0.6, "Zhao et al. 2021 (DC)"), 10: Published(82.3, 0.4, "Zhao et al. 2021 (DC)"),
                      50: Published(83.6, 0.4, "Zhao et al. 2021 (DC)")},
}


# Differentiable Siamese augmentation (DSA) with a ConvNet, by dataset -> ipc (the DSA paper's
# MNIST and FashionMNIST numbers as reference-defaults.md lists them).
_DSA = "Zhao and Bilen 2021 (DSA)"
DSA: dict[str, dict[int, Published]] = {
    "mnist": {1: Published(88.7, 0.6, _DSA), 10: Published(97.8, 0.1, _DSA), 50: Published(99.2, 0.1, _DSA)},
    "fashion-mnist": {1: Published(70.6, 0.6, _DSA), 10: Published(84.6, 0.3, _DSA), 50: Published(88.7, 0.2, _DSA)},
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
        1: (Published(91.7, 0.5, "DC paper, via Shi et al. n.d., Table 1"), Published(87.1, 0.5, "Shi et al. n.d., Table 1")),
        10: (Published(97.4, 0.2, "DC paper, via Shi et al. n.d., Table 1"), Published(95.7, 0.1, "Shi et al. n.d., Table 1")),
    },
    "fashion-mnist": {
        1: (Published(70.5, 0.6, "DC paper, via Shi et al. n.d., Table 1"), Published(68.1, 0.2, "Shi et al. n.d., Table 1")),
        10: (Published(82.3, 0.4, "DC paper, via Shi et al. n.d., Table 1"), Published(80.9, 0.2, "Shi et al. n.d., Table 1")),
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
    "real": Published(94.39, None, "Shi and Chen 2022 (Toronto report), Table 2"),
    "noise": Published(94.07, None, "Shi and Chen 2022 (Toronto report), Table 2"),
}

# Seed 001, Tables 7 (MNIST) and 8 (CIFAR-10): gradient matching against distribution matching,
# each from real images and from noise, ConvNet (percent, one number each; the report states 10
# images per class for its gradient matching and none for DM, and evaluates with its own short
# training runs); "whole set" is the report's undistilled 20-epoch run.
_TORONTO_T7 = "Shi and Chen 2022 (Toronto report), Table 7"
_TORONTO_T8 = "Shi and Chen 2022 (Toronto report), Table 8"
GM_VS_DM_SEED001: dict[str, dict[str, Published]] = {
    "mnist": {"whole set": Published(99.06, None, _TORONTO_T7),
              "gm real": Published(94.39, None, _TORONTO_T7), "gm noise": Published(94.07, None, _TORONTO_T7),
              "dm real": Published(94.68, None, _TORONTO_T7), "dm noise": Published(94.27, None, _TORONTO_T7)},
    "cifar10": {"whole set": Published(72.34, None, _TORONTO_T8),
                "gm real": Published(39.19, None, _TORONTO_T8), "gm noise": Published(36.39, None, _TORONTO_T8),
                "dm real": Published(44.01, None, _TORONTO_T8), "dm noise": Published(43.55, None, _TORONTO_T8)},
}


# --------------------------------------------------------------------------------------------
# Generative teaching networks (chapter 10): Medvedev & D'yakonov (seed 003), MNIST, ConvNet
# student unless a column names another network. Quoted exactly: method labels, accuracy
# (mean +- std, percent), teacher parameter count and GPU memory (MiB, "≈" in the source) as
# printed. Figure 7 is a plot without printed values, so it has no entry here.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedGTNRow:
    """One row of seed 003's Tables II-IV: method as printed, accuracy, parameters, GPU MiB."""

    method: str
    accuracy: Published
    params: str
    gpu_mib: float


def _seed003_row(table: str, method: str, mean: float, std: float, params: str, gpu_mib: float) -> PublishedGTNRow:
    return PublishedGTNRow(method, Published(mean, std, f"Medvedev and D'yakonov n.d., Table {table}"), params, gpu_mib)


# Table II: ipc 10, ic 1, N 10, K 110, zeta_theta 10, k 64.
GTN_SEED003_TABLE2: tuple[PublishedGTNRow, ...] = (
    _seed003_row("II", "GM + DD", 95.6, 0.1, "78.4 K", 2390),
    _seed003_row("II", "GM + DD (not per class)", 86.9, 1.5, "78.4 K", 2370),
    _seed003_row("II", "GM + GTN-lrn", 95.2, 0.1, "1.646 M", 2454),
    _seed003_row("II", "GM + GTN-lrn (not per class)", 93.4, 0.3, "1.646 M", 2434),
)

# Table III: defaults k 64, ipc 50, K 35, N 10, zeta_theta 10 (a row's parentheses override them).
GTN_SEED003_TABLE3: tuple[PublishedGTNRow, ...] = (
    _seed003_row("III", "GM + GTN-lrn (k = 16, ipc = 100)", 94.2, 0.4, "172.2 K", 4192),
    _seed003_row("III", "GM + GTN-lrn (k = 32, K = 50)", 95.9, 0.2, "449.7 K", 3610),
    _seed003_row("III", "GM + GTN-lrn (K = 50)", 96.4, 0.1, "1.672 M", 3640),
    _seed003_row("III", "GM + GTN-lrn (k = 128, K = 50)", 96.8, 0.1, "6.533 M", 3770),
    _seed003_row("III", "GM + GTN-rnd (ipc = 10, K = 110)", 29.0, 6.1, "1.640 M", 2454),
)

# Table IV: K 1080, zeta_theta 50, ipc 10, N 10 (Neumann terms).
GTN_SEED003_TABLE4: tuple[PublishedGTNRow, ...] = (
    _seed003_row("IV", "IFT + DD (K = 500)", 93.5, 0.5, "78.4 K", 2726),
    _seed003_row("IV", "IFT + GTN-lrn (ζ_θ = 10)", 92.4, 0.2, "1.646 M", 2726),
    _seed003_row("IV", "IFT + GTN-rnd (ζ_θ = 10)", 90.9, 0.3, "1.640 M", 2726),
)

_SEED003_T6 = "Medvedev and D'yakonov n.d., Table VI"
# Table VI: sets distilled with a ConvNet student, evaluated on other networks (with test
# augmentation); method -> network -> accuracy.
GTN_SEED003_TABLE6: dict[str, dict[str, Published]] = {
    "GM+DD": {"lenet": Published(94.1, 0.6, _SEED003_T6), "alexnet": Published(95.0, 0.2, _SEED003_T6),
              "vgg11": Published(95.8, 0.3, _SEED003_T6), "mlp": Published(88.6, 0.4, _SEED003_T6)},
    "GM+GTN-lrn": {"lenet": Published(95.5, 0.3, _SEED003_T6), "alexnet": Published(96.7, 0.2, _SEED003_T6),
                   "vgg11": Published(97.4, 0.1, _SEED003_T6), "mlp": Published(86.8, 0.3, _SEED003_T6)},
    "IFT+DD": {"lenet": Published(74.0, 7.8, _SEED003_T6), "alexnet": Published(68.6, 8.9, _SEED003_T6),
               "vgg11": Published(86.5, 1.6, _SEED003_T6), "mlp": Published(50.9, 8.3, _SEED003_T6)},
    "IFT+GTN-lrn": {"lenet": Published(91.5, 1.0, _SEED003_T6), "alexnet": Published(82.5, 14.9, _SEED003_T6),
                    "vgg11": Published(93.0, 0.4, _SEED003_T6), "mlp": Published(79.9, 0.6, _SEED003_T6)},
    "IFT+GTN-rnd": {"lenet": Published(88.3, 2.3, _SEED003_T6), "alexnet": Published(85.3, 3.9, _SEED003_T6),
                    "vgg11": Published(92.1, 0.4, _SEED003_T6), "mlp": Published(74.4, 1.1, _SEED003_T6)},
}


# --------------------------------------------------------------------------------------------
# Chapter 03, what, how and where to match: Jiang et al. (seed 002), ConvNet, test accuracy %,
# 2 synthetic sets x 50 networks. Seed 003's Table II (per class vs not) is GTN_SEED003_TABLE2.
# --------------------------------------------------------------------------------------------

_JIANG_T1 = "Jiang et al. 2022, Table 1"
_JIANG_T2 = "Jiang et al. 2022, Table 2 (SVHN, 1 image per class, multi-level)"


def _levels(intra: tuple, inter: tuple, interleaved: tuple, multi: tuple) -> dict[str, Published]:
    cells = {"intra": intra, "inter": inter, "interleaved": interleaved, "multi": multi}
    return {level: Published(mean, std, _JIANG_T1) for level, (mean, std) in cells.items()}


# Table 1: matching levels (lambda = number of classes; d1 distance, fixed inner steps);
# dataset -> ipc -> level -> accuracy.
LEVELS_SEED002_TABLE1: dict[str, dict[int, dict[str, Published]]] = {
    "mnist": {1: _levels((91.7, 0.5), (88.8, 0.7), (91.7, 0.4), (90.9, 0.5)),
              10: _levels((97.4, 0.2), (96.9, 0.1), (97.1, 0.1), (97.6, 0.1))},
    "fashion-mnist": {1: _levels((70.5, 0.6), (70.2, 0.7), (70.6, 0.6), (70.6, 0.7)),
                      10: _levels((82.3, 0.4), (82.4, 0.3), (83.1, 0.3), (84.4, 0.3))},
    "svhn": {1: _levels((31.2, 1.4), (29.8, 0.7), (30.8, 1.6), (32.9, 1.2)),
             10: _levels((76.1, 0.6), (72.7, 1.0), (75.4, 0.7), (75.5, 0.7))},
    "cifar10": {1: _levels((28.3, 0.5), (29.7, 0.7), (28.6, 0.7), (29.7, 0.7)),
                10: _levels((44.9, 0.5), (46.7, 0.5), (45.9, 0.6), (48.6, 0.5))},
}

# Table 2: distance functions (gmlib.distances names), SVHN at 1 image per class, multi-level.
DISTANCES_SEED002_TABLE2: dict[str, Published] = {
    "d1": Published(32.9, 1.2, _JIANG_T2),
    "d2": Published(23.6, 2.1, _JIANG_T2),
    "d3": Published(24.3, 1.8, _JIANG_T2),
    "100*d4": Published(23.5, 1.4, _JIANG_T2),
    "d1+d2": Published(34.5, 1.9, _JIANG_T2),
    "d1+d3": Published(34.1, 2.0, _JIANG_T2),
    "d1+100*d4": Published(34.0, 1.4, _JIANG_T2),
}


def _ablation(dc: tuple, m: tuple, md: tuple, mdo: tuple | None, mda: tuple | None) -> dict[str, Published | None]:
    cells = {"dc": dc, "M": m, "MD": md, "MDO": mdo, "MDA": mda}
    return {k: None if v is None else Published(v[0], v[1], _JIANG_T3) for k, v in cells.items()}


# Table 3: ablation. "dc" = the DC baseline column, M = multi-level, D = d1 + d2 distance,
# O = update theta until overfitting, A = the schedule zeta(t) of eq. 12 ("-" at 1 ipc: None).
# dataset -> ipc -> setting -> accuracy. Random/herding/whole set: BASELINES and WHOLE_SET above.
ABLATION_SEED002_TABLE3: dict[str, dict[int, dict[str, Published | None]]] = {
    "mnist": {1: _ablation((91.7, 0.5), (90.9, 0.5), (91.9, 0.4), None, None),
              10: _ablation((97.4, 0.2), (97.6, 0.1), (97.9, 0.1), (97.9, 0.1), (97.9, 0.2)),
              50: _ablation((98.8, 0.2), (98.0, 0.1), (98.6, 0.1), (98.6, 0.1), (98.5, 0.1))},
    "fashion-mnist": {1: _ablation((70.5, 0.6), (70.6, 0.7), (71.4, 0.6), None, None),
                      10: _ablation((82.3, 0.4), (84.4, 0.3), (85.4, 0.3), (84.6, 0.3), (84.2, 0.3)),
                      50: _ablation((83.6, 0.4), (87.8, 0.2), (87.4, 0.2), (87.9, 0.2), (87.9, 0.2))},
    "svhn": {1: _ablation((31.2, 1.4), (32.9, 1.2), (34.5, 1.9), None, None),
             10: _ablation((76.1, 0.6), (75.5, 0.7), (75.9, 0.7), (76.2, 0.7), (75.9, 0.7)),
             50: _ablation((82.3, 0.3), (82.2, 0.2), (82.9, 0.2), (83.8, 0.3), (83.2, 0.3))},
    "cifar10": {1: _ablation((28.3, 0.5), (29.5, 0.7), (30.0, 0.6), None, None),
                10: _ablation((44.9, 0.5), (48.6, 0.5), (49.5, 0.5), (49.9, 0.6), (50.2, 0.6)),
                50: _ablation((53.9, 0.5), (58.5, 0.5), (58.6, 0.4), (60.0, 0.4), (58.3, 0.5))},
    "cifar100": {1: _ablation((12.8, 0.3), (12.4, 0.3), (12.7, 0.4), None, None),
                 10: _ablation((25.2, 0.3), (30.8, 0.3), (28.0, 0.4), (29.5, 0.3), (31.1, 0.3))},
}

# Section 4.4: network updates per iteration at 10 outer steps (ipc 10): DC's fixed 50 epochs vs
# the schedule zeta(t).
UPDATES_PER_ITERATION_SEED002 = {"fixed": 450, "schedule": 190}


# --------------------------------------------------------------------------------------------
# Chapter 01, the bi-level formulation: Medvedev & D'yakonov (seed 003) Table I (time-limited
# distillation, ~15 minutes per method; K 1000, N 10 by default), MNIST, ConvNet student, rows
# quoted exactly as printed. Their Table IV (IFT) is GTN_SEED003_TABLE4 above.
# --------------------------------------------------------------------------------------------

BILEVEL_SEED003_TABLE1: tuple[PublishedGTNRow, ...] = (
    _seed003_row("I", "GM + DD (K = 60, ζ_θ = 50)", 94.9, 0.1, "78.4 K", 2390),
    _seed003_row("I", "unroll + DD (ic = 1)", 88.4, 0.3, "78.4 K", 4432),
    _seed003_row("I", "unroll + DD (ic = 10)", 79.2, 0.7, "784 K", 4426),
    _seed003_row("I", "unroll + GTN-lrn (ic = 1)", 92.0, 0.3, "1.646 M", 4480),
    _seed003_row("I", "unroll + GTN-lrn (ic = 10)", 91.6, 0.5, "1.704 M", 4480),
    _seed003_row("I", "unroll + GTN-rnd", 91.7, 0.3, "1.640 M", 4480),
)


# --------------------------------------------------------------------------------------------
# Chapter 04 (Hessian terms)
# --------------------------------------------------------------------------------------------

# Seed 000, Table 4 ("Model Accuracy Comparison"), MNIST, 1 image per class, as printed
# (fractions): the whole training set ("Full"), the synthetic set ("Syn") and the synthetic set
# learned with the Hessian addition to the match loss ("Syn Hess."). network -> row -> accuracy.
HESSIAN_SEED000: dict[str, dict[str, float]] = {
    "convnet": {"full": 0.993, "syn": 0.8365, "syn_hess": 0.8563},
    "mlp": {"full": 0.973, "syn": 0.5706, "syn_hess": 0.6359},
    "lenet": {"full": 0.9855, "syn": 0.4621, "syn_hess": 0.1189},
}


# --------------------------------------------------------------------------------------------
# Chapter 06 (networks and cross-architecture generalisation)
# --------------------------------------------------------------------------------------------
# Matrices are source (the network the set was distilled with, "C") -> target (the network
# trained on it, "T") -> accuracy in percent, MNIST, 1 image per class unless noted. Network
# keys are gmlib.networks names; "vgg11"/"resnet18" are the sources' "VGG"/"ResNet".

_JIANG_T4 = "Jiang et al. 2022, Table 4 (Ours-MD)"
_CROSS_ARCH_COLUMNS = ("mlp", "convnet", "lenet", "alexnet", "vgg11", "resnet18")


def _matrix_row(source: str, cells: tuple[tuple[float, float], ...], columns: tuple[str, ...]) -> dict[str, Published]:
    return {target: Published(mean, std, source) for target, (mean, std) in zip(columns, cells)}


# Seed 002, Table 4: cross-architecture accuracy of their multi-level + d1+d2 method (Ours-MD).
CROSS_ARCH_SEED002_TABLE4: dict[str, dict[str, Published]] = {
    "mlp": _matrix_row(_JIANG_T4, ((67.3, 1.1), (71.2, 1.6), (70.5, 8.5), (45.1, 12.4), (46.9, 4.2), (83.2, 2.1)), _CROSS_ARCH_COLUMNS),
    "convnet": _matrix_row(_JIANG_T4, ((72.7, 1.6), (91.9, 0.4), (84.1, 2.2), (84.1, 2.4), (84.3, 1.5), (90.4, 0.4)), _CROSS_ARCH_COLUMNS),
    "lenet": _matrix_row(_JIANG_T4, ((62.8, 1.6), (87.2, 0.7), (81.8, 1.9), (80.8, 3.6), (75.1, 2.5), (88.1, 1.1)), _CROSS_ARCH_COLUMNS),
    "alexnet": _matrix_row(_JIANG_T4, ((61.3, 1.6), (87.6, 0.8), (81.4, 2.5), (81.2, 3.3), (77.7, 2.1), (87.9, 1.0)), _CROSS_ARCH_COLUMNS),
    "vgg11": _matrix_row(_JIANG_T4, ((63.8, 2.3), (89.3, 0.7), (82.4, 2.4), (82.5, 2.8), (81.1, 2.2), (89.4, 0.8)), _CROSS_ARCH_COLUMNS),
    "resnet18": _matrix_row(_JIANG_T4, ((62.2, 1.8), (82.3, 2.3), (80.4, 3.2), (80.1, 2.5), (75.7, 3.2), (87.4, 1.0)), _CROSS_ARCH_COLUMNS),
}

# Seed 004, Table 2, the numbers in brackets: DC's own cross-architecture matrix (Zhao et al.),
# as quoted by the reproduction (its MLP/ConvNet/LeNet/AlexNet corner; DC used its modified LeNet
# and AlexNet, gmlib's "lenet" and "alexnet").
_DC_VIA_004 = "DC paper (Zhao et al. 2021), via Shi et al. n.d., Table 2"
_COLUMNS_004 = ("mlp", "convnet", "lenet", "alexnet")
CROSS_ARCH_DC_PAPER: dict[str, dict[str, Published]] = {
    "mlp": _matrix_row(_DC_VIA_004, ((70.5, 1.2), (63.9, 6.5), (77.3, 5.8), (70.9, 11.6)), _COLUMNS_004),
    "convnet": _matrix_row(_DC_VIA_004, ((69.6, 1.6), (91.7, 0.5), (85.3, 1.8), (85.1, 3.0)), _COLUMNS_004),
    "lenet": _matrix_row(_DC_VIA_004, ((71.0, 1.6), (90.3, 1.2), (85.0, 1.7), (84.7, 2.4)), _COLUMNS_004),
    "alexnet": _matrix_row(_DC_VIA_004, ((72.1, 1.7), (87.5, 1.6), (84.0, 2.8), (82.7, 2.9)), _COLUMNS_004),
}

# Seed 004, Table 2, the numbers outside the brackets: the reproduction with the ORIGINAL LeNet
# and AlexNet architectures (gmlib's "lenet_original" and "alexnet_original"), keyed here by the
# network names the reproduction printed.
_SHI_T2 = "Shi et al. n.d., Table 2 (original LeNet/AlexNet)"
CROSS_ARCH_SEED004_TABLE2: dict[str, dict[str, Published]] = {
    "mlp": _matrix_row(_SHI_T2, ((66.8, 0.7), (68.5, 2.2), (10.9, 3.0), (10.3, 3.6)), _COLUMNS_004),
    "convnet": _matrix_row(_SHI_T2, ((72.8, 1.0), (87.7, 0.7), (9.6, 2.8), (11.7, 2.9)), _COLUMNS_004),
    "lenet": _matrix_row(_SHI_T2, ((47.6, 3.6), (53.8, 5.4), (11.7, 3.4), (10.4, 2.0)), _COLUMNS_004),
    "alexnet": _matrix_row(_SHI_T2, ((21.2, 4.2), (62.3, 3.4), (25.0, 10.1), (19.5, 5.9)), _COLUMNS_004),
}

# Seed 004, Table 3: the reproduction's LeNet and AlexNet rows rerun with DC's modified LeNet and
# AlexNet (gmlib's "lenet" and "alexnet"); the columns are still the report's networks.
_SHI_T3 = "Shi et al. n.d., Table 3 (DC's LeNet/AlexNet)"
CROSS_ARCH_SEED004_TABLE3: dict[str, dict[str, Published]] = {
    "lenet": _matrix_row(_SHI_T3, ((74.3, 0.9), (82.9, 1.2), (70.8, 8.5), (75.5, 1.1)), _COLUMNS_004),
    "alexnet": _matrix_row(_SHI_T3, ((75.4, 0.6), (82.9, 1.5), (73.7, 3.3), (75.6, 1.5)), _COLUMNS_004),
}

# Seed 001, Table 3: ConvNet-distilled sets of 10 images per class evaluated on ConvNet and LeNet
# (their own 20-epoch cosine-schedule training), percent. dataset -> init -> target -> accuracy.
_TORONTO_T3 = "Shi and Chen 2022 (Toronto report), Table 3"
CROSS_ARCH_SEED001_TABLE3: dict[str, dict[str, dict[str, Published]]] = {
    "mnist": {
        "real": {"convnet": Published(94.39, None, _TORONTO_T3), "lenet": Published(88.27, None, _TORONTO_T3)},
        "noise": {"convnet": Published(94.07, None, _TORONTO_T3), "lenet": Published(84.67, None, _TORONTO_T3)},
    },
    "cifar10": {
        "real": {"convnet": Published(38.50, None, _TORONTO_T3), "lenet": Published(25.83, None, _TORONTO_T3)},
        "noise": {"convnet": Published(35.37, None, _TORONTO_T3), "lenet": Published(24.24, None, _TORONTO_T3)},
    },
}

# Seed 001, Table 4: ConvNet depth as a neural-architecture-search proxy on MNIST (width 128,
# 20 epochs, cosine schedule): depth -> (accuracy on the original set, on the distilled set).
# Depth 3 was not run (it is the distillation network).
_TORONTO_T4 = "Shi and Chen 2022 (Toronto report), Table 4"
NAS_SEED001_TABLE4: dict[int, tuple[Published, Published]] = {
    1: (Published(98.11, None, _TORONTO_T4), Published(83.81, None, _TORONTO_T4)),
    2: (Published(98.79, None, _TORONTO_T4), Published(91.27, None, _TORONTO_T4)),
    4: (Published(99.26, None, _TORONTO_T4), Published(94.67, None, _TORONTO_T4)),
}

# Chapter 07, augmentation at distillation vs at evaluation: Medvedev & D'yakonov (seed 003)
# Table V, MNIST, ConvNet, ipc 10, random crop and rotation. Row (method + teacher, with the
# settings the table prints beside it) -> column: "test" = augmentation only when training the
# student on the synthetic set, "train" = only during distillation (on the real batches), "test+train"
# = both.
_SEED003_T5 = "Medvedev and D'yakonov n.d., Table V"
AUGMENTATION_SEED003_TABLE5: dict[str, dict[str, Published]] = {
    "GM+DD (ic = 1, K = 110)": {"test": Published(96.1, 0.4, _SEED003_T5), "train": Published(94.8, 0.1, _SEED003_T5),
                                "test+train": Published(93.9, 0.5, _SEED003_T5)},
    "GM+GTN-lrn (k = 128, ipc = 50, K = 50)": {"test": Published(97.4, 0.1, _SEED003_T5),
                                               "train": Published(96.2, 0.2, _SEED003_T5),
                                               "test+train": Published(95.5, 0.4, _SEED003_T5)},
    "IFT+DD (zeta_theta = 50, K = 500)": {"test": Published(92.3, 0.9, _SEED003_T5),
                                          "train": Published(91.4, 0.5, _SEED003_T5),
                                          "test+train": Published(89.2, 1.5, _SEED003_T5)},
    "IFT+GTN-lrn": {"test": Published(93.0, 0.2, _SEED003_T5), "train": Published(91.4, 0.3, _SEED003_T5),
                    "test+train": Published(91.4, 0.4, _SEED003_T5)},
    "IFT+GTN-rnd": {"test": Published(92.2, 0.3, _SEED003_T5), "train": Published(89.7, 0.3, _SEED003_T5),
                    "test+train": Published(90.9, 0.6, _SEED003_T5)},
}

# Chapter 09, gradient matching against trajectory matching: seed 001 (Shi and Chen, the Toronto
# report) Table 6. CIFAR-10, 10 images per class, ConvNet, each distilled set evaluated by training
# a ConvNet for 20 epochs (the report's own protocol); MTT from 10 experts x 20 epochs, 30 student
# steps matching 2 expert epochs, start before epoch 15, 1000 iterations. Percent, one number per cell.
_TORONTO_T6 = "Shi and Chen 2022 (Toronto report), Table 6"
GM_VS_MTT_SEED001: dict[str, dict[str, Published]] = {
    "cifar10": {"whole set": Published(72.34, None, _TORONTO_T6),
                "gm real": Published(39.19, None, _TORONTO_T6), "gm noise": Published(36.39, None, _TORONTO_T6),
                "mtt real": Published(45.75, None, _TORONTO_T6), "mtt noise": Published(35.97, None, _TORONTO_T6)},
}

# Chapter 11, the training time a distilled set saves: seed 001 (Shi and Chen, the Toronto report)
# Table 2. A ConvNet trained on the whole training set ("original") and on a set distilled by
# gradient matching with 10 images per class from real images or from noise (20 epochs, batch 256,
# cosine schedule from lr 0.01; the report's unstated hardware). dataset -> row -> (test accuracy
# in percent, training time in seconds as printed).
_TORONTO_T2 = "Shi and Chen 2022 (Toronto report), Table 2"
TRAINING_TIME_SEED001_TABLE2: dict[str, dict[str, tuple[Published, float]]] = {
    "mnist": {"original": (Published(99.06, None, _TORONTO_T2), 259.7),
              "distilled, real init": (Published(94.39, None, _TORONTO_T2), 5.3),
              "distilled, noise init": (Published(94.07, None, _TORONTO_T2), 5.2)},
    "cifar10": {"original": (Published(72.34, None, _TORONTO_T2), 255.5),
                "distilled, real init": (Published(38.50, None, _TORONTO_T2), 21.7),
                "distilled, noise init": (Published(35.37, None, _TORONTO_T2), 21.6)},
}
