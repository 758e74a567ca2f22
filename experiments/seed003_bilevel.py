"""Seed 003 (Medvedev & D'yakonov) Tables I and IV at a CPU budget: unroll vs IFT on MNIST.

Every method distils 10 images per class of MNIST from noise for the same wall-clock budget (the
paper gives each method about 15 minutes), then 'eval models' fresh ConvNets are trained on the
result with the evaluation protocol of gmlib.evaluate. Rows like the paper's: method, accuracy
(mean +- std over the evaluation models), learned parameters, peak memory and time, with the
published row beside ours.

    python experiments/seed003_bilevel.py --profile cpu --seed 0 --out results/seed003_bilevel

Writes ``<out>/seed003_bilevel_<profile>.json`` (rows, configs, provenance) and prints a table.
``--seconds`` replaces the profile's time per method, ``--methods`` runs some rows only, and
``--keep`` keeps each method's run folder (``<out>/<method slug>/``: synthetic set with its
provenance, history, checkpoint), which also makes the distillations resumable:

    python experiments/seed003_bilevel.py --profile cpu --seconds 900 --methods "unroll + DD (ic = 1)" "IFT + DD" \
        --keep --out results/seed003_bilevel_900s

Timings on a shared CPU are upper bounds. Memory on a CPU is the process's resident set: the
absolute peak includes the interpreter and MNIST, so the column that compares methods is the
growth during the distillation loop ("added MiB"); the paper's numbers are GPU MiB.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

from gmlib.book.published import BILEVEL_SEED003_TABLE1, GTN_SEED003_TABLE4
from gmlib.book.stored_runs import row_folder_name
from gmlib.data import load_dataset
from gmlib.eval_config import EvalConfig
from gmlib.evaluate import evaluate_set
from gmlib.memory import track_peak_memory
from gmlib.methods.bilevel import (
    ImplicitConfig,
    UnrollConfig,
    distill_implicit,
    distill_unrolled,
)
from gmlib.runinfo import describe_hardware, library_versions, make_provenance
from gmlib.synthetic import save_synthetic

# Per profile: ConvNet width (distillation and evaluation), real batch, seconds per method,
# the cap on outer steps (the paper's K), IFT student steps (zeta_theta) and the evaluation
# (models, SGD steps per model as the paper counts them: 1000; epochs follow from the set size).
BUDGETS = {
    "ci": dict(width=8, batch_real=32, seconds=5.0, unroll_k=3, ift_k=3, zeta=5, eval_models=2, eval_steps=10,
               test_size=500),
    "cpu": dict(width=16, batch_real=256, seconds=150.0, unroll_k=1000, ift_k=500, zeta=50, eval_models=5,
                eval_steps=300, test_size=None),
    "gpu": dict(width=128, batch_real=256, seconds=900.0, unroll_k=1000, ift_k=500, zeta=50, eval_models=15,
                eval_steps=1000, test_size=None),
}
IPC = 10
PUBLISHED = {"unroll + DD (ic = 1)": BILEVEL_SEED003_TABLE1[1], "unroll + DD (ic = 10)": BILEVEL_SEED003_TABLE1[2],
             "IFT + DD": GTN_SEED003_TABLE4[0]}


def published_cells(method: str) -> dict:
    row = PUBLISHED.get(method)
    if row is None:
        return {"published_method": None, "published_accuracy": None, "published_params": None,
                "published_gpu_mib": None}
    return {"published_method": f"{row.method} ({row.accuracy.source})", "published_accuracy": str(row.accuracy),
            "published_params": row.params, "published_gpu_mib": row.gpu_mib}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/seed003_bilevel"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-init", default="noise", help="start of the synthetic images (gmlib.synthetic)")
    parser.add_argument("--seconds", type=float, default=None, help="distillation seconds per method (default: the profile's)")
    parser.add_argument("--methods", nargs="+", choices=sorted(PUBLISHED), default=None, metavar="METHOD",
                        help=f"the rows to run (default all: {', '.join(PUBLISHED)})")
    parser.add_argument("--keep", action="store_true", help="keep each method's run folder under --out (resumable)")
    args = parser.parse_args(argv)
    budget = dict(BUDGETS[args.profile])
    if args.seconds is not None:
        budget["seconds"] = args.seconds
    started = time.perf_counter()
    dataset = load_dataset("mnist", device=args.device)
    common = dict(ipc=IPC, batch_real=budget["batch_real"], image_init=args.image_init, init_mode="random",
                  network_kwargs={"width": budget["width"]}, time_limit_s=budget["seconds"])
    runs = [
        ("unroll + DD (ic = 1)", UnrollConfig(iterations=budget["unroll_k"], inner_steps=10, synthetic_batches=1,
                                              **{**common, "ipc": IPC})),
        ("unroll + DD (ic = 10)", UnrollConfig(iterations=budget["unroll_k"], inner_steps=10, synthetic_batches=10,
                                               **common)),
        ("IFT + DD", ImplicitConfig(iterations=budget["ift_k"], inner_steps=budget["zeta"], neumann_terms=3,
                                    neumann_alpha=0.1, **common)),
    ]
    if args.methods is not None:
        runs = [(method, config) for method, config in runs if method in args.methods]
    eval_config = EvalConfig(network_kwargs={"width": budget["width"]}, test_size=budget["test_size"])
    rows = []

    def evaluate(images, labels):
        # The same number of SGD steps for every set: a set of 1000 images takes 4 steps per epoch.
        steps_per_epoch = -(-len(labels) // eval_config.batch_size)
        config = dataclasses.replace(eval_config, epochs=max(1, budget["eval_steps"] // steps_per_epoch))
        return evaluate_set(images, labels, dataset.test_images, dataset.test_labels, config,
                            num_models=budget["eval_models"], seed=args.seed, device=args.device)

    # Reference row: the random real images the distilled sets are compared with (no learning).
    real_images, real_labels = dataset.subset(IPC, seed=args.seed)
    result = evaluate(real_images, real_labels)
    rows.append({"method": "random real subset (no distillation)", "accuracy_mean": 100 * result.mean,
                 "accuracy_std": 100 * result.std, "accuracies": result.accuracies,
                 "learned_parameters": 0, "iterations": 0, "distill_seconds": 0.0, "peak_mib": None,
                 "added_mib": None, "memory_kind": None, **published_cells("")})
    print(f"{rows[-1]['method']}: {result}", flush=True)
    for method, config in runs:
        distill = distill_unrolled if isinstance(config, UnrollConfig) else distill_implicit
        folder = args.out / row_folder_name(method) if args.keep else None
        with track_peak_memory(args.device) as whole:
            outcome = distill(dataset, config, seed=args.seed, device=args.device, out_dir=folder)
        history = outcome.history
        images, labels = outcome.synthetic.detached()
        result = evaluate(images, labels)
        learned_lrs = getattr(outcome.method, "learned_lrs", None)  # unroll's per-step rates; IFT learns none
        rows.append({"method": method, "accuracy_mean": 100 * result.mean, "accuracy_std": 100 * result.std,
                     "accuracies": result.accuracies, "learned_parameters": outcome.method.learned_parameters(),
                     "iterations": history.completed, "distill_seconds": sum(history.seconds),
                     "peak_mib": history.peak_mib, "added_mib": history.added_mib, "memory_kind": history.memory_kind,
                     "final_outer_loss": history.losses[-1][0] if history.completed else None,
                     "learned_lrs": [] if learned_lrs is None else learned_lrs.tolist(),
                     "config": config.as_dict(), "folder": row_folder_name(method) if args.keep else None,
                     **published_cells(method)})
        print(f"{method}: {outcome.summary()}; {result}", flush=True)
        if folder is not None:  # the set with its provenance, and the history, beside the checkpoint
            extra = {"dataset": "mnist", "ipc": IPC, "row": method, "config": config.as_dict(),
                     "distill_seconds": sum(history.seconds), "resumed_at": list(history.resumed_at),
                     "learned_lrs": rows[-1]["learned_lrs"], "evaluation": eval_config.as_dict(),
                     "accuracies": result.accuracies}
            provenance = make_provenance(row_folder_name(method), f"seed003_bilevel {args.profile}", args.seed,
                                         history.completed, sum(history.seconds), extra, device=args.device)
            save_synthetic(outcome.synthetic, folder / "synthetic.pt", provenance=provenance)
            history.save_json(folder / "history.json")
        del whole

    wall = time.perf_counter() - started
    report = {
        "experiment": "seed003_bilevel",
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "profile": args.profile,
        "seed": args.seed,
        "budget": budget,
        "ipc": IPC,
        "evaluation": eval_config.as_dict() | {"num_models": budget["eval_models"], "steps": budget["eval_steps"]},
        "hardware": describe_hardware(args.device),
        "library_versions": library_versions(),
        "wall_seconds": wall,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"seed003_bilevel_{args.profile}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'method':<40} {'ours %':>14} {'published %':>12} {'learned':>8} {'K':>5} {'time s':>7} {'+MiB':>6}")
    for row in rows:
        ours = f"{row['accuracy_mean']:.1f} ± {row['accuracy_std']:.1f}"
        added = "-" if row["added_mib"] is None else f"{row['added_mib']:.0f}"
        print(f"{row['method']:<40} {ours:>14} {row['published_accuracy'] or '-':>12} {row['learned_parameters']:>8} "
              f"{row['iterations']:>5} {row['distill_seconds']:>7.1f} {added:>6}")
    print(f"\nwrote {path} ({wall:.0f} s wall, {describe_hardware(args.device)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
