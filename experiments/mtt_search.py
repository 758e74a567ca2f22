"""Trajectory matching's MNIST / FashionMNIST hyperparameters, chosen on a validation split.

MTT's authors published settings for CIFAR and larger sets only. This search picks the two that
matter most at a small budget, the pixels' learning rate ``lr_img`` and the expert epochs matched
``expert_epochs`` (M in the paper; syn_steps N = 20 student steps stay fixed), from a small grid.
Every cell distils 1 image per class on the train split minus a validation split
(``ImageDataset.holdout``: 500 train images per class held out), then trains fresh networks on
the set and scores them on the validation images. The test set is never loaded into the search.

    OMP_NUM_THREADS=1 python experiments/mtt_search.py --dataset mnist --buffer runs/buffers/mnist_cpu \\
        --out results/mtt_search_mnist

The experts are a buffer of the same profile (``python -m gmlib experts``): they were trained on
a subset of the full train split, so some validation images were seen by the experts (not by the
distillation or the evaluated networks). Resumable: each finished cell is kept in
``<out>/results.json`` and skipped on a rerun. Prints the table and the chosen cell (the best mean
validation accuracy).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
import time
from pathlib import Path

from gmlib.book.presets import eval_config, mtt_config
from gmlib.data import load_dataset
from gmlib.evaluate import evaluate_set
from gmlib.methods.mtt import distill_mtt
from gmlib.methods.mtt_buffer import load_buffer
from gmlib.runinfo import describe_hardware, library_versions

LR_IMG = (100.0, 1000.0, 10000.0)
EXPERT_EPOCHS = (1, 2, 3)
VALIDATION_PER_CLASS = 500


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("mnist", "fashion-mnist"), required=True)
    parser.add_argument("--buffer", type=Path, required=True, help="an expert buffer of --profile for --dataset")
    parser.add_argument("--profile", default="cpu", help="the budget the chosen values are for (default cpu)")
    parser.add_argument("--iterations", type=int, default=100, help="MTT iterations per cell (default 100)")
    parser.add_argument("--models", type=int, default=5, help="networks evaluated per cell (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    data = load_dataset(args.dataset, device="cpu").holdout(VALIDATION_PER_CLASS, seed=args.seed)
    buffer = load_buffer(args.buffer, data)
    evaluation = eval_config(args.profile, args.dataset, "mtt")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    report = json.loads(path.read_text()) if path.exists() else {"cells": []}
    done = {(cell["lr_img"], cell["expert_epochs"]) for cell in report["cells"]}
    started = time.perf_counter()
    for lr_img, expert_epochs in itertools.product(LR_IMG, EXPERT_EPOCHS):
        if (lr_img, expert_epochs) in done:
            continue
        config = mtt_config(args.profile, 1, args.dataset, iterations=args.iterations, lr_img=lr_img,
                            expert_epochs=expert_epochs, eval_config=evaluation, eval_models=args.models)
        outcome = distill_mtt(data, config, buffer, seed=args.seed, device="cpu", progress=False)
        images, labels = outcome.synthetic.detached()
        result = evaluate_set(images, labels, data.test_images, data.test_labels, evaluation,
                              num_models=args.models, seed=args.seed, device="cpu")
        report["cells"].append({
            "lr_img": lr_img, "expert_epochs": expert_epochs,
            "validation_mean": 100 * result.mean, "validation_std": 100 * result.std,
            "validation_accuracies": result.accuracies, "learned_lr": outcome.synthetic.metadata["learned_lr"],
            "final_loss": outcome.history.losses[-1][0], "distill_seconds": sum(outcome.history.seconds),
            "config": config.as_dict(),
        })
        print(f"lr_img {lr_img:g}, expert_epochs {expert_epochs}: {result} on the validation split; "
              f"{outcome.summary()}", flush=True)
        report.update({
            "experiment": "mtt_search", "dataset": args.dataset, "profile": args.profile, "seed": args.seed,
            "iterations": args.iterations, "models": args.models, "validation_per_class": VALIDATION_PER_CLASS,
            "buffer": str(args.buffer), "buffer_manifest": buffer.manifest, "evaluation": evaluation.as_dict(),
            "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
            "hardware": describe_hardware("cpu"), "library_versions": library_versions(),
        })
        report.setdefault("wall_seconds", 0.0)
        report["wall_seconds"] += time.perf_counter() - started
        started = time.perf_counter()
        path.write_text(json.dumps(report, indent=2) + "\n")

    best = max(report["cells"], key=lambda cell: cell["validation_mean"])
    print(f"\n{'lr_img':>8} {'M':>3} {'validation %':>14} {'learned lr':>10} {'seconds':>8}")
    for cell in report["cells"]:
        print(f"{cell['lr_img']:>8g} {cell['expert_epochs']:>3} "
              f"{cell['validation_mean']:>8.1f} ± {cell['validation_std']:.1f} {cell['learned_lr']:>10.4f} "
              f"{cell['distill_seconds']:>8.0f}")
    print(f"\nchosen: lr_img {best['lr_img']:g}, expert_epochs {best['expert_epochs']} "
          f"({best['validation_mean']:.1f} % on the validation split); wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
