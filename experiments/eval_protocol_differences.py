"""What each detail of the evaluation protocol does to a reported accuracy (MNIST, DC's protocol).

The same committed synthetic sets are evaluated under the reference protocol (what DC's code
runs), under gmlib 0.1's protocol and under each single difference between the two (see
``gmlib.eval_config.PROTOCOL_VARIANTS``): noise among the ops, shifts of -4..4, the mean as the
scale op's fill, affine (bilinear) resampling, momentum kept at the learning-rate step, and E
epochs split in halves instead of E + 1. Every variant trains the same models (model k of seed
``--seed`` has the same initialisation and data order under every variant), so differences are
paired.

Each (set, variant, model) is one cell, saved as soon as it is done; a rerun skips finished
cells, so the run can be stopped and resumed, extended with more models, or split over
processes (``--worker i --workers k`` takes every k-th cell). Cells run in a priority order: the
reference and gmlib 0.1 on the first set to ``--models-old-new`` models, every single difference
to ``--models-first-round``, the other sets' reference and gmlib 0.1, then every variant up to
``--models``. ``--summarise`` writes ``summary.json`` (per-model accuracies, mean, std, paired
differences to the reference, seconds per model, provenance) from whatever cells exist.

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

import numpy as np
import torch

from gmlib.data import load_dataset
from gmlib.eval_config import PROTOCOL_VARIANTS, EvalConfig, protocol_variant
from gmlib.evaluate import evaluate_set
from gmlib.fileio import atomic_write_text, json_ready
from gmlib.runinfo import describe_hardware, git_commit, library_versions
from gmlib.synthetic import load_synthetic

SETS = {
    "mnist_ipc1_cpu": "results/mnist_ipc1_cpu/synthetic.pt",
    "cross_arch_convnet_200it": "results/cross_arch_mnist_ipc1/iterations200/cells/distill-convnet/synthetic.pt",
}
OLD_AND_NEW = ("reference", "gmlib-0.1")
SINGLE_DIFFERENCES = tuple(name for name in PROTOCOL_VARIANTS if name not in OLD_AND_NEW)


def plan(models: int, models_old_new: int, models_first_round: int) -> list[tuple[str, str, int]]:
    """Every (set, variant, model index) in the order the cells are worth computing."""
    first, *others = SETS
    cells: list[tuple[str, str, int]] = []

    def add(set_name: str, variants: tuple[str, ...], upto: int) -> None:
        for k in range(upto):  # model-major: every variant reaches k models before any gets k + 1
            for variant in variants:
                if (set_name, variant, k) not in cells:
                    cells.append((set_name, variant, k))

    add(first, OLD_AND_NEW, models_old_new)
    add(first, OLD_AND_NEW + SINGLE_DIFFERENCES, models_first_round)
    for set_name in others:
        add(set_name, OLD_AND_NEW, models_old_new)
    add(first, OLD_AND_NEW + SINGLE_DIFFERENCES, models)
    return cells


def cell_path(out: Path, set_name: str, variant: str, k: int) -> Path:
    return out / "cells" / set_name / variant / f"model-{k:03d}.json"


def run_cell(out: Path, set_name: str, variant: str, k: int, seed: int, data) -> None:
    syn = load_synthetic(SETS[set_name])
    config = protocol_variant(EvalConfig(augment="mnist"), variant)
    result = evaluate_set(syn.images, syn.labels, data.test_images, data.test_labels, config,
                          num_models=1, seed=seed, first_model=k, device="cpu")
    record = {"set": set_name, "variant": variant, "model": k, "seed": seed, "accuracy": result.accuracies[0],
              "seconds": result.seconds_per_model, "config": config.as_dict(), "threads": torch.get_num_threads(),
              "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    path = cell_path(out, set_name, variant, k)
    atomic_write_text(path, json.dumps(json_ready(record), indent=1))
    print(f"{set_name} {variant} model {k}: {100 * result.accuracies[0]:.2f}% in {result.seconds_per_model:.0f} s",
          flush=True)


def summarise(out: Path) -> dict:
    """Collect the finished cells into per-variant statistics and paired differences."""
    records = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*/*/model-*.json"))]
    if not records:
        raise SystemExit(f"no finished cells in {out / 'cells'}: run the experiment first")
    summary: dict = {"sets": {}}
    for set_name in SETS:
        by_variant = {}
        for variant in PROTOCOL_VARIANTS:
            cells = sorted((r for r in records if r["set"] == set_name and r["variant"] == variant),
                           key=lambda r: r["model"])
            if cells:
                by_variant[variant] = {r["model"]: r for r in cells}
        if not by_variant:
            continue
        reference = by_variant.get("reference", {})
        rows = {}
        for variant, cells in by_variant.items():
            accuracies = [cells[k]["accuracy"] for k in sorted(cells)]
            row = {"models": sorted(cells), "accuracies": accuracies, "n": len(accuracies),
                   "mean": float(np.mean(accuracies)), "std": float(np.std(accuracies)),
                   "seconds_per_model": float(np.mean([cells[k]["seconds"] for k in cells])),
                   "description": PROTOCOL_VARIANTS[variant].description}
            paired = sorted(set(cells) & set(reference))
            if variant != "reference" and paired:
                differences = [cells[k]["accuracy"] - reference[k]["accuracy"] for k in paired]
                row["paired_difference"] = {"n": len(paired), "mean": float(np.mean(differences)),
                                            "std": float(np.std(differences)),
                                            "standard_error": float(np.std(differences, ddof=1) / np.sqrt(len(paired)))
                                            if len(paired) > 1 else None}
            rows[variant] = row
        summary["sets"][set_name] = {"path": SETS[set_name], "variants": rows,
                                     "set_metadata": load_synthetic(SETS[set_name]).metadata}
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
    parser.add_argument("--models", type=int, default=20, help="models per variant in the end")
    parser.add_argument("--models-old-new", type=int, default=10, help="models for the reference and gmlib 0.1 first")
    parser.add_argument("--models-first-round", type=int, default=5, help="models per single difference first")
    parser.add_argument("--worker", type=int, default=0, help="this process's share: cells i with i %% workers == worker")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the cells")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    parser.add_argument("--summarise", action="store_true", help="only write summary.json from the finished cells")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.summarise:
        summary = summarise(out)
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
    data = load_dataset("mnist", device="cpu")
    cells = plan(args.models, args.models_old_new, args.models_first_round)
    for index, (set_name, variant, k) in enumerate(cells):
        if index % args.workers == args.worker and not cell_path(out, set_name, variant, k).exists():
            run_cell(out, set_name, variant, k, args.seed, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
