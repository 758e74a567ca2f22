"""What each detail of the evaluation protocol does to a reported accuracy (MNIST, DC's protocol).

Committed synthetic sets are evaluated under the reference protocol (what DC's code runs) and
under named variants of it (``gmlib.studies.protocol.STUDY_VARIANTS``). Chapter 00 shows the
single differences gmlib 0.1 had from the reference (noise among the ops, shifts of -4..4, the mean
as the scale op's fill, affine resampling, momentum kept at the learning-rate step, E epochs in
halves) on two sets; chapter 12 shows, on the set of 200 DC iterations at the papers' settings,
augmentation off, E = 300, no momentum, no weight decay, the DC variants of LeNet and AlexNet
against the originals and best-of against final-epoch reporting, and (under the cpu profile's
short protocol, where a network costs seconds) the reference's mean and spread over 5, 20 and 100
models. Differences are paired: model k is the same network under every
variant that keeps the architecture.

Each (set, variant, model) is one cell (``gmlib.studies.protocol``), saved as soon as it is done;
a rerun skips finished cells, so the run can be stopped and resumed, extended with more models, or
split over processes (``--worker i --workers k`` takes every k-th cell). Cells run in a priority
order (see :func:`plan`). ``--summarise`` writes ``summary.json`` (per-model accuracies, mean,
std, paired differences to the reference, seconds per model, provenance) from whatever cells exist.

    python experiments/eval_protocol_differences.py --out results/eval_protocol --worker 0 --workers 2
    python experiments/eval_protocol_differences.py --out results/eval_protocol --summarise
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from gmlib.book.presets import eval_config
from gmlib.eval_config import PROTOCOL_VARIANTS, EvalConfig
from gmlib.fileio import json_ready
from gmlib.runinfo import describe_hardware, git_commit, library_versions
from gmlib.studies.protocol import CHAPTER_12_VARIANTS, StudySet, run_study, summarise
from gmlib.synthetic import load_synthetic

MNIST_REFERENCE = EvalConfig(augment="mnist")  # DC's protocol for MNIST: E = 1000 with its augmentation
SETS = (
    StudySet("mnist_ipc1_cpu", "results/mnist_ipc1_cpu/synthetic.pt", MNIST_REFERENCE),
    StudySet("cross_arch_convnet_200it", "results/cross_arch_mnist_ipc1/iterations200/cells/distill-convnet/synthetic.pt",
             MNIST_REFERENCE),
    StudySet("dc_mnist_ipc1_paper", "results/dc_mnist_ipc1_paper/synthetic.pt", MNIST_REFERENCE),
    # The same set under the cpu profile's short protocol (101 epochs, ConvNet width 64, about ten
    # seconds a network here): cheap enough for the spread over 5, 20 and 100 networks.
    StudySet("dc_mnist_ipc1_paper_cpu_protocol", "results/dc_mnist_ipc1_paper/synthetic.pt",
             eval_config("cpu", "mnist", "dc")),
)
OLD_AND_NEW = ("reference", "gmlib-0.1")
SINGLE_DIFFERENCES = tuple(name for name in PROTOCOL_VARIANTS if name not in OLD_AND_NEW)
ALEXNETS = ("alexnet", "alexnet-original")  # 6-10 minutes a network on one thread here: fewer of them


def plan(models: int, models_old_new: int, models_first_round: int, models_chapter_12: int,
         models_alexnet: int, models_reference: int, models_spread: int) -> list[tuple[str, str, int]]:
    """Every (set, variant, model index) in the order the cells are worth computing: chapter 00's
    (the reference and gmlib 0.1 on the first set, every single difference, the second set, then
    every variant up to ``models``), then chapter 12's on the papers'-settings set (every variant
    and the reference to five models, the spread over ``models_spread`` networks under the cpu
    protocol, every variant but the AlexNets to ``models_chapter_12``, the AlexNets to
    ``models_alexnet``, the reference to ``models_reference``)."""
    first, second, paper, cheap = (s.name for s in SETS)
    cells: list[tuple[str, str, int]] = []

    def add(set_name: str, variants: tuple[str, ...], upto: int) -> None:
        for k in range(upto):  # model-major: every variant reaches k models before any gets k + 1
            for variant in variants:
                if (set_name, variant, k) not in cells:
                    cells.append((set_name, variant, k))

    add(first, OLD_AND_NEW, models_old_new)
    add(first, OLD_AND_NEW + SINGLE_DIFFERENCES, models_first_round)
    add(second, OLD_AND_NEW, models_old_new)
    add(first, OLD_AND_NEW + SINGLE_DIFFERENCES, models)
    add(paper, ("reference",) + CHAPTER_12_VARIANTS, min(5, models_chapter_12, models_alexnet))
    add(cheap, ("reference",), models_spread)
    add(paper, ("reference",) + tuple(v for v in CHAPTER_12_VARIANTS if v not in ALEXNETS), models_chapter_12)
    add(paper, ALEXNETS, models_alexnet)
    add(paper, ("reference",), models_reference)
    return cells


def write_summary(out: Path) -> dict:
    """``summary.json``: every set's variants (gmlib.studies.protocol.summarise), each set's
    metadata, and the provenance of the summary."""
    summary = {"sets": summarise(out)}
    for name, block in summary["sets"].items():
        block["set_metadata"] = load_synthetic(block["path"]).metadata
    commit, dirty = git_commit()
    summary["provenance"] = {
        "command": "python experiments/eval_protocol_differences.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "hardware": describe_hardware("cpu"), "versions": library_versions(), "git_commit": commit,
        "git_dirty": dirty, "written": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "note": "cells computed by several one-thread processes sharing the machine; seconds are upper bounds",
    }
    (out / "summary.json").write_text(json.dumps(json_ready(summary), indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/eval_protocol", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluated models")
    parser.add_argument("--models", type=int, default=20, help="models per chapter-00 variant in the end")
    parser.add_argument("--models-old-new", type=int, default=10, help="models for the reference and gmlib 0.1 first")
    parser.add_argument("--models-first-round", type=int, default=5, help="models per single difference first")
    parser.add_argument("--models-chapter-12", type=int, default=10, help="models per chapter-12 variant")
    parser.add_argument("--models-alexnet", type=int, default=5, help="models of the two AlexNet variants")
    parser.add_argument("--models-reference", type=int, default=20,
                        help="models of the reference on the papers'-settings set")
    parser.add_argument("--models-spread", type=int, default=100,
                        help="models of the reference under the cpu protocol (the spread over 5, 20, 100)")
    parser.add_argument("--worker", type=int, default=0, help="this process's share: cells i with i %% workers == worker")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the cells")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    parser.add_argument("--summarise", action="store_true", help="only write summary.json from the finished cells")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.summarise:
        summary = write_summary(out)
        for set_name, block in summary["sets"].items():
            for variant, row in block["variants"].items():
                paired = row.get("paired_difference")
                diff = f"  paired {100 * paired['mean']:+.2f} +- {100 * paired['std']:.2f}" if paired else ""
                print(f"{set_name:26s} {variant:16s} {100 * row['mean']:.2f} +- {100 * row['std']:.2f} "
                      f"(n = {row['n']}, {row['seconds_per_model']:.0f} s/model){diff}")
        return 0
    if not 0 <= args.worker < args.workers:
        parser.error(f"--worker must lie in [0, {args.workers}), got {args.worker}")
    torch.set_num_threads(args.threads)
    cells = plan(args.models, args.models_old_new, args.models_first_round, args.models_chapter_12,
                 args.models_alexnet, args.models_reference, args.models_spread)
    run_study(out, SETS, cells, seed=args.seed, worker=args.worker, workers=args.workers,
              log=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
